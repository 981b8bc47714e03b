"""What the app reads, and where: the payload plan app rendering and deploy both use, and the
checks an iOS payload must pass.

`payload_plan(build_dir, location)` lists (local file, destination) pairs for the contract's
payload folder (`contract.PAYLOAD_DIR`): the bundle's metadata.json, tokenizer/ and the one
model asset `assets.main` names (never both the .aimodel and the .aimodelc), the PLE tables
the bundle's mode needs, the bench prompt set and the pictures its image prompts name
(`images/<name>.safetensors`, beside the prompt set). `bundled`: the .app holds them and deploy
pushes none; `documents`: the .app holds none and deploy pushes exactly these to
`Documents/<PAYLOAD_DIR>/...`.

`check_ios_bundle` refuses an un-compiled bundle (or one compiled for another architecture),
`check_tbl_memory` a tbl bundle whose graph plus owned tables exceed the architecture's
entitled limit (the arithmetic: gemmaios.memory, which also takes the KV cache, buffers and an
extra asset such as the vision encoder); each has an explicit override (`--allow-uncompiled`, `--allow-tbl`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import contract as c
from .archs import Arch
from .buildlayout import APP_DIR, TABLES_DIR
from .errors import GemmaiosError, NeedsMacOS
from .memory import ExtraAsset, MemoryEstimate, entitled_memory, tree_bytes
from .pipeline import finished_details

# The prompt set the app step renders, relative to the build folder (the payload's source).
PROMPT_SET_BUILD_REL = f"{APP_DIR}/{c.PROMPT_SET_FILE}"


class PayloadError(GemmaiosError):
    """The build folder lacks something the app reads (bundle, tables, prompt set)."""


def _typed(path: Path) -> str:
    """A folder as the user would type it: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class UncompiledBundle(NeedsMacOS):
    """An iOS app would get a bundle whose assets.main is not an AOT .aimodelc for its architecture."""


class TablesExceedMemory(GemmaiosError):
    """A tbl bundle's graph plus its owned PLE tables do not fit the architecture's entitled memory."""


class VisionExceedsMemory(GemmaiosError):
    """Decoder + its encoders (vision, audio) + their buffers exceed the iPhone's entitled memory."""


@dataclass(frozen=True)
class PayloadFile:
    source: Path  # the local file
    dest: str  # relative to the payload folder, posix


@dataclass
class PayloadPlan:
    location: str
    bundle_dir: Path
    main_asset: str  # assets.main, relative to the bundle folder
    files: list[PayloadFile]

    def app_files(self) -> list[tuple[Path, str]]:
        """(local file, path inside the .app): the payload when bundled, else nothing."""
        if self.location != c.BUNDLED:
            return []
        return [(f.source, f"{c.PAYLOAD_DIR}/{f.dest}") for f in self.files]

    def documents_files(self) -> list[tuple[Path, str]]:
        """(local file, path inside Documents): the payload for `documents`, else nothing."""
        if self.location != c.PUSHED_TO_DOCUMENTS:
            return []
        return [(f.source, f"{c.PAYLOAD_DIR}/{f.dest}") for f in self.files]


