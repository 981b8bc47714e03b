"""Per-layer embedding (PLE) tables: the checkpoint's `embed_tokens_per_layer` as int8 + f32 row scales.

Gemma 4 E2B/E4B carry a [V, L*D] per-layer embedding table (E4B: 262144 × 10752, 5.6 GB in
bf16). The app does not keep it in the graph: it mmaps `embed_per_layer.i8` and
`embed_per_layer.scale.f32` and gathers one row per token. The formula (docs/contracts.md):

    scale[v] = max|row_v| / 127            (f32; 0 for an all-zero row)
    i8[v]    = round_half_even(row_v / scale[v])
    ple[v]   = fp16(f32(i8[v]) * scale[v] * sqrt(D)) reshaped [L, D]   == HF get_per_layer_inputs

The writer streams the table with positioned reads (`os.preadv`) at the offsets in the
safetensors header: safetensors' own `get_slice` hands back views of an mmap of the whole
file, so touching every row grows resident memory to the table's size (measured: RSS ==
bytes read, and about 5x slower than preadv from page cache). The library is still used to
open the file, list the tensor and, in verification, to read reference rows independently.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import shutil
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import contract
from .errors import CheckpointError, GemmaiosError
from .pipeline import BuildContext, Step, StepOutcome, sha256_file, write_json_atomic

TABLE_TENSOR = "embed_tokens_per_layer.weight"
TABLES_DIR = "tables"
I8_NAME = contract.TABLE_I8_FILE
SCALE_NAME = contract.TABLE_SCALE_FILE
SIDECAR_NAME = "embed_per_layer.json"
SIDECAR_SCHEMA = "gemmaios.ple_tables/1"
# Bump when the bytes written for the same source change; a sidecar of another format is redone.
TABLES_FORMAT = 1
DEFAULT_SAMPLE = 32
# ~1.5 MB of input per work item: the f32 intermediates of one item stay in L2/L3 cache,
# which measured ~2.5x faster than 16 MB items.
CHUNK_INPUT_BYTES = 3 << 19

# safetensors dtype → (raw integer view, float view, bit mask that clears the sign, +inf bits)
_DTYPES: dict[str, tuple[str, str, int, int]] = {
    "BF16": ("<u2", "", 0x7FFF, 0x7F80),
    "F16": ("<u2", "<f2", 0x7FFF, 0x7C00),
    "F32": ("<u4", "<f4", 0x7FFFFFFF, 0x7F800000),
}


class TablesError(GemmaiosError):
    """The per-layer embedding table cannot be written, read or verified."""


class TablesNotApplicable(TablesError):
    """The checkpoint has no per-layer embedding table (Gemma 4 12B / 31B)."""


class TablesCorrupt(TablesError):
    """Table files on disk do not match their sidecar (interrupted run, truncation, edits)."""


class InsufficientDiskSpace(TablesError):
    """Not enough free space for the table files."""


class TablesMismatch(TablesError):
    """The gathered rows differ from HF's per-layer inputs by more than the int8 bound."""


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
        return np.dtype(_DTYPES[self.dtype][0]).itemsize

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


@dataclass
class VerifyReport:
    ids: list[int]
    max_abs_error: float
    max_bound_ratio: float  # max over elements of |gather - hf| / bound; ≤ 1 passes
    reference: str

    @property
    def ok(self) -> bool:
        return self.max_bound_ratio <= 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "max_abs_error": self.max_abs_error,
                "max_bound_ratio": self.max_bound_ratio, "reference": self.reference, "ok": self.ok}


@dataclass
class TablesResult:
    out_dir: Path
    i8: Path
    scale: Path
    sidecar: Path
    shape: tuple[int, int]
    num_layers: int
    dim: int
    reused: bool
    seconds: float = 0.0
    bytes_read: int = 0
    rewrite_reason: str = ""  # why existing files were not reused ("no tables yet", a size/hash mismatch, ...)
    verification: VerifyReport | None = field(default=None)


# --------------------------------------------------------------------------- source


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


