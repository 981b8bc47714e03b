"""Build folders for the device tests: the tiny model built for real (checkpoint, tables, oracle,
int8 bundle, rendered app) once per session, in both bundle locations.

The builds run every gate, the bundle-run gate included (the trained tiny model passes it
8/8). The bundle is not AOT-compiled (no Mac here), so the app step and deploy run with
`--allow-uncompiled`, as a user without a Mac would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gemmaios import contract
from gemmaios.pipeline import BuildOptions
from gemmaios.steps import run_build

BUNDLE_ID = "dev.gemmaios.bench"
ORACLE_TOKENS = 8  # enough to score; keeps each bench short on a CPU runtime


def tiny_options(location: str) -> BuildOptions:
    options = BuildOptions(model="tiny", quant="int8", arch="h18p", oracle_tokens=ORACLE_TOKENS)
    options.extra["app"] = {"allow_uncompiled": True, "allow_clone": False, "bundle_location": location,
                            "bundle_id": BUNDLE_ID}
    return options


def build_tiny_app(out: Path, location: str, *, only: set[str] | None = None) -> Path:
    _, reports = run_build(tiny_options(location), out, only=only)
    status = {r.name: r.status for r in reports}
    assert status.get("app") == "done" and status.get("convert", "done") in ("done", "skipped"), status
    if "convert" in status:
        gate = json.loads((out / "build.json").read_text())["steps"]["convert"]["details"]["gates"]["bundle_run"]
        assert gate["exact"] == gate["total"] == 8, gate["summary"]
    return out


def copy_build(source: Path, dest: Path) -> Path:
    """A private copy of a shared build for a test that changes it. A real copy, not hard links: a tiny
    build is ~3 MB in ~25 files (0.05 s to copy), and writers that truncate in place (safetensors,
    json) would change the shared original through a hard link."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


def bundle_dir(build: Path) -> Path:
    details = json.loads((build / "build.json").read_text())["steps"]["convert"]["details"]
    return build / details["bundle_dir"]


def app_project(build: Path) -> Path:
    return build / json.loads((build / "build.json").read_text())["steps"]["app"]["details"]["project"]


def shrink_prompt_set(build: Path, prompts: int = 2, tokens: int = 6, max_new_tokens: int = 3) -> dict:
    """A short prompt set for the mechanics tests (each bench then takes seconds, not a minute),
    written where the payload takes it from: `<build>/app/prompts.json`, and the copy the app
    step staged into the project for a bundled .app."""
    path = build / "app" / contract.PROMPT_SET_FILE
    data = json.loads(path.read_text())
    data["prompts"] = [{"id": p["id"], "prompt_ids": p["prompt_ids"][:tokens]} for p in data["prompts"][:prompts]]
    data["max_new_tokens"] = max_new_tokens
    data["name"] = "short"
    text = json.dumps(data, indent=1, sort_keys=True)
    path.write_text(text)
    staged = app_project(build) / contract.PAYLOAD_DIR / contract.PROMPT_SET_FILE
    if staged.exists():
        staged.unlink()
        staged.write_text(text)
    return data
