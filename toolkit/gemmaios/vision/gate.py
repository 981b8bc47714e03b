"""The image gate: a vision bundle's two assets under Core AI's runtime against the image oracle
(`soft_token_gate`, which the audio gate shares).

Per oracle picture: the saved preprocessed tensors go through the vision asset (its real rows
compared with HF's image features), then the expanded prompt, spliced, through `main` with
that `image_embeds`, greedy for the oracle's N tokens, scored with the oracle's rule (exact,
or a flip at a near-tie).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import GemmaiosError
from .oracle import IMAGE_ORACLE_FILE, load_image_record

# The vision asset runs in fp16 on a CPU runtime that accumulates in fp16; HF's features are fp32.
# Measured on the tiny model: 1.4e-3 on features of magnitude ~0.3 (see tests/test_vision.py).
FEATURE_ERROR_BOUND = 0.05


class ImageGateFailed(GemmaiosError):
    """The vision bundle's image prompts diverge from the image oracle under Core AI's runtime."""


def image_gate(bundle_dir: Path, oracle_dir: Path, tables_dir: Path | None, *, near_tie_margin: float | None = None,
               feature_error_bound: float = FEATURE_ERROR_BOUND, progress: Callable | None = None) -> dict:
    oracle_dir = Path(oracle_dir)

    def encode(runner, prompt_id: str):
        record = load_image_record(oracle_dir, prompt_id)
        return runner.encode_image(record.prepared), record.image_features

    return soft_token_gate(bundle_dir, oracle_dir / IMAGE_ORACLE_FILE, tables_dir, encode, kind="image",
                           error=ImageGateFailed, near_tie_margin=near_tie_margin,
                           feature_error_bound=feature_error_bound, progress=progress,
                           hint="the vision asset, the splice or the PLE rows of image tokens compute something "
                                "other than HF; see gemmaios.vision")


def soft_token_gate(bundle_dir: Path, oracle_file: Path, tables_dir: Path | None, encode: Callable, *, kind: str,
                    error: type[GemmaiosError], hint: str, near_tie_margin: float | None = None,
                    feature_error_bound: float = FEATURE_ERROR_BOUND, progress: Callable | None = None) -> dict:
    """A bundle's encoder asset + `main` under Core AI's runtime against an encoder oracle (images,
    audio clips): per oracle prompt, `encode(runner, prompt_id)` → (the asset's output, HF's
    features), its real rows compared, then the prompt spliced and decoded greedily for the
    oracle's N tokens, scored with the oracle's rule (exact, or a flip at a near-tie)."""
    from ..hostrun import BundleRunner
    from ..hostrun.transcripts import coreai_version
    from ..oracle.records import load_oracle
    from ..oracle.scoring import DEFAULT_NEAR_TIE_MARGIN, Generation, score_against_oracle

    oracle = load_oracle(Path(oracle_file))
    rule = DEFAULT_NEAR_TIE_MARGIN if near_tie_margin is None else near_tie_margin
    started = time.perf_counter()
    generations, feature_errors, lengths = [], [], []
    with BundleRunner(bundle_dir, tables_dir) as runner:
        name = runner.bundle.name
        for index, prompt in enumerate(oracle.prompts):
            encoded, features = encode(runner, prompt.id)
            n = encoded.num_soft_tokens
            feature_errors.append(float(np.max(np.abs(encoded.embeds[:n].astype(np.float32) - features))))
            gen = runner.generate(prompt.prompt_ids, oracle.max_new_tokens, image=encoded)
            lengths.append(len(prompt.prompt_ids) + oracle.max_new_tokens)
            generations.append(Generation(tuple(prompt.prompt_ids), tuple(gen.generated_ids), index=index,
                                          prompt_id=prompt.id, where=f"{kind} prompt {prompt.id}"))
            if progress:
                progress(1)
    score = score_against_oracle(generations, oracle, near_tie_margin=rule)
    margins = [m for p in oracle.prompts for m in p.margins if math.isfinite(m)]
    asset = "vision" if kind == "image" else kind
    summary = (f"{score.exact}/{score.total} {kind} prompts exact vs the fp32 HF oracle under Core AI's runtime "
               f"({oracle.max_new_tokens} tokens, contexts {min(lengths)}-{max(lengths)})")
    if score.near_ties:
        summary += f", {len(score.near_ties)} near-tie flip(s)"
    summary += f"; {asset} asset max |Δ| vs HF features {max(feature_errors):.3g}"
    report = {
        "status": "passed", "summary": summary, "exact": score.exact, "total": score.total,
        "verdicts": [{"prompt": s.prompt_id, "verdict": s.verdict, "divergence": s.divergence, "margin": s.margin,
                      "expected": s.expected, "got": s.got, "feature_error": feature_errors[i]}
                     for i, s in enumerate(score.prompts)],
        "max_feature_error": max(feature_errors), "feature_error_bound": feature_error_bound,
        "oracle_min_margin": min(margins), "oracle_median_margin": float(np.median(margins)),
        "contexts": [min(lengths), max(lengths)], "seconds": round(time.perf_counter() - started, 2),
        "runtime": f"coreai-core {coreai_version()}",
    }
    if score.failures:
        first = score.failures[0]
        if max(feature_errors) <= feature_error_bound and runner.bundle.facts.get("quant") not in (None, "fp16"):
            # the asset agrees with HF: the quantized decoder flipped a token the model decides by little
            hint = (f"the {asset} asset's features match HF's; the {runner.bundle.facts['quant']} decoder changed a "
                    f"token the fp32 model decides by a margin of {first.margin:.3g}: a wider --quant (int8, fp16) shows whether "
                    "that is all, and a model retrained with more quantization-aware steps keeps the token")
        raise error(f"{name}: {kind} prompt {first.prompt_id!r} diverged at token {first.divergence}: oracle "
                    f"{first.expected}, bundle {first.got} (oracle margin {first.margin:.3g}) — {summary}", hint=hint)
    if max(feature_errors) > feature_error_bound:
        raise error(f"{name}: the {asset} asset's features differ from HF's by {max(feature_errors):.3g} "
                    f"(bound {feature_error_bound}) — {summary}", hint="convert again and report it")
    return report


def build_image_check(oracle_dir: Path, tables_dir: Path | None, progress: Callable | None = None):
    """The convert step's image gate on the staged bundle (see image_gate)."""

    def check(staged: Path) -> dict:
        return image_gate(staged, oracle_dir, tables_dir, progress=progress)

    return check
