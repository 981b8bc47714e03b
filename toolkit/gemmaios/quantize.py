"""Weight quantization: linear symmetric absmax per block of 32 along the input dimension.

int4 is the q4_0 grid the Gemma 4 QAT checkpoints were trained for (scale = max|block| / 7,
values in [-8, 7]); int8 is the same recipe with scale = max|block| / 127. The quantized
values are stored as int8 tensors here; coreai-torch packs int4 to half a byte when the
graph is converted (`constexpr_blockwise_shift_scale` with `input_dtype=torch.int4`).
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


@dataclass
class QuantizedWeight:
    """`q` int8 [out, in] holding int4/int8 levels, `scale` [out, in // BLOCK]."""

    q: torch.Tensor
    scale: torch.Tensor
    quant: str

    @property
    def bits(self) -> int:
        return 4 if self.quant == "int4" else 8

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        scale = self.scale.to(dtype).repeat_interleave(BLOCK, dim=1)
        return self.q.to(dtype) * scale

    def storage_bytes(self) -> int:
        """Bytes in the asset: packed levels plus the fp16 scales."""
        return self.q.numel() * self.bits // 8 + self.scale.numel() * 2


def quantize_blockwise(weight: torch.Tensor, quant: str, scale_dtype: torch.dtype = torch.float16) -> QuantizedWeight:
    """Quantize a [out, in] weight per block of 32 input columns (absmax, no clipping).

    Computed in fp32 from whatever dtype the checkpoint holds. The scale is rounded to
    `scale_dtype` *before* the levels are computed, so dequantizing with the stored
    scale reproduces exactly the grid the levels were chosen on.
    """
    if quant not in QMAX:
        raise ValueError(f"quantize_blockwise: {quant!r} is not int4 or int8")
    out_features, in_features = weight.shape
    if in_features % BLOCK:
        raise ValueError(f"input dimension {in_features} is not a multiple of the block size {BLOCK}")
    levels = torch.empty((out_features, in_features), dtype=torch.int8)
    scale = torch.empty((out_features, in_features // BLOCK), dtype=scale_dtype)
    # Row chunks bound the fp32 temporaries (the E4B lm_head is 262144 x 2560: ~2.7 GB per
    # fp32 copy if done at once); rows are independent, so the result is the same.
    rows = max(1, QUANTIZE_CHUNK_ELEMENTS // in_features)
    for start in range(0, out_features, rows):
        stop = min(start + rows, out_features)
        blocks = weight[start:stop].detach().to(torch.float32).reshape(stop - start, in_features // BLOCK, BLOCK)
        chunk_scale = (blocks.abs().amax(dim=-1) / QMAX[quant]).to(scale_dtype)
        # An all-zero block keeps scale 0 in the asset; divide by 1 so its levels are 0.
        safe = torch.where(chunk_scale == 0, torch.ones_like(chunk_scale), chunk_scale).to(torch.float32)
        chunk = torch.round(blocks / safe.unsqueeze(-1)).clamp_(QMIN[quant], QMAX[quant])
        levels[start:stop] = chunk.to(torch.int8).reshape(stop - start, in_features)
        scale[start:stop] = chunk_scale
    return QuantizedWeight(levels, scale, quant)


def expected_storage_bytes(shapes: list[tuple[int, int]], quant: str) -> int:
    """Asset bytes of the quantized weights with these [out, in] shapes (levels + fp16 scales)."""
    bits = 4 if quant == "int4" else 8
    return sum(o * i * bits // 8 + o * (i // BLOCK) * 2 for o, i in shapes)