def read_main_asset(bundle_dir: Path) -> str:
    meta_path = Path(bundle_dir) / c.BUNDLE_METADATA_FILE
    try:
        meta = json.loads(meta_path.read_text())
        main = str(meta["assets"]["main"])
    except FileNotFoundError:
        raise PayloadError(f"{meta_path} is missing", hint="run `gemmaios convert` (or `gemmaios build`)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PayloadError(f"{meta_path} has no readable assets.main ({exc!r})", hint="re-run `gemmaios convert`") from exc
    if Path(main).is_absolute() or ".." in Path(main).parts:
        raise PayloadError(f"{meta_path}: assets.main {main!r} points outside the bundle", hint="re-run `gemmaios convert`")
    return main


def _vision_asset(bundle_dir: Path) -> str | None:
    """metadata.json gemmaios.vision.asset (None: a text-only bundle)."""
    return _encoder_asset(bundle_dir, c.VISION_METADATA_KEY, c.VISION_ASSET_FIELD)


def _audio_asset(bundle_dir: Path) -> str | None:
    """metadata.json gemmaios.audio.asset (None: a bundle without E2B/E4B audio input)."""
    return _encoder_asset(bundle_dir, c.AUDIO_METADATA_KEY, c.AUDIO_ASSET_FIELD)


def _encoder_facts(bundle_dir: Path, key: str) -> dict | None:
    try:
        meta = json.loads((Path(bundle_dir) / c.BUNDLE_METADATA_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return (meta.get("gemmaios") or {}).get(key) or None


def _encoder_asset(bundle_dir: Path, key: str, field: str) -> str | None:
    facts = _encoder_facts(bundle_dir, key)
    if not facts:
        return None
    name = str(facts[field])
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise PayloadError(f"gemmaios.{key}.{field} {name!r} points outside the bundle", hint="re-run `gemmaios convert`")
    return name


def vision_memory_bytes(bundle_dir: Path) -> dict[str, int]:
    """What image input adds to the app's footprint: the vision asset's file bytes, the static
    `image_embeds` buffer main binds (N x hidden fp16), the vision asset's input grid
    (P x 3p^2 fp16 + P x 2 int32) and its peak activations (recorded at export; 0 when an older
    bundle did not record them). Empty for text-only bundles.
    """
    vision = _vision_asset(bundle_dir)
    if vision is None:
        return {}
    facts = _encoder_facts(bundle_dir, c.VISION_METADATA_KEY)
    hidden, patches, patch_dim = (int(facts[k]) for k in ("hidden_size", "max_patches", "patch_dim"))
    n = int(facts.get("embeds_rows") or facts["max_soft_tokens"])
    return {"vision_asset": sum(p.stat().st_size for p in _tree(Path(bundle_dir) / vision)),
            "image_embeds": n * hidden * 2, "vision_inputs": patches * patch_dim * 2 + patches * 2 * 4,
            "vision_activations": int(facts.get("activation_bytes") or 0)}


def audio_memory_bytes(bundle_dir: Path) -> dict[str, int]:
    """What E2B/E4B audio input adds: the audio asset's file bytes, the soft-token rows main binds
    (shared with images: `image_embeds`), the asset's inputs (F x 128 fp16 features + F int32
    mask) and its peak activations (recorded at export). Empty without an audio asset."""
    audio = _audio_asset(bundle_dir)
    if audio is None:
        return {}
    facts = _encoder_facts(bundle_dir, c.AUDIO_METADATA_KEY)
    frames, bins, hidden = (int(facts[k]) for k in ("max_frames", "feature_size", "hidden_size"))
    n = int(facts.get("embeds_rows") or facts["max_soft_tokens"])
    return {"audio_asset": sum(p.stat().st_size for p in _tree(Path(bundle_dir) / audio)),
            "image_embeds": n * hidden * 2, "audio_inputs": frames * bins * 2 + frames * 4,
            "audio_activations": int(facts.get("activation_bytes") or 0)}


def vision_memory(bundle_dir: Path, arch: Arch) -> MemoryEstimate | None:
    """Decoder graph + its encoders (vision and/or audio: weights, activations) + their buffers vs
    `arch`'s entitled limit (gemmaios.memory.entitled_memory); None for a text-only bundle."""
    vision, audio = vision_memory_bytes(bundle_dir), audio_memory_bytes(bundle_dir)
    if not vision and not audio:
        return None
    main = Path(bundle_dir) / read_main_asset(bundle_dir)
    extras, buffers = [], {"image_embeds": max(vision.get("image_embeds", 0), audio.get("image_embeds", 0))}
    if vision:
        extras.append(ExtraAsset("vision encoder", vision["vision_asset"], vision["vision_activations"]))
        buffers["vision inputs"] = vision["vision_inputs"]
    if audio:
        extras.append(ExtraAsset("audio encoder", audio["audio_asset"], audio["audio_activations"]))
        buffers["audio inputs"] = audio["audio_inputs"]
    return entitled_memory(arch, decoder_bytes=tree_bytes(main), extras=tuple(extras), buffers=buffers)


def check_vision_memory(bundle_dir: Path, arch: Arch) -> MemoryEstimate | None:
    """Refuse a bundle with image or audio input whose decoder + encoders + buffers exceed the
    iPhone's entitled limit; otherwise return the estimate (the app step records it). None:
    text-only or not iOS."""
    if arch.platform != "iOS":
        return None
    estimate = vision_memory(bundle_dir, arch)
    if estimate is not None and estimate.fits is False:
        what = " and ".join(n for n, on in (("vision", _vision_asset(bundle_dir)), ("audio", _audio_asset(bundle_dir)))
                            if on)
        raise VisionExceedsMemory(
            f"{Path(bundle_dir).name} with its {what} encoder{'s' if ' and ' in what else ''} does not fit an iPhone: "
            f"{estimate.describe()}",
            hint="convert with a smaller soft-token budget (the image processor's max_soft_tokens, a shorter longest "
                 "clip) or a smaller model (E2B), or without --vision / --audio")
    return estimate


def _tree(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def payload_plan(build_dir: Path, location: str | None = None, *, bundle_dir: Path | None = None,
                 ple: str | None = None, tables_dir: Path | None = None,
                 prompt_set: Path | None = None) -> PayloadPlan:
    """The payload of `build_dir` for `location` (default: the one the app step rendered).

    Arguments left out come from build.json: convert's `bundle_dir`/`ple`, the tables step's
    `i8`, the app step's `bundle_location`; the prompt set is `PROMPT_SET_BUILD_REL`.
    """
    build_dir = Path(build_dir)
    convert, tables, app = (finished_details(build_dir, n) for n in ("convert", "tables", "app"))
    location = location or (app.bundle_location if app is not None else c.BUNDLED)
    if location not in c.BUNDLE_LOCATIONS:
        raise PayloadError(f"bundle location {location!r} is not one of {', '.join(c.BUNDLE_LOCATIONS)}",
                           hint="use --bundle-location bundled or documents")
    if bundle_dir is None:
        if convert is None:
            raise PayloadError(f"{build_dir} has no converted bundle", hint="run `gemmaios build` first")
        bundle_dir = build_dir / convert.bundle_dir
    bundle_dir = Path(bundle_dir)
    ple = ple or (convert.ple if convert is not None else "none")
    if tables_dir is None:
        tables_dir = build_dir / (tables.tables_dir if tables is not None else TABLES_DIR)
    prompt_set = Path(prompt_set) if prompt_set else build_dir / PROMPT_SET_BUILD_REL

    main = read_main_asset(bundle_dir)
    bundle_rel = f"{c.PAYLOAD_BUNDLES_DIR}/{bundle_dir.name}"
    files: list[PayloadFile] = [PayloadFile(bundle_dir / c.BUNDLE_METADATA_FILE, f"{bundle_rel}/{c.BUNDLE_METADATA_FILE}")]
    for part, hint in ((main, "compile the bundle (`gemmaios compile`) or re-run `gemmaios convert`"),
                       (c.BUNDLE_TOKENIZER_DIR, "re-run `gemmaios convert`")):
        found = _tree(bundle_dir / part)
        if not found:
            raise PayloadError(f"{bundle_dir / part} is missing (the app reads it)", hint=hint)
        files += [PayloadFile(p, f"{bundle_rel}/{p.relative_to(bundle_dir).as_posix()}") for p in found]
    vision = _vision_asset(bundle_dir)
    if vision is not None:  # the vision asset the app loads next to the decoder (gemmaios.vision.asset)
        found = _tree(bundle_dir / vision)
        if not found:
            raise PayloadError(f"{bundle_dir / vision} is missing (the app reads it for image prompts)",
                               hint="compile the bundle (`gemmaios compile`) or re-run `gemmaios convert --vision`")
        files += [PayloadFile(p, f"{bundle_rel}/{p.relative_to(bundle_dir).as_posix()}") for p in found]
    audio = _audio_asset(bundle_dir)
    if audio is not None:  # the audio asset the app loads next to the decoder (gemmaios.audio.asset)
        found = _tree(bundle_dir / audio)
        if not found:
            raise PayloadError(f"{bundle_dir / audio} is missing (the app reads it for audio prompts)",
                               hint="compile the bundle (`gemmaios compile`) or re-run `gemmaios convert --audio`")
        files += [PayloadFile(p, f"{bundle_rel}/{p.relative_to(bundle_dir).as_posix()}") for p in found]
    if ple in ("provider", "tbl"):
        for name in (c.TABLE_I8_FILE, c.TABLE_SCALE_FILE):
            path = Path(tables_dir) / name
            if not path.is_file():
                raise PayloadError(f"{path} is missing ({ple} bundles read it)", hint="run `gemmaios tables`")
            files.append(PayloadFile(path, f"{c.PAYLOAD_TABLES_DIR}/{name}"))
    if not prompt_set.is_file():
        raise PayloadError(f"the prompt set {prompt_set} is missing", hint="run `gemmaios app` (it renders the prompt set)")
    files.append(PayloadFile(prompt_set, c.PROMPT_SET_FILE))
    files += [PayloadFile(source, rel) for source, rel in bench_media_files(prompt_set)]
    return PayloadPlan(location, bundle_dir, main, files)


# a prompt's media field → (its noun, what a file of it is, the folder the app step writes them to)
BENCH_MEDIA = ((c.PROMPT_IMAGE_FIELD, "image", "picture", c.PAYLOAD_IMAGES_DIR),
               (c.PROMPT_AUDIO_FIELD, "clip", "clip", c.PAYLOAD_CLIPS_DIR))


def bench_media_files(prompt_set: Path) -> list[tuple[Path, str]]:
    """(local file, payload-relative path) of every picture and clip the prompt set's image and
    audio prompts name (`image` / `audio`, relative to the payload folder; the app step writes them
    beside the prompt set)."""
    prompt_set = Path(prompt_set)
    try:
        prompts = json.loads(prompt_set.read_text()).get("prompts") or []
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise PayloadError(f"the prompt set {prompt_set} cannot be read: {exc}",
                           hint="run `gemmaios app` (it renders the prompt set)") from exc
    out: dict[str, Path] = {}
    for prompt in prompts:
        for field_name, noun, kind, folder in BENCH_MEDIA:
            rel = prompt.get(field_name) if isinstance(prompt, dict) else None
            if rel is None:
                continue
            pid = prompt.get("id")
            parts = Path(str(rel)).parts
            if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in parts or rel in (
                    c.PROMPT_SET_FILE, c.DEVICE_MANIFEST_FILE) or parts[0] in (c.PAYLOAD_BUNDLES_DIR, c.PAYLOAD_TABLES_DIR):
                raise PayloadError(f"prompt {pid!r} of {prompt_set} names the {noun} {rel!r}, which is not a {kind} file "
                                   f"inside the payload (expected {folder}/<name>.safetensors)",
                                   hint="re-run `gemmaios app` to render the prompt set again")
            source = prompt_set.parent / rel
            if not source.is_file():
                raise PayloadError(f"prompt {pid!r} of {prompt_set} names the {noun} {rel}, but {source} is missing",
                                   hint=f"re-run `gemmaios app` (it writes the bench prompts' {kind} files beside "
                                        "the prompt set)")
            out[rel] = source
    return [(source, rel) for rel, source in out.items()]


# ---- iOS checks -----------------------------------------------------------------------------

def check_ios_bundle(bundle_dir: Path, arch: Arch, *, allow_uncompiled: bool = False) -> str | None:
    """Refuse a bundle whose assets.main is not an AOT .aimodelc for `arch` (iOS targets only).

    Returns a warning when the check was overridden, else None.
    """
    from .compile import CompileError, check_aimodelc, manual_command, source_aimodel

    if arch.platform != "iOS":
        return None
    bundle_dir = Path(bundle_dir)
    main = read_main_asset(bundle_dir)
    problem = None
    if not main.endswith(f".{arch.name}.aimodelc"):
        problem = f"assets.main is {main!r}, not an AOT .aimodelc for {arch.name}"
    else:
        try:
            check_aimodelc(bundle_dir / main, arch)
        except CompileError as exc:
            problem = str(exc).splitlines()[0]
    if problem is None:
        return None
    if allow_uncompiled:
        return (f"{bundle_dir.name}: {problem}; shipping it anyway (--allow-uncompiled): the device specializes "
                "it at load, which large graphs do not survive")
    try:
        aimodel = source_aimodel(bundle_dir)
    except (CompileError, KeyError, TypeError, ValueError):  # no readable .aimodel record: name the usual one
        aimodel = f"{bundle_dir.name}.aimodel"
    command = manual_command(bundle_dir, aimodel, arch)
    raise UncompiledBundle(
        f"{bundle_dir / c.BUNDLE_METADATA_FILE}: {problem}; an iPhone cannot load it reliably",
        command=command,
        hint=f"compile it on a Mac: {command} — then re-run `gemmaios build`; or ship it uncompiled: "
             f"gemmaios app --allow-uncompiled --out {_typed(bundle_dir.parent.parent)}",
    )


def tbl_memory(bundle_dir: Path, table_files: list[Path], arch: Arch) -> MemoryEstimate:
    """The bundle's graph plus owned PLE tables vs `arch`'s limit (gemmaios.memory.entitled_memory)."""
    main = Path(bundle_dir) / read_main_asset(bundle_dir)
    tables = sum(Path(p).stat().st_size for p in table_files if Path(p).is_file())
    return entitled_memory(arch, decoder_bytes=tree_bytes(main), table_bytes=tables)


def check_tbl_memory(bundle_dir: Path, table_files: list[Path], arch: Arch, ple: str, *,
                     allow_tbl: bool = False) -> str | None:
    """Refuse `--ple tbl` on iOS when graph + owned tables exceed the entitled limit (E4B does)."""
    if ple != "tbl" or arch.platform != "iOS":
        return None
    arithmetic = tbl_memory(bundle_dir, table_files, arch)
    if arithmetic.limit_bytes is None or arithmetic.total_bytes <= arithmetic.limit_bytes:
        return None
    text = arithmetic.describe()
    if allow_tbl:
        return f"{Path(bundle_dir).name}: {text}; shipping it anyway (--allow-tbl)"
    raise TablesExceedMemory(
        f"{Path(bundle_dir).name} (--ple tbl) does not fit an iPhone: {text}",
        hint="convert with --ple provider (the app gathers one table row per token from an mmap), "
             "or pass --allow-tbl to try anyway",
    )
