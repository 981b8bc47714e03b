"""The `sign` step: the rendered Xcode project → a development-signed `.ipa`, with `xcodebuild`.

Three commands, run by the toolchain runner (this Mac, or a Mac over SSH) in one job so the
archive (which holds the bundled payload: GBs for E4B) never crosses the network:

    xcodebuild -project <App>/<App>.xcodeproj -scheme <App> -configuration Release
        -destination generic/platform=iOS -archivePath <App>.xcarchive archive
        -allowProvisioningUpdates DEVELOPMENT_TEAM=<team>
    xcodebuild -exportArchive -archivePath <App>.xcarchive -exportOptionsPlist ExportOptions.plist
        -exportPath export -allowProvisioningUpdates

and, for the XCTest bench (gemmaios.xctestbench), in the same job:

    xcodebuild -project <App>/<App>.xcodeproj -scheme <App> -configuration Release
        -destination generic/platform=iOS -derivedDataPath <scratch> build-for-testing
        -allowProvisioningUpdates DEVELOPMENT_TEAM=<team>

whose Build/Products (the .xctestrun, the host app with its test bundle) come back to
`<build>/sign/xctest/` and are zipped as the farm's test package.

ExportOptions.plist (plistlib): `method` `debugging` (Xcode 15.3+'s name for a development
export; Xcode 26 refuses the old alias `development`), `signingStyle` automatic, `teamID`.
Automatic signing with `-allowProvisioningUpdates` lets Xcode create the App ID, the development
certificate and the profile for the team of the account signed in to Xcode on that Mac.

The project (app/) and the patched engine package it references (engine/, `../../engine/...`)
go over together; `export/<App>.ipa` comes back checked by sha256 (SSHRunner), lands in
`<build>/sign/export/`, and the step records its path, sha256 and bundle id in build.json, where
`gemmaios deploy` finds it.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import xctest
from .buildlayout import APP_DIR, ENGINE_DIR, SIGN_DIR
from .errors import GemmaiosError, NeedsMacOS
from .pipeline import BuildContext, Step, StepOutcome, sha256_file
from .runners import In, Out, ToolchainError, ToolchainRunner, runner_for_build
from .steprecords import AppDetails, SignDetails

CONFIGURATION = "Release"  # a Debug engine measures ~3x slower (app/xcode.py)
DESTINATION = "generic/platform=iOS"
EXPORT_METHOD = "debugging"  # development signing; `development` is the deprecated alias Xcode 26 rejects
SIGNING_STYLE = "automatic"
EXPORT_DIR = "export"
EXPORT_OPTIONS = "ExportOptions.plist"
TEAM_ID_RE = re.compile(r"[A-Z0-9]{10}")
WHERE_TEAM_GOES = ("pass --team-id ABCDE12345, or add `team_id: ABCDE12345` to gemmaios.yaml (or "
                   "~/.config/gemmaios/config.yaml); Xcode → Settings → Accounts shows your team's ID")


class SigningError(GemmaiosError):
    """The app could not be archived, signed or exported."""


class SignWaiting(NeedsMacOS, SigningError):
    """Signing cannot start yet; in a build the step is left pending (the other steps' work is kept)."""

    def __init__(self, message: str, hint: str = "", command: str = "") -> None:
        super().__init__(message, command=command, hint=hint)


class MissingTeamId(SignWaiting):
    """No Apple Developer Team ID to sign with."""


class EngineNotReady(SignWaiting):
    """The project's local coreai-models package has not been prepared, so Xcode cannot resolve it."""


class NoDeveloperAccount(SigningError):
    """Xcode on the Mac has no account for the team."""


class NoProvisioningProfile(SigningError):
    """Automatic signing could not get a development profile (no registered device, bundle id taken, ...)."""


class NoSigningCertificate(SigningError):
    """No usable Apple Development certificate (or its private key) in the Mac's keychain."""


class KeychainLocked(SigningError):
    """codesign could not use the private key: the login keychain is locked (typical over SSH)."""


class EntitlementNotAllowed(SigningError):
    """The team's profile does not grant an entitlement the app asks for (the increased memory limit)."""


class PackageResolutionFailed(SigningError):
    """Xcode could not resolve the project's Swift packages."""


class BadIpa(SigningError):
    """What came back is not a signed .ipa of this app."""


# ---- the commands ------------------------------------------------------------------------------

def archive_argv(project: str, scheme: str, archive: str, team_id: str) -> list[str]:
    return ["xcodebuild", "-project", project, "-scheme", scheme, "-configuration", CONFIGURATION,
            "-destination", DESTINATION, "-archivePath", archive, "archive", "-allowProvisioningUpdates",
            f"DEVELOPMENT_TEAM={team_id}"]


def export_argv(archive: str, export_options: str, export_path: str) -> list[str]:
    return ["xcodebuild", "-exportArchive", "-archivePath", archive, "-exportOptionsPlist", export_options,
            "-exportPath", export_path, "-allowProvisioningUpdates"]


def export_options(team_id: str) -> dict:
    return {"method": EXPORT_METHOD, "signingStyle": SIGNING_STYLE, "teamID": team_id, "destination": "export",
            "thinning": "<none>"}


def write_export_options(path: Path, team_id: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        plistlib.dump(export_options(team_id), fh)
    os.replace(tmp, path)
    return path


def job_command(app_dir: Path, engine_dir: Path, options_plist: Path, app_name: str, team_id: str) -> list:
    """Both xcodebuild commands as one runner job: $1 the app folder, $2 the engine package's folder
    (sent so the project's `../../engine/...` reference resolves), $3 ExportOptions.plist, $4 the
    export folder (brought back). The archive stays in a scratch folder on the Mac."""
    archive = f'"$tmp"/{app_name}.xcarchive'
    project = f'"$1"/{app_name}/{app_name}.xcodeproj'
    script = "\n".join([
        "set -e",
        'tmp=$(mktemp -d "${TMPDIR:-/tmp}/gemmaios-sign.XXXXXX")',
        "trap 'rm -rf \"$tmp\"' EXIT",
        _line(archive_argv("@P", app_name, "@A", team_id), {"@P": project, "@A": archive}),
        _line(export_argv("@A", "@O", "@E"), {"@A": archive, "@O": '"$3"', "@E": '"$4"'}),
        # the XCTest bench's products ($5: the .xctestrun and the host app with its test bundle)
        _line(xctest.build_for_testing_argv("@P", app_name, "@D", team_id), {"@P": project, "@D": '"$tmp"/dd'}),
        'cp -R "$tmp"/dd/Build/Products/. "$5"',
    ])
    return ["/bin/sh", "-c", script, "gemmaios-sign", In(app_dir), In(engine_dir), In(options_plist),
            Out(EXPORT_DIR, folder=True), Out(xctest.PRODUCTS_DIR, folder=True)]


def _line(argv: list[str], shell: dict[str, str]) -> str:
    return " ".join(shell.get(a, shlex.quote(a)) for a in argv)


def manual_command(build_dir: Path, app_name: str, team_id: str | None) -> str:
    """What to run by hand on a Mac, from the build folder (the project next to engine/, as rendered)."""
    build_dir = Path(build_dir).resolve()
    try:
        shown = build_dir.relative_to(Path.cwd())
    except ValueError:
        shown = build_dir
    team = team_id or "<your team id>"
    archive = f"{SIGN_DIR}/{app_name}.xcarchive"
    return (f"cd {shlex.quote(str(shown))} && "
            + shlex.join(archive_argv(f"app/{app_name}/{app_name}.xcodeproj", app_name, archive, team)) + " && "
            + shlex.join(export_argv(archive, f"{SIGN_DIR}/{EXPORT_OPTIONS}", f"{SIGN_DIR}/{EXPORT_DIR}")) + " && "
            + shlex.join(xctest.build_for_testing_argv(f"app/{app_name}/{app_name}.xcodeproj", app_name,
                                                             f"{SIGN_DIR}/dd", team)) + " && "
            + f"cp -R {SIGN_DIR}/dd/Build/Products {SIGN_DIR}/{xctest.PRODUCTS_DIR}")


# ---- xcodebuild's failures, named ------------------------------------------------------------------

def classify_failure(output: str, team_id: str, bundle_id: str, host: str) -> SigningError | None:
    """The named error for what xcodebuild printed, or None when nothing here recognises it."""
    keychain = "security unlock-keychain ~/Library/Keychains/login.keychain-db"
    checks: list[tuple[str, type[SigningError], str, str]] = [
        (r"requires a development team", MissingTeamId, "the project has no development team to sign with",
         WHERE_TEAM_GOES),
        (r"No Accounts|No account for team|not signed in|Your session has expired", NoDeveloperAccount,
         f"Xcode on {host} has no signed-in account for team {team_id}",
         f"on {host}: open Xcode → Settings → Accounts and sign in with an Apple ID of team {team_id} "
         "(xcodebuild -allowProvisioningUpdates uses that account), then re-run"),
        (r"errSecInternalComponent|User interaction is not allowed", KeychainLocked,
         f"codesign on {host} could not use the signing key (the login keychain is locked)",
         f"over SSH unlock it first: ssh {host} '{keychain}', then re-run"),
        (r"No signing certificate|No certificate for team|doesn't include signing certificate", NoSigningCertificate,
         f"no Apple Development certificate of team {team_id} on {host}",
         f"on {host}: Xcode → Settings → Accounts → Manage Certificates → + Apple Development, then re-run"),
        (r"increased-memory-limit|extended-virtual-addressing|doesn't (support|include) the .* (capability|entitlement)",
         EntitlementNotAllowed, f"team {team_id}'s provisioning profile does not grant an entitlement the app needs",
         "the app asks for com.apple.developer.kernel.increased-memory-limit and extended-virtual-addressing: "
         f"enable both capabilities for {bundle_id} at developer.apple.com → Identifiers (a paid team can), then re-run"),
        (r"No profiles for|No matching provisioning profiles|Failed to register bundle identifier"
         r"|no devices|Communication with Apple failed", NoProvisioningProfile,
         f"Xcode could not get a development provisioning profile for {bundle_id} (team {team_id})",
         "connect the iPhone to the Mac once (automatic signing registers it), and if the bundle id is taken use "
         "your own (`bundle_id:` in gemmaios.yaml, or `gemmaios app --bundle-id com.yourname.gemma`); then re-run"),
        (r"Could not resolve package dependencies|Missing package product|package .* cannot be accessed",
         PackageResolutionFailed, f"Xcode on {host} could not resolve the project's Swift packages",
         "the Mac needs network for swift-transformers, and engine/coreai-models must be prepared "
         "(`gemmaios app`); then re-run"),
    ]
    for pattern, cls, message, hint in checks:
        if re.search(pattern, output, re.IGNORECASE):
            line = next((ln.strip() for ln in output.splitlines() if re.search(pattern, ln, re.IGNORECASE)), "")
            return cls(f"{message}: {line}" if line else message, hint=hint)
    return None


# ---- the .ipa ---------------------------------------------------------------------------------------

@dataclass
class IpaInfo:
    path: Path
    bundle_id: str
    executable: str
    version: str
    sha256: str
    size: int


def check_ipa(path: Path, app_name: str, bundle_id: str | None = None) -> IpaInfo:
    """An exported, signed .ipa of `app_name`: Payload/<App>.app with its Info.plist, executable and
    code signature; the bundle id, when given, must match."""
    path = Path(path)
    root = f"Payload/{app_name}.app/"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            info = plistlib.loads(archive.read(root + "Info.plist"))
    except (OSError, KeyError, zipfile.BadZipFile, plistlib.InvalidFileException) as exc:
        raise BadIpa(f"{path} is not an .ipa holding {root}Info.plist ({exc})",
                     hint="re-run the sign step (`gemmaios deploy` or `gemmaios build`)") from exc
    executable = str(info.get("CFBundleExecutable", ""))
    missing = [n for n in (executable, "_CodeSignature/CodeResources") if not n or root + n not in names]
    if missing:
        raise BadIpa(f"{path}: {root} lacks {', '.join(m or 'CFBundleExecutable' for m in missing)} (not a signed app)",
                     hint="re-run the sign step; check the export's log on the Mac")
    if bundle_id and info.get("CFBundleIdentifier") != bundle_id:
        raise BadIpa(f"{path} is {info.get('CFBundleIdentifier')!r}, the project builds {bundle_id!r}",
                     hint="re-run the sign step so the .ipa matches the rendered project")
    return IpaInfo(path, str(info.get("CFBundleIdentifier", "")), executable,
                   str(info.get("CFBundleShortVersionString", "")), sha256_file(path), path.stat().st_size)


@dataclass
class SignResult:
    ipa: IpaInfo
    command: str
    host: str
    seconds: float
    tool_version: str = ""  # `xcodebuild -version`, first line
    sha256: dict[str, str] = field(default_factory=dict)


def tool_version(runner: ToolchainRunner) -> str:
    try:
        return (runner.check(["xcodebuild", "-version"]).splitlines() or [""])[0]
    except ToolchainError:
        return ""


def sign_app(build_dir: Path, app_name: str, bundle_id: str, team_id: str, runner: ToolchainRunner, *,
             timeout: float | None = None) -> SignResult:
    """Archive and export `app/<app_name>` of `build_dir` with development signing; the .ipa lands in
    `<build>/sign/export/<app_name>.ipa` (replacing any earlier one only once complete)."""
    build_dir = Path(build_dir).resolve()
    if not TEAM_ID_RE.fullmatch(team_id or ""):
        raise MissingTeamId(f"no valid Apple Developer Team ID to sign with (got {team_id!r})", hint=WHERE_TEAM_GOES)
    app_dir, engine_dir = build_dir / APP_DIR, build_dir / ENGINE_DIR
    if not (app_dir / app_name / f"{app_name}.xcodeproj" / "project.pbxproj").is_file():
        raise SigningError(f"{app_dir / app_name} holds no rendered {app_name}.xcodeproj",
                           hint="run `gemmaios app` (or `gemmaios build`) first")
    sign_dir = build_dir / SIGN_DIR
    options = write_export_options(sign_dir / EXPORT_OPTIONS, team_id)
    try:
        result = runner.run(job_command(app_dir, engine_dir, options, app_name, team_id), sign_dir, timeout=timeout)
    except ToolchainError as exc:
        named = classify_failure(str(exc), team_id, bundle_id, runner.describe())
        if named is None:
            raise
        raise named from exc
    ipa = sign_dir / EXPORT_DIR / f"{app_name}.ipa"
    if not ipa.is_file():
        found = sorted(p.name for p in (sign_dir / EXPORT_DIR).glob("*")) if (sign_dir / EXPORT_DIR).is_dir() else []
        raise BadIpa(f"the export on {runner.describe()} wrote {found or 'nothing'}, not {ipa.name}",
                     hint="check xcodebuild's output above (a newer Xcode may name the .ipa differently)")
    info = check_ipa(ipa, app_name, bundle_id)
    xctest.package_test_products(build_dir, sign_dir / xctest.PRODUCTS_DIR)  # the farm's test package
    return SignResult(info, result.command, result.host, result.seconds, tool_version(runner), result.sha256)


# ---- the macOS app (a `--target mac` build): xcodebuild build, signed for development -------------------

MAC_DIR = "mac"  # <build>/sign/mac/<App>.app


def mac_build_argv(project: str, scheme: str, derived: str, team_id: str) -> list[str]:
    from .app import APP_PLATFORMS

    return ["xcodebuild", "-project", project, "-scheme", scheme, "-configuration", CONFIGURATION,
            "-destination", APP_PLATFORMS["mac"].destination, "-derivedDataPath", derived, "build",
            "-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={team_id}"]


def mac_products(derived: str) -> str:
    return f"{derived}/Build/Products/{CONFIGURATION}"


def mac_job_command(app_dir: Path, engine_dir: Path, app_name: str, team_id: str) -> list:
    """The Mac app's build as one runner job: $1 the app folder, $2 the engine package's folder, $3 the
    folder the signed `<App>.app` is copied to (brought back). DerivedData stays in a scratch folder."""
    project = f'"$1"/{app_name}/{app_name}.xcodeproj'
    script = "\n".join([
        "set -e",
        'tmp=$(mktemp -d "${TMPDIR:-/tmp}/gemmaios-macapp.XXXXXX")',
        "trap 'rm -rf \"$tmp\"' EXIT",
        _line(mac_build_argv("@P", app_name, "@D", team_id), {"@P": project, "@D": '"$tmp"/dd'}),
        f'cp -R "$tmp"/dd/Build/Products/{CONFIGURATION}/{shlex.quote(app_name)}.app "$3"/',
    ])
    return ["/bin/sh", "-c", script, "gemmaios-macapp", In(app_dir), In(engine_dir), Out(MAC_DIR, folder=True)]


def mac_manual_command(build_dir: Path, app_name: str, team_id: str | None) -> str:
    """What to run by hand on a Mac with Xcode 27, from the build folder."""
    build_dir = Path(build_dir).resolve()
    try:
        shown = build_dir.relative_to(Path.cwd())
    except ValueError:
        shown = build_dir
    derived = f"{SIGN_DIR}/mac-dd"
    return (f"cd {shlex.quote(str(shown))} && "
            + shlex.join(mac_build_argv(f"app/{app_name}/{app_name}.xcodeproj", app_name, derived,
                                        team_id or "<your team id>")) + " && "
            + f"mkdir -p {SIGN_DIR}/{MAC_DIR} && cp -R {mac_products(derived)}/{shlex.quote(app_name)}.app "
              f"{SIGN_DIR}/{MAC_DIR}/")


@dataclass
class MacAppInfo:
    path: Path
    bundle_id: str
    executable: str
    version: str
    sha256: str  # of the executable


def check_mac_app(path: Path, app_name: str, bundle_id: str | None = None) -> MacAppInfo:
    """A built, signed macOS `<App>.app`: Contents/Info.plist, Contents/MacOS/<executable>, its code signature."""
    path = Path(path)
    contents = path / "Contents"
    try:
        info = plistlib.loads((contents / "Info.plist").read_bytes())
    except (OSError, plistlib.InvalidFileException) as exc:
        raise BadIpa(f"{path} is not a macOS app holding Contents/Info.plist ({exc})",
                     hint="re-run the step (`gemmaios build --target mac`)") from exc
    executable = str(info.get("CFBundleExecutable", ""))
    missing = [n for n in (f"MacOS/{executable}", "_CodeSignature/CodeResources")
               if not executable or not (contents / n).is_file()]
    if missing:
        raise BadIpa(f"{path}: Contents/ lacks {', '.join(missing)} (not a signed app of {app_name})",
                     hint="check xcodebuild's output on the Mac, then re-run")
    if bundle_id and info.get("CFBundleIdentifier") != bundle_id:
        raise BadIpa(f"{path} is {info.get('CFBundleIdentifier')!r}, the project builds {bundle_id!r}",
                     hint="re-run the step so the app matches the rendered project")
    return MacAppInfo(path, str(info.get("CFBundleIdentifier", "")), executable,
                      str(info.get("CFBundleShortVersionString", "")), sha256_file(contents / "MacOS" / executable))


# ---- the pipeline step -------------------------------------------------------------------------------

def resolve_team_id(options) -> str | None:
    """--team-id (deploy/sign), then the app step's --team-id, then gemmaios.yaml's `team_id`."""
    from .config import load_config

    extra = options.extra or {}
    for source in (extra.get("sign") or {}, extra.get("app") or {}):
        if source.get("team_id"):
            return str(source["team_id"])
    config = (extra.get("app") or {}).get("config") or extra.get("config")
    return load_config(config).team_id


def _app_name(ctx: BuildContext) -> str:
    """The Xcode target the app step renders: --app-name, else gemmaios.yaml's app_name, else GemmaBench."""
    from .config import load_config

    app = ctx.options.extra.get("app") or {}
    return app.get("app_name") or load_config(app.get("config")).app_name or "GemmaBench"


class WaitingForApp(NeedsMacOS):
    """The app step has not finished (on Linux: it waits for the AOT compile), so there is nothing to sign."""


class SignStep(Step):
    name = "sign"
    title = "archive and export a development-signed .ipa (xcodebuild)"

    def applicable(self, ctx: BuildContext) -> str | None:
        return None  # iOS: the .ipa; a --target mac build: the signed macOS .app (run_mac)

    def _app(self, ctx: BuildContext) -> AppDetails | None:
        return ctx.manifest.details("app")

    def inputs(self, ctx: BuildContext) -> dict:
        return {"app": ctx.step_fingerprint("app") if self._app(ctx) is not None else None,
                "team_id": resolve_team_id(ctx.options), "method": EXPORT_METHOD, "configuration": CONFIGURATION,
                "command": archive_argv("<project>", "<scheme>", "<archive>", "<team>")}

    def run(self, ctx: BuildContext) -> StepOutcome:
        if ctx.options.target == "mac":
            return self.run_mac(ctx)
        details = self._app(ctx)
        if details is None:
            # sign's own command (the two xcodebuild runs), for when the app step has finished
            raise WaitingForApp("waits for the app step, which has not finished",
                                command=manual_command(ctx.build_dir, _app_name(ctx), resolve_team_id(ctx.options)),
                                hint="finish the steps before it (see their lines above), then re-run")
        project = ctx.path(details.project)
        app_name = project.name
        bundle_id = _bundle_id(ctx.path(details.xcodeproj, "project.pbxproj"))
        team_id = resolve_team_id(ctx.options)
        command = manual_command(ctx.build_dir, app_name, team_id)
        ipa_path = ctx.path(SIGN_DIR, EXPORT_DIR, f"{app_name}.ipa")
        if team_id:  # the manual command reads it too
            write_export_options(ctx.path(SIGN_DIR, EXPORT_OPTIONS), team_id)
        try:
            runner = runner_for_build(ctx.options, pending_command=command,
                                      resume=f"copy {SIGN_DIR}/{EXPORT_DIR}/{app_name}.ipa back into {ctx.build_dir} "
                                             "and re-run the same gemmaios command (it picks the .ipa up)")
        except NeedsMacOS:
            picked = _pick_up(ipa_path, project, app_name, bundle_id)
            if picked is None:
                raise
            return self._outcome(ctx, picked, dict(command=command, host="picked up (signed elsewhere)",
                                                   picked_up=True), f"picked up {ipa_path.name}")
        if details.engine.status != "ready":
            engine = details.engine
            runner.close()
            raise EngineNotReady(f"the project's engine package is {engine.status} "
                                 f"({engine.message}); Xcode cannot resolve it",
                                 hint=f"run: {engine.command or 'gemmaios app'} — then re-run "
                                      "(or pass --engine-source PATH to a coreai-models checkout)",
                                 command=engine.command or "gemmaios app")
        if not team_id:
            runner.close()
            raise MissingTeamId("no Apple Developer Team ID to sign the app with", hint=WHERE_TEAM_GOES,
                                command=command)
        ctx.console.print(f"  archiving and exporting {app_name} (team {team_id}) on {runner.describe()}")
        try:
            with ctx.progress(f"xcodebuild archive + export → {app_name}.ipa", total=None):
                result = sign_app(ctx.build_dir, app_name, bundle_id, team_id, runner)
        finally:
            runner.close()
        return self._outcome(ctx, result.ipa, dict(command=result.command, manual_command=command,
                                                   host=result.host, picked_up=False, sign_seconds=result.seconds,
                                                   team_id=team_id, tool_version=result.tool_version),
                             f"{app_name}.ipa on {result.host}")

    def run_mac(self, ctx: BuildContext) -> StepOutcome:
        """`xcodebuild build` of the rendered macOS app, through the toolchain runner (this Mac, or --mac over
        SSH); elsewhere the step is pending with the command. The signed .app comes back to sign/mac/."""
        details = self._app(ctx)
        team_id = resolve_team_id(ctx.options)
        if details is None:
            raise WaitingForApp("waits for the app step, which has not finished",
                                command=mac_manual_command(ctx.build_dir, _app_name(ctx), team_id),
                                hint="finish the steps before it (see their lines above), then re-run")
        project = ctx.path(details.project)
        app_name = project.name
        bundle_id = _bundle_id(ctx.path(details.xcodeproj, "project.pbxproj"))
        command = mac_manual_command(ctx.build_dir, app_name, team_id)
        runner = runner_for_build(ctx.options, pending_command=command,
                                  resume=f"open sign/{MAC_DIR}/{app_name}.app on that Mac (the step itself "
                                         "records it when it runs there or over --mac)")
        try:
            if details.engine.status != "ready":
                engine = details.engine
                raise EngineNotReady(f"the project's engine package is {engine.status} ({engine.message}); "
                                     "Xcode cannot resolve it",
                                     hint=f"run: {engine.command or 'gemmaios app'} — then re-run "
                                          "(or pass --engine-source PATH to a coreai-models checkout)",
                                     command=engine.command or "gemmaios app")
            if not team_id:
                raise MissingTeamId("no Apple Developer Team ID to sign the Mac app with", hint=WHERE_TEAM_GOES,
                                    command=command)
            ctx.console.print(f"  building {app_name}.app for macOS (team {team_id}) on {runner.describe()}")
            with ctx.progress(f"xcodebuild build → {app_name}.app (macOS)", total=None):
                try:
                    result = runner.run(mac_job_command(ctx.path(APP_DIR), ctx.path(ENGINE_DIR), app_name, team_id),
                                        ctx.path(SIGN_DIR))
                except ToolchainError as exc:
                    named = classify_failure(str(exc), team_id, bundle_id, runner.describe())
                    if named is None:
                        raise
                    raise named from exc
            version = tool_version(runner)
        finally:
            runner.close()
        app = check_mac_app(ctx.path(SIGN_DIR, MAC_DIR, f"{app_name}.app"), app_name, bundle_id)
        record = SignDetails(ipa="", ipa_sha256="", bundle_id=app.bundle_id, executable=app.executable,
                             version=app.version, method="build", export_options="", command=result.command,
                             manual_command=command, host=result.host, sign_seconds=result.seconds, team_id=team_id,
                             tool_version=version, app=str(app.path.relative_to(ctx.build_dir)), platform="mac")
        executable = app.path / "Contents" / "MacOS" / app.executable
        return StepOutcome(outputs=[executable], details=record, message=f"{app_name}.app (macOS) on {result.host}",
                           known_sha256={executable: app.sha256}, tools={"xcodebuild": version or result.host})

    def _outcome(self, ctx: BuildContext, ipa: IpaInfo, how: dict, message: str) -> StepOutcome:
        details = SignDetails(ipa=str(ipa.path.resolve().relative_to(ctx.build_dir)), ipa_sha256=ipa.sha256,
                              bundle_id=ipa.bundle_id, executable=ipa.executable, version=ipa.version,
                              method=EXPORT_METHOD, export_options=f"{SIGN_DIR}/{EXPORT_OPTIONS}", **how)
        outputs = [ipa.path] + ([ctx.path(SIGN_DIR, EXPORT_OPTIONS)] if ctx.path(SIGN_DIR, EXPORT_OPTIONS).is_file() else [])
        return StepOutcome(outputs=outputs, details=details, message=message, known_sha256={ipa.path: ipa.sha256},
                           tools={"xcodebuild": details.tool_version or details.host})


def _bundle_id(pbxproj: Path) -> str:
    match = re.search(r"PRODUCT_BUNDLE_IDENTIFIER = \"?([^\";]+)\"?;", pbxproj.read_text())
    if not match:
        raise SigningError(f"{pbxproj} sets no PRODUCT_BUNDLE_IDENTIFIER", hint="re-run `gemmaios app`")
    return match.group(1)


def _pick_up(ipa: Path, project: Path, app_name: str, bundle_id: str) -> IpaInfo | None:
    """An .ipa signed by hand on a Mac and copied back, newer than the rendered project."""
    pbxproj = project / f"{app_name}.xcodeproj" / "project.pbxproj"
    if not ipa.is_file() or ipa.stat().st_mtime_ns < pbxproj.stat().st_mtime_ns:
        return None
    return check_ipa(ipa, app_name, bundle_id)
