"""A simulated iPhone's stand-in for Core AI's loading of an AOT-compiled `.aimodelc`.

The simulator has no runtime for compiled programs. When the bundle's `assets.main` is an
`.aimodelc` made by the test stand-in `xcrun coreai-build` (tests/standin_bin/xcrun), that folder
carries a copy of the graph it was "compiled" from (`standin-source.aimodel`); the app stand-in
runs that graph through Core AI's runtime in its place, from a view of the bundle whose
metadata.mac.json points at it (the form gemmaios.hostrun loads). Any other `.aimodelc`, a real
one included, is refused by name: nothing here can run it.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

STANDIN_SOURCE = "standin-source.aimodel"  # tests/standin_bin/xcrun writes it into each .aimodelc
STANDIN_PRODUCER_MARK = "gemmaios-test-stand-in"


class NotRunnableHere(Exception):
    """A compiled asset the simulator cannot execute."""


def runnable_bundle(bundle_dir: Path) -> Path:
    """`bundle_dir` itself when it holds an `.aimodel`; for a stand-in `.aimodelc`, a view that runs its source."""
    bundle_dir = Path(bundle_dir)
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    main = str(meta.get("assets", {}).get("main", ""))
    if not main.endswith(".aimodelc"):
        return bundle_dir
    compiled = bundle_dir / main
    try:
        producer = json.loads((compiled / "metadata.json").read_text()).get("producer", "")
    except (OSError, json.JSONDecodeError):
        producer = ""
    source = compiled / STANDIN_SOURCE
    if STANDIN_PRODUCER_MARK not in producer or not source.exists():
        raise NotRunnableHere(f"{compiled.name} is a compiled asset ({producer or 'unknown producer'}) and the "
                              "simulated iPhone cannot run compiled programs")
    view_root = Path(tempfile.mkdtemp(prefix="devicesim-aot-"))
    atexit.register(shutil.rmtree, view_root, True)
    view = view_root / bundle_dir.name
    view.mkdir()
    for entry in bundle_dir.iterdir():
        if entry.name != main:
            os.symlink(entry, view / entry.name)
    name = f"{main.removesuffix('.aimodelc').rsplit('.', 1)[0]}.aimodel"
    os.symlink(source, view / name)
    (view / "metadata.mac.json").write_text(json.dumps({**meta, "assets": {**meta["assets"], "main": name}}))
    return view
