"""Bundle facts the roofline needs (weight, KV and PLE bytes), read from a build folder's manifest or a
bundle's metadata.json.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import sha256_file
from ..registry import MODELS, find_model
from ..roofline import GB, estimate_weight_bytes, ple_row_bytes
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


def read_build_manifest(build_dir: Path | None) -> dict:
    """The build's build.json as read by pipeline.Manifest ({} without one; a damaged one is named)."""
    from ..pipeline import MANIFEST_NAME, Manifest

    if build_dir is None or not (build_dir / MANIFEST_NAME).is_file():
        return {}
    return Manifest(build_dir).data


def step_details(manifest: dict, step: str) -> dict:
    return (manifest.get("steps", {}).get(step) or {}).get("details") or {}


_BUNDLE_NAME = re.compile(r"^gemma4_(?P<key>[a-z0-9]+?)(?:_qat)?_decode_(?P<quant>int4|int8|fp16)")


def bundle_facts(t: Transcript, build_dir: Path | None, manifest: dict,
                  bundle_dir: Path | None) -> tuple[BundleFacts | None, str]:
    """From an explicit bundle folder, else the build's convert output, else the registry."""
    name = t.bundle.get("name", "")
    if bundle_dir is None and build_dir is not None:
        rel = step_details(manifest, "convert").get("bundle_dir")
        if rel and (build_dir / rel / "metadata.json").is_file():
            bundle_dir = build_dir / rel
    if bundle_dir is not None:
        facts = bundle_facts_from_dir(bundle_dir, tables=step_details(manifest, "tables"))
        note = ""
        recorded = t.bundle.get("metadata_sha256")
        if facts.name and name and facts.name != name:
            note = f"the run names bundle {name!r} but the bundle read for the roofline is {facts.name!r}"
        elif recorded and recorded != sha256_file(bundle_dir / "metadata.json"):
            note = (f"the run's bundle metadata sha256 {recorded[:12]} differs from {bundle_dir}/metadata.json: "
                    "the roofline uses that folder's facts, which may not be what ran")
        return facts, note
    match = _BUNDLE_NAME.match(name)
    spec = MODELS.get(match["key"]) if match else None
    if spec is None:
        return None, f"no bundle files and {name!r} is not a registry model: pass --bundle for the roofline"
    # The bundle name does not say how the head is stored; convert's default follows --quant.
    est = estimate_weight_bytes(spec, quant=match["quant"], head_quant=match["quant"])
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


def bundle_facts_from_dir(bundle_dir: Path, tables: dict | None = None) -> BundleFacts:
    """Bandwidth facts of a converted bundle folder.

    Reads what convert records in `metadata.json` → `gemmaios`: weights = `weight_bytes`
    when recorded, else the size of the `.aimodel` asset (less the fp16 embedding table but one
    row when `head_quant` is int4/int8: that head is an untied copy); KV bytes per position = the state
    specs (`states`: each {shape, dtype}, the sequence dim dynamic = None) summed over K and
    V; PLE row = `ple_table.shape` [V, L*D] (tbl bundles) or the tables step's `shape`.
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
            weight_src += (f" less the fp16 embedding table ({untied / GB:.3f} GB net; head_quant "
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
    shape = (ours.get("ple_table") or {}).get("shape") or (tables or {}).get("shape")
    ple = ple_row_bytes(1, int(shape[1])) if shape else 0
    model = find_model(str((ours.get("source") or {}).get("model_id") or ""))
    return BundleFacts(name, weight_bytes, kv, ple,
                       source=f"bundle {bundle_dir.name}: weights = {weight_src}; KV from the state specs; "
                              f"PLE row {'from table shape' if shape else 'none recorded'}",
                       model_key=model.key if model else None)
