"""A bench transcript and the build folder the report reads, as plain records (no device, no model):
the report tests and the farm tests score these."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def bundle_metadata(weight_bytes: int | None = 3_000_000_000) -> str:
    """metadata.json as convert writes it, reduced to what the report reads."""
    ours = {"quant": "int4", "ple": "provider",
            "states": [{"name": "keyCache", "shape": [24, 1, 2, None, 512], "dtype": "Float16"},
                       {"name": "valueCache", "shape": [24, 1, 2, None, 512], "dtype": "Float16"}]}
    if weight_bytes is not None:
        ours["weight_bytes"] = weight_bytes
    return json.dumps({"kind": "llm", "name": "gemma4_e4b_qat_decode_int4",
                       "assets": {"main": "gemma4_e4b_qat_decode_int4.aimodel"}, "gemmaios": ours})


PROMPT_SET = {"name": "builtin", "sha256": "a" * 64, "count": 2}
BUNDLE = {"name": "gemma4_e4b_qat_decode_int4", "metadata_sha256": hashlib.sha256(bundle_metadata().encode()).hexdigest(),
          "quant": "int4", "ple": "provider"}
# Per trial, two prompts: (prefill tokens, prefill s, decode tokens, decode s, ttft s).
# Σ/Σ rates differ from the mean of per-prompt rates, so the definition is tested, not just "a rate".
TRIALS = {
    0: [(20, 2.0, 31, 4.0, 2.1), (40, 4.0, 31, 4.0, 4.1)],  # warm-up: prefill 10, decode 7.75
    1: [(20, 1.0, 31, 2.0, 1.1), (40, 1.0, 31, 2.0, 1.1)],  # prefill 60/2 = 30, decode 62/4 = 15.5
    2: [(20, 1.0, 31, 2.5, 1.2), (40, 2.0, 31, 2.5, 2.2)],  # prefill 60/3 = 20, decode 62/5 = 12.4
    3: [(20, 0.8, 31, 2.0, 0.9), (40, 1.6, 31, 2.0, 1.7)],  # prefill 60/2.4 = 25, decode 62/4 = 15.5
}


def header(**over) -> dict:
    h = {"type": "header", "schema": "gemmaios.transcript/1", "run_id": "run-a", "started_at": "2026-11-24T10:00:00Z",
         "device": {"product_type": "iPhone18,1", "name": "Test iPhone", "os_version": "27.0", "arch": "h18p",
                    "udid": "0000-TEST"},
         "bundle": dict(BUNDLE), "app": {"version": "0.1.0", "toolkit_version": "0.1.0"},
         "prompt_set": dict(PROMPT_SET), "trials": len(TRIALS), "max_new_tokens": 32, "platform": "iOS"}
    h.update(over)
    return h


def prompt(trial: int, index: int, row, thermal: str = "nominal", peak: int = 2_000_000_000,
           generated: list[int] | None = None) -> dict:
    p_tok, p_s, d_tok, d_s, ttft = row
    # per-token decode times: steady, then slower with context (sums to d_s)
    per_token = [d_s / d_tok] * d_tok
    return {"type": "prompt", "trial": trial, "index": index, "prompt_id": f"p{index}",
            "prompt_ids": list(range(2, 2 + p_tok)), "generated_ids": generated or list(range(100, 132)),
            "prefill_tokens": p_tok, "prefill_seconds": p_s, "ttft_seconds": ttft, "decode_tokens": d_tok,
            "decode_seconds": d_s, "decode_token_seconds": per_token, "peak_phys_footprint_bytes": peak,
            "os_proc_available_memory_bytes": 4_300_000_000, "thermal_state": thermal,
            "seconds_since_launch": 40.0 + trial * 10 + index}


def footer(**over) -> dict:
    f = {"type": "footer", "completed": True, "ended_at": "2026-11-24T10:01:00Z", "battery_level": 0.81,
         "battery_state": "unplugged", "seconds_since_unlock": 900.0}
    f.update(over)
    return f


def records(*, thermal: dict | None = None, with_footer: bool = True, trials=TRIALS, **header_over) -> list[dict]:
    out = [header(**header_over), {"type": "load", "seconds": 12.5, "cold": True},
           {"type": "load", "seconds": 2.5, "cold": False}, {"type": "load", "seconds": 3.1, "cold": False},
           {"type": "memory", "t": 1.0, "phys_footprint_bytes": 900_000_000, "available_bytes": 5_000_000_000},
           {"type": "memory", "t": 30.0, "phys_footprint_bytes": 2_200_000_000, "available_bytes": 4_100_000_000}]
    for t, rows in trials.items():
        for i, row in enumerate(rows):
            out.append(prompt(t, i, row, thermal=(thermal or {}).get(t, "nominal")))
    if with_footer:
        out.append(footer())
    return out


def build_folder(tmp_path: Path, name: str = "build", weight_bytes: int | None = 3_000_000_000) -> Path:
    """A build folder as convert/tables leave it, reduced to what the report reads."""
    build = tmp_path / name
    bundle = build / "bundle" / "gemma4_e4b_qat_decode_int4"
    bundle.mkdir(parents=True)
    (bundle / "metadata.json").write_text(bundle_metadata(weight_bytes))
    from gemmaios.pipeline import Manifest, StepRecord
    from gemmaios.steprecords import ConvertDetails, TablesDetails

    name, rel = "gemma4_e4b_qat_decode_int4", "bundle/gemma4_e4b_qat_decode_int4"
    manifest = Manifest(build)
    for step, details in (
        ("convert", ConvertDetails(bundle_dir=rel, name=name, aimodel=f"{rel}/{name}.aimodel",
                                   metadata=f"{rel}/metadata.json", quant="int4", head_quant="int4",
                                   ple="provider", max_context=4096)),
        ("tables", TablesDetails(i8="tables/embed_per_layer.i8", scale="tables/embed_per_layer.scale.f32",
                                 sidecar="tables/embed_per_layer.json", shape=[262144, 10752], num_layers=42,
                                 dim=256, embed_scale=16.0, source_tensor="embed_tokens_per_layer.weight")),
    ):
        manifest.record(step, StepRecord(status="done", fingerprint="fp", inputs={}, details=details))
    return build
