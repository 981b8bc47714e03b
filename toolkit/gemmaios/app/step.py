"""The `app` pipeline step: app settings from the build manifest, the iOS payload checks, render."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from .. import contract as c
from ..audio.oracle import AUDIO_ORACLE_FILE
from ..buildlayout import APP_DIR, AUDIO_ORACLE_DIR, BUNDLES_DIR, ENGINE_DIR, TABLES_DIR
from ..errors import GemmaiosError
from ..patches import ENGINE_DIRNAME, PatchError, default_cache_dir, load_series
from ..payload import check_ios_bundle, check_tbl_memory, check_vision_memory, read_main_asset
from ..pipeline import BuildContext, Step, StepOutcome, sha256_file
from ..steprecords import OracleDetails
from ..vision.oracle import IMAGE_ORACLE_DIR, IMAGE_ORACLE_FILE
from .render import render_app, template_fingerprint
from .values import APP_PLATFORMS, AppSettings, AppTemplateError, PromptSet

# ---- the pipeline step ----------------------------------------------------------------------

BUILTIN_PROMPTS = [
    ("capital-france", "What is the capital of France?"),
    ("count-to-five", "Count from one to five."),
    ("haiku-sea", "Write a haiku about the sea."),
    ("explain-gravity", "Explain gravity to a child in two sentences."),
]


def _prompt_set_from_oracle(path: Path, details: OracleDetails) -> PromptSet:
    """The oracle's prompts as token ids (fields: prompts[].id, prompts[].prompt_ids)."""
    try:
        data = json.loads(path.read_text())
        prompts = [{"id": str(p["id"]), "prompt_ids": [int(t) for t in p["prompt_ids"]]} for p in data["prompts"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AppTemplateError(f"cannot read the prompt set from {path}: {exc!r}",
                               hint="the app expects prompts[].id and prompts[].prompt_ids; re-run the oracle step") from exc
    meta = details.prompt_set or data.get("prompt_set") or {}
    max_new = details.max_new_tokens or data.get("max_new_tokens") or 32
    return PromptSet(str(meta.get("name", "oracle")), str(meta.get("sha256", sha256_file(path))), int(max_new), prompts)


def _takes(metadata: Path, key: str) -> bool:
    """The bundle has that encoder asset (metadata.json gemmaios.vision / gemmaios.audio): its bench runs
    image / audio prompts too."""
    try:
        return bool((json.loads(metadata.read_text()).get("gemmaios") or {}).get(key))
    except (OSError, ValueError):
        return False


def _with_image_prompts(text: PromptSet, image_oracle: Path, build_dir: Path) -> PromptSet:
    """The text prompts, then one prompt per image-oracle picture (gemmaios.vision.imagebench); the pictures'
    sources relative to the build folder, so a copied build renders the same settings."""
    from ..vision import imagebench as image_bench

    try:
        prompts, sources = image_bench.image_prompts(image_oracle)
        name, sha = image_bench.mixed_prompt_set(text.name, text.sha256, image_oracle)
    except (GemmaiosError, KeyError, TypeError) as exc:
        raise AppTemplateError(f"cannot add the image prompts from {image_oracle}: {str(exc).splitlines()[0]}",
                               hint="re-run the oracle step with --vision") from exc
    sources = {rel: os.path.relpath(png, build_dir) for rel, png in sources.items()}
    return PromptSet(name, sha, text.max_new_tokens, [*text.prompts, *prompts], image_sources=sources)


def _with_audio_prompts(before: PromptSet, audio_oracle: Path, build_dir: Path) -> PromptSet:
    """The prompts so far (text, and images), then one prompt per audio-oracle clip
    (gemmaios.audio.audiobench); the clips' sources relative to the build folder."""
    from ..audio import audiobench

    try:
        prompts, sources = audiobench.audio_prompts(audio_oracle)
        name, sha = audiobench.with_audio_prompt_set(before.name, before.sha256, audio_oracle)
    except (GemmaiosError, KeyError, TypeError) as exc:
        raise AppTemplateError(f"cannot add the audio prompts from {audio_oracle}: {str(exc).splitlines()[0]}",
                               hint="re-run the oracle step with --audio") from exc
    sources = {rel: os.path.relpath(record, build_dir) for rel, record in sources.items()}
    return PromptSet(name, sha, before.max_new_tokens, [*before.prompts, *prompts], image_sources=before.image_sources,
                     clip_sources=sources)


def _builtin_prompt_set(tokenizer_path: Path, max_new_tokens: int) -> PromptSet:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    prompts = [{"id": pid, "prompt_ids": tok.encode(text).ids} for pid, text in BUILTIN_PROMPTS]
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()
    return PromptSet("builtin", digest, max_new_tokens, prompts)


def bundle_name_for(ctx: BuildContext) -> str:
    """The bundle the convert step names for these options (bundlename.bundle_name; an iPhone bundle has no
    flash-decode kernel), for a build whose convert step left no record."""
    from ..bundlename import bundle_name, model_key

    quant = ctx.options.quant
    if getattr(ctx.options, "recipe", None):  # a recipe build: `..._decode_mixed_<recipe>`
        from ..recipe import load_recipe, recipe_tag

        quant = recipe_tag(load_recipe(ctx.options.recipe))
    audio = bool(getattr(ctx.options, "audio", False)) and ctx.checkpoint.model_type != "gemma4_unified"
    return bundle_name(model_key(ctx.checkpoint), quant, ctx.options.ple, vision=ctx.options.vision, audio=audio)


def settings_from_build(ctx: BuildContext, overrides: dict | None = None) -> AppSettings:
    """App values from the manifest (convert/tables/compile/oracle details) and the checkpoint."""
    from ..config import load_config

    overrides = dict(overrides or {})
    user = load_config(overrides.pop("config", None))
    tc = ctx.checkpoint.text_config
    convert, tables, compile_, oracle = (ctx.manifest.details(n) for n in ("convert", "tables", "compile", "oracle"))
    name = convert.name if convert else bundle_name_for(ctx)
    bundle_dir = convert.bundle_dir if convert else f"{BUNDLES_DIR}/{name}"
    metadata = ctx.path(bundle_dir, "metadata.json")
    has_ple = bool(tc.get("hidden_size_per_layer_input"))
    ple = (convert.ple if convert else ctx.options.ple) if has_ple else "none"
    layers, dim = int(tc.get("num_hidden_layers", 0)), int(tc.get("hidden_size_per_layer_input") or 0)
    vocab = int(tc.get("vocab_size_per_layer_input") or tc.get("vocab_size") or 0)
    if tables is not None:
        vocab = int(tables.shape[0])
    eos = tc.get("eos_token_id", [])
    platform = getattr(ctx.options, "target", "ios") or "ios"  # the app is for the build's --target
    max_new = int(oracle.max_new_tokens if oracle else ctx.options.oracle_tokens)
    if oracle is not None and ctx.path(oracle.oracle).is_file():
        prompt_set = _prompt_set_from_oracle(ctx.path(oracle.oracle), oracle)
        image_oracle = ctx.path(oracle.image_oracle or IMAGE_ORACLE_DIR)
        if _takes(metadata, c.VISION_METADATA_KEY) and (image_oracle / IMAGE_ORACLE_FILE).is_file():
            prompt_set = _with_image_prompts(prompt_set, image_oracle, Path(ctx.build_dir))
        audio_oracle = ctx.path(oracle.audio_oracle or AUDIO_ORACLE_DIR)
        if _takes(metadata, c.AUDIO_METADATA_KEY) and (audio_oracle / AUDIO_ORACLE_FILE).is_file():
            prompt_set = _with_audio_prompts(prompt_set, audio_oracle, Path(ctx.build_dir))
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
        "quant": convert.quant if convert else ctx.options.quant,
        # the bundle's AOT architecture; none on the Mac, which loads the .aimodel as is (AppConfig.arch "")
        "arch": "" if not APP_PLATFORMS[platform].aot_compiled else compile_.arch if compile_ else ctx.options.arch,
        "platform": platform,
        "ple": ple,
        "ple_layers": layers if has_ple else 0,
        "ple_dim": dim,
        "vocab_size": vocab,
        "tables_dir": tables.tables_dir if tables else TABLES_DIR,
        "warmup_token_id": int(tc.get("bos_token_id") or 2),
        "bos_token_id": int(tc.get("bos_token_id") or 2),
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
            "engine_ready": (ctx.path(ENGINE_DIR, ENGINE_DIRNAME, ".gemmaios-engine")).is_file(),
            # the staged payload is not hashed as an output (GBs): a missing file re-runs the step
            "payload_staged": self._payload_staged(ctx, s),
        }

    @staticmethod
    def _payload_staged(ctx: BuildContext, s: AppSettings) -> bool:
        record = ctx.manifest.details("app")
        staged = record.app_payload if record is not None else {}
        project = ctx.path(APP_DIR, s.app_name)
        return all((project / dest).is_file() for dest in staged)

    def run(self, ctx: BuildContext) -> StepOutcome:
        # The user's own values first: a mistyped option is named before the bundle is looked at.
        s = settings_from_build(ctx, self._overrides(ctx)).validated()
        # iPhone: the AOT .aimodelc and the entitled-memory arithmetic; a Mac app ships the .aimodel, which
        # Core AI specializes on the Mac at its first load (no jetsam limit to check against)
        warnings = ios_payload_checks(ctx.build_dir, s) if s.app_platform.aot_compiled else []
        for warning in warnings:
            ctx.console.print(f"[yellow]  ! {warning}[/yellow]")
        from ..archs import get_arch

        image_memory = check_vision_memory(Path(ctx.build_dir) / s.bundle_dir, get_arch(s.arch)) \
            if s.app_platform.aot_compiled else None
        main = None if s.app_platform.aot_compiled else read_main_asset(Path(ctx.build_dir) / s.bundle_dir)
        if main is not None and not main.endswith(".aimodel"):
            raise AppTemplateError(f"the {s.app_platform.name} app loads the bundle's .aimodel, but its metadata.json "
                                   f"names {main!r} (compiled for an iPhone)",
                                   hint="copy the bundle's metadata.mac.json over its metadata.json (it keeps the "
                                        ".aimodel), then re-run")
        try:
            result = render_app(ctx.build_dir, s)
        except PatchError as exc:
            raise AppTemplateError(f"the engine patch stack does not apply: {exc}", hint=exc.hint) from exc
        outputs = [*result.files, result.prompt_set, *result.bench_images]
        stamp = ctx.path(ENGINE_DIR, ENGINE_DIRNAME, ".gemmaios-engine")
        if result.engine.status == "ready" and stamp.is_file():
            outputs = [*outputs, stamp]
        message = f"{result.project_dir.relative_to(ctx.build_dir)}"
        if main is not None:
            message += f" ({s.app_platform.name} app; {main} as is, specialized at its first load)"
        if result.engine.status == "pending":
            # the command to fetch it is printed once, under the build's summary (AppDetails.engine)
            message += f"; engine package pending ({result.engine.message})"
        details = result.details(ctx.build_dir, warnings)
        if image_memory is not None:  # decoder + its encoders (vision, audio) + buffers vs the entitled limit
            details.image_memory = image_memory.as_dict()
            message += f"; with its encoders {image_memory.describe()}"
        return StepOutcome(outputs=outputs, details=details, message=message)


def ios_payload_checks(build_dir: Path, s: AppSettings) -> list[str]:
    """contract: an iOS app gets an AOT .aimodelc for its architecture, and a tbl bundle that fits."""
    from ..archs import get_arch

    arch = get_arch(s.arch)
    bundle_dir = Path(build_dir) / s.bundle_dir
    tables = [Path(build_dir) / s.tables_dir / name for name in (c.TABLE_I8_FILE, c.TABLE_SCALE_FILE)]
    found = [check_ios_bundle(bundle_dir, arch, allow_uncompiled=s.allow_uncompiled),
             check_tbl_memory(bundle_dir, tables, arch, s.ple, allow_tbl=s.allow_tbl)]
    return [w for w in found if w]
