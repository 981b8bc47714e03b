"""The build's convert step (ConvertStep)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from .. import __version__, hostrun
from ..buildlayout import BUNDLES_DIR, TABLES_DIR
from ..checkpoint import Checkpoint
from ..contract import IOS_KV_SAFE_CAPACITY, KV_FAULT_ISSUE, KV_FAULT_WARNING, kv_guard
from ..decode_model import DecodeSpec
from ..oracle import ORACLE_FILE
from ..pipeline import BuildContext, Step, StepOutcome
from ..recipe import load_recipe
from ..steprecords import ConvertDetails, details_to_json
from .converter import convert_checkpoint
from .mixed import prepare_recipe
from .options import (
    ConvertError,
    resolve_flash_decode,
    resolve_head_quant,
    resolve_max_context,
    resolve_prefill_chunks,
)


def _has_ple(checkpoint: Checkpoint) -> bool:
    return bool(checkpoint.text_config.get("hidden_size_per_layer_input"))


def _calibration_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _calibration_identity(value: str | None) -> str:
    """The calibration prompt set's sha256 (what the AWQ scales depend on)."""
    from ..oracle.prompts import load_prompt_set

    return load_prompt_set(_calibration_path(value)).sha256


def _recipe_details(facts: dict | None) -> dict | None:
    """The manifest's short record of a recipe build (metadata.json has the per-tensor plan)."""
    if not facts:
        return None
    return {"name": facts["name"], "fingerprint": facts["fingerprint"], "floors": facts["floors"],
            "bytes_per_token": facts["bytes_per_token"], "bits_per_weight": facts["summary"]["bits_per_weight"],
            "by_label": facts["summary"]["by_label"], "awq": facts["awq"]}


def _multimodal_gated(ctx: BuildContext) -> bool:
    """A gemma4_unified build with --vision/--audio: its four-function bundle runs the multimodal gate."""
    opts = ctx.options
    return ctx.checkpoint.model_type == "gemma4_unified" and bool(getattr(opts, "vision", False) or
                                                                  getattr(opts, "audio", False))


