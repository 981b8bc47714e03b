"""Reading the tables back as the app does: mmapped int8 rows and scales, gathered per token."""

from __future__ import annotations

import math
import mmap
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .layout import I8_NAME, SCALE_NAME, TablesCorrupt, TablesError
from .sidecar import check_tables, read_sidecar


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

    def gather(self, ids: int | Iterable[int], *, spliced_row: int | None = None) -> np.ndarray:
        """fp16 [1, T, L, D] per-layer inputs for token ids (T = 1 for a single id).

        `spliced_row`: for bundles with image input, ids >= V (spliced image soft tokens) take
        this row (the pad token's: `gemmaios.contract.ple_row`); without it they are refused.
        """
        index = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        if spliced_row is not None:
            from ..contract import ple_row

            index = np.array([ple_row(int(t), self.vocab, spliced_row) for t in index], dtype=np.int64)
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
