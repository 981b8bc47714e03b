"""The `oracle` pipeline step: runs the reference on the build's checkpoint and records oracle/oracle.json."""

from __future__ import annotations

from ..pipeline import BuildContext, Step, StepOutcome
from ..steprecords import OracleDetails
from .prompts import PromptSet, load_prompt_set
from .records import DEFAULT_TOP_K, ORACLE_FILE, ORACLE_SCHEMA
from .reference import check_torch_device, run_oracle, tool_versions


class OracleStep(Step):
    name = "oracle"
    title = "fp32 Hugging Face reference generations"

    def _settings(self, ctx: BuildContext) -> tuple[PromptSet, int, int, str]:
        prompt_set = load_prompt_set(ctx.options.prompts_file)
        top_k = int(ctx.options.extra.get("oracle_top_k", DEFAULT_TOP_K))
        device = check_torch_device(str(ctx.options.extra.get("oracle_device", "cpu")))
        return prompt_set, ctx.options.oracle_tokens, top_k, device

    def inputs(self, ctx: BuildContext) -> dict:
        prompt_set, tokens, top_k, device = self._settings(ctx)
        ckpt = ctx.checkpoint
        return {
            "schema": ORACLE_SCHEMA,
            "model": ctx.options.model,
            "revision": ckpt.revision,
            "checkpoint": ckpt.fingerprint(),
            "prompt_set": prompt_set.header(),
            "chat_template": prompt_set.chat_template,
            "max_new_tokens": tokens,
            "top_k": top_k,
            "device": device,
            # the reference is whatever this transformers/torch computes
            "tools": tool_versions(),
        } | ({"images": "builtin-images"} if _image_oracle(ctx) else {}) | (
            {"clips": "builtin-clips"} if _audio_oracle(ctx) else {})

    def run(self, ctx: BuildContext) -> StepOutcome:
        prompt_set, tokens, top_k, device = self._settings(ctx)
        path = ctx.path(ORACLE_FILE)
        with ctx.progress(f"oracle: {len(prompt_set.prompts)} prompts × {tokens} tokens",
                          len(prompt_set.prompts) * tokens) as advance:
            oracle = run_oracle(ctx.checkpoint, prompt_set, tokens, top_k=top_k, progress=advance,
                                device=device, out=path)
        eos_hits = sum(p.first_eos is not None for p in oracle.prompts)
        outputs, note = [path], ""
        details = OracleDetails(oracle=ORACLE_FILE, prompt_set=prompt_set.header(), max_new_tokens=tokens,
                                top_k=top_k, min_margin=oracle.min_margin, prompts_reaching_eos=eos_hits)
        if _image_oracle(ctx):  # image prompts: HF's processor + model on the built-in pictures
            from ..vision.oracle import IMAGE_ORACLE_DIR, run_image_oracle

            image_dir = ctx.path(IMAGE_ORACLE_DIR)
            with ctx.progress("oracle: built-in image prompts", None) as advance:
                images = run_image_oracle(ctx.checkpoint.path, image_dir, max_new_tokens=tokens, top_k=top_k,
                                          progress=advance)
            outputs += sorted(p for p in image_dir.iterdir() if p.is_file())
            note = f"; {len(images.prompts)} image prompts, min margin {images.min_margin:.3g}"
            details.image_oracle, details.image_prompts = IMAGE_ORACLE_DIR, len(images.prompts)
            details.image_min_margin = images.min_margin
        if _audio_oracle(ctx):  # clip prompts: HF's feature extractor + model on the built-in clips
            from ..audio.oracle import AUDIO_ORACLE_DIR, run_audio_oracle

            audio_dir = ctx.path(AUDIO_ORACLE_DIR)
            with ctx.progress("oracle: built-in audio prompts", None) as advance:
                clips = run_audio_oracle(ctx.checkpoint.path, audio_dir, max_new_tokens=tokens, top_k=top_k,
                                         progress=advance)
            outputs += sorted(p for p in audio_dir.iterdir() if p.is_file())
            note += f"; {len(clips.prompts)} audio prompts, min margin {clips.min_margin:.3g}"
            details.audio_oracle, details.audio_prompts = AUDIO_ORACLE_DIR, len(clips.prompts)
            details.audio_min_margin = clips.min_margin
        return StepOutcome(
            outputs=outputs,
            details=details,
            message=f"{len(oracle.prompts)} prompts × {tokens} tokens, min top-1/top-2 margin {oracle.min_margin:.3g}"
                    + note,
        )


def _image_oracle(ctx) -> bool:
    """The built-in image prompts (E2B/E4B's vision asset). The 12B's multimodal bundle (gemma4_unified)
    is gated against HF by its own tests (tests/test_unified_bundle.py), not yet by a build step."""
    return bool(getattr(ctx.options, "vision", False)) and ctx.checkpoint.model_type != "gemma4_unified"


def _audio_oracle(ctx) -> bool:
    """The built-in clip prompts (E2B/E4B's audio asset; the 12B's audio is its own bundle's)."""
    return bool(getattr(ctx.options, "audio", False)) and ctx.checkpoint.model_type != "gemma4_unified"
