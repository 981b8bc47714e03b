"""A minimal Core AI LanguageBundle folder, in the layout docs/contracts.md gives for the convert
step's output: `<name>.aimodel` (a folder, as coreai's save_asset writes it), metadata.json in
Apple's 0.2 shape with assets.main → the .aimodel, and tokenizer/. The .aimodel holds bytes, not
a program: the compile tests only move and hash it (the stand-in xcrun does not read it).
The `bundle` fixture (tests/conftest.py) makes one in the test's folder; `render_bundle` makes a build
folder's bundle and tables for the Swift tests to render the app against."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gemmaios import contract as c
from gemmaios.app import PromptSet
from gemmaios.bundlemetadata import write_metadata

NAME = "gemma4_tiny_decode_int4"


def make_bundle(bundle_dir: Path, name: str = NAME) -> Path:
    aimodel = bundle_dir / f"{name}.aimodel"
    aimodel.mkdir(parents=True)
    (aimodel / "main.mlirb").write_bytes(os.urandom(4096))
    (aimodel / "metadata.json").write_text(json.dumps({"producer": "coreai-core 1.0.0b3"}))
    (bundle_dir / "tokenizer").mkdir()
    (bundle_dir / "tokenizer" / "tokenizer.json").write_text("{}")
    (bundle_dir / "metadata.json").write_text(json.dumps({
        "metadata_version": "0.2", "kind": "llm", "name": name,
        "assets": {"main": f"{name}.aimodel"},
        "language": {"tokenizer": "tokenizer", "vocab_size": 512, "max_context_length": 256,
                     "embedded_tokenizer": True},
        "user_data": {"quant": "int4"},
    }, indent=2))
    return bundle_dir


def render_bundle(build: Path, ple: str, *, compiled: bool = True) -> tuple[str, Path]:
    """A build folder's bundle (AOT-compiled unless told) and PLE tables, enough for the app step to render
    against: the Swift tests render the app from it."""
    name = "gemma4_tiny_decode_int4" + ("_tbl" if ple == "tbl" else "")
    bundle = build / "bundle" / name
    (bundle / "tokenizer").mkdir(parents=True)
    (bundle / "tokenizer" / "tokenizer.json").write_text("{}")
    (bundle / f"{name}.aimodel").mkdir()
    (bundle / f"{name}.aimodel" / "model.mlirb").write_bytes(b"aimodel")
    asset = f"{name}.aimodel"
    if compiled:
        asset = f"{name}.h18p.aimodelc"
        (bundle / asset).mkdir()
        (bundle / asset / "main-h18p.mlirb").write_bytes(b"aimodelc")
        (bundle / asset / "metadata.json").write_text(json.dumps({"producer": "coreai-build-test"}))
    write_metadata(bundle, name=name, aimodel=asset, tokenizer="tiny", vocab_size=64, max_context=128,
                   gemmaios={"quant": "int4", "ple": ple})
    tables = build / "tables"
    tables.mkdir(exist_ok=True)
    (tables / c.TABLE_I8_FILE).write_bytes(bytes(64 * 2 * 4))
    (tables / c.TABLE_SCALE_FILE).write_bytes(bytes(64 * 4))
    return name, bundle


# A two-prompt set for rendered apps.
RENDER_PROMPTS = PromptSet("vector", "0" * 64, 4, [{"id": "p0", "prompt_ids": [2, 5, 1, 7]},
                                                  {"id": "p1", "prompt_ids": [2, 9]}])
