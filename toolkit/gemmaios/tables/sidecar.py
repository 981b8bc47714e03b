"""The sidecar (embed_per_layer.json): what was written, from which source, with which hashes; read and
checked strictly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..files import sha256_file
from .layout import I8_NAME, SCALE_NAME, SIDECAR_NAME, SIDECAR_SCHEMA, TABLES_FORMAT, TablesCorrupt
from .source import TableSource


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


def sidecar_record(source: TableSource, i8_sha: str, scale_sha: str) -> dict:
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
