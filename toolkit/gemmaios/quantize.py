"""Weight quantization: per group of input columns, symmetric (absmax) or affine (min/max).

The default recipes (`--quant int4|int8`) are symmetric absmax per block of 32: int4 is the q4_0
grid the Gemma 4 QAT checkpoints were trained for (scale = max|block| / 7, values in [-8, 7]);
int8 the same with scale = max|block| / 127. Mixed-bit recipes (gemmaios.recipe) pick per tensor:

- `bits` 2, 3, 4 or 8; `group` the input columns sharing one scale (32, 64, 128, ...);
- `mode` symmetric: signed levels in [-2^(b-1), 2^(b-1)-1], scale = max|group| / (2^(b-1)-1);
  affine: unsigned levels in [0, 2^b-1], scale = (max-min) / (2^b-1), offset = min (MLX's
  "affine" with biases), dequantized as scale * q + min.

What Core AI stores natively (coreai-torch's `constexpr_blockwise_shift_scale`, whose
QUANTIZATION_SUPPORT_NBITS is (2, 4, 8)): 2-bit levels pack four to a byte (Int2 / UInt2),
4-bit two to a byte (Int4 / UInt4), 8-bit one (Int8 / UInt8). There is no 3-bit quantized
storage type: 3-bit levels are kept in a 4-bit container (Int4 / UInt4), so a 3-bit tensor costs
the bytes of a 4-bit one (`STORED_BITS`; the asset gate reads this back from the saved file).
Scales (and affine offsets) are fp16, one per group; levels are held here as int8 / uint8
tensors, and the converter packs them when the graph is converted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK = 32
QUANTS = ("int4", "int8", "fp16")
# Largest positive level per bit width (symmetric absmax: the block's max maps to it).
QMAX = {"int4": 7, "int8": 127}
QMIN = {"int4": -8, "int8": -128}
# Weight elements quantized per pass (64 MiB of fp32 temporaries each).
QUANTIZE_CHUNK_ELEMENTS = 1 << 24

BITS = (2, 3, 4, 8)
MODES = ("symmetric", "affine")
# Bits a level occupies in the saved asset: Core AI has 2/4/8-bit quantized storage; 3 → 4.
STORED_BITS = {2: 2, 3: 4, 4: 4, 8: 8}


def storage_type(bits: int, mode: str) -> str:
    """The asset's storage type name for levels of `bits` in `mode` (as the asset summary prints it)."""
    stored = STORED_BITS[bits]
    return ("Int" if mode == "symmetric" else "UInt") + str(stored)


def level_dtype(bits: int, mode: str) -> torch.dtype:
    """The logical dtype coreai-torch packs the levels to (its `input_dtype`)."""
    stored = STORED_BITS[bits]
    name = ("int" if mode == "symmetric" else "uint") + str(stored)
    return getattr(torch, name)


def level_range(bits: int, mode: str) -> tuple[int, int]:
    if mode == "symmetric":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@dataclass
class QuantizedWeight:
    """`q` [out, in] holding the levels (int8 symmetric / uint8 affine), `scale` [out, in // group],
    `offset` the affine groups' minimum (None: symmetric)."""

    q: torch.Tensor
    scale: torch.Tensor
    quant: str
    group: int = BLOCK
    offset: torch.Tensor | None = None
    nbits: int | None = None  # None: from `quant` (int4 / int8)

    @property
    def bits(self) -> int:
        if self.nbits is not None:
            return self.nbits
        return 4 if self.quant == "int4" else 8

    @property
    def mode(self) -> str:
        return "symmetric" if self.offset is None else "affine"

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        scale = self.scale.to(dtype).repeat_interleave(self.group, dim=1)
        out = self.q.to(dtype) * scale
        if self.offset is not None:
            out = out + self.offset.to(dtype).repeat_interleave(self.group, dim=1)
        return out

    def storage_bytes(self) -> int:
        """Bytes in the asset: packed levels (3-bit in 4-bit containers) plus fp16 scales (and offsets)."""
        per_group = 2 if self.offset is None else 4
        return self.q.numel() * STORED_BITS[self.bits] // 8 + self.scale.numel() * per_group