class ConvertStep(Step):
    name = "convert"
    title = "decode graph → Core AI LanguageBundle (parity-gated)"

    def inputs(self, ctx: BuildContext) -> dict:
        opts = ctx.options
        values = {
            "checkpoint": ctx.step_fingerprint("checkpoint"),
            "quant": opts.quant,
            "head_quant": resolve_head_quant(opts.quant, opts.head_quant),
            "ple": opts.ple,
            "max_context": resolve_max_context(ctx.checkpoint, opts.max_context),
            "target": opts.target,
            "kernel": resolve_flash_decode(ctx.checkpoint, opts.target, opts.kernel),
            "toolkit": __version__,
        }
        chunks = resolve_prefill_chunks(getattr(opts, "prefill_chunk", "0"))
        if chunks:  # absent when off, so builds made before the option keep their fingerprint
            values["prefill_chunks"] = list(chunks)
        if getattr(opts, "vision", False):  # likewise absent when off
            values["vision"] = True
        if getattr(opts, "recipe", None):  # likewise: a mixed-bit recipe decides the weights' storage
            recipe = load_recipe(opts.recipe)
            values["recipe"] = {"name": recipe.name, "fingerprint": recipe.fingerprint()}
            if recipe.uses_awq:
                values["calibration"] = _calibration_identity(getattr(opts, "calibration", None))
        if getattr(opts, "audio", False):
            values["audio"] = True
        if _multimodal_gated(ctx):  # the 12B's multimodal gate (absent elsewhere: other fingerprints unchanged)
            from ..unified.gate import GATE_VERSION

            values["multimodal_gate"] = GATE_VERSION
        if opts.ple == "tbl" or _has_ple(ctx.checkpoint):
            values["tables"] = ctx.step_fingerprint("tables")
        # The bundle-run gate runs the saved bundle on the oracle's prompts (gemmaios.hostrun).
        values["oracle"] = ctx.step_fingerprint("oracle")
        return values

    def run(self, ctx: BuildContext) -> StepOutcome:
        opts = ctx.options
        tables = None
        if opts.ple == "tbl":
            ctx.step_outputs("tables")  # raises a clear error when the tables step has not finished
            tables = ctx.manifest.details("tables")
            spec = DecodeSpec.from_text_config(ctx.checkpoint.text_config)
            want = [spec.ple_vocab, spec.num_layers * spec.ple_dim]
            if tables is not None and list(tables.shape) != want:
                raise ConvertError(
                    f"the tables step wrote a PLE table of shape {tables.shape}, this checkpoint needs {want}",
                    hint="re-run the tables step (`gemmaios build --force`)",
                )
        ctx.step_outputs("oracle")  # the bundle-run gate judges the bundle against it
        if _has_ple(ctx.checkpoint):
            ctx.step_outputs("tables")  # the gate feeds the bundle its per-layer inputs from them
        layers_bar: dict = {}
        gate_bar: dict = {}

        def gate_progress(n: int = 1) -> None:
            if "advance" not in gate_bar:
                from ..oracle import load_oracle

                total = len(load_oracle(ctx.path(ORACLE_FILE)).prompts)
                gate_bar["cm"] = ctx.progress("bundle run (Core AI runtime)", total=total)
                gate_bar["advance"] = gate_bar["cm"].__enter__()
                gate_bar["total"], gate_bar["done"] = total, 0
            gate_bar["advance"](n)
            gate_bar["done"] += n
            if gate_bar["done"] >= gate_bar["total"]:
                gate_bar.pop("cm").__exit__(None, None, None)
                gate_bar.pop("advance")

        flash = resolve_flash_decode(ctx.checkpoint, opts.target, opts.kernel)
        recipe = prepared = None
        if getattr(opts, "recipe", None):
            recipe = load_recipe(opts.recipe)
            prepared = prepare_recipe(ctx.checkpoint, recipe, _calibration_path(getattr(opts, "calibration", None)),
                                      lambda stage, done, total: ctx.console.print(f"  [dim]{stage}…[/dim]"))
        check = hostrun.build_bundle_check(
            ctx.checkpoint,
            ctx.path(ORACLE_FILE),
            ctx.path(TABLES_DIR) if _has_ple(ctx.checkpoint) else None,
            quant=opts.quant,
            head_quant=resolve_head_quant(opts.quant, opts.head_quant),
            flash_decode=flash,
            progress=gate_progress,
            recipe=recipe,
            awq=prepared.awq if prepared else None,
        )
        chunks = resolve_prefill_chunks(opts.prefill_chunk)
        prefill_check = None
        if chunks:
            prefill_check = hostrun.build_prefill_check(
                ctx.path(ORACLE_FILE), ctx.path(TABLES_DIR) if _has_ple(ctx.checkpoint) else None
            )

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "layers":
                if "advance" not in layers_bar:
                    layers_bar["cm"] = ctx.progress("quantize layers", total=total)
                    layers_bar["advance"] = layers_bar["cm"].__enter__()
                layers_bar["advance"](1)
                if done == total:
                    layers_bar.pop("cm").__exit__(None, None, None)
                    layers_bar.pop("advance")
            else:
                ctx.console.print(f"  [dim]{stage}…[/dim]")

        image_check = None
        if getattr(opts, "vision", False) and ctx.checkpoint.model_type != "gemma4_unified":
            from ..vision.gate import build_image_check
            from ..vision.oracle import IMAGE_ORACLE_DIR

            image_check = build_image_check(ctx.path(IMAGE_ORACLE_DIR),
                                            ctx.path(TABLES_DIR) if _has_ple(ctx.checkpoint) else None)
        audio_check = None
        if getattr(opts, "audio", False) and ctx.checkpoint.model_type != "gemma4_unified":
            from ..audio.gate import build_audio_check
            from ..audio.oracle import AUDIO_ORACLE_DIR

            audio_check = build_audio_check(ctx.path(AUDIO_ORACLE_DIR),
                                            ctx.path(TABLES_DIR) if _has_ple(ctx.checkpoint) else None)
        multimodal_check = None
        if _multimodal_gated(ctx):
            from ..unified.gate import GATE_PROMPTS, build_multimodal_check

            def checked(bundle_dir: Path) -> dict:
                with contextlib.ExitStack() as stack:
                    bar: list = []

                    def mm_progress(n: int = 1) -> None:
                        if not bar:  # opened at the first tick: the runtime checks, then one per gate prompt
                            bar.append(stack.enter_context(
                                ctx.progress("multimodal gate (Core AI runtime)", total=1 + len(GATE_PROMPTS))))
                        bar[0](n)

                    return build_multimodal_check(ctx.checkpoint, mm_progress)(bundle_dir)

            multimodal_check = checked
        result = convert_checkpoint(
            ctx.checkpoint,
            ctx.path(BUNDLES_DIR),
            opts.quant,
            opts.ple,
            resolve_max_context(ctx.checkpoint, opts.max_context),
            progress=progress,
            tables=details_to_json(tables) if tables is not None else None,
            target=opts.target,
            kernel=opts.kernel,
            head_quant=opts.head_quant,
            bundle_check=check,
            prefill_chunks=chunks,
            prefill_check=prefill_check,
            vision=getattr(opts, "vision", False),
            image_check=image_check,
            recipe=recipe,
            prepared_recipe=prepared,
            audio=getattr(opts, "audio", False),
            audio_check=audio_check,
            multimodal_check=multimodal_check,
        )
        rel = lambda p: str(Path(p).relative_to(ctx.build_dir))  # noqa: E731
        details = ConvertDetails(
            bundle_dir=rel(result.bundle_dir), name=result.name, aimodel=rel(result.aimodel),
            metadata=rel(result.metadata), quant=result.quant, head_quant=result.head_quant, ple=result.ple,
            max_context=result.max_context, target=result.target, kernel=result.kernel,
            prefill_chunks=list(result.prefill_chunks), vision=result.vision,
            kv_guard=kv_guard(result.max_context) if result.target == "ios" else None,
            recipe=_recipe_details(result.recipe), multimodal=result.multimodal, inputs=result.inputs,
            outputs=result.outputs, states=result.states, gates=result.gates, seconds=result.seconds,
        )
        g1 = result.gates.get("fp32_greedy")
        note = f"{g1['token_matches']}/{g1['prompts'] * g1['steps']} fp32 greedy" if g1 else "parity gates skipped"
        run_gate = result.gates.get("bundle_run")
        if run_gate:
            note += "; " + run_gate["summary"]
        prefill_run = result.gates.get("prefill_run")
        if prefill_run:
            names = "+".join(f"prefill_{c}" for c in result.prefill_chunks)
            note += f"; {names}: {prefill_run.get('short') or prefill_run['summary']}"
        for media_run in (result.gates.get("image_run"), result.gates.get("audio_run"),
                          result.gates.get("multimodal_run")):
            if media_run:
                note += "; " + media_run["summary"]
        if result.kernel:
            note += f"; flash-decode {result.kernel} on full layers {result.gates['flash_decode']['full_layers']}"
        elif result.target == "mac":
            note += "; stock attention (this model does not need the flash-decode kernel)"
        guard = details.kv_guard
        if guard and not guard["within_safe"]:
            note += (f"; {KV_FAULT_WARNING}: context {guard['allowed_context']} lets the KV bind up to "
                     f"{guard['largest_kv_capacity']} positions, which decode wrong tokens on iOS 27 beta "
                     f"({KV_FAULT_ISSUE}); --max-context {IOS_KV_SAFE_CAPACITY} stays within the known-good size")
        return StepOutcome(outputs=result.files(), details=details, message=f"{result.name} ({note})")
