"""The decode bandwidth model: bytes streamed per generated token, and the tok/s it allows.

Decoding one token at batch 1 reads every weight once, the KV cache up to the current
position and one row of the per-layer-embedding table; at these sizes that traffic, not
arithmetic, bounds the rate. `roofline_tok_s = bandwidth / bytes_per_decoded_token`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import GemmaiosError
from .registry import ModelSpec

GB = 1e9


def size_text(n: float) -> str:
    """A byte count in the unit that shows it (1 GB = 1e9 bytes): a tiny bundle's weights read `494.47 KB`,
    not `0.000 GB`."""
    for unit, size in (("GB", GB), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"
QUANT_BLOCK = 32
# Storage bits per weight: int4/int8 levels per block of 32 plus one fp16 scale per block.
BITS_PER_WEIGHT = {"int4": 4 + 16 / QUANT_BLOCK, "int8": 8 + 16 / QUANT_BLOCK, "fp16": 16.0}


class RooflineError(GemmaiosError):
    """The bandwidth model lacks a fact it needs (a model dimension or the device bandwidth)."""


def bytes_per_decoded_token(weight_bytes: int, kv_bytes_per_position: int, context: float,
                            ple_row_bytes: int = 0) -> float:
    """Bytes read from memory to decode one token at `context` cached positions.

        bytes/token = W + KV_pos × ctx + PLE_row

    W       every weight in the decode graph, once: the lm_head's whole table (the fp16
            embedding when tied, else its untied int4/int8 copy) plus, when untied, the one
            fp16 embedding row the input gather reads;
    KV_pos  K and V bytes per cached position over all cache-owning layers
            = kv_layers × 2 × kv_heads × head_dim × 2 bytes (fp16), see `kv_bytes_per_position`;
    ctx     positions in the cache when the token is decoded (prompt + generated so far);
    PLE_row one row of the per-layer-embedding table (L×D int8 + its f32 scale), gathered
            per token by the app (provider mode) or in-graph (tbl mode).
    """
    return weight_bytes + kv_bytes_per_position * context + ple_row_bytes


def roofline_tok_s(bytes_per_token: float, bandwidth_gbps: float) -> float:
    """Upper bound on decode tok/s: memory bandwidth (GB/s, 1 GB = 1e9 B) / bytes per token."""
    if bytes_per_token <= 0:
        raise RooflineError(f"bytes per token must be positive, got {bytes_per_token}")
    return bandwidth_gbps * GB / bytes_per_token


def kv_bytes_per_position(kv_layers: int, kv_heads: int, head_dim: int, dtype_bytes: int = 2) -> int:
    """K + V bytes one cached position costs: kv_layers × 2 × kv_heads × head_dim × dtype_bytes.

    Our bundles stack the cache-owning layers into one KV pair padded to the widest head
    count and head dim, so pass those padded values (E4B: 24 slots, 2 heads, 512).
    """
    return kv_layers * 2 * kv_heads * head_dim * dtype_bytes


def ple_row_bytes(num_layers: int, ple_dim: int) -> int:
    """One int8 row of the per-layer table (L×D bytes) plus its f32 scale; 0 without PLE."""
    return num_layers * ple_dim + 4 if ple_dim else 0


@dataclass
class WeightEstimate:
    """Weight bytes of a decode bundle computed from a model's dimensions."""

    model: str
    quant: str
    head_quant: str
    total_bytes: int  # streamed per decoded token
    bundle_bytes: int = 0  # stored in the asset (adds the untied head's fp16 embedding table)
    parts: dict[str, int] = field(default_factory=dict)  # component → bytes
    params: dict[str, int] = field(default_factory=dict)  # component → parameter count
    kv_bytes_per_position: int = 0
    ple_row_bytes: int = 0
    assumptions: list[str] = field(default_factory=list)


def _layer_is_full(i: int, n_layers: int, every: int) -> bool:
    return (i + 1) % every == 0 or i == n_layers - 1