def quantize_blockwise(weight: torch.Tensor, quant: str, scale_dtype: torch.dtype = torch.float16) -> QuantizedWeight:
    """Quantize a [out, in] weight per block of 32 input columns (int4/int8 symmetric absmax, no clipping).

    Computed in fp32 from whatever dtype the checkpoint holds. The scale is rounded to
    `scale_dtype` *before* the levels are computed, so dequantizing with the stored
    scale reproduces exactly the grid the levels were chosen on.
    """
    if quant not in QMAX:
        raise ValueError(f"quantize_blockwise: {quant!r} is not int4 or int8")
    qw = quantize_groups(weight, 4 if quant == "int4" else 8, BLOCK, "symmetric", scale_dtype)
    return QuantizedWeight(qw.q, qw.scale, quant)


def quantize_groups(weight: torch.Tensor, bits: int, group: int, mode: str,
                    scale_dtype: torch.dtype = torch.float16) -> QuantizedWeight:
    """Quantize a [out, in] weight per `group` input columns at `bits` (2, 3, 4, 8), `mode`
    symmetric (absmax) or affine (min/max). Scale (and offset) are rounded to `scale_dtype` before
    the levels are chosen, so the stored grid is the one the levels were chosen on."""
    if bits not in BITS:
        raise ValueError(f"quantize_groups: {bits} bits is not one of {BITS}")
    if mode not in MODES:
        raise ValueError(f"quantize_groups: mode {mode!r} is not one of {MODES}")
    out_features, in_features = weight.shape
    if in_features % group:
        raise ValueError(f"input dimension {in_features} is not a multiple of the group size {group}")
    lo, hi = level_range(bits, mode)
    levels = torch.empty((out_features, in_features), dtype=torch.int8 if mode == "symmetric" else torch.uint8)
    scale = torch.empty((out_features, in_features // group), dtype=scale_dtype)
    offset = torch.empty_like(scale) if mode == "affine" else None
    # Row chunks bound the fp32 temporaries (the E4B lm_head is 262144 x 2560: ~2.7 GB per
    # fp32 copy if done at once); rows are independent, so the result is the same.
    rows = max(1, QUANTIZE_CHUNK_ELEMENTS // in_features)
    for start in range(0, out_features, rows):
        stop = min(start + rows, out_features)
        blocks = weight[start:stop].detach().to(torch.float32).reshape(stop - start, in_features // group, group)
        if mode == "symmetric":
            chunk_scale = (blocks.abs().amax(dim=-1) / hi).to(scale_dtype)
            base = torch.zeros_like(chunk_scale, dtype=torch.float32)
        else:
            low = blocks.amin(dim=-1).to(scale_dtype)
            chunk_scale = ((blocks.amax(dim=-1) - low.to(torch.float32)) / hi).to(scale_dtype)
            base = low.to(torch.float32)
            offset[start:stop] = low
        # An all-zero (constant) group keeps scale 0 in the asset; divide by 1 so its levels are 0.
        safe = torch.where(chunk_scale == 0, torch.ones_like(chunk_scale), chunk_scale).to(torch.float32)
        chunk = torch.round((blocks - base.unsqueeze(-1)) / safe.unsqueeze(-1)).clamp_(lo, hi)
        levels[start:stop] = chunk.to(levels.dtype).reshape(stop - start, in_features)
        scale[start:stop] = chunk_scale
    quant = f"{mode}{bits}"
    return QuantizedWeight(levels, scale, quant, group=group, offset=offset, nbits=bits)


def expected_storage_bytes(shapes: list[tuple[int, int]], quant: str) -> int:
    """Asset bytes of the quantized weights with these [out, in] shapes (levels + fp16 scales)."""
    bits = 4 if quant == "int4" else 8
    return sum(o * i * bits // 8 + o * (i // BLOCK) * 2 for o, i in shapes)


def tensor_storage_bytes(shape: tuple[int, int], bits: int | None, group: int, mode: str) -> int:
    """Asset bytes of one [out, in] weight at `bits` (None: kept in fp16), per `group`, `mode`."""
    o, i = shape
    if bits is None:
        return o * i * 2
    per_group = 2 if mode == "symmetric" else 4
    return o * i * STORED_BITS[bits] // 8 + o * (i // group) * per_group
