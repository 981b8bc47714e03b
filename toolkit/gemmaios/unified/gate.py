"""The multimodal gate: the 12B's four-function Mac bundle under Core AI's runtime against eager fp32.

Run by the convert step on the staged bundle of a `--target mac --vision/--audio` build of a
gemma4_unified checkpoint (`gates.multimodal_run` in metadata.json and the manifest's convert record):

  embedders     `embed_vision` / `embed_audio` on a built-in picture and tone against the eager fp32
                embedders read from the checkpoint (max |Δ| within FEATURE_ERROR_BOUND: the f16 runtime)
  prefill       `prefill_multimodal` on a text prompt (no multimodal rows) against `main`'s
                token-by-token walk: the same logits bit for bit
  prompts       the eight gate prompts (3 image, 3 audio, 2 mixed; gemmaios.unified.tinymodel.GATE_PROMPTS)
                greedy through embedders → prefill_multimodal → main, against HF's
                Gemma4UnifiedForConditionalGeneration in fp32: the bundle's tokens must be HF's greedy
                path (HF's argmax at every step, one teacher-forced HF forward per prompt), or leave
                it only where HF's own top-1/top-2 margin is a near-tie (the oracle's rule). Not run (and said so) on a
                random-weight tiny checkpoint (its f16 argmaxes are noise) or where the fp32 reference
                does not fit in memory.

Failure raises MultimodalGateFailed (the converter then leaves no bundle behind).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint
from ..errors import GemmaiosError
from ..unified_inputs import UnifiedSpec, frame_audio, prepare_image
from ..vision.images import BUILTIN_IMAGES
from .tinymodel import GATE_PROMPTS, MAX_NEW_TOKENS, GatePrompt, gate_inputs, hf_path_check
from .tones import BUILTIN_TONES

# The embedders run in fp16 under the runtime; eager fp32 is the reference. Measured on the tiny
# unified model: < 0.02 on rows of magnitude ~1 (tests/test_unified_bundle.py).
FEATURE_ERROR_BOUND = 0.05
GATE_VERSION = 1  # in the convert step's fingerprint: a change re-runs the gate on the next build


class MultimodalGateFailed(GemmaiosError):
    """The multimodal bundle's functions compute something other than eager fp32 / HF under Core AI's runtime."""


def _renderer(tokenizer):
    """The checkpoint's chat template around a question (markers kept as text for encode_prompt)."""
    if getattr(tokenizer, "chat_template", None):
        return lambda q: tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                       add_generation_prompt=True)
    from ..tinycorpus import chat_prompt

    return chat_prompt


def _prompt_reason(checkpoint: Checkpoint) -> str:
    """Why the token-exact prompts cannot run here ('' when they can)."""
    from ..convert.gates import gates_fit_in_memory
    from ..tiny import tiny_weights

    if tiny_weights(checkpoint.path) == "random":
        from ..tiny import TINY_UNIFIED_RETRAIN

        return ("not run: the checkpoint's weights are random (the tiny unified model untrained), so its greedy "
                f"tokens under the f16 runtime are noise; train it with `{TINY_UNIFIED_RETRAIN}`")
    fits, why = gates_fit_in_memory(checkpoint)
    return "" if fits else f"not run: {why.removeprefix('skipped: ')}"