def estimate_weight_bytes(spec: ModelSpec, quant: str = "int4", head_quant: str | None = None,
                          full_attention_every: int = 6) -> WeightEstimate:
    """Weight bytes of our Gemma 4 decode graph for `spec`, from its dimensions alone.

    Linears (q/k/v/o, gate/up/down, the per-layer-input gate and projection, and the global
    per-layer model projection) are stored at `quant` (int4 per-block-32 + fp16 scales =
    4.5 bits/weight). The lm_head at `head_quant` (default: `quant`, as convert does): fp16
    is the embedding table itself (tied, read whole per token); int4/int8 is an untied copy
    read whole per token, while the fp16 embedding (stored too) gives one row. KV-shared layers
    have no k/v projections (the QAT checkpoints prune them); full-attention layers (every
    `full_attention_every`-th and the last) use `global_head_dim` and, where set,
    `num_global_key_value_heads` and `attention_k_eq_v` (no v_proj). Norm weights (a few KB
    per layer) are left out.
    """
    for name in ("num_key_value_heads", "intermediate_size"):
        if getattr(spec, name) is None:
            raise RooflineError(f"registry entry {spec.key!r} does not record {name}",
                                hint="compute the bandwidth model from a converted bundle instead (pass --bundle)")
    head_quant = head_quant or quant
    if quant not in BITS_PER_WEIGHT or head_quant not in BITS_PER_WEIGHT:
        raise RooflineError(f"unknown quantization {quant!r}/{head_quant!r}",
                            hint=f"one of {', '.join(BITS_PER_WEIGHT)}")
    h, n, q_heads = spec.hidden_size, spec.num_hidden_layers, spec.num_attention_heads
    first_shared = n - spec.num_kv_shared_layers
    params = {"attention": 0, "mlp": 0, "per_layer_input": 0, "per_layer_model_projection": 0}
    for i in range(n):
        full = _layer_is_full(i, n, full_attention_every)
        hd = spec.global_head_dim if full else spec.head_dim
        kv = (spec.num_global_key_value_heads or spec.num_key_value_heads) if full else spec.num_key_value_heads
        attn = 2 * h * q_heads * hd  # q_proj + o_proj
        if i < first_shared:
            attn += h * kv * hd * (1 if (full and spec.attention_k_eq_v) else 2)  # k_proj (+ v_proj)
        params["attention"] += attn
        params["mlp"] += 3 * h * spec.intermediate_size
        if spec.has_ple:
            params["per_layer_input"] += 2 * h * spec.hidden_size_per_layer_input
    if spec.has_ple:
        params["per_layer_model_projection"] = h * n * spec.hidden_size_per_layer_input
    linear_params = sum(params.values())
    table = spec.vocab_size * h
    parts = {k: round(v * BITS_PER_WEIGHT[quant] / 8) for k, v in params.items()}
    params["embedding_lm_head"] = table
    tied = head_quant == "fp16"
    if tied:
        parts["embedding_lm_head"] = table * 2
        bundle_bytes = sum(parts.values())
        head_line = "tied embedding/lm_head at fp16 (16 bits/weight), read whole per token"
    else:
        params["lm_head"], params["embedding_row"] = table, h
        parts["lm_head"] = round(table * BITS_PER_WEIGHT[head_quant] / 8)
        parts["embedding_row"] = h * 2
        bundle_bytes = sum(parts.values()) - parts["embedding_row"] + table * 2
        head_line = (f"untied lm_head at {head_quant} ({BITS_PER_WEIGHT[head_quant]:g} bits/weight), read whole "
                     "per token; the fp16 embedding table is stored but only one row is gathered per token")
    padded_heads = max(spec.num_key_value_heads, spec.num_global_key_value_heads or 0)
    padded_dim = max(spec.head_dim, spec.global_head_dim)
    return WeightEstimate(
        model=spec.key,
        quant=quant,
        head_quant=head_quant,
        total_bytes=sum(parts.values()),
        bundle_bytes=bundle_bytes,
        parts=parts,
        params={**params, "linear_total": linear_params},
        kv_bytes_per_position=kv_bytes_per_position(spec.kv_slots, padded_heads, padded_dim),
        ple_row_bytes=ple_row_bytes(n, spec.hidden_size_per_layer_input),
        assumptions=[
            f"linears at {quant} ({BITS_PER_WEIGHT[quant]:g} bits/weight incl. fp16 per-block-{QUANT_BLOCK} scales)",
            head_line,
            f"KV: {spec.kv_slots} cache-owning layers × 2 × {padded_heads} heads × {padded_dim} dims × 2 B (fp16, padded)",
            "norm weights left out (a few KB per layer)",
        ],
    )


# ---- by context (issue 27): what the KV cache costs as the conversation grows --------------------

REPORT_CONTEXTS = (1024, 4096, 8192, 32768)


@dataclass(frozen=True)
class KVLayer:
    """One cache-owning layer as the decode graph reads it: its own K/V heads and head dim."""

    kv_heads: int
    head_dim: int
    sliding: bool


