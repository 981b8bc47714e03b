"""Our decode-only Gemma 4 text module for Apple's pipelined engine (one token per call).

Graph contract (one `main` function):

  inputs   input_ids [1,1] int32 (static), position_ids [1,P] int32 (P dynamic: the
           positions 0..P-1, the last one being this token's), and the per-layer
           embedding input: `ple_tokens [1,1,L,D]` fp16 (provider) or
           `ple_table [V,L*D]` int8 + `ple_scale [V]` f32 (tbl, gathered in-graph); with
           image input (`image_tokens` N > 0) also `image_embeds [N, hidden]` fp16 (static):
           ids >= V are spliced image soft tokens and take row id - V of it (unscaled, as HF
           scatters image features), the rest the scaled embedding row
  states   keyCache / valueCache [slots,1,Hc,S,Dc]: every layer that owns a KV cache,
           stacked, heads and head dims padded to the widest layer; S grows with P
  output   logits [1,1,V]

The token's K/V are written at row P-1 and each layer attends to rows 0..P-1 of its
slot; KV-shared layers read their source layer's slot. Sliding layers keep the linear
cache and mask keys outside the window. Weights are read tensor by tensor from the
checkpoint's safetensors (memory-mapped) and quantized as they are read, so a full
fp32 copy of the model never exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import kernels
from .checkpoint import Checkpoint
from .contract import PREFILL_MULTIMODAL_INPUTS
from .quantize import BLOCK, QuantizedWeight, level_dtype, quantize_groups
from .recipe import HEAD, Recipe, TensorQuant, awq_norm_for

KEY_CACHE, VALUE_CACHE = "keyCache", "valueCache"
SLIDING, FULL = "sliding_attention", "full_attention"


@dataclass
class LayerSpec:
    index: int
    layer_type: str
    head_dim: int
    kv_heads: int
    kv_slot: int  # the cache slot this layer reads (its own, or its source layer's)
    owns_kv: bool  # writes K/V (False for KV-shared layers)
    k_eq_v: bool  # values are the raw key projection (attention_k_eq_v on full layers)
    inv_freq: list[float] = field(repr=False, default_factory=list)


@dataclass
class DecodeSpec:
    """Everything the module's shape and math depend on, resolved from config.json."""

    vocab_size: int
    hidden_size: int
    num_heads: int
    sliding_window: int
    rms_eps: float
    final_logit_softcapping: float | None
    ple_dim: int  # hidden_size_per_layer_input (0: none)
    ple_vocab: int
    layers: list[LayerSpec]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def kv_layers(self) -> list[LayerSpec]:
        return [lay for lay in self.layers if lay.owns_kv]

    @property
    def cache_heads(self) -> int:
        return max(lay.kv_heads for lay in self.kv_layers)

    @property
    def cache_dim(self) -> int:
        return max(lay.head_dim for lay in self.kv_layers)

    def cache_shape(self, seq_len: int) -> tuple[int, int, int, int, int]:
        return (len(self.kv_layers), 1, self.cache_heads, seq_len, self.cache_dim)

    @classmethod
    def from_text_config(cls, text_config: dict) -> DecodeSpec:
        from transformers import Gemma4TextConfig

        cfg = Gemma4TextConfig.from_dict({k: v for k, v in text_config.items() if k != "model_type"})
        if getattr(cfg, "enable_moe_block", False):
            from .errors import CheckpointError

            raise CheckpointError(
                "this checkpoint uses Gemma 4 mixture-of-experts blocks, which the decode module does not implement",
                hint="convert a dense Gemma 4 model (E2B, E4B, 12B, 31B)",
            )
        modes = cfg.kv_sharing_modes
        first_shared = cfg.num_hidden_layers - (cfg.num_kv_shared_layers or 0)
        # The slot of each cache-owning layer, and for each layer type the layer whose
        # cache the KV-shared layers of that type read (HF: the last non-shared one).
        slot_of = {i: i for i in range(first_shared)}
        source_of_type = {}
        for i in range(first_shared):
            source_of_type[cfg.layer_types[i]] = i
        layers = []
        for i, layer_type in enumerate(cfg.layer_types):
            per_layer = cfg.per_layer_config[i]
            head_dim = per_layer.head_dim
            owns = modes[i] != "reuse"
            slot = slot_of[i] if owns else slot_of[source_of_type[layer_type]]
            source = layers[slot] if not owns else None
            kv_heads = per_layer.num_key_value_heads if owns else source.kv_heads
            layers.append(
                LayerSpec(
                    index=i,
                    layer_type=layer_type,
                    head_dim=head_dim,
                    kv_heads=kv_heads,
                    kv_slot=slot,
                    owns_kv=owns,
                    k_eq_v=bool(cfg.attention_k_eq_v) and layer_type != SLIDING,
                    inv_freq=rope_inv_freq(cfg.rope_parameters[layer_type], head_dim),
                )
            )
        return cls(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden_size,
            num_heads=cfg.num_attention_heads,
            sliding_window=cfg.sliding_window,
            rms_eps=cfg.rms_norm_eps,
            final_logit_softcapping=cfg.final_logit_softcapping,
            ple_dim=cfg.hidden_size_per_layer_input or 0,
            ple_vocab=cfg.vocab_size_per_layer_input,
            layers=layers,
        )