def _read_header(path: Path) -> tuple[dict, int]:
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
    if dtype not in _DTYPES:
        raise TablesError(f"{tensor} in {file.name} is {dtype}; the table writer reads BF16, F16 or F32",
                          hint="convert the checkpoint to bf16 safetensors first")
    if len(shape) != 2 or shape[1] != num_layers * dim:
        raise TablesError(
            f"{tensor} has shape {shape}, expected [V, {num_layers} layers × {dim}] = [V, {num_layers * dim}]",
            hint="config.json (num_hidden_layers, hidden_size_per_layer_input) does not match the weights",
        )
    header, data_start = _read_header(file)
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


# --------------------------------------------------------------------------- quantization


class _Slot:
    """Reusable buffers for one chunk in flight: fresh multi-MB numpy arrays per chunk would be
    served by new mmaps, and the page faults and zeroing cost as much as the arithmetic."""

    def __init__(self, rows: int, cols: int, dtype: str) -> None:
        int_view = _DTYPES[dtype][0]
        self.raw = np.empty((rows, cols), int_view)
        self.masked = np.empty((rows, cols), int_view)
        self.values = np.empty((rows, cols), np.float32)
        self.i8 = np.empty((rows, cols), np.int8)


def quantize_rows(raw: np.ndarray, dtype: str, slot: _Slot | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric absmax int8 per row of raw safetensors words ([rows, cols] of the dtype's integer view).

    The absolute maximum is taken on the sign-cleared bit patterns (same order as |x| for
    finite floats) so it runs on the narrow integers; bf16 widens to f32 by a 16-bit shift.
    Returns (i8 [rows, cols], scale f32 [rows]); with `slot`, i8 is a view of its buffer.
    """
    rows = raw.shape[0]
    slot = slot or _Slot(rows, raw.shape[1], dtype)
    _, float_view, mask, inf_bits = _DTYPES[dtype]
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


def _read_rows(fd: int, source: TableSource, start: int, out: np.ndarray) -> np.ndarray:
    got = os.preadv(fd, [memoryview(out).cast("B")], source.data_offset + start * source.cols * source.itemsize)
    if got != out.nbytes:
        raise CheckpointError(f"{source.file} ended early reading rows {start}..{start + len(out)}",
                              hint=f"delete {source.file.name} and download it again")
    return out


# --------------------------------------------------------------------------- files


def _paths(out_dir: Path) -> tuple[Path, Path, Path]:
    return out_dir / I8_NAME, out_dir / SCALE_NAME, out_dir / SIDECAR_NAME


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def check_disk_space(out_dir: Path, needed: int) -> None:
    """Raise InsufficientDiskSpace unless `needed` bytes fit on out_dir's file system."""
    probe = Path(out_dir)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise InsufficientDiskSpace(
            f"the per-layer tables need {_human(needed)} in {out_dir}, only {_human(free)} is free",
            hint="free some space, or build into a folder on a larger disk with --out",
        )


def read_sidecar(out_dir: Path) -> dict:
    path = Path(out_dir) / SIDECAR_NAME
    try:
        sidecar = json.loads(path.read_text())
    except FileNotFoundError:
        raise TablesCorrupt(f"{path} is missing", hint="run `gemmaios tables` to write the tables") from None
    except json.JSONDecodeError as exc:
        raise TablesCorrupt(f"{path} is not valid JSON ({exc})", hint="run `gemmaios tables` again") from exc
    if sidecar.get("schema") != SIDECAR_SCHEMA:
        raise TablesCorrupt(f"{path} has schema {sidecar.get('schema')!r}, expected {SIDECAR_SCHEMA}",
                            hint="run `gemmaios tables` again")
    return sidecar


def check_tables(out_dir: Path, *, hashes: bool = True) -> list[str]:
    """Problems with the table files against their sidecar (empty list: intact).

    Sizes are always compared; `hashes` also re-hashes both files (about 2 s per GB).
    """
    out_dir = Path(out_dir)
    try:
        sidecar = read_sidecar(out_dir)
    except TablesCorrupt as exc:
        return [str(exc).splitlines()[0]]
    problems = []
    for key in ("i8", "scale"):
        entry = sidecar["files"][key]
        path = out_dir / entry["path"]
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{path} has {path.stat().st_size} bytes, the sidecar says {entry['bytes']}")
        elif hashes and sha256_file(path) != entry["sha256"]:
            problems.append(f"{path} does not match the sha256 in {SIDECAR_NAME}")
    return problems


def _sidecar(source: TableSource, i8_sha: str, scale_sha: str) -> dict:
    rows, cols, layers, dim = source.rows, source.cols, source.num_layers, source.dim
    return {
        "schema": SIDECAR_SCHEMA,
        "format": TABLES_FORMAT,
        "source": source.identity(),
        "shape": [rows, cols],
        "num_layers": layers,
        "dim": dim,
        "files": {
            "i8": {"path": I8_NAME, "dtype": "int8", "shape": [rows, cols], "layout": "row-major, no header",
                   "bytes": rows * cols, "sha256": i8_sha},
            "scale": {"path": SCALE_NAME, "dtype": "float32", "byte_order": "little", "shape": [rows],
                      "layout": "no header", "bytes": rows * 4, "sha256": scale_sha},
        },
        "quantization": {
            "scheme": "symmetric absmax per row",
            "scale": "scale[v] = max(|row_v|) / 127, computed in f32 (0 for an all-zero row)",
            "value": "i8[v] = round_half_to_even(row_v / scale[v]) in [-127, 127]",
            "row": "row_v is the checkpoint's raw embed_tokens_per_layer row, before the embedding scale",
        },
        "embed_scale": {
            "value": math.sqrt(dim),
            "expr": "sqrt(hidden_size_per_layer_input)",
            "note": "HF Gemma4TextScaledWordEmbedding multiplies by embed_scale cast to the weight dtype "
                    "(exact in bf16 for D=256: 16.0)",
        },
        "per_layer_input": "ple[v] = fp16(f32(i8[v]) * (scale[v] * sqrt(D))) in f32, reshaped [L, D]; "
                           "equals HF Gemma4TextModel.get_per_layer_inputs(ids) within the error bound",
        "app_applies": [
            "ple (provider bundles): gather i8[v] (L*D bytes at offset v*L*D) and scale[v] "
            "(4 bytes at offset 4*v), multiply by scale[v] * sqrt(D), write fp16 [1,1,L,D] to ple_tokens",
            "tbl bundles: pass ple_table / ple_scale; the gather and * sqrt(D) happen in-graph",
        ],
        "in_graph": [
            "per_layer_model_projection(inputs_embeds) * hidden_size**-0.5",
            "reshape [.., L, D] and per_layer_projection_norm (RMSNorm over D)",
            "(projection + per_layer_inputs) * 2**-0.5",
        ],
        "error_bound": "|ple - hf| <= (1 + 2^-10) * (sqrt(D) * scale[v] / 2 + 2^-11 * |hf|) + 2^-24 per element "
                       "(int8 rounding, then fp16 rounding; 2^-10 covers f32 arithmetic)",
    }


def _clear_stale_temps(out_dir: Path) -> None:
    for stale in out_dir.glob(".embed_per_layer.*.tmp"):
        stale.unlink(missing_ok=True)


def _existing_problem(out_dir: Path, source: TableSource) -> str | None:
    """None when out_dir holds intact tables of this source; else why they must be (re)written."""
    if not (out_dir / SIDECAR_NAME).exists():
        return "no tables yet" if not (out_dir / I8_NAME).exists() else f"{SIDECAR_NAME} is missing"
    try:
        sidecar = read_sidecar(out_dir)
    except TablesCorrupt as exc:
        return str(exc).splitlines()[0]
    if sidecar.get("format") != TABLES_FORMAT or sidecar.get("source") != source.identity():
        return "the tables were written from another source or format"
    problems = check_tables(out_dir)
    return "; ".join(problems) if problems else None


def write_tables_from_source(
    source: TableSource,
    out_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_INPUT_BYTES,
    reuse: bool = True,
) -> TablesResult:
    """Stream `source` into out_dir/{.i8,.scale.f32,.json}; reuse intact outputs of the same source.

    Data goes to temporary files renamed into place, and the sidecar (with both sha256s) is
    written last, so an interrupted run leaves either the previous complete set or files
    that `check_tables` rejects. Worker threads read, quantize and `pwrite` chunks (numpy
    and the I/O calls release the GIL) while this thread hashes them in order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    i8_path, scale_path, sidecar_path = _paths(out_dir)
    result = TablesResult(out_dir, i8_path, scale_path, sidecar_path, (source.rows, source.cols),
                          source.num_layers, source.dim, reused=True)
    problem = _existing_problem(out_dir, source) if reuse else "rewrite requested"
    if problem is None:
        if progress:
            progress(source.rows)
        return result
    result.rewrite_reason = problem

    _clear_stale_temps(out_dir)
    check_disk_space(out_dir, source.rows * source.cols + source.rows * 4 + (1 << 20))
    started = time.perf_counter()
    rows_per_chunk = min(source.rows, max(1, chunk_bytes // (source.cols * source.itemsize)))
    starts = range(0, source.rows, rows_per_chunk)
    workers = workers or min(4, os.cpu_count() or 1)
    window = 2 * workers  # chunks in flight; one more slot than that, so none is reused before it is hashed
    slots = [_Slot(rows_per_chunk, source.cols, source.dtype) for _ in range(min(window + 1, len(starts)))]
    scales = np.empty(source.rows, "<f4")
    i8_tmp, scale_tmp = out_dir / f".{I8_NAME}.tmp", out_dir / f".{SCALE_NAME}.tmp"
    digest = hashlib.sha256()
    fd = os.open(source.file, os.O_RDONLY)
    out_fd = os.open(i8_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def work(index: int) -> tuple[int, np.ndarray, np.ndarray]:
        # Workers read, quantize and write their chunk at its offset; this thread only hashes in order.
        start = starts[index]
        slot = slots[index % len(slots)]
        raw = _read_rows(fd, source, start, slot.raw[: min(rows_per_chunk, source.rows - start)])
        q, s = quantize_rows(raw, source.dtype, slot)
        view = memoryview(q).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(out_fd, view[done:], start * source.cols + done)
        return start, q, s

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            todo = iter(range(len(starts)))

            def fill() -> None:
                while len(pending) < window and (index := next(todo, None)) is not None:
                    pending.append(pool.submit(work, index))

            fill()
            while pending:
                start, q, s = pending.popleft().result()
                digest.update(q)
                scales[start:start + len(s)] = s
                fill()
                if progress:
                    progress(len(s))
        os.close(out_fd)
        out_fd = -1
        scale_tmp.write_bytes(scales.tobytes())
        sidecar = _sidecar(source, digest.hexdigest(), hashlib.sha256(scales.tobytes()).hexdigest())
        sidecar_path.unlink(missing_ok=True)
        os.replace(i8_tmp, i8_path)
        os.replace(scale_tmp, scale_path)
        write_json_atomic(sidecar_path, sidecar)
    finally:
        os.close(fd)
        if out_fd >= 0:
            os.close(out_fd)
        i8_tmp.unlink(missing_ok=True)
        scale_tmp.unlink(missing_ok=True)
    result.reused = False
    result.seconds = time.perf_counter() - started
    result.bytes_read = source.nbytes
    return result


def write_tables(checkpoint, out_dir: Path, progress: Callable[[int], None] | None = None, **kwargs) -> TablesResult:
    """Write the int8 table, its scales and the sidecar for a checkpoint (TablesNotApplicable if it has none)."""
    return write_tables_from_source(table_source(checkpoint), out_dir, progress=progress, **kwargs)


# --------------------------------------------------------------------------- gather


def _map_readonly(path: Path) -> mmap.mmap:
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


class PleTables:
    """The table files, mmapped read-only; `gather(ids)` is the reference for the app's gather."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.sidecar = read_sidecar(self.out_dir)
        problems = check_tables(self.out_dir, hashes=False)
        if problems:
            raise TablesCorrupt("; ".join(problems), hint="run `gemmaios tables` again to rewrite them")
        rows, cols = self.sidecar["shape"]
        self.num_layers, self.dim = self.sidecar["num_layers"], self.sidecar["dim"]
        # Plain arrays over mmap objects: np.memmap's subclass overhead doubles a 1-row gather.
        self._maps = [_map_readonly(self.out_dir / name) for name in (I8_NAME, SCALE_NAME)]
        self.i8 = np.frombuffer(self._maps[0], np.int8).reshape(rows, cols)
        self.scale = np.frombuffer(self._maps[1], "<f4")
        self.embed_scale = np.float32(math.sqrt(self.dim))

    @property
    def vocab(self) -> int:
        return self.i8.shape[0]

    def gather(self, ids: int | Iterable[int]) -> np.ndarray:
        """fp16 [1, T, L, D] per-layer inputs for token ids (T = 1 for a single id)."""
        index = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        if index.size and (index.min() < 0 or index.max() >= self.vocab):
            raise TablesError(f"token id out of range 0..{self.vocab - 1}: {index[(index < 0) | (index >= self.vocab)][:5]}",
                              hint="ids must come from this model's tokenizer")
        factor = self.scale[index] * self.embed_scale
        rows = np.multiply(self.i8[index], factor[:, None], dtype=np.float32)
        return rows.astype(np.float16).reshape(1, index.size, self.num_layers, self.dim)


def load_tables(out_dir: Path) -> PleTables:
    return PleTables(out_dir)


def gather(tables: PleTables | Path | str, ids: int | Iterable[int]) -> np.ndarray:
    """fp16 [1, T, L, D] per-layer inputs for `ids` from loaded tables or a tables folder."""
    if not isinstance(tables, PleTables):
        tables = load_tables(Path(tables))
    return tables.gather(ids)


# --------------------------------------------------------------------------- verification


def sample_ids(vocab: int, *, special: Iterable[int | None] = (), count: int = DEFAULT_SAMPLE, seed: int = 0) -> list[int]:
    """First, last and the given special ids, then distinct random ids up to `count` (deterministic)."""
    chosen: list[int] = []
    for v in (0, vocab - 1, *special):
        if v is not None and 0 <= int(v) < vocab and int(v) not in chosen:
            chosen.append(int(v))
    rng = np.random.default_rng(seed)
    for v in rng.permutation(vocab):
        if len(chosen) >= count:
            break
        if int(v) not in chosen:
            chosen.append(int(v))
    return chosen


def _special_ids(text_config: dict) -> list[int]:
    ids: list[int] = []
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = text_config.get(key)
        ids.extend(value if isinstance(value, list) else [value] if value is not None else [])
    return ids


def hf_per_layer_inputs(checkpoint, ids: list[int]):
    """HF's `Gemma4TextModel.get_per_layer_inputs` for `ids`, as f32 numpy [T, L, D].

    The text model is built on the meta device from the checkpoint's config (no weights
    allocated) and its `embed_tokens_per_layer` is replaced by HF's own
    Gemma4TextScaledWordEmbedding holding only the requested rows, read with safetensors in
    the checkpoint's dtype; HF's method then does the lookup, scale and reshape. This keeps
    verification cheap for the 5.6 GB E4B table and exercises HF's code, not ours.
    """
    import torch
    from safetensors import safe_open
    from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4TextModel, Gemma4TextScaledWordEmbedding

    name = table_tensor_name(checkpoint)
    text_config = {k: v for k, v in checkpoint.text_config.items() if k not in ("architectures",)}
    config = Gemma4TextConfig(**text_config)
    with torch.device("meta"):
        model = Gemma4TextModel(config)
    with safe_open(checkpoint.tensor_file(name), "pt") as handle:
        table = handle.get_slice(name)
        rows = torch.cat([table[v:v + 1] for v in ids])
    module = Gemma4TextScaledWordEmbedding(len(ids), rows.shape[1], None,
                                           embed_scale=config.hidden_size_per_layer_input**0.5)
    module.to(rows.dtype)  # as from_pretrained in the checkpoint's dtype (buffer included)
    with torch.no_grad():
        module.weight.copy_(rows)
        model.embed_tokens_per_layer = module
        out = model.get_per_layer_inputs(torch.arange(len(ids))[None, :])
    return out[0].float().numpy()


def error_bound(tables: PleTables, ids: list[int], reference: np.ndarray) -> np.ndarray:
    """Per-element bound on |gather - hf| (see the sidecar's `error_bound`)."""
    half_step = (np.asarray(tables.scale[ids], np.float64) * math.sqrt(tables.dim) / 2)[:, None, None]
    return (1 + 2**-10) * (half_step + 2**-11 * np.abs(reference.astype(np.float64))) + 2**-24


def compare_to_reference(tables: PleTables, ids: list[int], reference: np.ndarray, label: str) -> VerifyReport:
    gathered = tables.gather(ids)[0].astype(np.float64)
    if not np.all(np.isfinite(gathered)):
        raise TablesMismatch("the gathered rows overflow fp16", hint="the table values exceed fp16 range")
    error = np.abs(gathered - reference.astype(np.float64))
    ratio = error / error_bound(tables, ids, reference)
    return VerifyReport(ids=list(ids), max_abs_error=float(error.max(initial=0.0)),
                        max_bound_ratio=float(ratio.max(initial=0.0)), reference=label)


def verify_tables(checkpoint, out_dir: Path, ids: list[int] | None = None, *, count: int = DEFAULT_SAMPLE) -> VerifyReport:
    """Gather `ids` (default: first, last, pad/bos/eos and a random sample) and compare with HF.

    Raises TablesMismatch when any element is outside the int8 + fp16 error bound.
    """
    tables = load_tables(out_dir)
    if ids is None:
        ids = sample_ids(tables.vocab, special=_special_ids(checkpoint.text_config), count=count)
    report = compare_to_reference(tables, ids, hf_per_layer_inputs(checkpoint, ids),
                                  "transformers Gemma4TextModel.get_per_layer_inputs")
    if not report.ok:
        raise TablesMismatch(
            f"gathered per-layer inputs differ from HF by up to {report.max_abs_error:.3g} "
            f"({report.max_bound_ratio:.2f}× the int8 bound) over ids {ids[:8]}...",
            hint="the table files or their sidecar do not belong to this checkpoint; rerun with --force",
        )
    return report


# --------------------------------------------------------------------------- pipeline step


class TablesStep(Step):
    name = "tables"
    title = "int8 per-layer embedding table + scales for the app's mmap gather"

    def applicable(self, ctx: BuildContext) -> str | None:
        return not_applicable_reason(ctx.checkpoint)

    def inputs(self, ctx: BuildContext) -> dict:
        return {
            "checkpoint": ctx.step_fingerprint("checkpoint"),
            "tensor": table_tensor_name(ctx.checkpoint),
            "format": TABLES_FORMAT,
            "verify_count": DEFAULT_SAMPLE,
        }

    def run(self, ctx: BuildContext) -> StepOutcome:
        source = table_source(ctx.checkpoint)
        out_dir = ctx.path(TABLES_DIR)
        with ctx.progress(f"int8 table {source.rows}×{source.cols}", total=source.rows) as advance:
            result = write_tables_from_source(source, out_dir, progress=advance)
        report = verify_tables(ctx.checkpoint, out_dir)
        rel = {key: f"{TABLES_DIR}/{path.name}" for key, path in
               (("i8", result.i8), ("scale", result.scale), ("sidecar", result.sidecar))}
        how = "reused intact files" if result.reused else (
            f"{_human(source.nbytes)} in {result.seconds:.1f}s, {source.nbytes / max(result.seconds, 1e-9) / 1e9:.2f} GB/s")
        if result.rewrite_reason not in ("", "no tables yet"):
            how += f"; rewritten because {result.rewrite_reason}"
        # Hashed while writing, or re-verified when reused: the manifest need not read 2.8 GB again.
        files = read_sidecar(out_dir)["files"]
        return StepOutcome(
            outputs=[result.i8, result.scale, result.sidecar],
            known_sha256={result.i8: files["i8"]["sha256"], result.scale: files["scale"]["sha256"]},
            details={**rel, "shape": [source.rows, source.cols], "num_layers": source.num_layers,
                     "dim": source.dim, "embed_scale": math.sqrt(source.dim), "source_tensor": source.tensor,
                     "verification": report.as_dict()},
            message=(f"{source.rows}×{source.cols} int8 ({how}); {len(report.ids)} ids match HF within the "
                     f"int8 bound (max {report.max_bound_ratio:.3f}× bound)"),
        )

