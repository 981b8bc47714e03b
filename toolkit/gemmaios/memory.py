"""Entitled-memory arithmetic for an iPhone build: what the app holds vs what one app may use.

Pure functions over byte counts (no I/O except `tree_bytes`), so the build, deploy and the
vision asset's step all run the same sum:

    decoder graph + owned PLE tables (tbl mode) + KV cache + buffers (e.g. image_embeds [N, hidden])
    + each extra asset's weights and activation buffers (e.g. the vision encoder)
    vs the architecture's entitled limit (`archs.Arch.entitled_limit_gb`, with the
    increased-memory-limit entitlement).

What is not counted, and why: the provider-mode PLE table (the app reads it through a clean,
evictable mmap, one row per token: seed 002 measured a 2.2 GB peak for a 3.7 GB E4B graph
plus a 3.4 GB table), and the decoder's own S=1 activations (a few MB). The graph is counted
whole although AOT executable pages are evictable too, so the sum is an upper bound — a build
under it fits; one over it may still run, which is what the overrides (--allow-tbl) are for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .archs import Arch

GB = 1e9
FP16_BYTES = 2


@dataclass(frozen=True)
class ExtraAsset:
    """An asset the app holds beside the decoder: its weights on disk and the activation
    buffers it needs while it runs (e.g. the vision encoder at its static padded patch grid)."""

    name: str
    weight_bytes: int
    activation_bytes: int = 0

    @classmethod
    def from_files(cls, name: str, path: Path, activation_bytes: int = 0) -> ExtraAsset:
        """Weights measured from the asset as built (an .aimodel/.aimodelc folder or one file)."""
        return cls(name, tree_bytes(path), activation_bytes)


@dataclass(frozen=True)
class MemoryEstimate:
    """The named parts of an app's resident memory, their sum and the entitled limit."""

    arch: str
    parts: dict[str, int] = field(default_factory=dict)  # in display order
    limit_bytes: int | None = None
    note: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool | None:
        """None when the architecture's limit is not established."""
        return None if self.limit_bytes is None else self.total_bytes <= self.limit_bytes

    @property
    def headroom_bytes(self) -> int | None:
        return None if self.limit_bytes is None else self.limit_bytes - self.total_bytes

    def describe(self) -> str:
        limit = f"{self.limit_bytes / GB:.2f} GB" if self.limit_bytes else "unknown"
        parts = " + ".join(f"{name} {format_bytes(size)}" for name, size in self.parts.items() if size)
        return f"{parts} = {format_bytes(self.total_bytes)} vs {self.arch}'s entitled limit {limit}" + (
            f" ({self.note})" if self.note else "")

    def as_dict(self) -> dict:
        return {"arch": self.arch, "parts": dict(self.parts), "total_bytes": self.total_bytes,
                "limit_bytes": self.limit_bytes, "fits": self.fits, "headroom_bytes": self.headroom_bytes,
                "note": self.note}


def format_bytes(size: int) -> str:
    """GB with two decimals; MB below 10 MB, so a small buffer does not read as 0.00 GB."""
    return f"{size / GB:.2f} GB" if size >= 10_000_000 else f"{size / 1e6:.2f} MB"


def entitled_memory(
    arch: Arch,
    *,
    decoder_bytes: int,
    table_bytes: int = 0,
    kv_bytes: int | None = None,
    buffers: dict[str, int] | None = None,
    extra: ExtraAsset | None = None,
    extras: tuple[ExtraAsset, ...] = (),
) -> MemoryEstimate:
    """The memory an iPhone app holds for a build, against `arch`'s entitled limit.

    decoder_bytes: the decoder asset as shipped (`assets.main`: the .aimodelc on iOS).
    table_bytes: PLE tables the app owns as MTLBuffers (tbl mode); 0 for provider mode (mmap).
    kv_bytes: the KV state at the bundle's max context (`kv_cache_bytes`); None when unknown,
        and the estimate then says it is left out.
    buffers: other static inputs by name, e.g. {"image_embeds": image_embeds_bytes(280, 2560)}.
    extra: one asset beside the decoder, e.g. the vision encoder (weights + activations);
        `extras`: more of them (E2B/E4B with --vision and --audio: both encoders).
    """
    parts = {"graph": int(decoder_bytes), "owned PLE tables": int(table_bytes)}
    if kv_bytes is not None:
        parts["KV cache"] = int(kv_bytes)
    for name, size in (buffers or {}).items():
        parts[name] = int(size)
    for asset in ([extra] if extra is not None else []) + list(extras):
        parts[f"{asset.name} weights"] = int(asset.weight_bytes)
        parts[f"{asset.name} activations"] = int(asset.activation_bytes)
    limit = int(arch.entitled_limit_gb * GB) if arch.entitled_limit_gb else None
    note = "before the KV cache and activations" if kv_bytes is None else ""
    return MemoryEstimate(arch.name, parts, limit, note)