def multimodal_gate(bundle_dir: Path, checkpoint: Checkpoint, *, prompts: tuple[GatePrompt, ...] = GATE_PROMPTS,
                    near_tie_margin: float | None = None, feature_error_bound: float = FEATURE_ERROR_BOUND,
                    progress: Callable[[int], None] | None = None) -> dict:
    import torch
    from transformers import AutoTokenizer

    from ..hostrun.multimodal import MultimodalRunner
    from ..hostrun.transcripts import coreai_version
    from ..oracle.scoring import DEFAULT_NEAR_TIE_MARGIN
    from ..unified_embedders import AudioEmbedder, VisionEmbedder

    rule = DEFAULT_NEAR_TIE_MARGIN if near_tie_margin is None else near_tie_margin
    started = time.perf_counter()
    spec = UnifiedSpec.from_checkpoint(checkpoint.path)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint.path))
    tokenize = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    render = _renderer(tokenizer)
    with MultimodalRunner(bundle_dir) as runner:
        name = runner.bundle.name
        # 1. the embedders against eager fp32
        errors = {}
        with torch.no_grad():
            if "embed_vision" in runner.functions:
                image = prepare_image(BUILTIN_IMAGES[0].pixels(), spec)
                want = VisionEmbedder(checkpoint, torch.float32)(torch.from_numpy(image.pixel_values)[None],
                                                                 torch.from_numpy(image.position_ids)[None].int())[0]
                errors["embed_vision"] = float(np.abs(runner.embed_image(image) - want.numpy()).max())
            if "embed_audio" in runner.functions:
                frames = frame_audio(BUILTIN_TONES[-1].samples(spec.audio_samples_per_token, spec.sampling_rate), spec)
                want = AudioEmbedder(checkpoint, torch.float32)(torch.from_numpy(frames)[None])[0]
                errors["embed_audio"] = float(np.abs(runner.embed_clip(frames) - want.numpy()).max())
        bad = {k: v for k, v in errors.items() if v > feature_error_bound}
        if bad:
            raise MultimodalGateFailed(
                f"{name}: {', '.join(f'{k} differs from eager fp32 by {v:.3g}' for k, v in bad.items())} "
                f"(bound {feature_error_bound}) under Core AI's runtime",
                hint="convert again; if it persists, the embedders' graph (gemmaios.unified_embedders) lowers wrong")
        # 2. prefill_multimodal on text against main's walk
        text_ids = tokenize(render("Describe the image and the sound."))
        walk = runner.generate(text_ids, 4)
        continuation = list(walk.generated_ids)[:4]
        via_prefill = np.stack(runner.generate_multimodal(spec, text_ids, forced=continuation).logits)
        via_main = runner.forced(text_ids, continuation)
        prefill_error = float(np.abs(via_prefill - via_main).max())
        if prefill_error != 0.0:
            raise MultimodalGateFailed(
                f"{name}: prefill_multimodal on a text prompt differs from main's walk by {prefill_error:.3g} "
                "(they share the decoder's weights and must agree bit for bit)",
                hint="convert again; the two functions were traced from one decode module (gemmaios.convert.multimodal)")
        if progress:
            progress(1)
        # 3. the gate prompts against HF fp32
        reason = _prompt_reason(checkpoint)
        verdicts = []
        if not reason:
            from transformers import Gemma4UnifiedForConditionalGeneration

            hf = Gemma4UnifiedForConditionalGeneration.from_pretrained(
                str(checkpoint.path), dtype=torch.float32, attn_implementation="eager").eval()
            for prompt in prompts:
                if (prompt.image and "embed_vision" not in runner.functions) or \
                        (prompt.tone and "embed_audio" not in runner.functions):
                    continue
                inputs = gate_inputs(prompt, spec, tokenize, render)
                got = runner.generate_multimodal(spec, inputs.ids, inputs.images, inputs.clips,
                                                 MAX_NEW_TOKENS).generated_ids
                check = hf_path_check(hf, spec, inputs, list(got))
                at = check.divergence
                margin = round(check.margins[at], 4) if at is not None else None
                verdict = "exact" if at is None else ("near-tie" if margin < rule else "diverged")
                verdicts.append({"prompt": prompt.name, "verdict": verdict, "divergence": at, "margin": margin,
                                 "hf_min_margin": round(min(check.margins), 4),
                                 "expected": check.hf_tokens[: (at + 1) if at is not None else None], "got": got,
                                 "tokens": len(inputs.ids), "context": len(inputs.ids) + len(got)})
                if progress:
                    progress(1)
            del hf
    exact = sum(v["verdict"] == "exact" for v in verdicts)
    ties = sum(v["verdict"] == "near-tie" for v in verdicts)
    parts = [", ".join(f"{k} max |Δ| {v:.3g} vs eager fp32" for k, v in errors.items()),
             "prefill_multimodal = main's walk bit for bit on text"]
    if verdicts:
        contexts = [v["context"] for v in verdicts]
        parts.insert(0, f"{exact}/{len(verdicts)} image/audio/mixed prompts exact vs HF fp32 under Core AI's runtime "
                        f"(contexts {min(contexts)}-{max(contexts)})" + (f", {ties} near-tie flip(s)" if ties else ""))
    else:
        parts.insert(0, f"prompts {reason}")
    summary = "; ".join(parts)
    report = {"status": "passed", "summary": summary, "embedder_errors": errors, "feature_error_bound": feature_error_bound,
              "prefill_vs_main": prefill_error, "prompts": verdicts, "exact": exact, "total": len(verdicts),
              "near_tie_margin": rule, "prompts_not_run": reason or None,
              "seconds": round(time.perf_counter() - started, 2), "runtime": f"coreai-core {coreai_version()}"}
    failed = [v for v in verdicts if v["verdict"] == "diverged"]
    if failed:
        first = failed[0]
        raise MultimodalGateFailed(
            f"{name}: prompt {first['prompt']!r} diverged at token {first['divergence']}: HF fp32 {first['expected']}, "
            f"bundle {first['got']} (HF margin {first['margin']}) — {summary}",
            hint="the embedders, the splice or the masks compute something other than HF (gemmaios.unified_inputs, "
                 "gemmaios.convert.multimodal); convert with --quant fp16 to tell quantization from a graph fault")
    return report


def build_multimodal_check(checkpoint: Checkpoint, progress: Callable[[int], None] | None = None):
    """The converter's `multimodal_check(staged_bundle_dir)` for this checkpoint."""
    return lambda bundle_dir: multimodal_gate(bundle_dir, checkpoint, progress=progress)