def kv_layers_of(spec: ModelSpec, full_attention_every: int = 6) -> list[KVLayer]:
    """The cache-owning layers of a registry model (the first `kv_slots`; KV-shared layers read theirs),
    with the same full-attention pattern `estimate_weight_bytes` uses (every 6th and the last)."""
    n = spec.num_hidden_layers
    out = []
    for i in range(spec.kv_slots):
        full = _layer_is_full(i, n, full_attention_every)
        heads = (spec.num_global_key_value_heads or spec.num_key_value_heads) if full else spec.num_key_value_heads
        if heads is None:
            raise RooflineError(f"registry entry {spec.key!r} does not record num_key_value_heads",
                                hint="compute the KV arithmetic from a converted bundle instead")
        out.append(KVLayer(heads, spec.global_head_dim if full else spec.head_dim, not full))
    return out


@dataclass(frozen=True)
class ContextRow:
    """Decode costs at one context length: the KV cache beside the weights."""

    context: int  # positions in the cache when the token is decoded
    capacity: int  # positions the pinned engine binds for it (doubling from 256: contract.kv_bound_capacity)
    kv_read_bytes: int  # K+V bytes the decode graph reads for one token at this context
    kv_read_window_bytes: int | None  # the same if sliding layers read only their window (None: no window known)
    kv_state_bytes: int  # KV memory held: the unified padded key + value state at `capacity`
    weight_bytes: int  # weights streamed per token
    ple_row_bytes: int

    @property
    def bytes_per_token(self) -> int:
        return self.weight_bytes + self.kv_read_bytes + self.ple_row_bytes

    @property
    def kv_share(self) -> float:
        """Fraction of the bytes per token that is KV."""
        return self.kv_read_bytes / self.bytes_per_token


def kv_read_bytes(layers: list[KVLayer], context: int, window: int | None = None, dtype_bytes: int = 2) -> int:
    """K+V bytes one decode step reads at `context` cached positions: each cache-owning layer reads its
    own heads × head dim of rows 0..context-1 (KV-shared layers reuse a read slot's rows; counted once).
    With `window`, sliding layers read only their last `window` rows (our graph reads them all and masks)."""
    total = 0
    for lay in layers:
        rows = min(context, window) if (window and lay.sliding) else context
        total += 2 * lay.kv_heads * lay.head_dim * dtype_bytes * rows
    return total


def context_rows(spec: ModelSpec, quant: str = "int4", head_quant: str | None = None,
                 contexts: tuple[int, ...] = REPORT_CONTEXTS, weight_bytes: int | None = None) -> list[ContextRow]:
    """KV bytes read per token and KV memory for `spec` at each context, beside its weights, from the
    registry's dimensions (the real config's: checked against config.json when a checkpoint is read).
    `weight_bytes`: a bundle's measured weights instead of the estimate."""
    est = estimate_weight_bytes(spec, quant, head_quant)
    return layer_context_rows(kv_layers_of(spec), spec.sliding_window,
                              est.total_bytes if weight_bytes is None else weight_bytes, est.ple_row_bytes, contexts)


def layer_context_rows(layers: list[KVLayer], window: int | None, weight_bytes: int, ple_row_bytes: int,
                       contexts: tuple[int, ...] = REPORT_CONTEXTS) -> list[ContextRow]:
    from .contract import kv_bound_capacity
    from .memory import kv_cache_bytes

    heads = max(lay.kv_heads for lay in layers)
    dim = max(lay.head_dim for lay in layers)
    rows = []
    for ctx in contexts:
        capacity = kv_bound_capacity(ctx, ctx)
        rows.append(ContextRow(
            context=ctx, capacity=capacity, kv_read_bytes=kv_read_bytes(layers, ctx),
            kv_read_window_bytes=kv_read_bytes(layers, ctx, window) if window else None,
            kv_state_bytes=kv_cache_bytes(len(layers), heads, dim, capacity), weight_bytes=weight_bytes,
            ple_row_bytes=ple_row_bytes))
    return rows


def bundle_context_rows(weight_bytes: int, kv_bytes_per_position: int, ple_row_bytes: int,
                        contexts: tuple[int, ...] = REPORT_CONTEXTS) -> list[ContextRow]:
    """The same rows from a bundle's facts alone (its KV state specs): reads are taken as the padded
    state row per position, an upper bound on what the graph reads (it reads each layer's own heads/dims)."""
    from .contract import kv_bound_capacity

    out = []
    for ctx in contexts:
        capacity = kv_bound_capacity(ctx, ctx)
        out.append(ContextRow(ctx, capacity, kv_bytes_per_position * ctx, None, kv_bytes_per_position * capacity,
                              weight_bytes, ple_row_bytes))
    return out
