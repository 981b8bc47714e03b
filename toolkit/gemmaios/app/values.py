"""App settings, their validation, and escaping values for Swift and project.pbxproj."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import contract as c
from ..errors import AppTemplateError
from ..payload import PayloadPlan
from ..steprecords import AppDetails, EngineDetails
from ..swift_text import require_valid_unicode

ENGINE_PRODUCT = "CoreAILM"
# Every module the app imports is linked explicitly (not only reached through CoreAILM).
ENGINE_PRODUCTS = (ENGINE_PRODUCT, "CoreAIShared")  # CoreAIShared: a product our patch 0003 adds
CORE_PACKAGE = "GemmaiosCore"  # ios_template/GemmaiosCore, copied into the project folder
# coreai-models' own requirement (its Package.swift); Xcode resolves the one package for both.
TRANSFORMERS_URL = "https://github.com/huggingface/swift-transformers"
TRANSFORMERS_MIN_VERSION = "1.1.0"
TRANSFORMERS_PRODUCT = "Tokenizers"
INCREASED_MEMORY_KEY = "com.apple.developer.kernel.increased-memory-limit"
# Large models need both (the zoo's apps carry both): more address space, and more memory.
EXTENDED_VA_KEY = "com.apple.developer.kernel.extended-virtual-addressing"
# Info.plist: iOS stops an app that touches the microphone without this purpose string (the chat's
# record button, ios_template/Sources/AudioInput.swift); the text is what the permission alert shows.
MICROPHONE_USAGE_KEY = "NSMicrophoneUsageDescription"
MICROPHONE_USAGE = ("Records a spoken message for the on-device Gemma model. The recording stays on this "
                    "device and is deleted once it is turned into the model's input.")
# The macOS app (a `--target mac` build): App Sandbox, with what the chat's pickers and microphone need
# (developer.apple.com/documentation/bundleresources/entitlements: App Sandbox, user-selected files read-only,
# audio input). No increased-memory / extended-VA entitlement: those are iOS-only keys.
APP_SANDBOX_KEY = "com.apple.security.app-sandbox"
USER_SELECTED_READ_ONLY_KEY = "com.apple.security.files.user-selected.read-only"
AUDIO_INPUT_KEY = "com.apple.security.device.audio-input"
PLE_MODES = ("provider", "tbl", "none")
BUNDLE_LOCATIONS = c.BUNDLE_LOCATIONS
MIN_DEPLOYMENT = (27, 0)  # coreai-models' Package.swift: .iOS("27.0"), .macOS("27.0")


@dataclass(frozen=True)
class AppPlatform:
    """What the rendered app is for: one record per build target (BuildOptions.target), the one source of
    the project's SDK settings, the app's platform name (AppConfig.platform) and xcodebuild's destination."""

    target: str  # BuildOptions.target: ios | mac
    name: str  # what the app records and the report reads (transcript header `platform`): iOS | macOS
    sdkroot: str  # SDKROOT / SUPPORTED_PLATFORMS
    deployment_key: str  # the build setting that holds --deployment-target
    destination: str  # xcodebuild -destination for a device build
    runpath: str  # LD_RUNPATH_SEARCH_PATHS: where the app's embedded frameworks are
    aot_compiled: bool  # the payload's model asset must be an AOT .aimodelc (iOS); a Mac loads the .aimodel


APP_PLATFORMS = {
    "ios": AppPlatform("ios", "iOS", "iphoneos", "IPHONEOS_DEPLOYMENT_TARGET", "generic/platform=iOS",
                       "$(inherited) @executable_path/Frameworks", True),
    "mac": AppPlatform("mac", "macOS", "macosx", "MACOSX_DEPLOYMENT_TARGET", "generic/platform=macOS",
                       "$(inherited) @executable_path/../Frameworks", False),
}


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


def validate_deployment_target(value: str, platform: str = "ios") -> str:
    match = _VERSION_RE.fullmatch(value or "")
    name = APP_PLATFORMS[platform].name if platform in APP_PLATFORMS else "iOS"
    if not match or (int(match.group(1)), int(match.group(2))) < MIN_DEPLOYMENT:
        raise AppTemplateError(
            f"deployment target {value!r} is not {'an' if name == 'iOS' else 'a'} {name} version >= "
            f"{MIN_DEPLOYMENT[0]}.{MIN_DEPLOYMENT[1]}",
            hint=f"coreai-models needs {name} 27; use e.g. 27.0",
        )
    return value


def validate_choice(what: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise AppTemplateError(f"{what} {value!r} is not one of {', '.join(choices)}", hint=f"use one of: {', '.join(choices)}")
    return value


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
    prompts: list[dict]  # {"id": str, "prompt_ids": [int]}; image / audio prompts also {"image" / "audio": payload-relative file}
    # image prompts' picture files (payload-relative, as their `image` field) → the PNG each is written from
    # (relative to the build folder)
    image_sources: dict[str, str] = field(default_factory=dict)
    # audio prompts' clip files (payload-relative, as their `audio` field) → the audio oracle record each is
    # written from (relative to the build folder)
    clip_sources: dict[str, str] = field(default_factory=dict)

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
    platform: str = "ios"  # APP_PLATFORMS: ios (iPhone) | mac (the build's --target)
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
    bos_token_id: int = 2  # chat mode starts every prompt with exactly one, like the oracle
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

    @property
    def app_platform(self) -> AppPlatform:
        return APP_PLATFORMS[self.platform]

    def validated(self) -> AppSettings:
        validate_app_name(self.app_name)
        validate_bundle_id(self.bundle_id)
        self.team_id = validate_team_id(self.team_id)
        validate_choice("platform", self.platform, tuple(APP_PLATFORMS))
        validate_deployment_target(self.deployment_target, self.platform)
        validate_choice("bundle location", self.bundle_location, BUNDLE_LOCATIONS)
        validate_choice("PLE mode", self.ple, PLE_MODES)
        for name in ("display_name", "model_id", "quant", "arch", "metadata_sha256"):
            if isinstance(getattr(self, name), str):
                require_valid_unicode(name.replace("_", " "), getattr(self, name))
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
    bench_images: list[Path] = field(default_factory=list)  # image prompts' picture files beside the prompt set

    def details(self, build_dir: Path, warnings: list[str] | None = None) -> AppDetails:
        """The app step's record in build.json (steprecords.AppDetails)."""
        return AppDetails(
            project=str(self.project_dir.relative_to(build_dir)),
            xcodeproj=str(self.xcodeproj.relative_to(build_dir)),
            engine=EngineDetails(**asdict(self.engine)),
            bundle_location=self.bundle_location,
            prompt_set=str(self.prompt_set.relative_to(build_dir)) if self.prompt_set else None,
            bench_images=[str(p.relative_to(build_dir)) for p in self.bench_images],
            app_payload={dest: str(src.relative_to(build_dir)) for src, dest in self.payload.app_files()}
            if self.payload else {},
            warnings=list(warnings or []),
        )


