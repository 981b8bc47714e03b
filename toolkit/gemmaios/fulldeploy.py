"""`gemmaios deploy` as the whole job: build what is missing, sign, install, push, and optionally
bench and report.

Stages, each announced through `say` as it starts:
1. build: the pipeline (checkpoint … compile, app, sign) in the build folder. With --model every
   step is checked (finished, unchanged ones are skipped); with only --out, the steps from the first
   unfinished one on run (and sign, which is skipped when its .ipa is up to date). A step that needs a Mac nobody
   configured stops here with the exact command (NeedsMacOS); a failed step stops with its error.
   With `--ipa` the user brings the signed app, and the sign step is not run.
2. install + push: `gemmaios.device.deploy` with the signed .ipa the sign step recorded.
3. bench (`--bench`): `gemmaios.devicebench.bench` on the same device, same app.
4. report: `gemmaios report`'s code path (load_runs → build_report → write_report) on that run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .buildlayout import MANIFEST_NAME
from .errors import NeedsMacOS, StepFailed
from .pipeline import FAILED, PENDING, BuildOptions, Manifest, StepReport

Say = Callable[[str], None]


@dataclass
class DeployRequest:
    """What `gemmaios deploy` was asked to do. `options` is None to reuse the build folder's own options."""

    build_dir: Path | None
    options: BuildOptions | None = None
    udid: str | None = None
    ipa: Path | None = None
    team_id: str | None = None
    mac: str | None = None
    config_extra: dict[str, Any] = field(default_factory=dict)  # ssh_options / mac_workdir from gemmaios.yaml
    config: Path | None = None  # --config (the app and sign steps read team_id, bundle_id, ... from it)
    bundle_location: str | None = None  # the app step's --bundle-location
    verify: bool = True
    allow_uncompiled: bool = False
    allow_tbl: bool = False
    bench: bool = False
    trials: int = 3
    timeout: float = 1800.0
    mount_ddi: bool = False
    ab_prefill: bool = False  # the bench protocol's options (bench.bench)
    ab_kv: bool = False
    cold: int = 0
    duration: int = 0
    sample_interval: int | None = None
    ab: Path | None = None  # `--ab OTHER`: bench this build and OTHER's deployed app in turns (gemmaios.abbench)
    poll: float = 2.0


@dataclass
class FullDeployResult:
    build_dir: Path
    steps: list[StepReport]
    ipa: Path | None
    deploy: Any  # device.DeployResult
    bench: Any = None  # bench.BenchResult
    report: Any = None  # report.Report
    report_files: dict[str, Path] = field(default_factory=dict)
    ab: Any = None  # abbench.AbReport (`--ab`)


def options_from_manifest(build_dir: Path) -> BuildOptions:
    """The options the build folder was built with (buildfolder.stored_options), to resume it as it was."""
    from .buildfolder import stored_options

    options = stored_options(build_dir)
    if options is None:
        raise StepFailed(f"{build_dir}/build.json does not record the options it was built with",
                         hint="pass --model (and --arch) so deploy knows what to build")
    return options


def _prepare_options(request: DeployRequest, build_dir: Path) -> BuildOptions:
    options = request.options or options_from_manifest(build_dir)
    extra = options.extra
    if request.mac:
        options.mac = request.mac
    extra.update({k: v for k, v in request.config_extra.items() if v})
    app = dict(extra.get("app") or {})
    if request.team_id:
        app["team_id"] = request.team_id  # the project carries the team too (DEVELOPMENT_TEAM)
        extra["sign"] = {**(extra.get("sign") or {}), "team_id": request.team_id}
    if request.config:
        app["config"] = request.config
    if request.bundle_location:
        app["bundle_location"] = request.bundle_location
    if request.allow_uncompiled:
        app["allow_uncompiled"] = True
    if request.allow_tbl:
        app["allow_tbl"] = True
    extra["app"] = app
    return options


