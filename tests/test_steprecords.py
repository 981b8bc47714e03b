"""build.json's per-step records: typed (steprecords), schema-versioned, read and written by pipeline.Manifest
only; schema-1 folders migrate on read; every path in a build folder named in buildlayout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gemmaios import buildlayout
from gemmaios.bundlename import bundle_name, model_key_of
from gemmaios.errors import BuildError
from gemmaios.pipeline import MANIFEST_SCHEMA, Manifest, StepRecord, finished_details
from gemmaios.steprecords import (
    AppDetails,
    CompileDetails,
    ConvertDetails,
    EngineDetails,
    OracleDetails,
    PendingDetails,
    TablesDetails,
)

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit" / "gemmaios"

CONVERT = ConvertDetails(bundle_dir="bundle/gemma4_tiny_decode_int4", name="gemma4_tiny_decode_int4",
                         aimodel="bundle/gemma4_tiny_decode_int4/gemma4_tiny_decode_int4.aimodel",
                         metadata="bundle/gemma4_tiny_decode_int4/metadata.json", quant="int4", head_quant="int4",
                         ple="provider", max_context=1024, gates={"bundle_run": {"exact": 8}})


def _raw(step: str, details: dict, status: str = "done") -> dict:
    return {"status": status, "fingerprint": "fp", "inputs": {}, "outputs": {}, "tools": {}, "details": details,
            "message": "", "started": "", "seconds": 0.0}


def test_a_typed_record_round_trips_through_build_json(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.record("convert", StepRecord(status="done", fingerprint="fp", inputs={}, details=CONVERT))
    app = AppDetails(project="app/GemmaBench", xcodeproj="app/GemmaBench/GemmaBench.xcodeproj",
                     engine=EngineDetails("pending", "engine/coreai-models", command="git clone …"),
                     bundle_location="bundled")
    manifest.record("app", StepRecord(status="done", fingerprint="fp", inputs={}, details=app))
    manifest.record("compile", StepRecord(status="pending", fingerprint="fp", inputs={},
                                          details=PendingDetails("xcrun coreai-build compile …")))
    data = json.loads((tmp_path / buildlayout.MANIFEST_NAME).read_text())
    assert data["schema"] == MANIFEST_SCHEMA == 2
    assert data["steps"]["convert"]["details"]["quant"] == "int4"  # the file keeps plain JSON
    again = Manifest(tmp_path)
    assert again.details("convert") == CONVERT
    assert again.details("app").engine == EngineDetails("pending", "engine/coreai-models", command="git clone …")
    assert again.details("compile") is None  # pending: not finished
    assert again.get("compile").details == PendingDetails("xcrun coreai-build compile …")
    assert finished_details(tmp_path, "convert").bundle_dir == CONVERT.bundle_dir


def test_a_schema_1_folder_is_migrated_on_read_and_written_back_as_schema_2(tmp_path):
    """Schema 1 left optional fields out (a text build's oracle has no image fields, a picked-up compile no
    manual command); they read as their defaults and the next write stores schema 2."""
    oracle = {"oracle": "oracle/oracle.json", "prompt_set": {"name": "builtin", "sha256": "ab"},
              "max_new_tokens": 32, "top_k": 5, "min_margin": 0.25, "prompts_reaching_eos": 1}
    compile_ = {"arch": "h18p", "platform": "iOS", "source_sha256": "cd", "command": "xcrun …", "producer": "x",
                "tool_version": "", "host": "picked up (compiled elsewhere)", "picked_up": True,
                "aimodelc": "bundle/b/b.h18p.aimodelc", "metadata": "bundle/b/metadata.json",
                "metadata_mac": "bundle/b/metadata.mac.json"}
    (tmp_path / "build.json").write_text(json.dumps({"schema": 1, "options": {"model": "tiny"}, "steps": {
        "oracle": _raw("oracle", oracle), "compile": _raw("compile", compile_),
        "sign": _raw("sign", {"command": "xcodebuild …"}, status="pending")}}))
    manifest = Manifest(tmp_path)
    assert manifest.details("oracle") == OracleDetails(**oracle)
    assert manifest.details("oracle").image_oracle is None and manifest.details("oracle").image_prompts == 0
    assert manifest.details("compile") == CompileDetails(**compile_)
    assert manifest.details("compile").manual_command == "" and manifest.details("compile").vision_aimodelc is None
    assert manifest.get("sign").details.command == "xcodebuild …"
    manifest.record("convert", StepRecord(status="done", fingerprint="fp", inputs={}, details=CONVERT))
    data = json.loads((tmp_path / "build.json").read_text())
    assert data["schema"] == 2 and data["options"] == {"model": "tiny"}
    assert data["steps"]["oracle"]["details"] == oracle  # the older records are kept as they were


def test_a_newer_or_unknown_schema_is_a_named_error_with_the_fix(tmp_path):
    (tmp_path / "build.json").write_text(json.dumps({"schema": 3, "steps": {}}))
    with pytest.raises(BuildError, match="schema 3, written by a newer gemmaios") as err:
        Manifest(tmp_path)
    assert "upgrade gemmaios" in err.value.hint
    (tmp_path / "build.json").write_text(json.dumps({"schema": "x", "steps": {}}))
    with pytest.raises(BuildError, match="schema 'x'") as err:
        Manifest(tmp_path)
    assert "fresh --out folder" in err.value.hint


@pytest.mark.parametrize(("details", "named"), [
    ({k: v for k, v in vars(CONVERT).items() if k != "bundle_dir"}, "has no `bundle_dir`"),
    ({**vars(CONVERT), "max_context": "1024"}, "`max_context` is '1024'"),
    ({**vars(CONVERT), "vision": 1}, "`vision` is 1"),
    ("bundle/x", "it is str, not an object"),
])
def test_a_damaged_record_names_the_step_the_field_and_the_fix(tmp_path, details, named):
    (tmp_path / "build.json").write_text(json.dumps({"schema": 2, "steps": {"convert": _raw("convert", details)}}))
    with pytest.raises(BuildError, match="the convert step's record") as err:
        finished_details(tmp_path, "convert")
    assert named in str(err.value) and f"gemmaios build --force --out {tmp_path}" in err.value.hint


def test_tables_details_name_their_folder():
    tables = TablesDetails(i8="tables/embed_per_layer.i8", scale="tables/s", sidecar="tables/j", shape=[384, 96],
                           num_layers=4, dim=24, embed_scale=24 ** 0.5, source_tensor="t")
    assert tables.tables_dir == buildlayout.TABLES_DIR


@pytest.mark.parametrize(("key", "quant", "ple", "suffix", "vision"), [
    ("tiny", "int4", "provider", "", False), ("e4b", "int8", "tbl", "", True),
    ("12b", "int4", "provider", "_msdpa_g8", False), ("e2b", "fp16", "provider", "", False),
])
def test_the_model_key_reads_back_from_the_name_bundlename_made(key, quant, ple, suffix, vision):
    assert model_key_of(bundle_name(key, quant, ple, suffix, vision)) == key
    assert model_key_of(bundle_name(key + "_qat", quant, ple, suffix, vision)) == key


def test_a_foreign_bundle_name_has_no_model_key():
    assert model_key_of("my_model") is None and model_key_of("gemma4__decode_int4") is None


def _sources() -> dict[str, str]:
    return {str(p.relative_to(TOOLKIT)): p.read_text() for p in sorted(TOOLKIT.rglob("*.py"))}


def test_only_the_manifest_reads_step_records():
    """No module parses build.json or a step's details by key (issue 26: convert wrote 17 keys by hand
    and four modules parsed them back); they ask pipeline.Manifest / finished_details for typed records."""
    by_hand = re.compile(r"""details\[|\.get\(["']details["']\)|\[["']details["']\]|recorded_details|step_details"""
                         r"""|json\.loads\([^)]*build\.json""")
    offenders = {name: by_hand.findall(text) for name, text in _sources().items() if name != "pipeline.py"}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_bundle_name_and_the_build_paths_are_spelled_in_one_place():
    """bundlename.py alone spells a bundle name's grammar; buildlayout.py alone names the build folder's files."""
    grammar = re.compile(r"""["']gemma4_["']|f["']gemma4_|_decode_\{|\^gemma4_""")
    spelled = {name for name, text in _sources().items() if grammar.search(text)}
    assert spelled == {"bundlename.py"}
    # a module-level name given one of the build folder's paths; contract.py's PAYLOAD_* names are paths
    # inside the app's payload (its Documents or .app), which happen to reuse some of the same words
    layout = "|".join(re.escape(v) for k, v in vars(buildlayout).items() if k.isupper())
    literal = re.compile(rf"""^(?!PAYLOAD_)[A-Z_]+ = f?["']({layout})["']""", re.MULTILINE)
    defined = {name: literal.findall(text) for name, text in _sources().items() if name != "buildlayout.py"}
    assert {name: found for name, found in defined.items() if found} == {}
    # nor joined onto a build folder by hand (`build_dir / "runs"`, `ctx.path("oracle", "oracle.json")`)
    first = "|".join(re.escape(v.split("/")[0]) for k, v in vars(buildlayout).items() if k.isupper())
    joined = re.compile(rf"""(?:build_dir\)?|build|ctx)\s*(?:/|\.path\()\s*["']({first})["']""")
    by_hand = {name: joined.findall(text) for name, text in _sources().items()}
    assert {name: found for name, found in by_hand.items() if found} == {}
