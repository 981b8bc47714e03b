"""Per-tensor sensitivity: KL divergence against the fp32 model when one weight alone is quantized.

For each weight a recipe can name (or those matching `only`) and each candidate storage (bits,
group, mode), the weight alone is replaced by its quantize-dequantize round trip in the fp32 decode
module, and the calibration prompts are run teacher-forced along the fp32 model's greedy tokens:
the mean KL(fp32 || candidate) per token is that tensor's sensitivity at that width. A plan for a
byte budget then starts every tensor at the cheapest width and buys, by best KL saved per byte,
wider storage until the budget is spent (`propose_plan`), and is written out as a recipe.

Memory: the fp32 module is held whole (E4B: ~32 GB in fp32; run it where that fits). A layer-
streaming pass is not implemented yet.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import Checkpoint
from .errors import GemmaiosError
from .quantize import quantize_groups
from .recipe import KEPT, TensorQuant, kl_top1

SENSITIVITY_STEPS = 8  # teacher-forced tokens after each prompt


class SensitivityError(GemmaiosError):
    """The sensitivity run cannot be made as asked."""


@dataclass
class SensitivityReport:
    candidates: list[TensorQuant]
    shapes: dict[str, tuple[int, int]]
    kl: dict[str, dict[str, float]]  # tensor → candidate label → mean KL vs fp32
    top1: dict[str, dict[str, float]]
    tokens: int
    seconds: float
    prompt_set: dict = field(default_factory=dict)

    def ranking(self) -> list[tuple[str, float]]:
        """Tensors by their KL at the cheapest candidate, most sensitive first."""
        cheapest = min(self.candidates, key=lambda c: (c.bits or 16, -c.group)).label
        return sorted(((n, v[cheapest]) for n, v in self.kl.items() if cheapest in v), key=lambda item: -item[1])

    def as_dict(self) -> dict:
        return {"candidates": [c.label for c in self.candidates], "tokens": self.tokens, "seconds": self.seconds,
                "prompt_set": self.prompt_set,
                "tensors": {n: {"shape": list(self.shapes[n]), "kl": self.kl[n], "top1": self.top1[n]}
                            for n in self.kl},
                "ranking": [n for n, _ in self.ranking()]}


def parse_candidates(bits: str, group: int, mode: str) -> list[TensorQuant]:
    try:
        widths = sorted({int(b) for b in str(bits).split(",") if b.strip()})
    except ValueError:
        raise SensitivityError(f"--bits {bits!r} is not a comma-separated list of bit widths",
                               hint="e.g. --bits 2,4,8") from None
    if not widths or any(b not in (2, 3, 4, 8) for b in widths):
        raise SensitivityError(f"--bits {bits!r}: each width must be 2, 3, 4 or 8", hint="e.g. --bits 2,4,8")
    return [TensorQuant(b, group, mode) for b in widths]


def tensor_sensitivity(
    checkpoint: Checkpoint,
    candidates: list[TensorQuant],
    *,
    only: str | None = None,
    prompts_file: Path | None = None,
    steps: int = SENSITIVITY_STEPS,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityReport:
    """KL vs fp32 of the module with one weight at a time quantized to each candidate."""
    from .calibrate import CALIBRATION_CHUNKS, calibration_prompts
    from .decode_model import Gemma4Decode
    from .parity import PleRows, decode_steps

    started = time.time()
    ids, header = calibration_prompts(checkpoint, prompts_file)
    model = Gemma4Decode(checkpoint, quant="fp16", dtype=torch.float32).eval()
    table = PleRows(checkpoint, model.spec, exact=True) if model.spec.ple_dim else None
    linears = dict(model.checkpoint_linears())
    head = None
    if "lm_head" not in linears:  # the fp32 module ties the head to the table: a Linear view to perturb it
        from .decode_model import Linear

        head = Linear(model.embed.detach().clone(), "fp16", torch.float32)
        model.lm_head = head
        linears["lm_head"] = head
    names = [n for n in linears if only is None or fnmatch.fnmatchcase(n, only)]
    if not names:
        raise SensitivityError(f"no weight matches --only {only!r}",
                               hint="patterns use checkpoint names, e.g. 'layers.*.mlp.*' or lm_head")
    refs = [decode_steps(model, p, steps, table, chunks=CALIBRATION_CHUNKS) for p in ids]
    ref_logits = torch.cat([r[1] for r in refs]).numpy()
    kl: dict[str, dict[str, float]] = {}
    top1: dict[str, dict[str, float]] = {}
    total = len(names) * len(candidates)
    done = 0
    for name in names:
        lin = linears[name]
        original = lin.weight.data.clone()
        kl[name], top1[name] = {}, {}
        for cand in candidates:
            if original.shape[1] % cand.group:
                continue
            lin.weight.data = quantize_groups(original, cand.bits, cand.group, cand.mode).dequantize(torch.float32)
            got = torch.cat([decode_steps(model, p, steps, table, forced=r[0], chunks=CALIBRATION_CHUNKS)[1]
                             for p, r in zip(ids, refs, strict=True)]).numpy()
            stats = kl_top1(ref_logits, got)
            kl[name][cand.label], top1[name][cand.label] = stats["kl_mean"], stats["top1"]
            done += 1
            if progress:
                progress(done, total)
        lin.weight.data = original
        if not kl[name]:  # no candidate's group divides its input dimension: it stays fp16
            del kl[name], top1[name]
    shapes = {n: tuple(linears[n].shape) for n in kl}
    return SensitivityReport(candidates, shapes, kl, top1, int(ref_logits.shape[0]), round(time.time() - started, 2),
                             header)


def propose_plan(report: SensitivityReport, budget_bytes: int) -> tuple[dict[str, TensorQuant], int]:
    """Per tensor a candidate (or kept fp16 where the budget allows and no candidate fits), within the budget.

    Greedy: everything at its cheapest candidate, then upgrades by most KL saved per extra byte.
    The KLs of single-tensor changes are treated as additive (a first-order estimate)."""
    by_label = {c.label: c for c in report.candidates}
    options: dict[str, list[tuple[TensorQuant, float, int]]] = {}
    for name, kls in report.kl.items():
        shape = report.shapes[name]
        opts = sorted(((by_label[lbl], v, by_label[lbl].storage_bytes(shape)) for lbl, v in kls.items()),
                      key=lambda o: o[2])
        opts.append((TensorQuant(None), 0.0, shape[0] * shape[1] * 2))
        options[name] = opts
    choice = {name: 0 for name in options}
    spent = sum(options[n][0][2] for n in options)
    if spent > budget_bytes:
        raise SensitivityError(
            f"the budget of {budget_bytes / 1e6:.1f} MB is below the cheapest plan ({spent / 1e6:.1f} MB)",
            hint="raise --budget, or add a narrower width to --bits")
    while True:
        best = None
        for name, opts in options.items():
            cur = opts[choice[name]]
            for j in range(choice[name] + 1, len(opts)):
                extra = opts[j][2] - cur[2]
                if extra <= 0 or spent + extra > budget_bytes:
                    continue
                gain = (cur[1] - opts[j][1]) / extra
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, name, j, extra)
        if best is None:
            break
        _, name, j, extra = best
        choice[name] = j
        spent += extra
    return {n: options[n][choice[n]][0] for n in options}, spent


def plan_recipe(plan: dict[str, TensorQuant], name: str, description: str,
                default: TensorQuant | None = None) -> dict:
    """A recipe (gemmaios.recipe format) naming each tensor of the plan; `default` for the weights
    the run did not measure (e.g. outside --only): the widest candidate is the safe choice."""
    tensors = []
    for tensor, tq in sorted(plan.items()):
        entry = {"match": tensor, "bits": KEPT if tq.kept else tq.bits}
        if not tq.kept:
            entry.update(group=tq.group, mode=tq.mode)
        tensors.append(entry)
    recipe = {"name": name, "description": description, "tensors": tensors}
    if default is not None:
        recipe["default"] = {"bits": default.bits, "group": default.group, "mode": default.mode}
    return recipe
