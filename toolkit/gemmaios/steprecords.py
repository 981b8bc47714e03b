"""What each build step records in build.json: one typed record per step, read and written here only.

The steps return one of these in their StepOutcome; pipeline.Manifest writes it under the step's
`details` and reads it back as the same type, so no module parses build.json by key. Paths are
relative to the build folder (docs/contracts.md).

Schema history of build.json (pipeline.MANIFEST_SCHEMA):
  1: per-step `details` were untyped dicts; the oracle step left out its image fields on a text
     build, the compile step its vision and manual-command fields on a picked-up asset.
  2: every finished step's `details` hold exactly its record's fields (absent optional ones
     written as null). A schema-1 folder is read as schema 2: its records are parsed into the
     types below (the fields schema 1 could leave out take their defaults), and the next write
     stores schema 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import BuildError


@dataclass
class PendingDetails:
    """A step that stopped with NeedsMacOS: the command that finishes it elsewhere."""

    command: str = ""


@dataclass
class TablesDetails:
    """The int8 per-layer table, its scales and sidecar (tables/), and the check against HF."""

    i8: str
    scale: str
    sidecar: str
    shape: list[int]  # [rows (the PLE vocab), num_layers * dim]
    num_layers: int
    dim: int
    embed_scale: float
    source_tensor: str
    verification: dict[str, Any] = field(default_factory=dict)  # tables.verify.VerifyReport.as_dict()

    @property
    def tables_dir(self) -> str:
        return self.i8.rsplit("/", 1)[0] if "/" in self.i8 else "."


@dataclass
class OracleDetails:
    """The fp32 reference generations (oracle/oracle.json) and, for a vision build, its image prompts."""

    oracle: str
    prompt_set: dict[str, Any]
    max_new_tokens: int
    top_k: int
    min_margin: float
    prompts_reaching_eos: int
    image_oracle: str | None = None  # oracle/images/ (vision builds)
    image_prompts: int = 0
    image_min_margin: float | None = None
    audio_oracle: str | None = None  # oracle/audio/ (E2B/E4B --audio builds)
    audio_prompts: int = 0
    audio_min_margin: float | None = None


@dataclass
class ConvertDetails:
    """The converted LanguageBundle: its folder, name, asset, what it was made with, and its gates."""

    bundle_dir: str
    name: str
    aimodel: str
    metadata: str
    quant: str
    head_quant: str
    ple: str
    max_context: int
    target: str = "ios"
    kernel: str | None = None
    prefill_chunks: list[int] = field(default_factory=list)
    vision: dict[str, Any] | None = None  # metadata gemmaios.vision: the vision asset and splice facts
    kv_guard: dict[str, Any] | None = None  # iOS: the context it allows and the KV sizes it binds (#124)
    recipe: dict[str, Any] | None = None  # a mixed-bit build: the recipe's name, fingerprint, floors, bytes
    multimodal: dict[str, Any] | None = None  # the 12B's multi-function bundle: its functions and constants
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    gates: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage (load_quantize, export, ...) and total


@dataclass
class CompileDetails:
    """The AOT-compiled .aimodelc for the build's architecture and how it was made (or picked up)."""

    arch: str
    platform: str
    source_sha256: str
    aimodelc: str
    metadata: str
    metadata_mac: str
    command: str = ""
    producer: str = ""
    tool_version: str = ""
    host: str = ""
    picked_up: bool = False
    manual_command: str = ""
    compile_seconds: float | None = None
    vision_aimodelc: str | None = None
    audio_aimodelc: str | None = None  # E2B/E4B --audio builds: the audio asset's .aimodelc


@dataclass
class EngineDetails:
    """The app's patched coreai-models package (app.values.EngineStatus)."""

    status: str  # "ready" | "pending" | "skipped"
    path: str
    message: str = ""
    command: str = ""
    applied: list[str] = field(default_factory=list)


