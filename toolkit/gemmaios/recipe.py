"""Mixed-bit quantization recipes: which bits, group, mode and AWQ scaling each weight gets.

A recipe is a YAML file (packaged ones in gemmaios/data/recipes/, or a user's path)::

    name: tiny-mixed-248
    description: ...
    default: {bits: 4, group: 32, mode: symmetric}
    tensors:                                  # first matching pattern wins (fnmatch on the name)
      - match: "layers.*.mlp.gate_proj"
        bits: 2
        group: 32
        mode: affine
      - match: "layers.*.self_attn.o_proj"
        bits: kept                            # stays fp16
      - match: lm_head
        bits: 8
      - match: "layers.*.self_attn.[qkv]_proj"
        bits: 4
        awq: true                             # activation-aware scales folded into input_layernorm
    awq: {alpha: search}                      # AWQ exponent (importance ** alpha): a number, or searched
    floors: {kl: 0.05, top1: 0.9}             # the gates' per-recipe floors (mean KL vs fp32, top-1)

Names are the checkpoint's without the `model.language_model.` prefix and `.weight`:
`layers.N.self_attn.{q,k,v,o}_proj`, `layers.N.mlp.{gate,up,down}_proj`, `layers.N.per_layer_*`,
`per_layer_model_projection`, and `lm_head` (the untied head copy; `kept` ties the head to the
fp16 embedding table, which the gather always reads exactly). `embed_tokens` is accepted as a
name for the head (Gemma 4 ties them). The saved asset stores 2-bit levels as Int2/UInt2, 3-bit
in 4-bit containers (Int4/UInt4), 4-bit as Int4/UInt4 and 8-bit as Int8/UInt8 (gemmaios.quantize).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GemmaiosError
from .quantize import BITS, MODES, STORED_BITS, storage_type, tensor_storage_bytes

RECIPES_DIR = Path(__file__).resolve().parent / "data" / "recipes"
KEPT = "kept"
HEAD = "lm_head"
# Tensors whose input comes straight from an RMSNorm with a weight: AWQ scales fold into it.
AWQ_FOLDABLE = {
    "self_attn.q_proj": "input_layernorm", "self_attn.k_proj": "input_layernorm",
    "self_attn.v_proj": "input_layernorm", "mlp.gate_proj": "pre_feedforward_layernorm",
    "mlp.up_proj": "pre_feedforward_layernorm",
}


class RecipeError(GemmaiosError):
    """A quantization recipe cannot be read or does not fit the checkpoint."""


@dataclass(frozen=True)
class TensorQuant:
    """One weight's storage: `bits` 2/3/4/8 or None (kept fp16), per `group` input columns."""

    bits: int | None = 4
    group: int = 32
    mode: str = "symmetric"
    awq: bool = False

    @property
    def kept(self) -> bool:
        return self.bits is None

    @property
    def label(self) -> str:
        if self.kept:
            return "fp16"
        return f"{'sym' if self.mode == 'symmetric' else 'aff'}{self.bits}g{self.group}" + ("+awq" if self.awq else "")

    @property
    def storage(self) -> str:
        return "Float16" if self.kept else storage_type(self.bits, self.mode)

    @property
    def stored_bits(self) -> int:
        return 16 if self.kept else STORED_BITS[self.bits]

    def storage_bytes(self, shape: tuple[int, int]) -> int:
        return tensor_storage_bytes(shape, self.bits, self.group, self.mode)

    def as_dict(self) -> dict:
        return {"bits": KEPT if self.kept else self.bits, "group": self.group, "mode": self.mode, "awq": self.awq}


