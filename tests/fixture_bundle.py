"""A minimal Core AI LanguageBundle folder, in the layout docs/contracts.md gives for the convert
step's output: `<name>.aimodel` (a folder, as coreai's save_asset writes it), metadata.json in
Apple's 0.2 shape with assets.main → the .aimodel, and tokenizer/. The .aimodel holds bytes, not
a program: the compile tests only move and hash it (the stand-in xcrun does not read it).
The `bundle` fixture (tests/conftest.py) makes one in the test's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

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

