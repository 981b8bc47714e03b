"""The tables' on-disk layout (tensor, folder and file names, sidecar schema, format version) and their named
errors.
"""

from __future__ import annotations

from .. import contract
from ..buildlayout import TABLES_DIR  # noqa: F401  (re-exported: tables.TABLES_DIR)
from ..errors import GemmaiosError

TABLE_TENSOR = "embed_tokens_per_layer.weight"
I8_NAME = contract.TABLE_I8_FILE
SCALE_NAME = contract.TABLE_SCALE_FILE
SIDECAR_NAME = "embed_per_layer.json"
SIDECAR_SCHEMA = "gemmaios.ple_tables/1"
# Bump when the bytes written for the same source change; a sidecar of another format is redone.
TABLES_FORMAT = 1


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