@dataclass(frozen=True)
class Recipe:
    name: str
    default: TensorQuant
    rules: tuple[tuple[str, TensorQuant], ...] = ()
    description: str = ""
    awq_alpha: float | None = None  # None: searched per norm (gemmaios.calibrate)
    floors: dict = field(default_factory=dict)
    source: str = ""

    def for_tensor(self, name: str) -> TensorQuant:
        name = _canonical(name)
        for pattern, tq in self.rules:
            if fnmatch.fnmatchcase(name, _canonical(pattern)):
                return tq
        return self.default

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "default": self.default.as_dict(),
            "tensors": [{"match": p, **tq.as_dict()} for p, tq in self.rules],
            "awq": {"alpha": "search" if self.awq_alpha is None else self.awq_alpha},
            "floors": dict(self.floors),
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def uses_awq(self) -> bool:
        return self.default.awq or any(tq.awq for _, tq in self.rules)

    def plan(self, shapes: dict[str, tuple[int, int]]) -> dict[str, TensorQuant]:
        """Each named weight's storage, checked against its shape (RecipeError names the first misfit)."""
        out = {}
        for name, shape in shapes.items():
            tq = self.for_tensor(name)
            if not tq.kept and shape[1] % tq.group:
                raise RecipeError(
                    f"recipe {self.name!r}: {name} has {shape[1]} input columns, not a multiple of its group {tq.group}",
                    hint="give that tensor a group size dividing its input dimension (e.g. 32), or keep it")
            if tq.awq and _awq_norm(name) is None:
                raise RecipeError(
                    f"recipe {self.name!r}: {name} asks for AWQ scaling, but its input does not come from a norm "
                    "the scales could be folded into",
                    hint=f"AWQ applies to {', '.join(sorted(AWQ_FOLDABLE))}; drop `awq: true` for {name}")
            out[name] = tq
        return out


def _canonical(name: str) -> str:
    return HEAD if name in ("embed_tokens", HEAD) else name


def _awq_norm(name: str) -> str | None:
    for suffix, norm in AWQ_FOLDABLE.items():
        if name.endswith("." + suffix):
            return norm
    return None


def awq_norm_for(name: str) -> str | None:
    """The RMSNorm (in the same layer) whose weight absorbs `name`'s AWQ scales, or None."""
    return _awq_norm(name)


def _tensor_quant(entry: dict, base: TensorQuant, where: str) -> TensorQuant:
    if not isinstance(entry, dict):
        raise RecipeError(f"{where}: expected a mapping (bits, group, mode, awq), got {entry!r}",
                          hint="see gemmaios.recipe for the format")
    unknown = set(entry) - {"match", "bits", "group", "mode", "awq"}
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                          hint="a tensor rule takes match, bits, group, mode and awq")
    bits = entry.get("bits", KEPT if base.kept else base.bits)
    if bits in (KEPT, "fp16", "bf16", None):
        bits = None
    elif bits not in BITS:
        raise RecipeError(f"{where}: bits {bits!r} is not one of 2, 3, 4, 8 or kept",
                          hint="Core AI stores 2, 4 and 8-bit levels natively; 3-bit goes in 4-bit containers")
    group = entry.get("group", base.group)
    if not isinstance(group, int) or group < 8 or group & (group - 1):
        raise RecipeError(f"{where}: group {group!r} is not a power of two >= 8", hint="use 32, 64 or 128")
    mode = entry.get("mode", base.mode)
    if mode not in MODES:
        raise RecipeError(f"{where}: mode {mode!r} is not symmetric or affine", hint="use symmetric or affine")
    awq = bool(entry.get("awq", False))
    if awq and bits is None:
        raise RecipeError(f"{where}: awq on a kept tensor does nothing", hint="drop awq, or give it bits")
    return TensorQuant(bits, group, mode, awq)


def parse_recipe(data: dict, source: str = "") -> Recipe:
    where = source or "recipe"
    if not isinstance(data, dict) or not data.get("name"):
        raise RecipeError(f"{where}: a recipe needs a `name`", hint="see gemmaios.recipe for the format")
    unknown = set(data) - {"name", "description", "default", "tensors", "awq", "floors"}
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                          hint="a recipe takes name, description, default, tensors, awq and floors")
    default = _tensor_quant(data.get("default") or {}, TensorQuant(), f"{where}: default")
    rules = []
    for i, entry in enumerate(data.get("tensors") or []):
        if not isinstance(entry, dict) or not entry.get("match"):
            raise RecipeError(f"{where}: tensors[{i}] has no `match` pattern", hint="e.g. match: layers.*.mlp.down_proj")
        rules.append((str(entry["match"]), _tensor_quant(entry, default, f"{where}: tensors[{i}] ({entry['match']})")))
    floors = dict(data.get("floors") or {})
    bad = set(floors) - {"kl", "top1"}
    if bad:
        raise RecipeError(f"{where}: unknown floor(s) {', '.join(sorted(bad))}", hint="floors take kl and top1")
    alpha = (data.get("awq") or {}).get("alpha", "search")
    alpha = None if alpha == "search" else float(alpha)
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise RecipeError(f"{where}: awq alpha {alpha} is outside 0..1", hint="0.5 is usual; `search` tries 0..1")
    return Recipe(str(data["name"]), default, tuple(rules), str(data.get("description") or ""), alpha,
                  floors, source)


