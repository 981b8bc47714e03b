"""convert_checkpoint: a checkpoint → a gated LanguageBundle folder (ConvertResult)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import kernels
from ..bundlemetadata import copy_tokenizer, write_metadata
from ..bundlename import bundle_name
from ..checkpoint import CHAT_TEMPLATE_FALLBACK, Checkpoint
from ..contract import KV_GUARD_METADATA_KEY, kv_guard
from ..decode_model import DecodeSpec, Gemma4Decode, use_flash_decode
from ..files import replace_dir
from ..quantize import BLOCK, expected_storage_bytes
from ..recipe import Recipe, recipe_tag
from .export import export_program, free_memory, large_blocks_from_mmap, prefill_function_name
from .gates import (
    asset_gate,
    asset_readback_fits,
    expected_float16_elements,
    expected_quantized_elements,
    gates_fit_in_memory,
    kernel_gate,
    levels_gate,
    run_parity_gates,
)
from .mixed import PreparedRecipe, prepare_recipe, recipe_metadata, recipe_scheme
from .options import (
    ConvertError,
    Progress,
    check_convert_options,
    check_prefill_chunks,
    model_key,
    resolve_flash_decode,
    resolve_head_quant,
    resolve_prefill_chunks,
)


@dataclass
class ConvertResult:
    bundle_dir: Path
    name: str
    aimodel: Path
    metadata: Path
    quant: str
    head_quant: str
    ple: str
    max_context: int
    inputs: list[dict]
    outputs: list[dict]
    states: list[dict]
    gates: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    target: str = "ios"
    kernel: str | None = None  # flash-decode variant on the full layers, None: stock SDPA
    prefill_chunks: tuple[int, ...] = ()  # sizes of the prefill_C functions beside main
    vision: dict | None = None  # metadata gemmaios.vision: the vision asset and splice facts (None: text only)
    recipe: dict | None = None  # metadata gemmaios.recipe: the mixed-bit plan, its bytes and AWQ fold (None: --quant)
    multimodal: dict | None = None  # metadata gemmaios.multimodal: the 12B's functions and constants (None: none)

    def files(self) -> list[Path]:
        return sorted(p for p in self.bundle_dir.rglob("*") if p.is_file())


def head_facts(spec: DecodeSpec, head_quant: str, recipe_head: dict | None = None) -> dict:
    """How the bundle stores the embedding and the lm_head (for size and bandwidth models).

    Per decoded token the gather reads one fp16 embedding row; the head reads its whole
    table: the embedding itself when tied, else the untied int4/int8 copy.
    """
    shape = [spec.vocab_size, spec.hidden_size]
    facts = {
        "tied": head_quant == "fp16",
        "shape": shape,
        "embedding_dtype": "float16",
        "embedding_bytes": shape[0] * shape[1] * 2,
    }
    if recipe_head is not None:  # a mixed-bit recipe's head (gemmaios.recipe label, e.g. aff4g64)
        facts["tied"] = recipe_head["tied"]
        if not recipe_head["tied"]:
            facts["scheme"] = f"recipe {recipe_head['label']} (untied copy)"
            facts["head_bytes"] = recipe_head["bytes"]
        return facts
    if head_quant != "fp16":
        facts["scheme"] = f"linear symmetric absmax, per block of {BLOCK} input columns (untied copy)"
        facts["head_bytes"] = expected_storage_bytes([tuple(shape)], head_quant)
    return facts


def convert_checkpoint(
    checkpoint: Checkpoint,
    out_dir: Path,
    quant: str = "int4",
    ple: str = "provider",
    max_context: int = 4096,
    *,
    progress: Progress | None = None,
    gates: bool | None = None,
    tables: dict | None = None,
    target: str = "ios",
    kernel: str | None = None,
    head_quant: str | None = None,
    bundle_check: Callable[[Path], dict] | None = None,
    prefill_chunks: int | str | tuple | list | None = None,
    prefill_check: Callable[[Path], dict] | None = None,
    vision: bool = False,
    image_check: Callable[[Path], dict] | None = None,
    recipe: Recipe | None = None,
    calibration_prompts: Path | None = None,
    prepared_recipe: PreparedRecipe | None = None,
    audio: bool = False,
    multimodal_check: Callable[[Path], dict] | None = None,
    audio_check: Callable[[Path], dict] | None = None,
) -> ConvertResult:
    """Write `out_dir/<bundle name>/` (the .aimodel, metadata.json, tokenizer/).

    `gates`: None runs the HF parity gates when the fp32 reference fits in memory (else
    records why not), True always runs them, False skips them. The asset gate always runs.
    `tables`: the tables step's details for tbl bundles (recorded in metadata).
    `target`: "ios" (iPhone) or "mac"; `kernel`: the flash-decode variant for Mac builds of
    12B/31B ("simple" | "g8", default g8; see resolve_flash_decode).
    `head_quant`: the lm_head's storage (default: `quant`; int4/int8 = an untied quantized
    copy next to the exact fp16 embedding table, fp16 = tied to it).
    `bundle_check(staged_bundle_dir)`: runs the finished bundle before it is moved into place
    (the build's Core AI runtime gate, gemmaios.hostrun); its report is recorded under
    `gates.bundle_run`, and an exception from it leaves no bundle behind.
    `prefill_chunks`: `--prefill-chunk` (0/None off; 8, 16 or a ladder "16,8"): a `prefill_C`
    function per size beside `main` (see resolve_prefill_chunks). The parity gates then also
    run the module's chunked walk against transformers, and `prefill_check(staged_bundle_dir)`
    (gemmaios.hostrun.build_prefill_check) proves the saved asset's chunked walk bit-identical
    to its `main`-only walk under Core AI's runtime (`gates.prefill_run`); without it the
    metadata records that this gate did not run.
    `vision`: image input (E2B/E4B, provider PLE, iPhone): `main` gets the static
    `image_embeds [N, hidden]` input of the id-space splice and the vision asset
    (`gemmaios.vision.export`) is written beside the .aimodel; `image_check(staged_bundle_dir)`
    (gemmaios.vision.gate.build_image_check) runs both under Core AI's runtime against the
    image oracle (`gates.image_run`). `audio` on E2B/E4B (model_type gemma4 with an audio tower):
    the audio asset (`gemmaios.audio.export`) beside the .aimodel, its soft tokens spliced into the
    same rows; `audio_check(staged_bundle_dir)` (gemmaios.audio.gate.build_audio_check) runs both
    against the audio oracle (`gates.audio_run`).
    `recipe`: a mixed-bit plan (gemmaios.recipe) deciding each weight's storage instead of `quant`
    (the bundle is named `..._decode_mixed_<recipe>`); AWQ tensors get scales calibrated on
    `calibration_prompts` (None: the packaged chat prompts), folded into their norms. Gate 2
    then reports KL and top-1 against the recipe's floors, and the metadata records the plan,
    the bytes a token reads and what the asset stores per storage type (read back).
    On gemma4_unified (the 12B as it ships) `vision` / `audio` instead add `prefill_multimodal`
    and `embed_vision` / `embed_audio` to the one asset (gemmaios.convert.multimodal; Mac only);
    `multimodal_check(staged_bundle_dir)` runs them under Core AI's runtime (`gates.multimodal_run`).
    """
    flash = resolve_flash_decode(checkpoint, target, kernel)
    if recipe is not None and head_quant is not None:
        raise ConvertError("--head-quant cannot be combined with --recipe: the recipe decides the head's storage",
                           hint="drop --head-quant and name the head in the recipe, e.g. `- {match: lm_head, bits: 8}`")
    head_quant = resolve_head_quant(quant, head_quant)
    chunks = resolve_prefill_chunks(prefill_chunks)
    check_convert_options(checkpoint, quant, ple, max_context, head_quant)
    check_prefill_chunks(chunks, max_context, flash)
    image_spec = mm_spec = None
    from .options import check_unified_multimodal

    check_unified_multimodal(checkpoint, vision, audio, target)
    if checkpoint.model_type == "gemma4_unified" and (vision or audio):
        from ..unified_inputs import UnifiedSpec

        mm_spec = UnifiedSpec.from_checkpoint(checkpoint.path)
    elif vision:
        from ..vision.preprocess import ImageSpec
        from .options import check_vision

        check_vision(checkpoint, ple, target)
        image_spec = ImageSpec.from_checkpoint(checkpoint.path)
    audio_spec = None
    if audio and checkpoint.model_type != "gemma4_unified":  # E2B/E4B: the audio asset beside the decoder
        from ..audio.preprocess import AudioSpec
        from .options import check_audio

        check_audio(checkpoint, ple, target)
        audio_spec = AudioSpec.from_checkpoint(checkpoint.path)
    # main's static soft-token rows: one picture or one clip per prompt (contract.AUDIO_EMBEDS_INPUT)
    soft_rows = max(image_spec.max_soft_tokens if image_spec else 0, audio_spec.max_soft_tokens if audio_spec else 0)
    large_blocks_from_mmap()
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    prepared = prepared_recipe
    if recipe is not None and prepared is None:
        prepared = prepare_recipe(checkpoint, recipe, calibration_prompts, progress)
    if prepared is not None:
        quant = recipe_tag(recipe)
        seconds["calibrate"] = prepared.seconds
    awq = prepared.awq if prepared else None
    name = bundle_name(model_key(checkpoint), quant, ple, kernels.bundle_suffix(flash), image_spec is not None,
                       multimodal=mm_spec is not None, audio=audio_spec is not None)
    t0 = time.time()

    gate_report: dict = {}
    run_gates, why_not = (True, "") if gates else ((False, "skipped: disabled") if gates is False else gates_fit_in_memory(checkpoint))
    if run_gates:
        gate_report.update(
            run_parity_gates(checkpoint, quant, progress, flash, head_quant=head_quant, prefill_chunks=chunks,
                             recipe=recipe, awq=awq)
        )
    else:
        gate_report["parity"] = why_not
    seconds["gates"] = round(time.time() - t0, 2)

    t1 = time.time()
    spec = DecodeSpec.from_text_config(checkpoint.text_config)
    model = Gemma4Decode(
        checkpoint,
        quant=quant,
        head_quant=head_quant,
        dtype=torch.float16,
        ple=ple,
        spec=spec,
        progress=(lambda i, n: progress("layers", i, n)) if progress else None,
        image_tokens=soft_rows,
        recipe=recipe,
        awq=awq,
    ).eval()
    if recipe is not None:
        head_quant = model.head_quant
    use_flash_decode(model, flash)
    free_memory()
    q_elements = expected_quantized_elements(model)
    float_elements = expected_float16_elements(model)
    expected_levels = None
    recipe_facts = None
    if recipe is not None:
        recipe_facts = recipe_metadata(recipe, model, prepared)
        if asset_readback_fits(model):
            expected_levels = {n: lin.quantized_weight() for n, lin in model.checkpoint_linears() if lin.quantized}
    names = {"inputs": model.input_names(), "states": model.state_names(), "outputs": model.output_names()}
    extra = []
    if mm_spec is not None:
        from .multimodal import embedder_float16_elements, multimodal_functions

        extra = multimodal_functions(model, checkpoint, mm_spec, max_context, vision, audio)
        float_elements += embedder_float16_elements(extra)
    extra_names = {f.name: {"inputs": f.input_names, "outputs": f.output_names, "states": f.state_names}
                   for f in extra}
    seconds["load_quantize"] = round(time.time() - t1, 2)

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        t2 = time.time()
        if progress:
            progress("export", 0, 1)
        program = export_program(model, max_context, flash, chunks, extra)
        del model, extra  # the multimodal wrappers hold the decode module too
        free_memory()
        seconds["export"] = round(time.time() - t2, 2)
        t3 = time.time()
        import coreai.runtime as rt

        if progress:
            progress("save", 0, 1)
        aimodel = staging / f"{name}.aimodel"
        program.save_asset(aimodel, rt.AIModelAssetMetadata())
        del program
        free_memory()
        seconds["save"] = round(time.time() - t3, 2)
        if progress:
            progress("asset gate", 0, 1)
        asset = asset_gate(aimodel, names, q_elements, quant, chunks, float_elements, extra_functions=extra_names)
        io = {k: asset.pop(k) for k in ("inputs", "outputs", "states", "prefill")}
        if expected_levels is not None:
            asset["levels_read_back"] = levels_gate(aimodel, expected_levels)
        elif recipe is not None:
            asset["levels_read_back"] = {"status": "not run", "summary": (
                "not run: the asset is too large to print its constants on this machine; the storage types "
                "and element counts above are checked")}
        extra_io = {name: io["prefill"].pop(name) for name in extra_names}
        gate_report["asset"] = asset
        if flash is not None:
            if progress:
                progress("kernel gate", 0, 1)
            gate_report["flash_decode"] = kernel_gate(aimodel, checkpoint.text_config, flash)

        vision_facts = None
        if image_spec is not None:
            from ..vision.export import export_vision_asset, vision_asset_name

            if progress:
                progress("vision asset", 0, 1)
            vision_facts = export_vision_asset(checkpoint, image_spec, staging / vision_asset_name(name))
            seconds["vision_export"] = vision_facts.pop("seconds")
            vision_facts["embeds_rows"] = soft_rows
        audio_facts = None
        if audio_spec is not None:
            from ..audio.export import audio_asset_facts, audio_asset_name, export_audio_asset

            if progress:
                progress("audio asset", 0, 1)
            audio_facts = audio_asset_facts(export_audio_asset(checkpoint, audio_spec, staging / audio_asset_name(name)),
                                            soft_rows)
            seconds["audio_export"] = audio_facts.pop("seconds")
        template, template_source = checkpoint.chat_template()
        copy_tokenizer(checkpoint.path, staging / "tokenizer",
                       template if template_source == CHAT_TEMPLATE_FALLBACK else None)
        gemmaios_section = {
            # Whose chat template the bundle's tokenizer/ carries: the checkpoint's, or Gemma 4's
            # framing as gemmaios writes it for a Gemma 4 checkpoint that ships none.
            "chat_template": {"source": template_source,
                              "sha256": hashlib.sha256(template.encode()).hexdigest() if template else None},
            "source": {"model_id": checkpoint.model_id, "revision": checkpoint.revision},
            "quant": quant,
            "quant_scheme": (recipe_scheme(recipe) if recipe is not None else
                             None if quant == "fp16" else f"linear symmetric absmax, per block of {BLOCK} input columns"),
            "head_quant": head_quant,
            "head": head_facts(spec, head_quant, recipe_facts["head"] if recipe_facts else None),
            "ple": ple,
            "max_context": max_context,
            "target": target,
            # issue 27: the context an iOS build allows, and the KV binding known token-exact on a phone
            KV_GUARD_METADATA_KEY: kv_guard(max_context) if target == "ios" else None,
            "flash_decode": (
                {
                    "kernel": flash,
                    "entry": kernels.KERNEL_SPECS[flash].entry,
                    "full_layers": kernels.full_attention_layers(checkpoint.text_config),
                    "attention": gate_report["flash_decode"]["attention"],
                }
                if flash
                else None
            ),
            "inputs": io["inputs"],
            "outputs": io["outputs"],
            "states": io["states"],
            "kv_layers": [lay.index for lay in spec.kv_layers],
            "prefill": (
                {
                    "chunks": list(chunks),
                    "functions": io["prefill"],
                    "sliding_window": spec.sliding_window,
                    "routing": "full chunks of C prompt tokens (largest C first) to prefill_C, the rest to main",
                    "output": "logits of the chunk's last row only [1,1,V]",
                }
                if chunks
                else None
            ),
            "gates": gate_report,
        }
        if recipe_facts is not None:
            gemmaios_section["recipe"] = recipe_facts
            # The roofline's weight bytes per decoded token (report.bundlefacts reads `weight_bytes`).
            gemmaios_section["weight_bytes"] = recipe_facts["bytes_per_token"]
        if vision_facts is not None:
            from ..contract import VISION_METADATA_KEY

            gemmaios_section[VISION_METADATA_KEY] = vision_facts
        if audio_facts is not None:
            from ..contract import AUDIO_METADATA_KEY

            gemmaios_section[AUDIO_METADATA_KEY] = audio_facts
        multimodal_facts = None
        if mm_spec is not None:
            from .multimodal import multimodal_metadata

            multimodal_facts = multimodal_metadata(mm_spec, extra_io)
            gemmaios_section["multimodal"] = multimodal_facts
            if flash is None and target == "mac":
                gemmaios_section["flash_decode_note"] = (
                    "stock graph (--kernel stock): no flash-decode kernel, so Core AI's Linux runtime can run and "
                    "gate it; a 12B on a Mac needs the kernel build")
        if ple == "tbl":
            gemmaios_section["ple_table"] = {
                "shape": [spec.ple_vocab, spec.num_layers * spec.ple_dim],
                "dtype": "int8",
                "scale_dtype": "float32",
                "tables": tables or {},
            }
        metadata_fields = dict(
            name=name,
            aimodel=f"{name}.aimodel",
            tokenizer=checkpoint.model_id if not checkpoint.is_tiny else "tiny",
            vocab_size=spec.vocab_size,
            max_context=max_context,
            prefill_functions=[prefill_function_name(c) for c in chunks],
            roles={fname: [fname] for fname in extra_names},
        )
        write_metadata(staging, **metadata_fields, gemmaios=gemmaios_section)

        def run_runtime_gate(key: str, label: str, check: Callable[[Path], dict]) -> None:
            """A gate on the staged bundle: timed, recorded under gates[key], metadata rewritten."""
            if progress:
                progress(label, 0, 1)
            started = time.time()
            gate_report[key] = check(staging)
            seconds[key] = round(time.time() - started, 2)
            write_metadata(staging, **metadata_fields, gemmaios=gemmaios_section)

        if chunks:
            if prefill_check is None:
                gate_report["prefill_run"] = {
                    "status": "not run",
                    "summary": "not run: no prompts and PLE tables were given to the chunked-prefill runtime gate",
                }
                write_metadata(staging, **metadata_fields, gemmaios=gemmaios_section)
            else:
                run_runtime_gate("prefill_run", "chunked prefill gate (Core AI runtime)", prefill_check)
        if bundle_check is not None:
            run_runtime_gate("bundle_run", "bundle run gate (Core AI runtime)", bundle_check)
        if image_spec is not None and image_check is not None:
            run_runtime_gate("image_run", "image prompt gate (Core AI runtime)", image_check)
        if audio_spec is not None and audio_check is not None:
            run_runtime_gate("audio_run", "audio prompt gate (Core AI runtime)", audio_check)
        if mm_spec is not None and multimodal_check is not None:
            run_runtime_gate("multimodal_run", "multimodal prompt gate (Core AI runtime)", multimodal_check)
        final = out_dir / name
        replace_dir(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    seconds["total"] = round(time.time() - t0, 2)
    return ConvertResult(
        bundle_dir=final,
        name=name,
        aimodel=final / f"{name}.aimodel",
        metadata=final / "metadata.json",
        quant=quant,
        head_quant=head_quant,
        ple=ple,
        max_context=max_context,
        inputs=io["inputs"],
        outputs=io["outputs"],
        states=io["states"],
        gates=gate_report,
        seconds=seconds,
        target=target,
        kernel=flash,
        prefill_chunks=chunks,
        vision=vision_facts,
        recipe=recipe_facts,
        multimodal=multimodal_facts,
    )


