"""Calibration: per-channel activation importance on a prompt set, and AWQ scales from it.

The importance of a weight's input channel j is the mean |x_j| of the activations it sees while
the fp32 decode module (gemmaios.decode_model) runs the calibration prompts: the packaged chat
prompts (the oracle's built-in set) or a user's prompts file (gemmaios.oracle.prompts format).

AWQ (activation-aware weight quantization, Lin et al. 2023) scales input channel j of a weight by
s_j = importance_j ** alpha (normalised to geometric mean 1), so the important channels span more
of the quantization grid; alpha is searched per norm on a grid (0 = no scaling, so the search never
does worse than plain quantization on the calibration activations) unless the recipe fixes it, by
the output error of all the norm's consumers quantized as the recipe says. It divides the
preceding RMSNorm's weight by s_j: the norm's output
then carries x_j / s_j, and W·diag(s)·(x / s) = W·x. The fold is exact up to fp32 rounding, costs
nothing at inference, and only applies where a norm with a weight feeds the projection
(q/k/v ← input_layernorm, gate/up ← pre_feedforward_layernorm; recipe.AWQ_FOLDABLE). o_proj and
down_proj read attention/MLP products, not a norm: they cannot be corrected this way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import Checkpoint
from .recipe import Recipe, awq_norm_for

CALIBRATION_NEW_TOKENS = 8  # greedy tokens decoded after each prompt (their activations count too)
CALIBRATION_CHUNKS = (16, 8)
SAMPLE_ROWS = 256  # activation rows kept per AWQ-foldable linear for the alpha search
ALPHA_GRID = tuple(i / 10 for i in range(11))


@dataclass
class Calibration:
    """Mean |activation| per input channel of each linear (checkpoint names), over `tokens` tokens."""

    importance: dict[str, torch.Tensor]
    tokens: int
    prompt_set: dict = field(default_factory=dict)
    samples: dict[str, torch.Tensor] = field(default_factory=dict)  # [rows, in] inputs of foldable linears

    def norm_importance(self, norm: str) -> torch.Tensor | None:
        """The importance of a norm's output channels (what all its consumers see; the first one's)."""
        layer = norm.rsplit(".", 1)[0]
        for name, imp in self.importance.items():
            if name.startswith(layer + ".") and awq_norm_for(name) == norm.rsplit(".", 1)[1]:
                return imp
        return None


def calibration_prompts(checkpoint: Checkpoint, prompts_file: Path | None = None) -> tuple[list[list[int]], dict]:
    """Token ids of the calibration prompts (chat-rendered as the app feeds them) and the set's header."""
    from transformers import AutoTokenizer

    from .oracle.prompts import load_prompt_set
    from .oracle.reference import encode_prompt

    prompt_set = load_prompt_set(prompts_file)
    tok = AutoTokenizer.from_pretrained(str(checkpoint.path))
    ids = [encode_prompt(tok, p, prompt_set.chat_template, where=str(checkpoint.path)) for p in prompt_set.prompts]
    return ids, prompt_set.header()


def calibrate(checkpoint: Checkpoint, prompts_file: Path | None = None, *, model=None,
              new_tokens: int = CALIBRATION_NEW_TOKENS) -> Calibration:
    """Run the fp32 decode module over the calibration prompts and record each linear's input importance."""
    from .decode_model import Gemma4Decode
    from .parity import PleRows, decode_steps

    ids, header = calibration_prompts(checkpoint, prompts_file)
    if model is None:
        model = Gemma4Decode(checkpoint, quant="fp16", dtype=torch.float32).eval()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    rows: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name, lin in model.checkpoint_linears():
        def hook(_module, args, _out, name=name):
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])
            sums[name] = sums.get(name, 0) + x.abs().sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
            if awq_norm_for(name) is not None:
                rows.setdefault(name, []).append(x)
        hooks.append(lin.register_forward_hook(hook))
    table = PleRows(checkpoint, model.spec, exact=True) if model.spec.ple_dim else None
    try:
        for prompt in ids:
            # the prompt in chunks of 16/8 rows through the module's chunk path (same per-row math)
            decode_steps(model, prompt, new_tokens, table, chunks=CALIBRATION_CHUNKS)
    finally:
        for h in hooks:
            h.remove()
    tokens = sum(len(p) + new_tokens - 1 for p in ids)
    samples = {}
    for name, xs in rows.items():
        x = torch.cat(xs)
        step = max(1, x.shape[0] // SAMPLE_ROWS)
        samples[name] = x[::step][:SAMPLE_ROWS].clone()
    return Calibration({n: sums[n] / counts[n] for n in sums}, tokens, header, samples)


def awq_scales(recipe: Recipe, calibration: Calibration, checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """Per foldable norm (`layers.N.input_layernorm`), the AWQ scale vector for the recipe's awq tensors.

    A norm gets scales when any of its consumers asks for AWQ; every consumer of that norm is then
    scaled (the fold must stay exact), whatever its own bits. alpha: the recipe's, or searched on
    ALPHA_GRID by the consumers' quantized output error on the calibration samples.
    """
    from .decode_model import WeightReader

    consumers: dict[str, list[str]] = {}
    for name in calibration.importance:
        norm = awq_norm_for(name)
        if norm is not None:
            consumers.setdefault(name.rsplit(".", 2)[0] + "." + norm, []).append(name)
    reader = WeightReader(checkpoint)
    scales: dict[str, torch.Tensor] = {}
    try:
        for key, names in consumers.items():
            if not any(recipe.for_tensor(n).awq for n in names):
                continue
            imp = calibration.importance[names[0]].clamp_min(1e-6)
            grid = ALPHA_GRID if recipe.awq_alpha is None else (recipe.awq_alpha,)
            weights = {n: reader.get(n + ".weight").to(torch.float32) for n in names}
            x = calibration.samples.get(names[0])
            best, best_err = None, None
            for alpha in grid:
                s = imp.pow(alpha)
                s = s / torch.exp(torch.log(s).mean())  # geometric mean 1
                err = 0.0 if x is not None else None
                if x is not None and len(grid) > 1:
                    err = sum(_output_error(weights[n], s, x, recipe.for_tensor(n)) for n in names)
                if best is None or (err is not None and err < best_err):
                    best, best_err = s, err
            scales[key] = best.to(torch.float32)
            reader.close()
    finally:
        reader.close()
    return scales


def _output_error(weight: torch.Tensor, s: torch.Tensor, x: torch.Tensor, tq) -> float:
    """||quant(W·diag(s))·(x/s) − W·x||² on the samples (0 for a kept tensor)."""
    from .quantize import quantize_groups

    if tq.kept:
        return 0.0
    wq = quantize_groups(weight * s, tq.bits, tq.group, tq.mode).dequantize(torch.float32)
    return float(((x / s) @ wq.T - x @ weight.T).pow(2).sum())


def awq_record(scales: dict[str, torch.Tensor], calibration: Calibration, alpha: float | None) -> dict:
    """What the manifest records of an AWQ fold: which norms, the spread of the scales, the calibration set."""
    digest = hashlib.sha256()
    for k in sorted(scales):
        digest.update(k.encode())
        digest.update(scales[k].numpy().tobytes())
    spread = [float(s.max() / s.min()) for s in scales.values()]
    return {"norms": len(scales), "alpha": "search" if alpha is None else alpha, "scales_sha256": digest.hexdigest()[:16],
            "max_scale_ratio": round(max(spread), 3) if spread else None,
            "calibration": {**calibration.prompt_set, "tokens": calibration.tokens}}
