"""The `app` step: render ios_template/ into a ready-to-open Xcode project for the bundle.

`render_app(build_dir, settings)` writes `app/<AppName>/`: the .xcodeproj (deterministic
object ids, the patched coreai-models wired in as a local Swift package), Info.plist and the
entitlements (plistlib), the Swift sources (jinja2; every value escaped for Swift) and the
bench prompt set. It renders on any machine; the engine package needs the pinned
apple/coreai-models checkout (see patches.py) and is reported pending when there is none.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import plistlib
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from . import __version__
from . import contract as c
from .errors import GemmaiosError
from .patches import (
    ENGINE_DIRNAME,
    EngineSourceUnavailable,
    PatchError,
    default_cache_dir,
    load_series,
    locate_pinned_source,
    prepare_engine_package,
)
from .payload import PROMPT_SET_BUILD_REL, PayloadPlan, check_ios_bundle, check_tbl_memory, payload_plan
from .pipeline import BuildContext, Step, StepOutcome, replace_dir, sha256_file

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "ios_template"
ENGINE_PRODUCT = "CoreAILM"
INCREASED_MEMORY_KEY = "com.apple.developer.kernel.increased-memory-limit"
# Large models need both (the zoo's apps carry both): more address space, and more memory.
EXTENDED_VA_KEY = "com.apple.developer.kernel.extended-virtual-addressing"
PLE_MODES = ("provider", "tbl", "none")
BUNDLE_LOCATIONS = c.BUNDLE_LOCATIONS
MIN_DEPLOYMENT = (27, 0)  # coreai-models' Package.swift: .iOS("27.0")


class AppTemplateError(GemmaiosError):
    """A value for the app template is invalid, or the template/rendered project is broken."""


# ---- validation / escaping ------------------------------------------------------------------

_APP_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# Apple: a bundle id uses only alphanumerics, hyphens and periods (reverse-DNS, 2+ parts).
_BUNDLE_ID_RE = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_TEAM_ID_RE = re.compile(r"[A-Z0-9]{10}")
_BUNDLE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def validate_app_name(value: str) -> str:
    if not _APP_NAME_RE.fullmatch(value or ""):
        raise AppTemplateError(
            f"app name {value!r} cannot name an Xcode target",
            hint="use a letter then letters, digits or _ (at most 64), e.g. GemmaBench; "
            "put free text in --display-name instead",
        )
    return value


def validate_bundle_id(value: str) -> str:
    if len(value or "") > 155 or not _BUNDLE_ID_RE.fullmatch(value or ""):
        raise AppTemplateError(
            f"bundle id {value!r} is not valid",
            hint="Apple allows letters, digits, hyphens and periods, reverse-DNS style: com.example.gemma",
        )
    return value


def validate_team_id(value: str | None) -> str:
    if not value:
        return ""
    if not _TEAM_ID_RE.fullmatch(value):
        raise AppTemplateError(
            f"team id {value!r} is not an Apple Developer Team ID",
            hint="10 upper-case letters/digits, shown in Xcode → Settings → Accounts or developer.apple.com",
        )
    return value


def validate_deployment_target(value: str) -> str:
    match = _VERSION_RE.fullmatch(value or "")
    if not match or (int(match.group(1)), int(match.group(2))) < MIN_DEPLOYMENT:
        raise AppTemplateError(
            f"deployment target {value!r} is not an iOS version >= {MIN_DEPLOYMENT[0]}.{MIN_DEPLOYMENT[1]}",
            hint="coreai-models needs iOS 27; use e.g. 27.0",
        )
    return value


def validate_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise AppTemplateError(f"{what} {value!r} is not one of {', '.join(choices)}", hint=f"choose a {what}")
    return value


def swift_string(value: Any) -> str:
    """A Swift string literal for any text: escapes, no interpolation, no raw control chars."""
    out = ['"']
    for ch in str(value):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF or code in (0x2028, 0x2029):
            out.append(f"\\u{{{code:X}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_PBX_BARE_RE = re.compile(r"[A-Za-z0-9_$/:.-]+")


def pbx_string(value: Any) -> str:
    """A value for project.pbxproj (OpenStep plist): bare when safe, else a quoted string."""
    text = str(value)
    if text and _PBX_BARE_RE.fullmatch(text) and "//" not in text:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def object_id(namespace: str, key: str) -> str:
    """A deterministic 24-hex Xcode object id for a stable key."""
    return hashlib.sha256(f"gemmaios:{namespace}:{key}".encode()).hexdigest()[:24].upper()


# ---- settings / results ---------------------------------------------------------------------

@dataclass
class PromptSet:
    name: str
    sha256: str
    max_new_tokens: int
    prompts: list[dict]  # {"id": str, "prompt_ids": [int]}

    def as_json(self) -> dict:
        return {"schema": c.PROMPT_SET_SCHEMA, "name": self.name, "sha256": self.sha256, "max_new_tokens": self.max_new_tokens,
                "prompts": self.prompts}


@dataclass
class AppSettings:
    app_name: str = "GemmaBench"
    bundle_id: str = "com.example.gemmaios"
    team_id: str | None = None
    display_name: str | None = None
    deployment_target: str = "27.0"
    bundle_location: str = c.BUNDLED  # the payload in the .app | pushed to Documents (contract.py)
    model_id: str = "tiny"
    bundle_name: str = "gemma4_tiny_decode_int4"
    bundle_dir: str = "bundle/gemma4_tiny_decode_int4"  # relative to the build folder
    metadata_sha256: str = ""
    quant: str = "int4"
    arch: str = "h18p"
    ple: str = "provider"
    ple_layers: int = 0
    ple_dim: int = 0
    vocab_size: int = 0
    tables_dir: str = "tables"  # relative to the build folder
    warmup_token_id: int = 2
    stop_token_ids: list[int] = field(default_factory=list)
    trials: int = 3
    prompt_set: PromptSet | None = None
    app_version: str = "0.1.0"
    engine_source: Path | None = None  # a coreai-models checkout; else cache / clone
    engine_cache: Path | None = None
    allow_clone: bool = True
    prepare_engine: bool = True
    allow_uncompiled: bool = False  # iOS: ship a bundle whose assets.main is not an AOT .aimodelc
    allow_tbl: bool = False  # iOS: ship a tbl bundle past the entitled-memory arithmetic

    def validated(self) -> AppSettings:
        validate_app_name(self.app_name)
        validate_bundle_id(self.bundle_id)
        self.team_id = validate_team_id(self.team_id)
        validate_deployment_target(self.deployment_target)
        validate_choice("bundle location", self.bundle_location, BUNDLE_LOCATIONS)
        validate_choice("PLE mode", self.ple, PLE_MODES)
        if self.display_name is not None and (
            not self.display_name.strip() or len(self.display_name) > 64
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.display_name)
        ):
            raise AppTemplateError(f"display name {self.display_name!r} cannot go on the home screen",
                                   hint="use 1-64 printable characters (quotes are fine)")
        if not _BUNDLE_NAME_RE.fullmatch(self.bundle_name):
            raise AppTemplateError(f"bundle name {self.bundle_name!r} has characters a file name should not",
                                   hint="bundle names are like gemma4_e4b_qat_decode_int4")
        for rel in (self.bundle_dir, self.tables_dir):
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise AppTemplateError(f"{rel!r} must be a path inside the build folder", hint="use a relative path")
        if not _VERSION_RE.fullmatch(self.app_version):
            raise AppTemplateError(f"app version {self.app_version!r} is not like 1.2.3", hint="use digits and dots")
        if self.ple != "none" and (self.ple_layers <= 0 or self.ple_dim <= 0 or self.vocab_size <= 0):
            raise AppTemplateError("PLE mode needs the table shape (layers, dim, vocab)",
                                   hint="run the tables step, or pass --ple none for a model without PLE")
        if self.trials < 1:
            raise AppTemplateError("trials must be at least 1", hint="e.g. 3")
        return self


@dataclass
class EngineStatus:
    status: str  # "ready" | "pending" | "skipped"
    path: str  # relative to the build folder
    message: str = ""
    command: str = ""
    applied: list[str] = field(default_factory=list)


@dataclass
class AppResult:
    project_dir: Path
    xcodeproj: Path
    files: list[Path]  # the project's own files (not the staged payload)
    engine: EngineStatus
    bundle_location: str = c.BUNDLED
    prompt_set: Path | None = None
    payload: PayloadPlan | None = None  # what the .app holds (bundled only)

    def details(self, build_dir: Path) -> dict:
        return {
            "project": str(self.project_dir.relative_to(build_dir)),
            "xcodeproj": str(self.xcodeproj.relative_to(build_dir)),
            "engine": asdict(self.engine),
            "bundle_location": self.bundle_location,
            "prompt_set": str(self.prompt_set.relative_to(build_dir)) if self.prompt_set else None,
            "app_payload": {dest: str(src.relative_to(build_dir)) for src, dest in self.payload.app_files()}
            if self.payload else {},
        }


# ---- rendering ------------------------------------------------------------------------------

def _jinja_env() -> jinja2.Environment:
    if not TEMPLATE_DIR.is_dir():
        raise AppTemplateError(f"the iOS template is missing at {TEMPLATE_DIR}",
                               hint="run gemmaios from its source checkout (pip install -e .)")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["swift"] = swift_string
    env.filters["pbx"] = pbx_string
    return env


def template_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(TEMPLATE_DIR.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(TEMPLATE_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def info_plist(s: AppSettings) -> dict:
    return {
        "CFBundleDevelopmentRegion": "en",
        "CFBundleDisplayName": s.display_name or s.app_name,
        "CFBundleExecutable": "$(EXECUTABLE_NAME)",
        "CFBundleIdentifier": "$(PRODUCT_BUNDLE_IDENTIFIER)",
        "CFBundleInfoDictionaryVersion": "6.0",
        "CFBundleName": "$(PRODUCT_NAME)",
        "CFBundlePackageType": "APPL",
        "CFBundleShortVersionString": s.app_version,
        "CFBundleVersion": "1",
        "LSRequiresIPhoneOS": True,
        # Documents visible in Finder / `pymobiledevice3 apps afc`: the bench logs are read back from there.
        "UIFileSharingEnabled": True,
        "LSSupportsOpeningDocumentsInPlace": True,
        "UIApplicationSceneManifest": {"UIApplicationSupportsMultipleScenes": False},
        "UILaunchScreen": {},
        "UIRequiredDeviceCapabilities": ["arm64", "metal"],
        "UISupportedInterfaceOrientations": ["UIInterfaceOrientationPortrait"],
    }


def entitlements(s: AppSettings) -> dict:
    # GB-class bundles die in cold GPU specialization at the default jetsam limit.
    return {INCREASED_MEMORY_KEY: True, EXTENDED_VA_KEY: True}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _pbxproj_model(s: AppSettings, sources: list[str], resources: list[tuple[str, str, str]],
                   engine_relpath: str) -> dict:
    """The objects of project.pbxproj; every id derives from the app name and a stable key."""
    ns = s.app_name

    def oid(key: str) -> str:
        return object_id(ns, key)

    ids = {k: oid(k) for k in ("project", "main_group", "app_group", "products_group", "resources_group",
                               "target", "sources_phase", "frameworks_phase", "resources_phase",
                               "project_configs", "target_configs", "package_ref", "package_product",
                               "product_ref")}
    file_refs, build_files, app_children, res_children = [], [], [], []
    for name in sources:
        ref = {"id": oid(f"file:{name}"), "comment": name, "type": "sourcecode.swift", "path": name,
               "tree": "<group>", "name": None, "explicit": False}
        file_refs.append(ref)
        app_children.append(ref)
        build_files.append({"id": oid(f"build:{name}"), "ref": ref["id"], "product": None,
                            "comment": f"{name} in Sources", "phase": "sources"})
    for key, path, kind in resources:
        name = Path(path).name
        ref = {"id": oid(f"file:{key}"), "comment": name, "type": kind, "path": path, "tree": "<group>",
               "name": name if name != path else None, "explicit": False}
        file_refs.append(ref)
        (app_children if key.startswith("app:") else res_children).append(ref)
        if kind not in ("text.plist.xml", "text.plist.entitlements"):
            build_files.append({"id": oid(f"build:{key}"), "ref": ref["id"], "product": None,
                                "comment": f"{name} in Resources", "phase": "resources"})
    product = {"id": ids["product_ref"], "comment": f"{s.app_name}.app", "type": "wrapper.application",
               "path": f"{s.app_name}.app", "tree": "BUILT_PRODUCTS_DIR", "name": None, "explicit": True}
    file_refs.append(product)
    build_files.append({"id": oid("build:package"), "ref": None, "product": ids["package_product"],
                        "comment": f"{ENGINE_PRODUCT} in Frameworks", "phase": "frameworks"})
    groups = [
        {"id": ids["main_group"], "comment": None, "name": None, "path": None,
         "children": [{"id": ids["app_group"], "comment": s.app_name},
                      {"id": ids["resources_group"], "comment": "Model"},
                      {"id": ids["products_group"], "comment": "Products"}]},
        {"id": ids["app_group"], "comment": s.app_name, "name": None, "path": s.app_name,
         "children": app_children},
        {"id": ids["resources_group"], "comment": "Model", "name": "Model", "path": None,
         "children": res_children},
        {"id": ids["products_group"], "comment": "Products", "name": "Products", "path": None,
         "children": [product]},
    ]
    common = {
        "ALWAYS_SEARCH_USER_PATHS": "NO",
        "CLANG_ENABLE_MODULES": "YES",
        "ENABLE_USER_SCRIPT_SANDBOXING": "YES",
        "IPHONEOS_DEPLOYMENT_TARGET": s.deployment_target,
        "SDKROOT": "iphoneos",
        "SWIFT_VERSION": "5.0",
    }
    project_cfgs = [
        {"id": oid("config:project:Debug"), "name": "Debug",
         "settings": {**common, "DEBUG_INFORMATION_FORMAT": "dwarf", "ONLY_ACTIVE_ARCH": "YES",
                      "SWIFT_OPTIMIZATION_LEVEL": "-Onone", "SWIFT_ACTIVE_COMPILATION_CONDITIONS": "DEBUG"}},
        # Benchmark Release builds only: a Debug engine measures ~3x slower.
        {"id": oid("config:project:Release"), "name": "Release",
         "settings": {**common, "DEBUG_INFORMATION_FORMAT": "dwarf-with-dsym", "SWIFT_OPTIMIZATION_LEVEL": "-O",
                      "SWIFT_COMPILATION_MODE": "wholemodule", "VALIDATE_PRODUCT": "YES"}},
    ]
    target_settings = {
        "CODE_SIGN_ENTITLEMENTS": f"{s.app_name}/{s.app_name}.entitlements",
        "CODE_SIGN_STYLE": "Automatic",
        "CURRENT_PROJECT_VERSION": "1",
        "DEVELOPMENT_TEAM": s.team_id or "",
        "INFOPLIST_FILE": f"{s.app_name}/Info.plist",
        "GENERATE_INFOPLIST_FILE": "NO",
        "MARKETING_VERSION": s.app_version,
        "PRODUCT_BUNDLE_IDENTIFIER": s.bundle_id,
        "PRODUCT_NAME": "$(TARGET_NAME)",
        "SUPPORTED_PLATFORMS": "iphoneos",
        "TARGETED_DEVICE_FAMILY": "1",
        "LD_RUNPATH_SEARCH_PATHS": "$(inherited) @executable_path/Frameworks",
    }
    target_cfgs = [
        {"id": oid(f"config:target:{n}"), "name": n, "settings": target_settings} for n in ("Debug", "Release")
    ]
    return {
        "ids": ids,
        "app_name": s.app_name,
        "file_refs": file_refs,
        "build_files": build_files,
        "groups": groups,
        "configurations": project_cfgs + target_cfgs,
        "configuration_lists": [
            {"id": ids["project_configs"], "comment": f'Build configuration list for PBXProject "{s.app_name}"',
             "configs": project_cfgs},
            {"id": ids["target_configs"],
             "comment": f'Build configuration list for PBXNativeTarget "{s.app_name}"', "configs": target_cfgs},
        ],
        "engine_relpath": engine_relpath,
        "package_product": ENGINE_PRODUCT,
    }


def write_prompt_set(build_dir: Path, prompt_set: PromptSet | None) -> Path:
    """The bench prompt set (token ids) at PROMPT_SET_BUILD_REL: the app reads it from its payload."""
    prompt_set = prompt_set or PromptSet("empty", hashlib.sha256(b"[]").hexdigest(), 32, [])
    path = Path(build_dir) / PROMPT_SET_BUILD_REL
    _write_atomic(path, json.dumps(prompt_set.as_json(), indent=1, sort_keys=True).encode())
    return path


def _link_or_copy(source: Path, dest: Path) -> None:
    """Stage a payload file: a hard link (GB bundles cost nothing), a copy across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def render_app(build_dir: Path, settings: AppSettings) -> AppResult:
    """Render the Xcode project into `build_dir/app/<AppName>/` (replaced as a whole)."""
    build_dir = Path(build_dir).resolve()
    s = settings.validated()
    env = _jinja_env()
    final_dir = build_dir / "app" / s.app_name
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{s.app_name}.", dir=final_dir.parent))
    try:
        src_dir = staging / s.app_name
        src_dir.mkdir()
        values = {
            "display_name": s.display_name or s.app_name, "model_id": s.model_id, "bundle_name": s.bundle_name,
            "bundle_location_case": "appBundle" if s.bundle_location == c.BUNDLED else "documents",
            "ple": s.ple, "ple_layers": s.ple_layers, "ple_dim": s.ple_dim, "vocab_size": s.vocab_size,
            "quant": s.quant, "arch": s.arch, "metadata_sha256": s.metadata_sha256,
            "app_version": s.app_version, "toolkit_version": __version__, "trials": s.trials,
            "max_new_tokens": s.prompt_set.max_new_tokens if s.prompt_set else 32,
            "warmup_token_id": s.warmup_token_id, "stop_token_ids": s.stop_token_ids,
        }
        sources = []
        for path in sorted((TEMPLATE_DIR / "Sources").iterdir()):
            if path.name.endswith(".swift.j2"):
                name = path.name[: -len(".j2")]
                text = env.get_template(f"Sources/{path.name}").render(**values)
            elif path.suffix == ".swift":
                name, text = path.name, path.read_text()
            else:
                continue
            _write_atomic(src_dir / name, text.encode())
            sources.append(name)

        _write_atomic(src_dir / "Info.plist", plistlib.dumps(info_plist(s)))
        _write_atomic(src_dir / f"{s.app_name}.entitlements", plistlib.dumps(entitlements(s)))
        prompt_set_path = write_prompt_set(build_dir, s.prompt_set)

        resources = [
            ("app:Info.plist", "Info.plist", "text.plist.xml"),
            ("app:entitlements", f"{s.app_name}.entitlements", "text.plist.entitlements"),
        ]
        plan = None
        if s.bundle_location == c.BUNDLED:
            # The .app holds exactly the payload (contract.PAYLOAD_DIR), staged by hard links.
            plan = payload_plan(build_dir, s.bundle_location, bundle_dir=build_dir / s.bundle_dir, ple=s.ple,
                                tables_dir=build_dir / s.tables_dir, prompt_set=prompt_set_path)
            for source, dest in plan.app_files():
                _link_or_copy(source, staging / dest)
            resources.append(("model:payload", c.PAYLOAD_DIR, "folder"))
        up = "../.."
        engine_rel = f"{up}/engine/{ENGINE_DIRNAME}"
        model = _pbxproj_model(s, sources, resources, engine_rel)
        xcodeproj = staging / f"{s.app_name}.xcodeproj"
        _write_atomic(xcodeproj / "project.pbxproj", env.get_template("project.pbxproj.j2").render(**model).encode())

        # A shared scheme, so xcodebuild/fastlane can build without Xcode having opened the project.
        scheme = env.get_template("scheme.xcscheme.j2").render(target_id=model["ids"]["target"], app_name=s.app_name)
        _write_atomic(xcodeproj / "xcshareddata" / "xcschemes" / f"{s.app_name}.xcscheme", scheme.encode())

        problems = check_project(xcodeproj / "project.pbxproj")
        if problems:
            raise AppTemplateError("the rendered project.pbxproj is inconsistent: " + "; ".join(problems),
                                   hint="this is a gemmaios bug; please report it with the build folder")
        replace_dir(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    engine = _engine(build_dir, s) if s.prepare_engine else EngineStatus(
        "skipped", f"engine/{ENGINE_DIRNAME}", "engine package not prepared (--no-engine)")
    payload_root = final_dir / c.PAYLOAD_DIR
    files = sorted(p for p in final_dir.rglob("*") if p.is_file() and payload_root not in p.parents)
    return AppResult(final_dir, final_dir / f"{s.app_name}.xcodeproj", files, engine, s.bundle_location,
                     prompt_set_path, plan)


def _engine(build_dir: Path, s: AppSettings) -> EngineStatus:
    """Put the patched coreai-models package where the project's local package points."""
    series = load_series()
    rel = f"engine/{ENGINE_DIRNAME}"
    dest = build_dir / rel
    stamp = dest / ".gemmaios-engine"
    expected = f"base {series.base}\n" + "".join(f"patch {p.name} {p.sha256}\n" for p in series.patches)
    if stamp.is_file() and stamp.read_text() == expected:
        return EngineStatus("ready", rel, "patched package up to date", applied=[p.name for p in series.patches])
    try:
        source = locate_pinned_source(series, s.engine_source, s.engine_cache or default_cache_dir(),
                                      s.allow_clone)
    except EngineSourceUnavailable as exc:
        return EngineStatus("pending", rel, str(exc).splitlines()[0], exc.command)
    result = prepare_engine_package(dest, series, source)
    return EngineStatus("ready", rel, f"coreai-models {series.base[:12]} + {len(series.patches)} patches",
                        applied=result.applied + result.already)


# ---- checking a rendered project ------------------------------------------------------------

_REF_KEYS = ("fileRef", "productRef", "package", "buildConfigurationList", "mainGroup", "productRefGroup",
             "productReference", "rootObject")
_LIST_KEYS = ("children", "files", "buildPhases", "targets", "buildConfigurations", "packageReferences",
              "packageProductDependencies", "dependencies")


def check_project(pbxproj: Path) -> list[str]:
    """Parse with the `pbxproj` library and list every reference that does not resolve."""
    from pbxproj import XcodeProject

    try:
        # the library prints a warning for files not there yet (the bundle before convert)
        with contextlib.redirect_stdout(io.StringIO()):
            project = XcodeProject.load(str(pbxproj))
    except Exception as exc:  # the parser raises plain exceptions on syntax errors
        return [f"{pbxproj} does not parse: {exc}"]
    data = _plain(project)
    objects = data["objects"]
    problems = []
    if data.get("rootObject") not in objects:
        problems.append(f"rootObject {data.get('rootObject')} is not an object")
    for oid, obj in objects.items():
        if not re.fullmatch(r"[0-9A-F]{24}", oid):
            problems.append(f"object id {oid} is not 24 hex digits")
        for key in _REF_KEYS:
            if key in obj and obj[key] not in objects:
                problems.append(f"{obj.get('isa')} {oid}.{key} → {obj[key]} does not exist")
        for key in _LIST_KEYS:
            for ref in obj.get(key, []) or []:
                if ref not in objects:
                    problems.append(f"{obj.get('isa')} {oid}.{key} → {ref} does not exist")
        if obj.get("isa") == "PBXNativeTarget":
            for config in objects.get(obj["buildConfigurationList"], {}).get("buildConfigurations", []):
                settings = objects.get(config, {}).get("buildSettings", {})
                for key in ("INFOPLIST_FILE", "CODE_SIGN_ENTITLEMENTS"):
                    if key in settings and not (pbxproj.parent.parent / settings[key]).is_file():
                        problems.append(f"{key} {settings[key]} does not exist next to the project")
    return problems


def _plain(project) -> dict:
    """The project as plain dicts/lists (via the library's own serialisation of each object)."""
    objects = {}
    for obj in project.objects.get_objects_in_section(*project.objects.get_sections()):
        objects[obj.get_id()] = _to_plain(obj)
    return {"objects": objects, "rootObject": str(project.rootObject)}


def _to_plain(value):
    from pbxproj.PBXGenericObject import PBXGenericObject
    from pbxproj.PBXList import PBXList

    if isinstance(value, PBXGenericObject):
        return {k: _to_plain(value[k]) for k in value.get_keys()}
    if isinstance(value, PBXList | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return str(value)


# ---- the pipeline step ----------------------------------------------------------------------

BUILTIN_PROMPTS = [
    ("capital-france", "What is the capital of France?"),
    ("count-to-five", "Count from one to five."),
    ("haiku-sea", "Write a haiku about the sea."),
    ("explain-gravity", "Explain gravity to a child in two sentences."),
]


def _details(ctx: BuildContext, step: str) -> dict:
    record = ctx.manifest.get(step)
    return record.details if record is not None and record.status in ("done", "skipped") else {}


def _prompt_set_from_oracle(path: Path, details: dict) -> PromptSet:
    """The oracle's prompts as token ids (fields: prompts[].id, prompts[].prompt_ids)."""
    try:
        data = json.loads(path.read_text())
        prompts = [{"id": str(p["id"]), "prompt_ids": [int(t) for t in p["prompt_ids"]]} for p in data["prompts"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AppTemplateError(f"cannot read the prompt set from {path}: {exc!r}",
                               hint="the app expects prompts[].id and prompts[].prompt_ids; re-run the oracle step") from exc
    meta = details.get("prompt_set") or data.get("prompt_set") or {}
    max_new = details.get("max_new_tokens") or data.get("max_new_tokens") or 32
    return PromptSet(str(meta.get("name", "oracle")), str(meta.get("sha256", sha256_file(path))), int(max_new), prompts)


def _builtin_prompt_set(tokenizer_path: Path, max_new_tokens: int) -> PromptSet:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    prompts = [{"id": pid, "prompt_ids": tok.encode(text).ids} for pid, text in BUILTIN_PROMPTS]
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()
    return PromptSet("builtin", digest, max_new_tokens, prompts)


def bundle_name_for(ctx: BuildContext) -> str:
    """docs/contracts.md: gemma4_<key>_decode_<quant>[_tbl]."""
    ckpt = ctx.checkpoint
    key = "tiny" if ckpt.is_tiny else (ckpt.spec.key if ckpt.spec else re.sub(r"[^a-z0-9]+", "_", ckpt.path.name.lower()))
    if ckpt.spec and "qat" in ckpt.spec.hf_id:
        key += "_qat"
    name = f"gemma4_{key}_decode_{ctx.options.quant}"
    return name + ("_tbl" if ctx.options.ple == "tbl" else "")


def settings_from_build(ctx: BuildContext, overrides: dict | None = None) -> AppSettings:
    """App values from the manifest (convert/tables/compile/oracle details) and the checkpoint."""
    from .config import load_config

    overrides = dict(overrides or {})
    user = load_config(overrides.pop("config", None))
    tc = ctx.checkpoint.text_config
    convert, tables, compile_, oracle = (_details(ctx, n) for n in ("convert", "tables", "compile", "oracle"))
    name = convert.get("name") or bundle_name_for(ctx)
    bundle_dir = convert.get("bundle_dir") or f"bundle/{name}"
    metadata = ctx.path(bundle_dir, "metadata.json")
    has_ple = bool(tc.get("hidden_size_per_layer_input"))
    ple = (convert.get("ple") or ctx.options.ple) if has_ple else "none"
    layers, dim = int(tc.get("num_hidden_layers", 0)), int(tc.get("hidden_size_per_layer_input") or 0)
    vocab = int(tc.get("vocab_size_per_layer_input") or tc.get("vocab_size") or 0)
    if tables.get("shape"):
        vocab = int(tables["shape"][0])
    eos = tc.get("eos_token_id", [])
    max_new = int(oracle.get("max_new_tokens") or ctx.options.oracle_tokens)
    if oracle.get("oracle") and ctx.path(oracle["oracle"]).is_file():
        prompt_set = _prompt_set_from_oracle(ctx.path(oracle["oracle"]), oracle)
    else:
        prompt_set = _builtin_prompt_set(ctx.checkpoint.tokenizer_path, max_new)
    values = {
        "app_name": user_value(user, "app_name") or "GemmaBench",
        "bundle_id": user.bundle_id or "com.example.gemmaios",
        "team_id": user.team_id,
        "model_id": ctx.checkpoint.model_id,
        "bundle_name": name,
        "bundle_dir": bundle_dir,
        "metadata_sha256": sha256_file(metadata) if metadata.is_file() else "",
        "quant": convert.get("quant") or ctx.options.quant,
        "arch": compile_.get("arch") or ctx.options.arch,
        "ple": ple,
        "ple_layers": layers if has_ple else 0,
        "ple_dim": dim,
        "vocab_size": vocab,
        "tables_dir": str(Path(tables["i8"]).parent) if tables.get("i8") else "tables",
        "warmup_token_id": int(tc.get("bos_token_id") or 2),
        "stop_token_ids": [int(t) for t in (eos if isinstance(eos, list) else [eos])],
        "prompt_set": prompt_set,
        "engine_source": user_value(user, "engine_source"),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return AppSettings(**values)


def user_value(user, name: str):
    return getattr(user, name, None)


class AppStep(Step):
    name = "app"
    title = "render the Xcode project (+ patched coreai-models package)"

    def __init__(self, overrides: dict | None = None) -> None:
        self.overrides = overrides or {}

    def _overrides(self, ctx: BuildContext) -> dict:
        # `gemmaios app --team-id ...` passes its options through BuildOptions.extra["app"]
        return {**ctx.options.extra.get("app", {}), **self.overrides}

    def inputs(self, ctx: BuildContext) -> dict:
        s = settings_from_build(ctx, self._overrides(ctx))
        series = load_series()
        cache = s.engine_cache or default_cache_dir()
        return {
            "settings": {k: (v.as_json() if isinstance(v, PromptSet) else v) for k, v in asdict(s).items()},
            "template": template_fingerprint(),
            "patches": series.fingerprint(),
            "upstream": {n: ctx.step_fingerprint(n) for n in ("checkpoint", "tables", "convert", "oracle", "compile")},
            # a checkout appearing later (clone on another machine, --engine-source) re-runs the step
            "engine_available": bool(s.engine_source) or (cache / ".git").exists(),
            "engine_ready": (ctx.path("engine", ENGINE_DIRNAME, ".gemmaios-engine")).is_file(),
        }

    def run(self, ctx: BuildContext) -> StepOutcome:
        s = settings_from_build(ctx, self._overrides(ctx))
        warnings = ios_payload_checks(ctx.build_dir, s)
        for warning in warnings:
            ctx.console.print(f"[yellow]  ! {warning}[/yellow]")
        try:
            result = render_app(ctx.build_dir, s)
        except PatchError as exc:
            raise AppTemplateError(f"the engine patch stack does not apply: {exc}", hint=exc.hint) from exc
        outputs = [*result.files, result.prompt_set]
        stamp = ctx.path("engine", ENGINE_DIRNAME, ".gemmaios-engine")
        if result.engine.status == "ready" and stamp.is_file():
            outputs = [*outputs, stamp]
        message = f"{result.project_dir.relative_to(ctx.build_dir)}"
        if result.engine.status == "pending":
            message += f"; engine package pending ({result.engine.message}) — run: {result.engine.command}"
        details = {**result.details(ctx.build_dir), "warnings": warnings}
        return StepOutcome(outputs=outputs, details=details, message=message)


def ios_payload_checks(build_dir: Path, s: AppSettings) -> list[str]:
    """contract: an iOS app gets an AOT .aimodelc for its architecture, and a tbl bundle that fits."""
    from .archs import get_arch

    arch = get_arch(s.arch)
    bundle_dir = Path(build_dir) / s.bundle_dir
    tables = [Path(build_dir) / s.tables_dir / name for name in (c.TABLE_I8_FILE, c.TABLE_SCALE_FILE)]
    found = [check_ios_bundle(bundle_dir, arch, allow_uncompiled=s.allow_uncompiled),
             check_tbl_memory(bundle_dir, tables, arch, s.ple, allow_tbl=s.allow_tbl)]
    return [w for w in found if w]
