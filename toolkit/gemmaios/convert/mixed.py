"""Mixed-bit recipe builds: the plan checked against the checkpoint, AWQ calibration, and what the metadata records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import Checkpoint
from ..decode_model import Gemma4Decode
from ..recipe import HEAD, Recipe, TensorQuant, checkpoint_linear_shapes, plan_summary
from .options import Progress


@dataclass
class PreparedRecipe:
    recipe: Recipe
    awq: dict[str, torch.Tensor] | None
    awq_facts: dict | None
    seconds: float


def prepare_recipe(checkpoint: Checkpoint, recipe: Recipe, prompts_file: Path | None = None,
                   progress: Progress | None = None) -> PreparedRecipe:
    """Check the recipe fits every weight (RecipeError names the first misfit); calibrate AWQ scales if asked."""
    started = time.time()
    recipe.plan(checkpoint_linear_shapes(checkpoint))
    awq = facts = None
    if recipe.uses_awq:
        from ..calibrate import awq_record, awq_scales, calibrate

        if progress:
            progress("calibrate (AWQ scales)", 0, 1)
        calibration = calibrate(checkpoint, prompts_file)
        awq = awq_scales(recipe, calibration, checkpoint)
        facts = awq_record(awq, calibration, recipe.awq_alpha)
    return PreparedRecipe(recipe, awq, facts, round(time.time() - started, 2))


def recipe_scheme(recipe: Recipe) -> str:
    return (f"mixed-bit recipe {recipe.name!r}: per-tensor bits, groups and symmetric/affine grids "
            "(metadata gemmaios.recipe)")


def recipe_metadata(recipe: Recipe, model: Gemma4Decode, prepared: PreparedRecipe | None) -> dict:
    """The recipe, each stored weight's label, and the bytes a decoded token reads under it.

    Bytes per token: every linear (levels + scales + offsets, kept ones at fp16), the head (an
    untied copy, or the tied fp16 table), and one fp16 embedding row; norms and small buffers aside.
    """
    plan, shapes = {}, {}
    for name, lin in model.checkpoint_linears():
        plan[name] = lin.tensor_quant if lin.quantized else TensorQuant(None)
        shapes[name] = lin.shape
    summary = plan_summary(plan, shapes)
    vocab, hidden = model.spec.vocab_size, model.spec.hidden_size
    tied_head = model.lm_head is None
    head_bytes = vocab * hidden * 2 if tied_head else plan[HEAD].storage_bytes(shapes[HEAD])
    per_token = summary["bytes"] + (head_bytes if tied_head else 0) + hidden * 2
    return {
        **recipe.as_dict(),
        "fingerprint": recipe.fingerprint(),
        "tensors": {name: tq.label for name, tq in plan.items()},
        "summary": summary,
        "head": {"tied": tied_head, "label": "fp16" if tied_head else plan[HEAD].label, "bytes": head_bytes},
        "bytes_per_token": per_token,
        "bytes_per_token_rule": ("every quantized linear's levels + fp16 scales (+ affine offsets), kept linears at "
                                 "fp16, the head (untied copy, or the whole tied fp16 table), one fp16 embedding row"),
        "awq": prepared.awq_facts if prepared else None,
    }