def _check_steps(reports: list[StepReport], request: DeployRequest, build_dir: Path, say: Say) -> None:
    """Raise the first failed or pending step's error, except what the user waived: a pending compile
    with --allow-uncompiled, and a pending sign when the build already holds a signed package (fastlane's
    `ipa/`, or one signed by hand)."""
    from .device import find_app_package

    for report in reports:
        if report.status == FAILED:
            first = report.message.splitlines()[0] if report.message else "failed"
            raise StepFailed(f"step {report.name} failed: {first}",
                             hint=f"fix it and run the same `gemmaios deploy` again (finished steps are kept); "
                                  f"details in {build_dir}/build.json")
        if report.status != PENDING:
            continue
        if report.name == "compile" and request.allow_uncompiled:
            say("  compile: needs macOS; going on with the uncompiled bundle (--allow-uncompiled)")
            continue
        if report.name == "sign" and find_app_package(build_dir) is not None:
            say(f"  sign: needs macOS; installing the signed package already in the build "
                f"({find_app_package(build_dir)})")
            continue
        raise NeedsMacOS(f"step {report.name} needs macOS: {report.message}", command=report.command,
                         hint=f"pass --mac user@host (or set `mac:` in gemmaios.yaml), or on a Mac run:\n"
                              f"    {report.command}\n    then run the same `gemmaios deploy` again")


def _first_unfinished(manifest: Manifest, names: list[str], request: DeployRequest) -> int:
    """Index of the first step without a finished record; a compile left pending is waived by --allow-uncompiled."""
    for index, name in enumerate(names):
        record = manifest.get(name)
        if record is not None and record.status == PENDING and name == "compile" and request.allow_uncompiled:
            continue
        if record is None or record.status not in ("done", "skipped", "n/a"):
            return index
    return len(names)


def build_for_deploy(request: DeployRequest, build_dir: Path, console: Console,
                     say: Say) -> tuple[list[StepReport], Path | None]:
    """Run the pipeline (every step, sign included unless --ipa) and return the app package to install
    (None: let deploy find it). A build folder that does not record its options (not made by
    `gemmaios build`) is deployed as it is."""
    from .device import find_app_package
    from .sign import WHERE_TEAM_GOES, MissingTeamId, resolve_team_id
    from .steps import run_build, step_names

    if request.options is None and not Manifest(build_dir).data.get("options", {}).get("model"):
        say("  build.json records no build options: deploying the folder as it is")
        return [], request.ipa
    options = _prepare_options(request, build_dir)
    if request.ipa is None and find_app_package(build_dir) is None and not resolve_team_id(options):
        raise MissingTeamId("no Apple Developer Team ID to sign the app with", hint=WHERE_TEAM_GOES)  # before a long build
    names = step_names()
    only = set(names)
    if request.options is None:  # an existing build: from the first unfinished step on (hand edits before it kept)
        only = set(names[_first_unfinished(Manifest(build_dir), names, request):]) | {"sign"}
    if request.ipa is not None:
        only.discard("sign")
    ctx, reports = run_build(options, build_dir, only=only, console=console)
    _check_steps(reports, request, ctx.build_dir, say)
    if request.ipa is not None:
        return reports, Path(request.ipa)
    sign = ctx.manifest.details("sign")
    return reports, ctx.path(sign.ipa) if sign is not None else None


def deploy_summary(result) -> str:
    """One line: what was installed and pushed (a device.DeployResult)."""
    from .contract import BUNDLED

    push = result.push
    return (f"{result.bundle_id} on {result.udid}: app {'installed' if result.installed else 'unchanged'}, "
            f"{len(push.pushed)} files pushed ({push.bytes_sent / (1 << 20):.1f} MiB), {len(push.skipped)} already there"
            + (f", {len(push.resumed)} resumed" if push.resumed else "")
            + (f", {len(push.resent)} re-sent after a failed read-back" if push.resent else "")
            + (f", {len(push.removed)} no longer in the build removed" if push.removed else "")
            + (" (bundle location bundled: the app carries the payload)" if result.location == BUNDLED else ""))