def packaged_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A packaged recipe by name (`gemmaios recipes` lists them) or a YAML file."""
    import yaml

    text = None
    path = Path(str(name_or_path)).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist",
                              hint=f"pass a YAML file, or a packaged recipe: {', '.join(packaged_recipes())}")
        text, source = path.read_text(), str(path)
    else:
        packaged = RECIPES_DIR / f"{name_or_path}.yaml"
        if not packaged.is_file():
            raise RecipeError(f"no packaged recipe named {name_or_path!r}",
                              hint=f"choose one of {', '.join(packaged_recipes())}, or pass a YAML file")
        text, source = packaged.read_text(), str(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {source} is not valid YAML ({exc})", hint="fix the file's syntax") from exc
    return parse_recipe(data, source)


def bytes_per_token(plan: dict[str, TensorQuant], shapes: dict[str, tuple[int, int]]) -> int:
    """Weight bytes a decoded token reads under `plan` (every planned matrix once; a dense model)."""
    return sum(plan[name].storage_bytes(shape) for name, shape in shapes.items())


def kl_top1(reference, candidate) -> dict:
    """Per-token KL(reference || candidate) of softmaxed logits [T, V] and top-1 agreement (numpy or torch)."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    ref_lp = ref - ref.max(-1, keepdims=True)
    ref_lp -= np.log(np.exp(ref_lp).sum(-1, keepdims=True))
    got_lp = got - got.max(-1, keepdims=True)
    got_lp -= np.log(np.exp(got_lp).sum(-1, keepdims=True))
    kl = (np.exp(ref_lp) * (ref_lp - got_lp)).sum(-1)
    agree = ref.argmax(-1) == got.argmax(-1)
    return {"kl_mean": float(kl.mean()), "kl_max": float(kl.max()), "top1": float(agree.mean()),
            "tokens": int(kl.shape[0])}


def judge_floors(recipe: Recipe, kl_mean: float, top1: float) -> tuple[bool, str]:
    """(passed, the rule as text) for a recipe's floors: mean KL <= floors.kl, top-1 >= floors.top1."""
    kl_floor, top1_floor = recipe.floors.get("kl"), recipe.floors.get("top1")
    rule = " and ".join(
        ([f"mean KL <= {kl_floor}"] if kl_floor is not None else []) + ([f"top-1 >= {top1_floor}"] if top1_floor is not None else [])
    ) or "no floors set (reported only)"
    passed = (kl_floor is None or kl_mean <= kl_floor) and (top1_floor is None or top1 >= top1_floor)
    return passed, rule


_LINEAR_SUFFIXES = ("_proj", "_projection", "per_layer_input_gate")


def checkpoint_linear_shapes(checkpoint) -> dict[str, tuple[int, int]]:
    """[out, in] of every weight a recipe can name, read from the safetensors headers (no weights loaded).

    `lm_head` is the embedding table's shape (Gemma 4 ties them; the head is an untied copy)."""
    from safetensors import safe_open

    prefix = checkpoint.weight_prefix
    shapes: dict[str, tuple[int, int]] = {}
    for path in checkpoint.weight_files:
        with safe_open(str(path), "pt") as handle:
            for key in handle.keys():
                if not key.startswith(prefix) or not key.endswith(".weight"):
                    continue
                name = key[len(prefix):-len(".weight")]
                shape = tuple(handle.get_slice(key).get_shape())
                if name == "embed_tokens":
                    shapes[HEAD] = shape
                elif len(shape) == 2 and name.rsplit(".", 1)[-1].endswith(_LINEAR_SUFFIXES) \
                        and "embed" not in name.rsplit(".", 1)[-1]:
                    shapes[name] = shape
    return shapes