def kv_cache_bytes(kv_layers: int, kv_heads: int, head_dim: int, max_context: int,
                   dtype_bytes: int = FP16_BYTES) -> int:
    """The bundle's KV state: one key and one value tensor [kv_layers, 1, kv_heads, max_context, head_dim]
    (the engine's unified padded pair: heads and head_dim are the largest over the cache-owning layers)."""
    return 2 * kv_layers * kv_heads * max_context * head_dim * dtype_bytes


def kv_cache_bytes_for(spec, max_context: int, dtype_bytes: int = FP16_BYTES) -> int:
    """`kv_cache_bytes` for a `decode_model.DecodeSpec` (its cache_shape)."""
    layers, _, heads, _, dim = spec.cache_shape(max_context)
    return kv_cache_bytes(layers, heads, dim, max_context, dtype_bytes)


def image_embeds_bytes(soft_tokens: int, hidden_size: int, dtype_bytes: int = FP16_BYTES) -> int:
    """The decoder's static `image_embeds [N, hidden]` input, N = the soft-token budget."""
    return soft_tokens * hidden_size * dtype_bytes


def audio_encoder_activation_bytes(frames: int, tokens: int, hidden_size: int, num_heads: int,
                                   sub_channels: tuple[int, int], out_hidden: int, feature_size: int = 128,
                                   dtype_bytes: int = FP16_BYTES) -> int:
    """Peak activations of the Conformer audio encoder run once over its static frame count.

    The input features [frames, feature_size] and the output [tokens, out_hidden] are live
    throughout, and the residual stream [tokens, hidden]; then the largest of the subsampling
    phase (the first convolution's [C0, frames/2, feature_size/2] map and the second's
    [C1, tokens, feature_size/4]), the attention phase (normed x, q, k, v, output, and the
    [heads, T, T] scores, counted at fp32 as the module computes them) and the feed-forward phase
    (normed x and the [T, 4*hidden] expansion, before and after its activation). An upper bound.
    """
    half = (frames + 1) // 2
    live = frames * feature_size + tokens * out_hidden + tokens * hidden_size
    sub = sub_channels[0] * half * (feature_size // 2) + sub_channels[1] * tokens * (feature_size // 4)
    attention = 5 * tokens * hidden_size + 2 * num_heads * tokens * tokens
    ffw = tokens * hidden_size + 2 * tokens * 4 * hidden_size
    return (live + max(sub, attention, ffw)) * dtype_bytes


def vision_encoder_activation_bytes(patches: int, hidden_size: int, intermediate_size: int, num_heads: int,
                                    patch_dim: int, out_tokens: int, out_hidden: int,
                                    dtype_bytes: int = FP16_BYTES) -> int:
    """Peak activations of a ViT-style encoder run once over a static grid of `patches`.

    The input pixels [patches, patch_dim] and the output [out_tokens, out_hidden] are live
    throughout; inside a layer the residual stream is, plus the larger of the attention phase
    (normed x, q, k, v, output, and the [heads, P, P] scores if the runtime materializes them)
    and the MLP phase (normed x, gate and up [P, intermediate]). An upper bound: runtimes reuse
    buffers and fuse attention.
    """
    attention = 5 * patches * hidden_size + num_heads * patches * patches
    mlp = patches * hidden_size + 2 * patches * intermediate_size
    live = patches * patch_dim + out_tokens * out_hidden + patches * hidden_size
    return (live + max(attention, mlp)) * dtype_bytes


def tree_bytes(path: Path) -> int:
    """Size on disk of a file, or of every file under a folder (an .aimodel / .aimodelc)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
