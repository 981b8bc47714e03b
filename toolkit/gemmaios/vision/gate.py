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


class SoftTokenGateFailed(GemmaiosError):
    """An encoder bundle's prompts (pictures, audio clips) diverge from their oracle under Core AI's
    runtime. A subclass names what its prompts hold (`kind`), its encoder asset and the package that
    makes it; the messages and hints are formatted here, once."""

    kind = "soft-token"  # "image", "audio": what a prompt holds
    asset = "encoder"  # "vision", "audio": the encoder asset's name
    package = "gemmaios"  # where that encoder is made

    @classmethod
    def diverged(cls, bundle: str, prompt_id: str, divergence: int | None, expected, got, margin: float, summary: str,
                 *, quant: str | None = None) -> SoftTokenGateFailed:
        """A prompt's tokens left the oracle's at a clear decision. `quant`: the bundle's decoder
        quantization when the asset's features matched HF's (so the decoder, not the asset, flipped it)."""
        if quant not in (None, "fp16"):
            hint = (f"the {cls.asset} asset's features match HF's; the {quant} decoder changed a token the fp32 model "
                    f"decides by a margin of {margin:.3g}: a wider --quant (int8, fp16) shows whether that is all, and a "
                    "model retrained with more quantization-aware steps keeps the token")
        else:
            hint = (f"the {cls.asset} asset, the splice or the PLE rows of {cls.kind} tokens compute something other "
                    f"than HF; see {cls.package}")
        return cls(f"{bundle}: {cls.kind} prompt {prompt_id!r} diverged at token {divergence}: oracle {expected}, "
                   f"bundle {got} (oracle margin {margin:.3g}) — {summary}", hint=hint)

    @classmethod
    def features_differ(cls, bundle: str, error: float, bound: float, summary: str) -> SoftTokenGateFailed:
        return cls(f"{bundle}: the {cls.asset} asset's features differ from HF's by {error:.3g} (bound {bound}) — "
                   f"{summary}", hint="convert again and report it")


class ImageGateFailed(SoftTokenGateFailed):
    """The vision bundle's image prompts diverge from the image oracle under Core AI's runtime."""

    kind, asset, package = "image", "vision", "gemmaios.vision"


def image_gate(bundle_dir: Path, oracle_dir: Path, tables_dir: Path | None, *, near_tie_margin: float | None = None,
               feature_error_bound: float = FEATURE_ERROR_BOUND, progress: Callable | None = None) -> dict:
    oracle_dir = Path(oracle_dir)

    def encode(runner, prompt_id: str):
        record = load_image_record(oracle_dir, prompt_id)
        return runner.encode_image(record.prepared), record.image_features

    return soft_token_gate(bundle_dir, oracle_dir / IMAGE_ORACLE_FILE, tables_dir, encode, error=ImageGateFailed,
                           near_tie_margin=near_tie_margin, feature_error_bound=feature_error_bound, progress=progress)


def soft_token_gate(bundle_dir: Path, oracle_file: Path, tables_dir: Path | None, encode: Callable, *,
                    error: type[SoftTokenGateFailed], near_tie_margin: float | None = None,
                    feature_error_bound: float = FEATURE_ERROR_BOUND, progress: Callable | None = None) -> dict:
    """A bundle's encoder asset + `main` under Core AI's runtime against an encoder oracle (images,
    audio clips): per oracle prompt, `encode(runner, prompt_id)` → (the asset's output, HF's
    features), its real rows compared, then the prompt spliced and decoded greedily for the
    oracle's N tokens, scored with the oracle's rule (exact, or a flip at a near-tie). Failures
    raise `error` (its kind and asset name the prompts and the asset)."""
    from ..hostrun import BundleRunner
    from ..hostrun.transcripts import coreai_version
    from ..oracle.records import load_oracle
    from ..oracle.scoring import DEFAULT_NEAR_TIE_MARGIN, Generation, score_against_oracle

    kind, asset = error.kind, error.asset
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
        features_match = max(feature_errors) <= feature_error_bound
        raise error.diverged(name, first.prompt_id, first.divergence, first.expected, first.got, first.margin, summary,
                             quant=runner.bundle.facts.get("quant") if features_match else None)
    if max(feature_errors) > feature_error_bound:
        raise error.features_differ(name, max(feature_errors), feature_error_bound, summary)
    return report


def build_image_check(oracle_dir: Path, tables_dir: Path | None, progress: Callable | None = None):
    """The convert step's image gate on the staged bundle (see image_gate)."""

    def check(staged: Path) -> dict:
        return image_gate(staged, oracle_dir, tables_dir, progress=progress)

    return check
