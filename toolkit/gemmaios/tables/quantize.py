"""The int8 + f32 row-scale quantization of table rows (the formula in the package docstring)."""

from __future__ import annotations

import numpy as np

from .layout import TablesError
from .source import SAFETENSORS_DTYPES


class ChunkSlot:
    """Reusable buffers for one chunk in flight: fresh multi-MB numpy arrays per chunk would be
    served by new mmaps, and the page faults and zeroing cost as much as the arithmetic."""

    def __init__(self, rows: int, cols: int, dtype: str) -> None:
        int_view = SAFETENSORS_DTYPES[dtype][0]
        self.raw = np.empty((rows, cols), int_view)
        self.masked = np.empty((rows, cols), int_view)
        self.values = np.empty((rows, cols), np.float32)
        self.i8 = np.empty((rows, cols), np.int8)


def quantize_rows(raw: np.ndarray, dtype: str, slot: ChunkSlot | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric absmax int8 per row of raw safetensors words ([rows, cols] of the dtype's integer view).

    The absolute maximum is taken on the sign-cleared bit patterns (same order as |x| for
    finite floats) so it runs on the narrow integers; bf16 widens to f32 by a 16-bit shift.
    Returns (i8 [rows, cols], scale f32 [rows]); with `slot`, i8 is a view of its buffer.
    """
    rows = raw.shape[0]
    slot = slot or ChunkSlot(rows, raw.shape[1], dtype)
    _, float_view, mask, inf_bits = SAFETENSORS_DTYPES[dtype]
    masked, values, i8 = slot.masked[:rows], slot.values[:rows], slot.i8[:rows]
    abs_bits = np.bitwise_and(raw, mask, out=masked).max(axis=1)
    if (bad := np.flatnonzero(abs_bits >= inf_bits)).size:
        raise TablesError(f"row {int(bad[0])} (of this chunk) holds inf or NaN",
                          hint="the checkpoint is corrupt; re-download it")
    if dtype == "BF16":
        widened = values.view(np.uint32)
        np.copyto(widened, raw)  # then shift in place: 2x faster than a casting shift
        np.left_shift(widened, 16, out=widened)
        absmax = np.left_shift(abs_bits.astype(np.uint32), 16).view(np.float32)
    else:
        np.copyto(values, raw.view(float_view))
        absmax = abs_bits.view(float_view).astype(np.float32)
    scale = absmax / np.float32(127)
    divisor = np.where(scale > 0, scale, np.float32(1))
    np.divide(values, divisor[:, None], out=values)
    np.rint(values, out=values)
    np.copyto(i8, values, casting="unsafe")
    return i8, scale.astype("<f4")