def rope_inv_freq(params: dict, head_dim: int) -> list[float]:
    """Inverse frequencies over head_dim/2 pairs.

    "default": every pair rotates. "proportional" (Gemma 4 global layers): only the first
    `partial_rotary_factor * head_dim / 2` pairs rotate, with exponents taken over the
    FULL head_dim; the remaining pairs get frequency 0 (cos 1, sin 0: unrotated).
    """
    base = float(params["rope_theta"])
    factor = float(params.get("factor", 1.0))
    rope_type = params.get("rope_type", "default")
    half = head_dim // 2
    if rope_type == "default":
        rotated = half
    elif rope_type == "proportional":
        rotated = int(params.get("partial_rotary_factor", 1.0) * head_dim // 2)
    else:
        raise ValueError(f"unsupported rope_type {rope_type!r}")
    exps = torch.arange(0, 2 * rotated, 2, dtype=torch.int64).to(torch.float32) / head_dim
    inv = 1.0 / (base**exps)
    inv = torch.cat([inv, torch.zeros(half - rotated)]) / factor
    return inv.tolist()


class WeightReader:
    """Reads one tensor at a time from the checkpoint's safetensors (memory-mapped)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self._handles: dict = {}

    def name(self, suffix: str) -> str:
        return self.checkpoint.weight_prefix + suffix

    def has(self, suffix: str) -> bool:
        return self.checkpoint.has_tensor(self.name(suffix))

    def get(self, suffix: str) -> torch.Tensor:
        from safetensors import safe_open

        name = self.name(suffix)
        path = self.checkpoint.tensor_file(name)
        handle = self._handles.get(path)
        if handle is None:
            handle = self._handles[path] = safe_open(str(path), framework="pt")
        return handle.get_tensor(name)

    def close(self) -> None:
        self._handles.clear()


class Linear(nn.Module):
    """y = x W^T with W float, or dequantized in-graph from per-group quantized levels.

    `quant`: "int4"/"int8" (symmetric per block of 32), "fp16"/"float" (kept), or a recipe's
    TensorQuant (2/3/4/8 bits, any group, symmetric or affine). The quantized form calls
    coreai-torch's `constexpr_blockwise_shift_scale` (affine: its minval mode, scale * q + min),
    which the converter keeps as packed Int2/Int4/Int8 (UInt* for affine) constants plus fp16
    scales in the asset; in eager torch the same op dequantizes, so the gates run the exact
    grid the asset stores.
    """

    def __init__(self, weight: torch.Tensor, quant, dtype: torch.dtype) -> None:
        super().__init__()
        self.shape = tuple(weight.shape)
        self.tensor_quant = None
        if isinstance(quant, str) and quant in ("int4", "int8"):
            quant = TensorQuant(4 if quant == "int4" else 8, BLOCK, "symmetric")
            label = "int4" if quant.bits == 4 else "int8"
        else:
            label = None
        if isinstance(quant, TensorQuant) and not quant.kept and weight.shape[1] % quant.group == 0:
            import coreai_torch._compression.custom_layers  # noqa: F401  (registers the op)

            qw = quantize_groups(weight, quant.bits, quant.group, quant.mode, scale_dtype=torch.float16)
            self.register_buffer("levels", qw.q)
            self.register_buffer("scale", qw.scale.to(dtype))
            self.register_buffer("offset", None if qw.offset is None else qw.offset.to(dtype))
            self.level_dtype = level_dtype(quant.bits, quant.mode)
            self.tensor_quant = quant
            self.quant = label or quant.label
        else:
            self.quant = "float"
            self.weight = nn.Parameter(weight.to(dtype), requires_grad=False)

    @property
    def quantized(self) -> bool:
        return self.quant != "float"

    @property
    def storage(self) -> str:
        """The asset's storage type of this weight's levels (Int2..UInt8), or Float16."""
        return self.tensor_quant.storage if self.quantized else "Float16"

    def quantized_weight(self) -> QuantizedWeight:
        tq = self.tensor_quant
        return QuantizedWeight(self.levels, self.scale, self.quant, group=tq.group, offset=self.offset, nbits=tq.bits)

    def dense_weight(self) -> torch.Tensor:
        if not self.quantized:
            return self.weight
        if self.offset is not None:
            return torch.ops.coreai.constexpr_blockwise_shift_scale(self.levels, self.scale, minval=self.offset,
                                                                   input_dtype=self.level_dtype)
        return torch.ops.coreai.constexpr_blockwise_shift_scale(self.levels, self.scale, input_dtype=self.level_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dense_weight())


class RMSNorm(nn.Module):
    """Gemma 4 RMSNorm: computed in fp32 (x * (mean(x^2)+eps)^-0.5 * w), cast back."""

    def __init__(self, weight: torch.Tensor | None, eps: float) -> None:
        super().__init__()
        self.eps = eps
        if weight is not None:
            self.weight = nn.Parameter(weight.to(torch.float32), requires_grad=False)
        else:
            self.weight = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.pow(xf.pow(2).mean(-1, keepdim=True) + self.eps, -0.5)
        if self.weight is not None:
            out = out * self.weight
        return out.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class DecoderLayer(nn.Module):
    # Flash-decode kernel variant ("simple" | "g8") for this full layer's attention, or None
    # for the stock matmul/softmax attention; set by use_flash_decode().
    flash_decode: str | None = None

    def __init__(self, spec: DecodeSpec, layer: LayerSpec, reader: WeightReader, quant: str, dtype: torch.dtype,
                 recipe: Recipe | None = None, awq: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.spec, self.layer = spec, layer
        p = f"layers.{layer.index}."
        eps = spec.rms_eps
        awq = awq or {}

        def lin(name: str) -> Linear:
            weight = reader.get(p + name + ".weight")
            norm_name = awq_norm_for(p + name)
            if norm_name is not None and p + norm_name in awq:
                # AWQ fold: the norm's output feeds this weight's columns; W·diag(s), norm / s.
                weight = weight.to(torch.float32) * awq[p + norm_name].to(torch.float32)
            return Linear(weight, recipe.for_tensor(p + name) if recipe is not None else quant, dtype)

        def norm(name: str) -> RMSNorm:
            weight = reader.get(p + name + ".weight")
            if p + name in awq:
                weight = weight.to(torch.float32) / awq[p + name].to(torch.float32)
            return RMSNorm(weight, eps)

        self.q_proj = lin("self_attn.q_proj")
        self.q_norm = norm("self_attn.q_norm")
        if layer.owns_kv:
            self.k_proj = lin("self_attn.k_proj")
            self.k_norm = norm("self_attn.k_norm")
            self.v_proj = None if layer.k_eq_v else lin("self_attn.v_proj")
            self.v_norm = RMSNorm(None, eps)
        self.o_proj = lin("self_attn.o_proj")
        self.gate_proj, self.up_proj, self.down_proj = lin("mlp.gate_proj"), lin("mlp.up_proj"), lin("mlp.down_proj")
        self.input_layernorm = norm("input_layernorm")
        self.post_attention_layernorm = norm("post_attention_layernorm")
        self.pre_feedforward_layernorm = norm("pre_feedforward_layernorm")
        self.post_feedforward_layernorm = norm("post_feedforward_layernorm")
        if spec.ple_dim:
            self.per_layer_input_gate = lin("per_layer_input_gate")
            self.per_layer_projection = lin("per_layer_projection")
            self.post_per_layer_input_norm = norm("post_per_layer_input_norm")
        scalar = reader.get(p + "layer_scalar") if reader.has(p + "layer_scalar") else torch.ones(1)
        self.register_buffer("layer_scalar", scalar.to(dtype))
        self.register_buffer("inv_freq", torch.tensor(layer.inv_freq, dtype=torch.float32))

    def rope(self, position: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position.to(torch.float32).reshape(1, 1, 1) * self.inv_freq  # [1,1,d/2]
        emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(2)  # [1,1,1,d]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def rope_rows(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """`rope` for C positions [1,C]: cos/sin [1,C,1,d], the same elementwise math per row."""
        rows = positions.shape[1]
        freqs = positions.to(torch.float32).reshape(1, rows, 1) * self.inv_freq  # [1,C,d/2]
        emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(2)  # [1,C,1,d]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, x, per_layer_input, position, length, key_cache, value_cache):
        spec, lay = self.spec, self.layer
        d, kvh, heads = lay.head_dim, lay.kv_heads, spec.num_heads
        residual = x
        h = self.input_layernorm(x)
        cos, sin = self.rope(position, h.dtype)
        q = self.q_proj(h).view(1, 1, heads, d)
        q = rotate(self.q_norm(q), cos, sin)  # [1,1,H,d]
        if lay.owns_kv:
            k_raw = self.k_proj(h).view(1, 1, kvh, d)
            v = k_raw if self.v_proj is None else self.v_proj(h).view(1, 1, kvh, d)
            k = rotate(self.k_norm(k_raw), cos, sin).transpose(1, 2)  # [1,kvh,1,d]
            v = self.v_norm(v).transpose(1, 2)
            pad = (0, spec.cache_dim - d, 0, 0, 0, spec.cache_heads - kvh)  # dims, seq, heads
            slot = lay.kv_slot
            key_cache[slot : slot + 1, :, :, length - 1 : length, :] = F.pad(k, pad).unsqueeze(0)
            value_cache[slot : slot + 1, :, :, length - 1 : length, :] = F.pad(v, pad).unsqueeze(0)
        keys = key_cache[lay.kv_slot, :, :kvh, :length, :d]  # [1,kvh,P,d]
        values = value_cache[lay.kv_slot, :, :kvh, :length, :d]
        if self.flash_decode is not None:
            # The query before the head transpose: the kernel must not read a transposed view.
            attn = kernels.full_attention_sdpa(q, keys, values, kernel=self.flash_decode)  # [1,H,1,d]
            attn = attn.reshape(1, 1, heads * d)
        else:
            groups = heads // kvh
            qg = q.transpose(1, 2).reshape(1, kvh, groups, d)
            scores = torch.matmul(qg, keys.transpose(-1, -2)).float()  # [1,kvh,G,P]; Gemma 4 scaling is 1
            if lay.layer_type == SLIDING:
                key_pos = torch.arange(length, dtype=torch.int32)
                outside = key_pos <= (length - 1 - spec.sliding_window)
                scores = scores.masked_fill(outside, float("-inf"))
            probs = torch.softmax(scores, dim=-1).to(values.dtype)
            attn = torch.matmul(probs, values).reshape(1, 1, heads * d)
        return self._finish(residual, attn, per_layer_input)

    def _finish(self, residual, attn, per_layer_input):
        """o_proj, the MLP and the per-layer input: row-wise, shared by the decode and chunk paths."""
        h = self.post_attention_layernorm(self.o_proj(attn))
        x = residual + h

        residual = x
        h = self.pre_feedforward_layernorm(x)
        h = self.down_proj(F.gelu(self.gate_proj(h), approximate="tanh") * self.up_proj(h))
        x = residual + self.post_feedforward_layernorm(h)

        if self.spec.ple_dim:
            residual = x
            h = F.gelu(self.per_layer_input_gate(x), approximate="tanh") * per_layer_input
            h = self.post_per_layer_input_norm(self.per_layer_projection(h))
            x = residual + h
        return x * self.layer_scalar

    def forward_chunk(self, x, per_layer_input, positions, length, key_cache, value_cache, attend=None):
        """C consecutive tokens at positions length-C..length-1 (a prefill chunk).

        Writes C K/V rows and attends causally inside the chunk, each query row with its own
        sliding-window mask. Per row this is the decode path's math (same ops, same order), so
        a chunk leaves the caches and last-row logits that C decode calls would.

        `attend` (bool [1,1,C,length], True = attend), when given, replaces the built-in
        causal/sliding mask entirely (`prefill_multimodal`: the caller's masks carry the window
        and the bidirectional image blocks).
        """
        spec, lay = self.spec, self.layer
        d, kvh, heads = lay.head_dim, lay.kv_heads, spec.num_heads
        rows = x.shape[1]
        residual = x
        h = self.input_layernorm(x)
        cos, sin = self.rope_rows(positions, h.dtype)
        q = self.q_proj(h).view(1, rows, heads, d)
        q = rotate(self.q_norm(q), cos, sin)  # [1,C,H,d]
        if lay.owns_kv:
            k_raw = self.k_proj(h).view(1, rows, kvh, d)
            v = k_raw if self.v_proj is None else self.v_proj(h).view(1, rows, kvh, d)
            k = rotate(self.k_norm(k_raw), cos, sin).transpose(1, 2)  # [1,kvh,C,d]
            v = self.v_norm(v).transpose(1, 2)
            pad = (0, spec.cache_dim - d, 0, 0, 0, spec.cache_heads - kvh)
            slot = lay.kv_slot
            key_cache[slot : slot + 1, :, :, length - rows : length, :] = F.pad(k, pad).unsqueeze(0)
            value_cache[slot : slot + 1, :, :, length - rows : length, :] = F.pad(v, pad).unsqueeze(0)
        keys = key_cache[lay.kv_slot, :, :kvh, :length, :d]  # [1,kvh,P,d]
        values = value_cache[lay.kv_slot, :, :kvh, :length, :d]
        groups = heads // kvh
        # Head h = kv*G + g as in the decode path; the G*C query rows of a KV head in one matmul.
        qg = q.transpose(1, 2).reshape(1, kvh, groups * rows, d)
        scores = torch.matmul(qg, keys.transpose(-1, -2)).float()  # [1,kvh,G*C,P]
        scores = scores.reshape(1, kvh, groups, rows, length)
        if attend is not None:
            hidden = torch.logical_not(attend.reshape(1, 1, 1, rows, length))
        else:
            key_pos = torch.arange(length, dtype=torch.int32)
            query_pos = torch.arange(rows, dtype=torch.int32).unsqueeze(1) + (length - rows)  # [C,1]
            hidden = key_pos > query_pos  # the chunk's own future
            if lay.layer_type == SLIDING:
                hidden = hidden | (key_pos <= query_pos - spec.sliding_window)
        scores = scores.masked_fill(hidden, float("-inf")).reshape(1, kvh, groups * rows, length)
        probs = torch.softmax(scores, dim=-1).to(values.dtype)
        attn = torch.matmul(probs, values)  # [1,kvh,G*C,d]
        attn = attn.reshape(1, kvh, groups, rows, d).permute(0, 3, 1, 2, 4).reshape(1, rows, heads * d)
        return self._finish(residual, attn, per_layer_input)


_CHECKPOINT_GROUP = {"q_proj": "self_attn.", "k_proj": "self_attn.", "v_proj": "self_attn.", "o_proj": "self_attn.",
                     "gate_proj": "mlp.", "up_proj": "mlp.", "down_proj": "mlp."}


def checkpoint_name(module_name: str) -> str:
    """A Linear's module name (`layers.3.q_proj`) as the checkpoint names its weight (`layers.3.self_attn.q_proj`)."""
    parts = module_name.split(".")
    if len(parts) == 3 and parts[0] == "layers" and parts[2] in _CHECKPOINT_GROUP:
        return f"layers.{parts[1]}.{_CHECKPOINT_GROUP[parts[2]]}{parts[2]}"
    return module_name


class Gemma4Decode(nn.Module):
    """The decode graph; `forward` signature depends on the PLE mode (see module doc)."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        quant: str = "fp16",
        dtype: torch.dtype = torch.float16,
        ple: str = "provider",
        spec: DecodeSpec | None = None,
        progress: Callable[[int, int], None] | None = None,
        head_quant: str | None = None,
        image_tokens: int = 0,
        recipe: Recipe | None = None,
        awq: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if ple not in ("provider", "tbl"):
            raise ValueError(f"ple must be provider or tbl, not {ple!r}")
        self.spec = spec or DecodeSpec.from_text_config(checkpoint.text_config)
        # N rows of the static `image_embeds` input (0: a text-only graph, no such input).
        self.image_tokens = int(image_tokens)
        self.quant, self.dtype, self.ple = quant, dtype, ple
        spec = self.spec
        reader = WeightReader(checkpoint)
        # The embedding gather stays exact (`dtype`): it reads one row per token. The lm_head
        # reads the whole [V, H] table every token, so at int4/int8 it is an untied copy
        # quantized like the linears (the embedding is 37% of E4B's int4 per-token bytes
        # when the head stays fp16); at fp16 the one table serves both (tied).
        table = reader.get("embed_tokens.weight")
        self.embed = nn.Parameter(table.to(dtype), requires_grad=False)
        head_quant = head_quant or quant
        self.lm_head = None
        # `recipe`: a mixed-bit plan (gemmaios.recipe) deciding each weight's storage instead of `quant`;
        # `awq`: AWQ scales per norm ("layers.N.input_layernorm" → [hidden]), folded exactly in fp32.
        self.recipe = recipe
        if recipe is not None:
            head = recipe.for_tensor(HEAD)
            if not head.kept and spec.hidden_size % head.group == 0:
                self.lm_head = Linear(table, head, dtype)
                head_quant = self.lm_head.quant
        elif head_quant in ("int4", "int8") and spec.hidden_size % BLOCK == 0:
            self.lm_head = Linear(table, head_quant, dtype)
        self.head_quant = head_quant if self.lm_head is not None else "fp16"
        del table
        self.embed_scale = float(torch.tensor(spec.hidden_size**0.5, dtype=dtype))
        if spec.ple_dim:
            self.per_layer_model_projection = Linear(
                reader.get("per_layer_model_projection.weight"),
                recipe.for_tensor("per_layer_model_projection") if recipe is not None else quant, dtype)
            self.per_layer_projection_norm = RMSNorm(reader.get("per_layer_projection_norm.weight"), spec.rms_eps)
        self.layers = nn.ModuleList()
        reader.close()
        for lay in spec.layers:
            self.layers.append(DecoderLayer(spec, lay, reader, quant, dtype, recipe, awq))
            # Unmap the shard after each layer: pages read through a live mapping count
            # as resident memory for as long as the mapping exists.
            reader.close()
            if progress:
                progress(lay.index + 1, spec.num_layers)
        self.norm = RMSNorm(reader.get("norm.weight"), spec.rms_eps)
        reader.close()

    # -- names the converter and the bundle metadata use -------------------------------
    def input_names(self) -> tuple[str, ...]:
        base = ("input_ids", "position_ids")
        if self.spec.ple_dim:
            base += ("ple_tokens",) if self.ple == "provider" else ("ple_table", "ple_scale")
        return base + (("image_embeds",) if getattr(self, "image_tokens", 0) else ())

    @staticmethod
    def state_names() -> tuple[str, str]:
        return (KEY_CACHE, VALUE_CACHE)

    @staticmethod
    def output_names() -> tuple[str]:
        return ("logits",)

    def linears(self) -> list[tuple[str, Linear]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, Linear)]

    def checkpoint_linears(self) -> list[tuple[str, Linear]]:
        """linears() named as the checkpoint (and recipes) name them: `layers.N.self_attn.q_proj`, `lm_head`."""
        return [(checkpoint_name(n), m) for n, m in self.linears()]

    # -- the graph ---------------------------------------------------------------------
    def forward(self, input_ids, position_ids, *rest):
        """`input_ids [1,1]`: one decode step (`main`); `[1,C]`: a prefill chunk (`prefill_C`).

        The path is chosen by the static shape at trace time, so `main`'s graph is the
        one-token graph alone.
        """
        if input_ids.shape[1] != 1:
            return self.forward_chunk(input_ids, position_ids, *rest)
        image_embeds, rest = self._split_image(rest)
        token_ple, key_cache, value_cache = self._token_ple(input_ids, rest)
        length = position_ids.shape[1]
        position = position_ids[:, -1:]  # [1,1]: a slice, not a select, so it lowers with dynamic P

        x = self._embed(input_ids, image_embeds)
        per_layer = self._per_layer_inputs(x, token_ple)
        for i, layer in enumerate(self.layers):
            layer_input = per_layer[:, :, i, :] if per_layer is not None else None
            x = layer(x, layer_input, position, length, key_cache, value_cache)
        return self._logits(x)

    def forward_chunk(self, input_ids, position_ids, *rest):
        """C prompt tokens at positions P-C..P-1 (P = position_ids.shape[1]); logits of the last row only.

        Every cache-owning layer runs all C rows (their K/V rows are what the chunk is for);
        the KV-shared layers after the last owner write nothing, so only the last row, whose
        logits are returned, goes through them, on the decode path.
        """
        spec = self.spec
        rows = input_ids.shape[1]
        image_embeds, rest = self._split_image(rest)
        token_ple, key_cache, value_cache = self._token_ple(input_ids, rest)
        length = position_ids.shape[1]
        positions = position_ids[:, length - rows :]  # [1,C]

        x = self._embed(input_ids, image_embeds)
        per_layer = self._per_layer_inputs(x, token_ple)
        last_owner = max(lay.index for lay in spec.kv_layers)
        for i, layer in enumerate(self.layers):
            if i <= last_owner:
                layer_input = per_layer[:, :, i, :] if per_layer is not None else None
                x = layer.forward_chunk(x, layer_input, positions, length, key_cache, value_cache)
                continue
            if i == last_owner + 1:
                x = x[:, rows - 1 :, :]
                per_layer = per_layer[:, rows - 1 :] if per_layer is not None else None
            layer_input = per_layer[:, :, i, :] if per_layer is not None else None
            x = layer(x, layer_input, positions[:, rows - 1 :], length, key_cache, value_cache)
        return self._logits(x[:, x.shape[1] - 1 :, :])

    def forward_multimodal(self, input_ids, mm_embeds, mm_mask, position_ids, mask_sliding, mask_global,
                           key_cache, value_cache):
        """`prefill_multimodal`: S prompt rows at positions P-S..P-1 with caller-built masks; last-row logits.

        input_ids [1,S] (multimodal rows hold any valid id: they are overwritten), mm_embeds [1,S,hidden]
        (the embedders' rows where mm_mask is set, unscaled as HF scatters them), mm_mask [1,S] bool,
        mask_sliding / mask_global [1,1,S,P] bool (True = attend) for the sliding and full layers.
        Every layer runs all S rows (a bidirectional block's rows need each other)."""
        rows = input_ids.shape[1]
        length = position_ids.shape[1]
        positions = position_ids[:, length - rows :]
        text = torch.index_select(self.embed, 0, input_ids.reshape(rows)).reshape(1, rows, -1) * self.embed_scale
        x = torch.where(mm_mask.reshape(1, rows, 1), mm_embeds.to(self.dtype), text)
        for layer in self.layers:
            attend = mask_sliding if layer.layer.layer_type == SLIDING else mask_global
            x = layer.forward_chunk(x, None, positions, length, key_cache, value_cache, attend=attend)
        return self._logits(x[:, rows - 1 :, :])

    def _split_image(self, rest):
        """(image_embeds or None, the other inputs): image_embeds sits just before the two caches."""
        if not self.image_tokens:
            return None, rest
        return rest[-3], tuple(rest[:-3]) + tuple(rest[-2:])

    def _embed(self, input_ids, image_embeds):
        """[1,S,hidden]: the scaled embedding row per id; with image input, ids >= V take row id - V
        of `image_embeds` (the id-space splice; HF puts the projected image features there unscaled)."""
        spec = self.spec
        rows = input_ids.shape[1]
        ids = input_ids.reshape(rows)
        if image_embeds is None:
            x = torch.index_select(self.embed, 0, ids).reshape(1, rows, spec.hidden_size)
            return x * self.embed_scale
        is_image = ids >= spec.vocab_size
        text_ids = torch.where(is_image, torch.zeros_like(ids), ids)
        image_rows = torch.clamp(ids - spec.vocab_size, 0, self.image_tokens - 1)
        text = torch.index_select(self.embed, 0, text_ids) * self.embed_scale
        image = torch.index_select(image_embeds.to(self.dtype), 0, image_rows)
        return torch.where(is_image.unsqueeze(1), image, text).reshape(1, rows, spec.hidden_size)

    def _token_ple(self, input_ids, rest):
        """(the per-layer embedding input [1,S,L,D] or None, keyCache, valueCache) from the graph inputs."""
        spec = self.spec
        if not spec.ple_dim:
            key_cache, value_cache = rest
            return None, key_cache, value_cache
        rows = input_ids.shape[1]
        if self.ple == "provider":
            ple_tokens, key_cache, value_cache = rest
            token_ple = ple_tokens.to(self.dtype)
        else:
            ple_table, ple_scale, key_cache, value_cache = rest
            ids = input_ids.reshape(rows)
            table_rows = torch.index_select(ple_table, 0, ids).to(torch.float32)
            scale = torch.index_select(ple_scale, 0, ids).reshape(rows, 1)
            token_ple = (table_rows * scale * math.sqrt(spec.ple_dim)).to(self.dtype)
        return token_ple.reshape(1, rows, spec.num_layers, spec.ple_dim), key_cache, value_cache

    def _per_layer_inputs(self, x, token_ple):
        spec = self.spec
        if not spec.ple_dim:
            return None
        rows = x.shape[1]
        proj = self.per_layer_model_projection(x) * (spec.hidden_size**-0.5)
        proj = self.per_layer_projection_norm(proj.reshape(1, rows, spec.num_layers, spec.ple_dim))
        return (proj + token_ple) * (2.0**-0.5)

    def _logits(self, x):
        spec = self.spec
        x = self.norm(x)
        logits = F.linear(x, self.embed) if self.lm_head is None else self.lm_head(x)
        if spec.final_logit_softcapping:
            cap = spec.final_logit_softcapping
            logits = (torch.tanh(logits.float() / cap) * cap).to(self.dtype)
        return logits

    # -- eager helpers (parity gates, the streamed sensitivity walk) ---------------------
    def embed_rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[1,S,hidden] scaled embedding rows of text ids."""
        return self._embed(input_ids, None)

    def per_layer_inputs(self, x: torch.Tensor, token_ple: torch.Tensor | None) -> torch.Tensor | None:
        """[1,S,L,D] per-layer inputs from the embedded rows and the PLE rows (None without PLE)."""
        return self._per_layer_inputs(x, token_ple)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, head and softcap of hidden rows."""
        return self._logits(x)

    def new_cache(self, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = self.spec.cache_shape(capacity)
        return torch.zeros(shape, dtype=self.dtype), torch.zeros(shape, dtype=self.dtype)


def use_flash_decode(model: Gemma4Decode, variant: str | None) -> list[int]:
    """Route the full layers' decode attention through the flash-decode kernel (None: stock).

    Returns the indices of the layers that now use it.
    """
    if variant is not None and variant not in kernels.KERNEL_SPECS:
        raise kernels.KernelInputError(
            f"unknown flash-decode kernel {variant!r}", hint=f"use one of {sorted(kernels.KERNEL_SPECS)}"
        )
    switched = []
    for layer in model.layers:
        on = variant is not None and layer.layer.layer_type == FULL
        layer.flash_decode = variant if on else None
        if on:
            switched.append(layer.layer.index)
    return switched


# torch.export needs a fixed, named signature per graph variant; these wrap the module.
class ProviderGraph(nn.Module):
    def __init__(self, decode: Gemma4Decode) -> None:
        super().__init__()
        self.decode = decode

    def forward(self, input_ids, position_ids, ple_tokens, keyCache, valueCache):  # noqa: N803
        return self.decode(input_ids, position_ids, ple_tokens, keyCache, valueCache)


class TableGraph(nn.Module):
    def __init__(self, decode: Gemma4Decode) -> None:
        super().__init__()
        self.decode = decode

    def forward(self, input_ids, position_ids, ple_table, ple_scale, keyCache, valueCache):  # noqa: N803
        return self.decode(input_ids, position_ids, ple_table, ple_scale, keyCache, valueCache)


class PlainGraph(nn.Module):
    def __init__(self, decode: Gemma4Decode) -> None:
        super().__init__()
        self.decode = decode

    def forward(self, input_ids, position_ids, keyCache, valueCache):  # noqa: N803
        return self.decode(input_ids, position_ids, keyCache, valueCache)


class ProviderImageGraph(nn.Module):
    def __init__(self, decode: Gemma4Decode) -> None:
        super().__init__()
        self.decode = decode

    def forward(self, input_ids, position_ids, ple_tokens, image_embeds, keyCache, valueCache):  # noqa: N803
        return self.decode(input_ids, position_ids, ple_tokens, image_embeds, keyCache, valueCache)


class PlainImageGraph(nn.Module):
    def __init__(self, decode: Gemma4Decode) -> None:
        super().__init__()
        self.decode = decode

    def forward(self, input_ids, position_ids, image_embeds, keyCache, valueCache):  # noqa: N803
        return self.decode(input_ids, position_ids, image_embeds, keyCache, valueCache)


class MultimodalPrefillGraph(nn.Module):
    """`prefill_multimodal` (gemma4_unified, no per-layer embeddings): the same decode module's weights."""

    def __init__(self, decode: Gemma4Decode) -> None:
        super().__init__()
        self.decode = decode

    def forward(self, input_ids, mm_embeds, mm_mask, position_ids, mask_sliding, mask_global,  # noqa: PLR0913
                keyCache, valueCache):  # noqa: N803
        return self.decode.forward_multimodal(input_ids, mm_embeds, mm_mask, position_ids, mask_sliding, mask_global,
                                              keyCache, valueCache)


MULTIMODAL_PREFILL_INPUTS = PREFILL_MULTIMODAL_INPUTS  # the contract's (the app binds these names)


def export_graph(decode: Gemma4Decode) -> nn.Module:
    if decode.image_tokens:
        if decode.spec.ple_dim and decode.ple != "provider":
            raise ValueError("image input needs the provider PLE mode")
        return ProviderImageGraph(decode) if decode.spec.ple_dim else PlainImageGraph(decode)
    if not decode.spec.ple_dim:
        return PlainGraph(decode)
    return ProviderGraph(decode) if decode.ple == "provider" else TableGraph(decode)
