"""Bundle facts the roofline needs (weight, KV and PLE bytes), read from a build folder's manifest or a
bundle's metadata.json.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundlename import model_key_of
from ..files import sha256_file
from ..pipeline import finished_details
from ..registry import MODELS, find_model
from ..roofline import estimate_weight_bytes, ple_row_bytes, size_text
from ..transcript import Transcript
from .errors import ReportError


@dataclass
class BundleFacts:
    """What the bandwidth model needs to know about the bundle a run used."""

    name: str
    weight_bytes: int
    kv_bytes_per_position: int
    ple_row_bytes: int
    source: str
    model_key: str | None = None  # the registry model it was converted from, when known (per-layer KV dims)


def bundle_facts(t: Transcript, build_dir: Path | None,
                 bundle_dir: Path | None) -> tuple[BundleFacts | None, str]:
    """From an explicit bundle folder, else the build's convert output, else the registry (the model the
    bundle name was made from, bundlename.model_key_of, and the quant the run recorded)."""
    name = t.bundle.get("name", "")
    convert = finished_details(build_dir, "convert")
    if bundle_dir is None and convert is not None and (build_dir / convert.bundle_dir / "metadata.json").is_file():
        bundle_dir = build_dir / convert.bundle_dir
    if bundle_dir is not None:
        tables = finished_details(build_dir, "tables") if build_dir is not None else None
        facts = bundle_facts_from_dir(bundle_dir, table_shape=tables.shape if tables is not None else None)
        note = ""
        recorded = t.bundle.get("metadata_sha256")
        if facts.name and name and facts.name != name:
            note = f"the run names bundle {name!r} but the bundle read for the roofline is {facts.name!r}"
        elif recorded and recorded != sha256_file(bundle_dir / "metadata.json"):
            note = (f"the run's bundle metadata sha256 {recorded[:12]} differs from {bundle_dir}/metadata.json: "
                    "the roofline uses that folder's facts, which may not be what ran")
        return facts, note
    key = model_key_of(name)
    spec = MODELS.get(key) if key else None
    if spec is None:
        return None, f"no bundle files and {name!r} is not a registry model: pass --bundle for the roofline"
    quant = t.bundle.get("quant")
    if quant not in ("int4", "int8", "fp16"):
        return None, f"the run records no quantization for {name!r} (bundle.quant): pass --bundle for the roofline"
    # The run does not say how the head is stored; convert's default follows --quant.
    est = estimate_weight_bytes(spec, quant=quant, head_quant=quant)
    return BundleFacts(name, est.total_bytes, est.kv_bytes_per_position, est.ple_row_bytes,
                       source=f"estimated from registry {spec.key!r} ({'; '.join(est.assumptions)})",
                       model_key=spec.key), ""


def _asset_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


_DTYPE_BYTES = {"float16": 2, "fp16": 2, "bfloat16": 2, "float32": 4, "fp32": 4, "int8": 1}


def _is_static(dim: Any) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim > 0


def _untied_embedding_bytes(ours: dict) -> int:
    """Stored but not streamed: with an untied int4/int8 head (convert's `head_quant`), the fp16
    embedding table is in the asset yet decode gathers one row of it; its size less that row."""
    head_quant = ours.get("head_quant", "fp16")  # bundles from before head_quant: tied fp16
    head = ours.get("head") or {}
    if head_quant == "fp16" or head.get("tied", False):
        return 0
    shape = head.get("shape")
    if not shape:
        raise ReportError(f"metadata.json records head_quant {head_quant} but no gemmaios.head.shape",
                          hint="re-convert with this gemmaios, or pass --bundle of a bundle that records it")
    row = int(shape[1]) * 2
    return int(head.get("embedding_bytes") or int(shape[0]) * row) - row


def bundle_facts_from_dir(bundle_dir: Path, table_shape: list[int] | None = None) -> BundleFacts:
    """Bandwidth facts of a converted bundle folder.

    Reads what convert records in `metadata.json` → `gemmaios`: weights = `weight_bytes`
    when recorded, else the size of the `.aimodel` asset (less the fp16 embedding table but one
    row when `head_quant` is int4/int8: that head is an untied copy); KV bytes per position = the state
    specs (`states`: each {shape, dtype}, the sequence dim dynamic = None) summed over K and
    V; PLE row = `ple_table.shape` [V, L*D] (tbl bundles) or `table_shape` (the tables step's record).
    """
    bundle_dir = Path(bundle_dir)
    meta_path = bundle_dir / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read {meta_path} ({exc})", hint="pass --bundle <bundle folder> of the run") from exc
    ours = meta.get("gemmaios") or {}
    name = meta.get("name") or ours.get("name") or bundle_dir.name
    if "weight_bytes" in ours:
        weight_bytes, weight_src = int(ours["weight_bytes"]), "metadata weight_bytes"
    else:
        assets = sorted(bundle_dir.glob("*.aimodel")) or [bundle_dir / meta.get("assets", {}).get("main", "")]
        if not assets[0].exists() or assets[0] == bundle_dir:
            raise ReportError(f"{bundle_dir} has no .aimodel asset", hint="run `gemmaios convert` or pass --bundle")
        weight_bytes, weight_src = _asset_bytes(assets[0]), f"size of {assets[0].name}"
        untied = _untied_embedding_bytes(ours)
        if untied:
            weight_bytes -= untied
            weight_src += (f" less the fp16 embedding table ({size_text(untied)} net; head_quant "
                           f"{ours.get('head_quant')}: the untied head is read whole, the embedding one row per token)")
    kv = 0
    states = ours.get("states") or []
    for state in states.values() if isinstance(states, dict) else states:
        dims = state.get("shape", [])
        static = [d for d in dims if _is_static(d)]
        if len(static) == len(dims) - 1:  # exactly one dynamic (sequence) dim
            kv += math.prod(static) * _DTYPE_BYTES.get(str(state.get("dtype", "float16")).lower(), 2)
    if not kv:
        raise ReportError(f"{meta_path} records no KV state specs (gemmaios.states with one dynamic dim)",
                          hint="re-convert with this gemmaios, or pass --bundle of a bundle that records them")
    shape = (ours.get("ple_table") or {}).get("shape") or table_shape
    ple = ple_row_bytes(1, int(shape[1])) if shape else 0
    model = find_model(str((ours.get("source") or {}).get("model_id") or ""))
    return BundleFacts(name, weight_bytes, kv, ple,
                       source=f"bundle {bundle_dir.name}: weights = {weight_src}; KV from the state specs; "
                              f"PLE row {'from table shape' if shape else 'none recorded'}",
                       model_key=model.key if model else None)
