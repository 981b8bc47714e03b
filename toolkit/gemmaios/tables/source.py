"""The checkpoint's per-layer embedding tensor: located through the safetensors header and read row by row
with positioned reads.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError
from .layout import TABLE_TENSOR, TablesError, TablesNotApplicable

# safetensors dtype → (raw integer view, float view, bit mask that clears the sign, +inf bits)
SAFETENSORS_DTYPES: dict[str, tuple[str, str, int, int]] = {
    "BF16": ("<u2", "", 0x7FFF, 0x7F80),
    "F16": ("<u2", "<f2", 0x7FFF, 0x7C00),
    "F32": ("<u4", "<f4", 0x7FFFFFFF, 0x7F800000),
}


@dataclass(frozen=True)
class TableSource:
    """Where the table's bytes live in a safetensors file."""

    file: Path
    tensor: str
    dtype: str
    rows: int
    cols: int
    data_offset: int  # absolute byte offset of row 0 in `file`
    num_layers: int
    dim: int

    @property
    def itemsize(self) -> int:
        return np.dtype(SAFETENSORS_DTYPES[self.dtype][0]).itemsize

    @property
    def nbytes(self) -> int:
        return self.rows * self.cols * self.itemsize

    def identity(self) -> dict[str, Any]:
        """What the written tables depend on (recorded in the sidecar, compared on re-runs)."""
        return {
            "tensor": self.tensor,
            "file": self.file.name,
            "file_size": self.file.stat().st_size,
            "dtype": self.dtype,
            "shape": [self.rows, self.cols],
            "data_offset": self.data_offset,
        }


def table_tensor_name(checkpoint) -> str:
    return f"{checkpoint.weight_prefix}{TABLE_TENSOR}"


def not_applicable_reason(checkpoint) -> str | None:
    """None when the checkpoint has a per-layer embedding table, else why there is none."""
    name = table_tensor_name(checkpoint)
    if checkpoint.has_tensor(name) and checkpoint.text_config.get("hidden_size_per_layer_input"):
        return None
    return (f"{checkpoint.model_id} has no per-layer embeddings (no {name}, "
            f"hidden_size_per_layer_input={checkpoint.text_config.get('hidden_size_per_layer_input')}); "
            "no PLE table to write")


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path} is too short to be a safetensors file", hint="re-download it")
        (length,) = struct.unpack("<Q", raw)
        header = fh.read(length)
    if len(header) < length:
        raise CheckpointError(f"{path} has a truncated safetensors header", hint="re-download it")
    return json.loads(header), 8 + length


def open_table_source(file: Path, tensor: str, *, num_layers: int, dim: int) -> TableSource:
    """Locate `tensor` in a safetensors file; checks dtype, shape [V, L*D] and that the bytes are present."""
    from safetensors import SafetensorError, safe_open

    file = Path(file)
    try:
        with safe_open(file, "np") as handle:
            if tensor not in handle.keys():
                raise TablesNotApplicable(f"{file} holds no tensor {tensor!r}",
                                          hint="this checkpoint has no per-layer embedding table")
            meta = handle.get_slice(tensor)
            dtype, shape = meta.get_dtype(), list(meta.get_shape())
    except SafetensorError as exc:
        raise CheckpointError(f"{file} is not a readable safetensors file ({exc})", hint="re-download it") from exc
    if dtype not in SAFETENSORS_DTYPES:
        raise TablesError(f"{tensor} in {file.name} is {dtype}; the table writer reads BF16, F16 or F32",
                          hint="convert the checkpoint to bf16 safetensors first")
    if len(shape) != 2 or shape[1] != num_layers * dim:
        raise TablesError(
            f"{tensor} has shape {shape}, expected [V, {num_layers} layers × {dim}] = [V, {num_layers * dim}]",
            hint="config.json (num_hidden_layers, hidden_size_per_layer_input) does not match the weights",
        )
    header, data_start = read_safetensors_header(file)
    begin, end = header[tensor]["data_offsets"]
    source = TableSource(file=file, tensor=tensor, dtype=dtype, rows=shape[0], cols=shape[1],
                         data_offset=data_start + begin, num_layers=num_layers, dim=dim)
    if end - begin != source.nbytes or file.stat().st_size < data_start + end:
        raise CheckpointError(f"{file} is truncated: {tensor} needs bytes up to {data_start + end}, "
                              f"the file has {file.stat().st_size}",
                              hint=f"delete {file.name} and download it again")
    return source


def table_source(checkpoint) -> TableSource:
    reason = not_applicable_reason(checkpoint)
    if reason:
        raise TablesNotApplicable(reason, hint="Gemma 4 12B/31B need no table; build without it")
    name = table_tensor_name(checkpoint)
    cfg = checkpoint.text_config
    return open_table_source(checkpoint.tensor_file(name), name,
                             num_layers=int(cfg["num_hidden_layers"]), dim=int(cfg["hidden_size_per_layer_input"]))


def read_rows(fd: int, source: TableSource, start: int, out: np.ndarray) -> np.ndarray:
    got = os.preadv(fd, [memoryview(out).cast("B")], source.data_offset + start * source.cols * source.itemsize)
    if got != out.nbytes:
        raise CheckpointError(f"{source.file} ended early reading rows {start}..{start + len(out)}",
                              hint=f"delete {source.file.name} and download it again")
    return out