def deploy_all(request: DeployRequest, *, say: Say, console: Console | None = None,
               progress=None) -> FullDeployResult:
    """Build what is missing, sign, install, push; with `request.bench`, bench and report. Each stage is
    announced with `say` before it runs."""
    from . import devicebench as bench_mod
    from . import report as rep
    from .device import deploy as device_deploy
    from .device import find_app_package
    from .steps import default_build_dir

    console = console or Console(stderr=True)
    build_dir = Path(request.build_dir) if request.build_dir else default_build_dir(request.options)
    if request.options is None and not (build_dir / MANIFEST_NAME).is_file():
        raise StepFailed(f"{build_dir} is not a build folder (no build.json)",
                         hint="pass --model tiny (or a checkpoint) to build one, or --out an existing build")

    say(f"▶ build: every step up to the signed app in {build_dir}"
        + (" (sign skipped: --ipa)" if request.ipa else ""))
    steps, ipa = build_for_deploy(request, build_dir, console, say)
    ipa = ipa or find_app_package(build_dir)
    say(f"✓ build: {sum(r.status in ('done', 'skipped') for r in steps)} steps finished; app package {ipa}")

    # the Mac that signs is also where devicectl runs when the phone hangs off it (not off this machine)
    ssh_options = tuple(request.config_extra.get("ssh_options") or ())
    say("▶ install + push: the app and the payload it reads, per the device contract")
    deployed = device_deploy(build_dir, request.udid, ipa, verify=request.verify, progress=progress,
                             allow_uncompiled=request.allow_uncompiled, allow_tbl=request.allow_tbl,
                             mac=request.mac, ssh_options=ssh_options)
    say(f"✓ install + push: {deploy_summary(deployed)}")
    for warning in deployed.warnings:
        say(f"  warning: {warning}")
    result = FullDeployResult(build_dir, steps, ipa, deployed)
    if not request.bench:
        return result

    if request.ab is not None:
        from .abbench import device_ab

        say(f"▶ bench A/B: this build and {request.ab}, {request.trials} trial(s) a turn on {deployed.udid}")
        result.ab, runs = device_ab(build_dir, request.ab, bench_mod.bench, udid=deployed.udid, trials=request.trials,
                                    say=lambda msg: say(f"  {msg}"), timeout=request.timeout, poll=request.poll,
                                    mount_ddi=request.mount_ddi, cold=request.cold, duration=request.duration,
                                    sample_interval=request.sample_interval, status_fn=lambda msg: say(f"  {msg}"),
                                    mac=request.mac, ssh_options=ssh_options)
        result.bench = runs["a"][0]
        say(f"✓ bench A/B: wrote {result.bench.run_dir}/ab.md")
        return result

    say(f"▶ bench: {request.trials} trial(s) of the prompt set on {deployed.udid}")
    result.bench = bench_mod.bench(build_dir, deployed.udid, trials=request.trials, timeout=request.timeout,
                                   poll=request.poll, mount_ddi=request.mount_ddi, bundle_id=deployed.bundle_id,
                                   ab_prefill=request.ab_prefill, ab_kv=request.ab_kv, cold=request.cold,
                                   duration=request.duration, sample_interval=request.sample_interval,
                                   status_fn=lambda msg: say(f"  {msg}"), mac=request.mac, ssh_options=ssh_options)
    say(f"✓ bench: run {result.bench.run_id}, {result.bench.prompts} prompt records "
        f"(validation: {result.bench.validation})")

    say("▶ report: tok/s, memory, oracle and determinism")
    runs = rep.load_runs([result.bench.run_dir])
    result.report = rep.build_report(runs, scorer=rep.default_scorer())
    result.report_files = rep.write_report(result.report, rep.default_out_dir(runs))
    for summary in result.report.runs:
        failed = [g.name for g in summary.gates if not g.passed]
        oracle = summary.oracle.label if getattr(summary, "oracle", None) else "not scored"
        say(f"✓ report: {summary.label}: oracle {oracle}; "
            + ("gates pass" if not failed else f"FAILED gates: {', '.join(failed)}"))
    say("  wrote " + ", ".join(str(p) for p in result.report_files.values()))
    return result

