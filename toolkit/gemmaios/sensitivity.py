"""Per-tensor sensitivity: KL divergence against the fp32 model when one weight alone is quantized.

For each weight a recipe can name (or those matching `only`) and each candidate storage (bits,
group, mode), the weight alone is replaced by its quantize-dequantize round trip and the
calibration prompts are run through the model: the mean KL(fp32 || candidate) over every prompt
position is that tensor's sensitivity at that width. A plan for a byte budget then starts every
tensor at the cheapest width and buys, by best KL saved per byte, wider storage until the budget
is spent (`propose_plan`), and is written out as a recipe.

Memory: the checkpoint is streamed one decoder layer at a time (`tensor_sensitivity`); what is
held is one layer in fp32 plus, per prompt, each variant's hidden rows and KV cache.
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


def plan_for_budget(report: SensitivityReport, budget_bits: float, candidates: list[TensorQuant], model_id: str,
                    write_recipe: Path | None = None) -> dict:
    """`sensitivity --budget-bits`: the plan (propose_plan) for that many bits per measured weight, as the
    command reports it; with `write_recipe`, also written there as a recipe YAML for `--recipe`."""
    import yaml

    weights = sum(o * i for o, i in report.shapes.values())
    plan, spent = propose_plan(report, int(budget_bits * weights / 8))
    result = {"budget_bits": budget_bits, "bytes": spent, "bits_per_weight": round(8 * spent / weights, 3),
              "tensors": {n: t.label for n, t in plan.items()}}
    if write_recipe is not None:
        recipe = plan_recipe(plan, write_recipe.stem, f"sensitivity plan for {model_id} at {budget_bits} bits/weight "
                             f"({', '.join(c.label for c in candidates)})",
                             default=max(candidates, key=lambda c: c.bits))
        write_recipe.write_text(yaml.safe_dump(recipe, sort_keys=False))
        result["recipe"] = str(write_recipe)
    return result


@dataclass
class _State:
    """One variant's walk through the layers for one prompt: hidden rows, per-layer inputs, caches."""

    x: torch.Tensor
    per_layer: torch.Tensor | None
    key: torch.Tensor
    value: torch.Tensor

    def clone(self) -> _State:
        return _State(self.x.clone(), self.per_layer, self.key.clone(), self.value.clone())