def recipe_tag(recipe: Recipe) -> str:
    """The bundle name's quant part for a recipe build: `mixed_<name>` (letters, digits, _)."""
    import re

    return "mixed_" + re.sub(r"[^A-Za-z0-9]+", "_", recipe.name).strip("_").lower()


def plan_summary(plan: dict[str, TensorQuant], shapes: dict[str, tuple[int, int]]) -> dict:
    """Per storage label: tensors, weights and asset bytes; the totals and bits per weight."""
    groups: dict[str, dict] = {}
    for name, tq in plan.items():
        g = groups.setdefault(tq.label, {"storage": tq.storage, "stored_bits": tq.stored_bits, "tensors": 0,
                                         "weights": 0, "bytes": 0})
        g["tensors"] += 1
        g["weights"] += shapes[name][0] * shapes[name][1]
        g["bytes"] += tq.storage_bytes(shapes[name])
    weights = sum(g["weights"] for g in groups.values())
    total = sum(g["bytes"] for g in groups.values())
    return {"by_label": groups, "weights": weights, "bytes": total,
            "bits_per_weight": round(8 * total / weights, 3) if weights else None}


def registry_linear_shapes(spec, full_attention_every: int = 6) -> dict[str, tuple[int, int]]:
    """[out, in] of every weight a recipe names for a registry model (gemmaios.registry.ModelSpec),
    from its dimensions alone, by the same layer rules as roofline.estimate_weight_bytes."""
    h, n = spec.hidden_size, spec.num_hidden_layers
    if spec.num_key_value_heads is None or spec.intermediate_size is None:
        raise RecipeError(f"registry entry {spec.key!r} does not record its KV heads or MLP width",
                          hint="estimate from a converted bundle, or a checkpoint folder, instead")
    first_shared = n - spec.num_kv_shared_layers
    shapes: dict[str, tuple[int, int]] = {HEAD: (spec.vocab_size, h)}
    for i in range(n):
        full = (i + 1) % full_attention_every == 0 or i == n - 1
        hd = spec.global_head_dim if full else spec.head_dim
        kv = (spec.num_global_key_value_heads or spec.num_key_value_heads) if full else spec.num_key_value_heads
        p = f"layers.{i}."
        shapes[p + "self_attn.q_proj"] = (spec.num_attention_heads * hd, h)
        shapes[p + "self_attn.o_proj"] = (h, spec.num_attention_heads * hd)
        if i < first_shared:
            shapes[p + "self_attn.k_proj"] = (kv * hd, h)
            if not (full and spec.attention_k_eq_v):
                shapes[p + "self_attn.v_proj"] = (kv * hd, h)
        shapes[p + "mlp.gate_proj"] = (spec.intermediate_size, h)
        shapes[p + "mlp.up_proj"] = (spec.intermediate_size, h)
        shapes[p + "mlp.down_proj"] = (h, spec.intermediate_size)
        if spec.hidden_size_per_layer_input:
            shapes[p + "per_layer_input_gate"] = (spec.hidden_size_per_layer_input, h)
            shapes[p + "per_layer_projection"] = (h, spec.hidden_size_per_layer_input)
    if spec.hidden_size_per_layer_input:
        shapes["per_layer_model_projection"] = (n * spec.hidden_size_per_layer_input, h)
    return shapes


def recipe_estimate(recipe: Recipe, shapes: dict[str, tuple[int, int]], embedding_rows: int, hidden: int) -> dict:
    """Asset weight bytes and bytes per decoded token of `recipe` over `shapes` (lm_head included):
    the asset also stores the fp16 embedding table (the gather reads one row of it a token)."""
    plan = recipe.plan(shapes)
    summary = plan_summary(plan, shapes)
    table = embedding_rows * hidden * 2
    head_kept = plan[HEAD].kept
    per_token = summary["bytes"] + hidden * 2
    asset = summary["bytes"] + (0 if head_kept else table)
    return {"asset_weight_bytes": asset, "bytes_per_token": per_token,
            "bits_per_weight": summary["bits_per_weight"], "by_label": summary["by_label"]}
