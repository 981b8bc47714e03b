"""The package's import structure as a checked contract (issue 26).

Built from grimp's import graph (import-linter's engine), which counts every import statement in a
module: top-level, function-local and `if TYPE_CHECKING:` ones alike.

- no cycles among gemmaios modules;
- layers hold: a module imports only from its own layer or a lower one (LAYERS, lowest first);
  every module is placed, so a new one has to say where it belongs;
- no module imports another module's private name (`from x import _y`, `x._y`).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "toolkit" / "gemmaios"

# Lowest first. A module belongs to the layer of its longest matching prefix; a package's
# `__init__` re-exports its step, so it sits with the step (gemmaios.oracle, .tables, .convert, .app).
LAYERS: dict[str, tuple[str, ...]] = {
    # what every part agrees on: names, formats, rules, errors, file writing
    "facts": (
        "gemmaios", "gemmaios.errors", "gemmaios.files", "gemmaios.swift_text", "gemmaios.archs",
        "gemmaios.registry", "gemmaios.contract", "gemmaios.config", "gemmaios.crash", "gemmaios.roofline",
        "gemmaios.memory", "gemmaios.transcript", "gemmaios.oracle.prompts", "gemmaios.bundlename",
        "gemmaios.quiet", "gemmaios.xctest", "gemmaios.buildlayout", "gemmaios.steprecords",
        "gemmaios.chat",
    ),
    # the model: checkpoints, the decode module, its conversion and gates, the reference oracle,
    # tables, kernels, images, the host runtime (its `run --bench` included)
    "model": (
        "gemmaios.checkpoint", "gemmaios.tiny", "gemmaios.tinycorpus", "gemmaios.tinytrain",
        "gemmaios.decode_model", "gemmaios.hf_text", "gemmaios.parity", "gemmaios.quantize", "gemmaios.bundlemetadata",
        "gemmaios.kernels", "gemmaios.convert.converter", "gemmaios.convert.export", "gemmaios.convert.gates", "gemmaios.convert.assets",
        "gemmaios.convert.options", "gemmaios.convert.multimodal", "gemmaios.oracle.determinism", "gemmaios.oracle.records",
        "gemmaios.oracle.reference", "gemmaios.oracle.encoders", "gemmaios.oracle.scoring", "gemmaios.tables.layout",
        "gemmaios.tables.quantize", "gemmaios.tables.reader", "gemmaios.tables.sidecar", "gemmaios.tables.source",
        "gemmaios.tables.verify", "gemmaios.tables.writer", "gemmaios.vision", "gemmaios.audio", "gemmaios.hostrun",
        "gemmaios.recipe", "gemmaios.calibrate", "gemmaios.assetread", "gemmaios.sensitivity", "gemmaios.convert.mixed",
        "gemmaios.hostrun.multimodal",
        "gemmaios.unified_inputs", "gemmaios.unified_embedders", "gemmaios.unified",
        "gemmaios.encoder_weights",  # the vision and audio encoders' tower + embedder loading
        "gemmaios.audio.clips",  # issue 28: the project's test clips for the Swift front end
    ),
    # the build: the pipeline and its steps, the toolchain boundary, the app and its payload
    "steps": (
        "gemmaios.pipeline", "gemmaios.steps", "gemmaios.compile", "gemmaios.sign", "gemmaios.runners",
        "gemmaios.patches", "gemmaios.payload", "gemmaios.app", "gemmaios.convert", "gemmaios.oracle",
        "gemmaios.tables", "gemmaios.vision.imagebench", "gemmaios.audio.audiobench", "gemmaios.buildfolder",
    ),
    # after the build: the phone, benches and what is made of their logs
    "device/results": (
        "gemmaios.device", "gemmaios.devicebench", "gemmaios.fulldeploy", "gemmaios.report", "gemmaios.doctor",
        "gemmaios.xctestbench", "gemmaios.farm", "gemmaios.abbench",
    ),
    "cli": ("gemmaios.cli", "gemmaios.cli_device", "gemmaios.cli_results", "gemmaios.cli_run", "gemmaios.cli_options",
            "gemmaios.cli_console", "gemmaios.cli_farm", "gemmaios.cli_xctest"),
}

ROOT = "gemmaios"  # the package's own __init__: placed by name only, so it places no other module


@pytest.fixture(scope="module")
def graph():
    sys.path.insert(0, str(PACKAGE_DIR.parent))
    return grimp.build_graph("gemmaios", cache_dir=None)


def layer_of(module: str) -> int:
    best, rank = "", -1
    for i, prefixes in enumerate(LAYERS.values()):
        for p in prefixes:
            if (module == p or (p != ROOT and module.startswith(p + "."))) and len(p) > len(best):
                best, rank = p, i
    return rank


def cycles(graph) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            recurse = False
            for j in range(i, len(edges[v])):
                w = edges[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


def describe(graph, comp: set[str]) -> str:
    lines = []
    for a in sorted(comp):
        for b in sorted(set(graph.find_modules_directly_imported_by(a)) & comp):
            for d in graph.get_import_details(importer=a, imported=b):
                lines.append(f"  {a}:{d['line_number']} {d['line_contents']}")
    return "\n".join(lines)


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert not found, "import cycles (function-local imports count):\n" + "\n\n".join(describe(graph, c) for c in found)


def test_every_module_has_a_layer(graph):
    assert not sorted(m for m in graph.modules if layer_of(m) < 0), "place these modules in LAYERS"


def test_layers_hold(graph):
    names = list(LAYERS)
    bad = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if layer_of(imported) > layer_of(importer):
                for d in graph.get_import_details(importer=importer, imported=imported):
                    bad.append(f"  {importer} ({names[layer_of(importer)]}) → {imported} "
                               f"({names[layer_of(imported)]}), line {d['line_number']}: {d['line_contents']}")
    assert not bad, "imports against the layers " + " → ".join(names) + ":\n" + "\n".join(bad)


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    out = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def private_imports(package_dir: Path = PACKAGE_DIR) -> set[tuple[str, str]]:
    """(importer, module.name) for each private name one module of the package takes from another."""
    files = module_files(package_dir)
    found = set()
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        modules = {}  # local name → the gemmaios module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                if base not in files:
                    continue
                for alias in node.names:
                    if f"{base}.{alias.name}" in files:
                        modules[alias.asname or alias.name] = f"{base}.{alias.name}"
                    elif alias.name.startswith("_") and not alias.name.startswith("__") and base != name:
                        found.add((name, f"{base}.{alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in files:
                        modules[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            parts, value = [], node.value
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in modules:
                owner = ".".join([modules[value.id], *reversed(parts)])
                if owner in files and owner != name:
                    found.add((name, f"{owner}.{node.attr}"))
    return found


def test_no_module_imports_another_modules_private_names():
    extra = sorted(private_imports())
    assert not extra, "private names taken from another module (make them public under a good name, or move them):\n" \
        + "\n".join(f"  {importer}: {name}" for importer, name in extra)


def test_the_private_name_scan_sees_what_it_should(tmp_path):
    """The scanner itself, on a package made here: each way of reaching a private name is found;
    public names, dunders and a module's own private names are not."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("_x = _y = _z = _w = pub = 1\n_own = 2\nprint(_own, __name__)\n")
    (pkg / "sub" / "__init__.py").write_text("from ..a import _x, pub\n")
    (pkg / "sub" / "b.py").write_text(
        "import pkg.a\nimport pkg.a as m\nfrom .. import a\n"
        "def f():\n    from pkg.a import _w\n    return pkg.a._y + m._z + a.pub + a.__doc__ + _w\n")
    assert private_imports(pkg) == {("pkg.sub", "pkg.a._x"), ("pkg.sub.b", "pkg.a._y"), ("pkg.sub.b", "pkg.a._z"),
                                    ("pkg.sub.b", "pkg.a._w")}


def test_the_cycle_finder_counts_function_local_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    (pkg / "d.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cycles(grimp.build_graph("cyc", cache_dir=None)) == [{"cyc.a", "cyc.b", "cyc.c"}]