def tensor_sensitivity(
    checkpoint: Checkpoint,
    candidates: list[TensorQuant],
    *,
    only: str | None = None,
    prompts_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityReport:
    """KL vs fp32 of the model with one weight at a time quantized to each candidate, streaming the
    checkpoint one decoder layer at a time.

    Each prompt is walked through the layers as a whole (the module's chunk path: causal attention
    within the prompt) by the fp32 model and, beside it, by one variant per (weight, candidate): a
    variant starts as a copy of the fp32 walk at its weight's layer, runs that layer with the weight
    quantized, and continues through the later (fp32) layers. Only one layer's weights are held at a
    time; the memory is the variants' hidden rows and KV caches (per prompt), not the model. KL is
    taken at every prompt position against the fp32 walk's logits.
    """
    import dataclasses

    from .calibrate import calibration_prompts
    from .decode_model import DecoderLayer, DecodeSpec, Gemma4Decode, Linear, WeightReader, checkpoint_name
    from .parity import PleRows, small_model_threads

    started = time.time()
    ids, header = calibration_prompts(checkpoint, prompts_file)
    spec = DecodeSpec.from_text_config(checkpoint.text_config)
    shell = Gemma4Decode(checkpoint, quant="fp16", dtype=torch.float32, spec=dataclasses.replace(spec, layers=[]))
    shell.spec = spec  # embedding, per-layer projection, final norm and head; no decoder layer held
    if shell.lm_head is None:
        shell.lm_head = Linear(shell.embed.detach(), "fp16", torch.float32)  # the same storage, no copy
    ple = PleRows(checkpoint, spec, exact=True) if spec.ple_dim else None
    reader = WeightReader(checkpoint)

    def wanted(name: str) -> bool:
        return only is None or fnmatch.fnmatchcase(name, only)

    def fits(shape, cand: TensorQuant) -> bool:
        return shape[1] % cand.group == 0

    def variants_of(name: str, weight: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        return [(c.label, quantize_groups(weight, c.bits, c.group, c.mode).dequantize(torch.float32))
                for c in candidates if fits(weight.shape, c)]

    shapes: dict[str, tuple[int, int]] = {}
    layer_names: list[list[str]] = []  # the measured weights of each layer, in order
    for lay in spec.layers:
        layer = DecoderLayer(spec, lay, reader, "fp16", torch.float32)
        names = [checkpoint_name(f"layers.{lay.index}.{n}") for n, m in layer.named_modules() if isinstance(m, Linear)]
        for n, m in layer.named_modules():
            if isinstance(m, Linear):
                shapes[checkpoint_name(f"layers.{lay.index}.{n}")] = tuple(m.shape)
        layer_names.append([n for n in names if wanted(n)])
        del layer
        reader.close()
    top = [n for n in ("per_layer_model_projection", "lm_head") if wanted(n)
           and (n != "per_layer_model_projection" or spec.ple_dim)]
    shapes["lm_head"] = (spec.vocab_size, spec.hidden_size)
    if spec.ple_dim:
        shapes["per_layer_model_projection"] = tuple(shell.per_layer_model_projection.shape)
    measured = [n for names in layer_names for n in names] + top
    if not measured:
        raise SensitivityError(f"no weight matches --only {only!r}",
                               hint="patterns use checkpoint names, e.g. 'layers.*.mlp.*' or lm_head")
    total = sum(sum(1 for c in candidates if fits(shapes[n], c)) for n in measured)
    kl: dict[str, dict[str, float]] = {n: {} for n in measured}
    top1: dict[str, dict[str, float]] = {n: {} for n in measured}
    sums: dict[tuple[str, str], list] = {}
    done = 0
    tokens = 0
    with torch.no_grad(), small_model_threads(spec.hidden_size):
        for prompt in ids:
            rows = len(prompt)
            tokens += rows
            positions = torch.arange(rows, dtype=torch.int32).unsqueeze(0)
            x0 = shell.embed_rows(torch.tensor([prompt], dtype=torch.int32))
            token_ple = torch.cat([ple(t) for t in prompt], dim=1) if ple is not None else None
            key, value = shell.new_cache(rows + 1)
            base = _State(x0, shell.per_layer_inputs(x0, token_ple), key, value)
            variants: dict[tuple[str, str], _State] = {}
            if "per_layer_model_projection" in top:
                proj = shell.per_layer_model_projection
                original = proj.weight.data
                for label, w in variants_of("per_layer_model_projection", original):
                    proj.weight.data = w
                    state = base.clone()
                    state.per_layer = shell.per_layer_inputs(x0, token_ple)
                    variants["per_layer_model_projection", label] = state
                proj.weight.data = original
            for lay, names in zip(spec.layers, layer_names, strict=True):
                layer = DecoderLayer(spec, lay, reader, "fp16", torch.float32)
                reader.close()
                modules = {checkpoint_name(f"layers.{lay.index}.{n}"): m for n, m in layer.named_modules()
                           if isinstance(m, Linear)}

                def step(state: _State, layer=layer, index=lay.index, positions=positions, rows=rows) -> None:
                    per = state.per_layer[:, :, index, :] if state.per_layer is not None else None
                    state.x = layer.forward_chunk(state.x, per, positions, rows, state.key, state.value)

                for name in names:  # this layer's variants start from the fp32 walk's input here
                    lin = modules[name]
                    original = lin.weight.data
                    for label, w in variants_of(name, original):
                        lin.weight.data = w
                        state = base.clone()
                        step(state)
                        variants[name, label] = state
                    lin.weight.data = original
                for key_, state in variants.items():
                    if key_[0] not in names:
                        step(state)
                step(base)
                del layer
            ref = shell.logits(base.x)[0].numpy()
            finals = {k: shell.logits(s.x)[0].numpy() for k, s in variants.items()}
            if "lm_head" in top:
                head = shell.lm_head
                original = head.weight.data
                for label, w in variants_of("lm_head", original):
                    head.weight.data = w
                    finals["lm_head", label] = shell.logits(base.x)[0].numpy()
                head.weight.data = original
            for k, got in finals.items():
                stats = kl_top1(ref, got)
                sums.setdefault(k, []).append((stats["kl_mean"] * rows, stats["top1"] * rows))
                if len(sums[k]) == len(ids):
                    done += 1
                    if progress:
                        progress(done, total)
    for (name, label), parts in sums.items():
        kl[name][label] = sum(p[0] for p in parts) / tokens
        top1[name][label] = sum(p[1] for p in parts) / tokens
    for name in [n for n in kl if not kl[n]]:  # no candidate's group divides its input dimension
        del kl[name], top1[name]
    return SensitivityReport(candidates, {n: shapes[n] for n in kl}, kl, top1, tokens,
                             round(time.time() - started, 2), header)
