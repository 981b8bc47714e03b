"""The device contract (issue 14): one Python source, a generated Swift copy, no Swift literal of
its own; the payload plan both app rendering and deploy use; the iOS bundle checks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from gemmaios import contract as c
from gemmaios import tables, transcript
from gemmaios.archs import get_arch
from gemmaios.bundlemetadata import write_metadata
from gemmaios.cli import app as cli_app
from gemmaios.decode_model import Gemma4Decode
from gemmaios.oracle import Oracle
from gemmaios.payload import (
    PayloadError,
    TablesExceedMemory,
    UncompiledBundle,
    check_ios_bundle,
    check_tbl_memory,
    payload_plan,
)

REPO = Path(__file__).resolve().parents[1]
SWIFT_STRING = re.compile(r'#"((?:[^"]|"(?!#))*)"#|"((?:[^"\\\n]|\\.)*)"')


# ---- one source ---------------------------------------------------------------------------------

def test_generated_swift_and_docs_are_current():
    assert c.stale_outputs(REPO) == [], "run `python -m gemmaios.contract --write` and commit the result"


def test_renaming_a_fact_in_python_only_makes_the_copies_stale(monkeypatch):
    monkeypatch.setattr(c, "PAYLOAD_DIR", "renamed-payload")
    assert set(c.stale_outputs(REPO)) == {c.SWIFT_RELPATH, c.DOCS_RELPATH}
    assert 'payloadFolder = "renamed-payload"' in c.render_swift()


def test_python_modules_read_the_contract():
    assert transcript.SCHEMA == c.TRANSCRIPT_SCHEMA
    assert (tables.I8_NAME, tables.SCALE_NAME) == (c.TABLE_I8_FILE, c.TABLE_SCALE_FILE)
    # the decode rule is the oracle's: greedy, exactly N, no EOS stop
    assert Oracle.__dataclass_fields__["stop_at_eos"].default is c.BENCH_STOP_AT_EOS is False
    # the graph's extra inputs are the names the app binds
    names = {ple: Gemma4Decode.input_names(SimpleNamespace(spec=SimpleNamespace(ple_dim=8), ple=ple))
             for ple in ("provider", "tbl")}
    assert names["provider"][2:] == (c.PLE_TOKENS_INPUT,)
    assert names["tbl"][2:] == (c.PLE_TABLE_INPUT, c.PLE_SCALE_INPUT)


def _swift_sources() -> list[Path]:
    files = [p for p in (REPO / "ios_template").rglob("*") if p.name.endswith((".swift", ".swift.j2"))]
    return [p for p in files if ".build" not in p.parts and p != REPO / c.SWIFT_RELPATH]


PATH_CONTEXT = re.compile(r"(appending\w*\(\s*(path:\s*)?|PathComponent\(\s*|forResource:\s*|path:\s*"
                          r"|static let \w+(\s*:\s*\w+)?\s*=\s*)$")


def _literal_problems(text: str, facts: set[str]) -> list[str]:
    """String literals that spell a contract fact. Distinctive facts (a file name, an env name)
    count anywhere inside a literal; plain words ("bundle", "tables") only as a path component,
    since the same words are also JSON keys."""
    found = []
    for match in SWIFT_STRING.finditer(text):
        literal = match.group(1) if match.group(1) is not None else match.group(2)
        in_path = bool(PATH_CONTEXT.search(text[max(0, match.start() - 40):match.start()]))
        for fact in facts:
            distinctive = bool(re.search(r"[._/-]", fact)) or fact.isupper()
            if (distinctive and fact in literal) or (literal == fact and (distinctive or in_path)):
                found.append(f"{literal!r} spells {fact!r}")
    return found


def test_no_swift_source_spells_a_contract_fact():
    facts = c.literal_facts()
    assert {"gemmaios-payload", "GEMMAIOS_BENCH", "-gemmaios-bench", "ple_tokens", "gemmaios.transcript/1"} <= facts
    sources = _swift_sources()
    assert len(sources) >= 15
    problems = {str(p.relative_to(REPO)): _literal_problems(p.read_text(), facts) for p in sources}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_literal_check_catches_the_old_spellings():
    old = 'documents.appending(path: "models"); environment["GEMMAIOS_BENCH"]; "\\(a)-gemmaios-bench"; ' \
          'let f = "embed_per_layer.i8"; setenv("COREAI_CHUNK_THRESHOLD", "1", 1); #"gemmaios-runs"#; ' \
          'root.appending(path: "tables"); ["bundle": name]; static let tablesFolder = "tables"'
    flagged = {p.split(" spells ")[0] for p in _literal_problems(old, c.literal_facts())}
    assert flagged == {"'GEMMAIOS_BENCH'", "'\\\\(a)-gemmaios-bench'", "'embed_per_layer.i8'",
                       "'COREAI_CHUNK_THRESHOLD'", "'gemmaios-runs'", "'tables'"}, flagged


def test_the_contract_cli(capsys):
    assert c.main(["--check"]) == 0
    assert "current" in capsys.readouterr().out


# ---- payload plan -------------------------------------------------------------------------------

def _bundle(build: Path, *, ple: str = "provider", compiled: str | None = "h18p", name: str = "b") -> Path:
    bundle = build / "bundle" / name
    (bundle / "tokenizer").mkdir(parents=True)
    (bundle / "tokenizer" / "tokenizer.json").write_text("{}")
    (bundle / f"{name}.aimodel").mkdir()
    (bundle / f"{name}.aimodel" / "weights.bin").write_bytes(b"x" * 10)
    asset = f"{name}.aimodel"
    if compiled:
        asset = f"{name}.{compiled}.aimodelc"
        (bundle / asset).mkdir()
        (bundle / asset / f"main-{compiled}.mlirb").write_bytes(b"y" * 20)
        (bundle / asset / "metadata.json").write_text(json.dumps({"producer": "coreai-build-3600"}))
        (bundle / "metadata.mac.json").write_text("{}")
    write_metadata(bundle, name=name, aimodel=asset, tokenizer="tiny", vocab_size=8, max_context=64,
                   gemmaios={"quant": "int4", "ple": ple})
    (build / "tables").mkdir(exist_ok=True)
    for f in (c.TABLE_I8_FILE, c.TABLE_SCALE_FILE, "embed_per_layer.json"):
        (build / "tables" / f).write_bytes(b"t")
    (build / "app").mkdir(exist_ok=True)
    (build / "app" / c.PROMPT_SET_FILE).write_text("{}")
    return bundle


@pytest.mark.parametrize("ple", ["provider", "tbl", "none"])
def test_payload_is_what_the_app_reads_and_lands_in_one_place(tmp_path, ple):
    bundle = _bundle(tmp_path, ple=ple)
    bundled = payload_plan(tmp_path, c.BUNDLED, bundle_dir=bundle, ple=ple)
    documents = payload_plan(tmp_path, c.PUSHED_TO_DOCUMENTS, bundle_dir=bundle, ple=ple)
    assert bundled.documents_files() == [] and documents.app_files() == []
    assert [d for _, d in bundled.app_files()] == [d for _, d in documents.documents_files()]
    dests = sorted(d for _, d in bundled.app_files())
    p = c.PAYLOAD_DIR
    expected = [f"{p}/bundle/b/b.h18p.aimodelc/main-h18p.mlirb", f"{p}/bundle/b/b.h18p.aimodelc/metadata.json",
                f"{p}/bundle/b/metadata.json", f"{p}/bundle/b/tokenizer/tokenizer.json", f"{p}/prompts.json"]
    if ple != "none":
        expected += [f"{p}/tables/{c.TABLE_I8_FILE}", f"{p}/tables/{c.TABLE_SCALE_FILE}"]
    assert dests == sorted(expected)  # never the .aimodel next to the .aimodelc, no sidecars


def test_uncompiled_payload_carries_the_aimodel_only(tmp_path):
    bundle = _bundle(tmp_path, compiled=None)
    dests = [d for _, d in payload_plan(tmp_path, c.PUSHED_TO_DOCUMENTS, bundle_dir=bundle).documents_files()]
    assert f"{c.PAYLOAD_DIR}/bundle/b/b.aimodel/weights.bin" in dests
    assert not any("aimodelc" in d for d in dests)


def test_payload_plan_names_what_is_missing(tmp_path):
    bundle = _bundle(tmp_path)
    (tmp_path / "tables" / c.TABLE_SCALE_FILE).unlink()
    with pytest.raises(PayloadError, match=c.TABLE_SCALE_FILE):
        payload_plan(tmp_path, c.PUSHED_TO_DOCUMENTS, bundle_dir=bundle, ple="provider")
    (tmp_path / "app" / c.PROMPT_SET_FILE).unlink()
    with pytest.raises(PayloadError, match="prompt set"):
        payload_plan(tmp_path, c.PUSHED_TO_DOCUMENTS, bundle_dir=bundle, ple="none")
    with pytest.raises(PayloadError, match="no converted bundle"):
        payload_plan(tmp_path / "empty", c.PUSHED_TO_DOCUMENTS)
    with pytest.raises(PayloadError, match="bundle location"):
        payload_plan(tmp_path, "cloud", bundle_dir=bundle)


# ---- iOS checks ---------------------------------------------------------------------------------

def test_uncompiled_or_foreign_bundle_is_refused_for_ios(tmp_path):
    h18p = get_arch("h18p")
    with pytest.raises(UncompiledBundle) as err:
        check_ios_bundle(_bundle(tmp_path / "a", compiled=None), h18p)
    assert "xcrun coreai-build compile" in err.value.command and "--architecture h18p" in err.value.command
    assert "--allow-uncompiled" in err.value.hint
    with pytest.raises(UncompiledBundle, match="not an AOT .aimodelc for h18p"):
        check_ios_bundle(_bundle(tmp_path / "b", compiled="h17p"), h18p)
    assert check_ios_bundle(_bundle(tmp_path / "c"), h18p) is None
    assert "--allow-uncompiled" in check_ios_bundle(_bundle(tmp_path / "d", compiled=None), h18p,
                                                    allow_uncompiled=True)
    assert check_ios_bundle(_bundle(tmp_path / "e", compiled=None), get_arch("h16c")) is None  # macOS: not an iPhone


def test_e4b_tbl_is_refused_for_iphone_with_the_arithmetic(tmp_path):
    bundle = _bundle(tmp_path, ple="tbl")
    graph = bundle / "b.h18p.aimodelc" / "main-h18p.mlirb"
    with open(graph, "wb") as fh:  # sparse: E4B int4 graph ~3.7 GB, tables 2.8 GB
        fh.truncate(3_700_000_000)
    i8, scale = tmp_path / "tables" / c.TABLE_I8_FILE, tmp_path / "tables" / c.TABLE_SCALE_FILE
    with open(i8, "wb") as fh:
        fh.truncate(262_144 * 42 * 256)
    with open(scale, "wb") as fh:
        fh.truncate(262_144 * 4)
    h18p = get_arch("h18p")
    with pytest.raises(TablesExceedMemory) as err:
        check_tbl_memory(bundle, [i8, scale], h18p, "tbl")
    text = str(err.value)
    assert "graph 3.70 GB" in text and "owned PLE tables 2.82 GB" in text and "6.40 GB" in text
    assert "--ple provider" in err.value.hint and "--allow-tbl" in err.value.hint
    assert "--allow-tbl" in check_tbl_memory(bundle, [i8, scale], h18p, "tbl", allow_tbl=True)
    assert check_tbl_memory(bundle, [i8, scale], h18p, "provider") is None
    with open(i8, "wb") as fh:
        fh.truncate(1000)
    assert check_tbl_memory(bundle, [i8, scale], h18p, "tbl") is None  # fits


def test_app_command_offers_the_overrides():
    result = CliRunner().invoke(cli_app, ["app", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--allow-uncompiled" in result.output and "--allow-tbl" in result.output


def test_kv_guard_records_what_an_ios_context_allows():
    """Issue 27 (apple/coreai-models#124): the default 4096 can bind 4096 KV positions; 1024 stays known-good."""
    assert c.kv_guard(4096) == {"allowed_context": 4096, "largest_kv_capacity": 4096, "safe_kv_capacity": 1024,
                                "within_safe": False, "issue": "apple/coreai-models#124",
                                "warning": c.KV_FAULT_WARNING}
    assert c.kv_guard(1024)["within_safe"] and c.kv_guard(1000)["largest_kv_capacity"] == 1024
    assert not c.kv_guard(1025)["within_safe"] and c.kv_guard(1025)["largest_kv_capacity"] == 2048
    assert c.kv_fault_warning(1024, "iOS") is None and c.kv_fault_warning(4096, "macOS") is None
    assert c.KV_FAULT_ISSUE in c.kv_fault_warning(2048, "iOS")