@dataclass
class AppDetails:
    """The rendered Xcode project, its engine package and the payload staged into the .app."""

    project: str
    xcodeproj: str
    engine: EngineDetails
    bundle_location: str
    prompt_set: str | None = None
    bench_images: list[str] = field(default_factory=list)
    app_payload: dict[str, str] = field(default_factory=dict)  # path inside the .app -> build-relative source
    warnings: list[str] = field(default_factory=list)
    image_memory: dict[str, Any] | None = None  # payload.VisionMemory.as_dict() (vision builds)


@dataclass
class SignDetails:
    """The development-signed .ipa and what signed it; for a `--target mac` build, the signed macOS `.app`
    (`app`; `ipa` is then empty)."""

    ipa: str
    ipa_sha256: str
    bundle_id: str
    executable: str
    version: str
    method: str
    export_options: str
    command: str = ""
    host: str = ""
    picked_up: bool = False
    manual_command: str = ""
    sign_seconds: float | None = None
    team_id: str | None = None
    tool_version: str = ""
    app: str = ""  # a Mac build: <build>/sign/mac/<App>.app
    platform: str = "ios"  # ios | mac (gemmaios.app.APP_PLATFORMS)


StepDetails = PendingDetails | TablesDetails | OracleDetails | ConvertDetails | CompileDetails | AppDetails | SignDetails

# The record type of each step's finished (done/skipped) record; the checkpoint step records none.
DETAILS_TYPES: dict[str, type] = {
    "tables": TablesDetails, "oracle": OracleDetails, "convert": ConvertDetails,
    "compile": CompileDetails, "app": AppDetails, "sign": SignDetails,
}
_NESTED: dict[tuple[type, str], type] = {(AppDetails, "engine"): EngineDetails}


def details_type(step: str, status: str) -> type | None:
    """The record type build.json holds for `step` in `status` (None: the step records no details)."""
    if status == "pending":
        return PendingDetails
    if status in ("done", "skipped"):
        return DETAILS_TYPES.get(step)
    return None


def details_to_json(details: StepDetails | None) -> dict[str, Any]:
    return dataclasses.asdict(details) if details is not None else {}


def details_from_json(step: str, status: str, raw: Any, *, where: str, fix: str) -> StepDetails | None:
    """The typed record of `step` from build.json's `details` (schema 1 or 2). A record that lacks a
    field its type needs, or holds one of the wrong kind, is a BuildError naming the step and `fix`."""
    cls = details_type(step, status)
    if cls is None:
        return None
    return _parse(cls, raw if raw is not None else {}, f"{where}: the {step} step's record", fix)


# The JSON kinds a field's annotation allows (None where the annotation allows null).
_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "list": (list,), "dict": (dict,)}


def _allowed(annotation: str) -> tuple[tuple[type, ...], bool] | None:
    kinds: tuple[type, ...] = ()
    nullable = False
    for part in (p.strip() for p in annotation.split("|")):
        base = part.split("[", 1)[0]
        if base == "None":
            nullable = True
        elif base in _KINDS:
            kinds += _KINDS[base]
        else:
            return None  # a nested record: checked by its own parse
    return kinds, nullable


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _parse(cls: type, raw: Any, what: str, fix: str):
    if not isinstance(raw, dict):
        raise BuildError(f"{what} is damaged (it is {type(raw).__name__}, not an object)", hint=fix)
    values = {}
    for f in dataclasses.fields(cls):
        value = raw.get(f.name)
        if value is None and _has_default(f):
            continue  # left out (schema 1) or written as null: the field's default
        if f.name not in raw:
            raise BuildError(f"{what} is damaged (it has no `{f.name}`)", hint=fix)
        nested = _NESTED.get((cls, f.name))
        if nested is not None:
            value = _parse(nested, value, f"{what} ({f.name})", fix)
        else:
            allowed = _allowed(str(f.type))
            if allowed is not None:
                kinds, nullable = allowed
                wrong_bool = isinstance(value, bool) and bool not in kinds
                if not (value is None and nullable) and (not isinstance(value, kinds) or wrong_bool):
                    raise BuildError(f"{what} is damaged (`{f.name}` is {value!r}, not {f.type})", hint=fix)
        values[f.name] = value
    return cls(**values)
