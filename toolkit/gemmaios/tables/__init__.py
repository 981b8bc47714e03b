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

Layout, one concern per module (every public name is re-exported here, so
`gemmaios.tables.X` keeps working):
- `layout`: The tables' on-disk layout (tensor, folder and file names, sidecar schema, format version) and
  their named errors.
- `source`: The checkpoint's per-layer embedding tensor: located through the safetensors header and read row
  by row with positioned reads.
- `quantize`: The int8 + f32 row-scale quantization of table rows (the formula in the package docstring).
- `sidecar`: The sidecar (embed_per_layer.json): what was written, from which source, with which hashes; read
  and checked strictly.
- `writer`: Writing the tables: disk-space check, chunked parallel quantization, atomic files, resumable and
  skipped when already up to date.
- `reader`: Reading the tables back as the app does: mmapped int8 rows and scales, gathered per token.
- `verify`: Verification against Hugging Face's get_per_layer_inputs on sampled and special ids, within the
  int8 error bound.
- `step`: The `tables` pipeline step: writes and verifies the tables for a build.
"""

from .layout import (
    I8_NAME,
    SCALE_NAME,
    SIDECAR_NAME,
    SIDECAR_SCHEMA,
    TABLE_TENSOR,
    TABLES_DIR,
    TABLES_FORMAT,
    InsufficientDiskSpace,
    TablesCorrupt,
    TablesError,
    TablesMismatch,
    TablesNotApplicable,
)
from .quantize import quantize_rows
from .reader import PleTables, gather, load_tables
from .sidecar import check_tables, read_sidecar
from .source import (
    TableSource,
    not_applicable_reason,
    open_table_source,
    read_safetensors_header,
    table_source,
    table_tensor_name,
)
from .step import TablesStep
from .verify import (
    DEFAULT_SAMPLE,
    VerifyReport,
    compare_to_reference,
    error_bound,
    hf_per_layer_inputs,
    sample_ids,
    verify_tables,
)
from .writer import CHUNK_INPUT_BYTES, TablesResult, check_disk_space, write_tables, write_tables_from_source

__all__ = [
    "CHUNK_INPUT_BYTES",
    "DEFAULT_SAMPLE",
    "I8_NAME",
    "InsufficientDiskSpace",
    "PleTables",
    "SCALE_NAME",
    "SIDECAR_NAME",
    "SIDECAR_SCHEMA",
    "TABLES_DIR",
    "TABLES_FORMAT",
    "TABLE_TENSOR",
    "TableSource",
    "TablesCorrupt",
    "TablesError",
    "TablesMismatch",
    "TablesNotApplicable",
    "TablesResult",
    "TablesStep",
    "VerifyReport",
    "read_safetensors_header",
    "check_disk_space",
    "check_tables",
    "compare_to_reference",
    "error_bound",
    "gather",
    "hf_per_layer_inputs",
    "load_tables",
    "not_applicable_reason",
    "open_table_source",
    "quantize_rows",
    "read_sidecar",
    "sample_ids",
    "table_source",
    "table_tensor_name",
    "verify_tables",
    "write_tables",
    "write_tables_from_source",
]
