"""The bench report on transcripts these tests record themselves (with the real transcript writer)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import statistics
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from transcript_fakes import BUNDLE, PROMPT_SET, TRIALS, build_folder, footer, header, prompt, records
from typer.testing import CliRunner

from gemmaios import archs
from gemmaios.cli import app
from gemmaios.registry import MODELS
from gemmaios.report import (
    IncomparableRuns,
    ReportError,
    Score,
    apply_gates,
    build_report,
    bundle_facts_from_dir,
    compare,
    load_run,
    load_runs,
    parse_fail_under,
    render_html,
    render_junit,
    render_markdown,
    summarise,
    write_report,
)
from gemmaios.roofline import bytes_per_decoded_token, estimate_weight_bytes, roofline_tok_s
from gemmaios.transcript import write_transcript


@pytest.fixture
def run_path(tmp_path) -> Path:
    build = build_folder(tmp_path)
    return write_transcript(build / "runs" / "20261124T100000Z-0000-TEST" / "run-a.jsonl", records())


def test_tok_s_ttft_load_and_headroom(run_path):
    s = summarise(load_run(run_path.parent))
    assert s.valid and s.complete
    assert s.warmup_trials == [0] and s.measured_trials == [1, 2, 3]
    # per-trial Σtokens/Σseconds, then median/min/max over trials 1..3
    assert s.prefill_tok_s.median == pytest.approx(25.0) and s.prefill_tok_s.min == pytest.approx(20.0)
    assert s.prefill_tok_s.max == pytest.approx(30.0) and s.prefill_tok_s.n == 3
    assert s.decode_tok_s.median == pytest.approx(15.5) and s.decode_tok_s.min == pytest.approx(12.4)
    assert [t.decode_tok_s for t in s.per_trial][0] == pytest.approx(7.75)  # warm-up recorded, not counted
    ttfts = [row[4] for t in (1, 2, 3) for row in TRIALS[t]]
    assert s.ttft_s.median == pytest.approx(statistics.median(ttfts)) and s.ttft_s.max == pytest.approx(2.2)
    assert s.load_cold_s == 12.5 and s.load_warm_s.median == pytest.approx(2.8)
    assert s.peak_footprint_bytes == 2_200_000_000  # from the memory samples, above every prompt's peak
    limit = archs.get_arch("h18p").entitled_limit_gb * 1e9
    assert s.headroom_bytes == pytest.approx(limit - 2_200_000_000)
    assert s.min_available_bytes == 4_100_000_000
    assert not [n for n in s.notes if n.level != "info"]


def test_include_warmup_counts_trial_zero(run_path):
    s = summarise(load_run(run_path), include_warmup=True)
    assert s.warmup_trials == [] and s.decode_tok_s.min == pytest.approx(7.75) and s.decode_tok_s.n == 4


def test_roofline_from_bundle_facts(run_path):
    run = load_run(run_path)
    assert run.bundle.weight_bytes == 3_000_000_000
    assert run.bundle.kv_bytes_per_position == 24 * 2 * 512 * 2 * 2  # K and V, fp16
    assert run.bundle.ple_row_bytes == 10752 + 4
    s = summarise(run, bandwidth_gbps=60.0)
    r = s.roofline
    # each prompt: 31 decode tokens at positions P+1 .. P+31 → mean P+16; P = 20 and 40 → 46
    assert r.context == pytest.approx(46.0)
    expected_bytes = 3_000_000_000 + 98_304 * 46 + 10_756
    assert r.bytes_per_token == pytest.approx(expected_bytes)
    assert r.roofline_tok_s == pytest.approx(60e9 / expected_bytes)
    assert r.efficiency == pytest.approx(15.5 / (60e9 / expected_bytes))
    assert r.bandwidth_kind == "--bandwidth"


def test_weights_from_the_asset_size_and_a_bundle_mismatch_warning(tmp_path):
    build = build_folder(tmp_path, weight_bytes=None)
    asset = build / "bundle" / "gemma4_e4b_qat_decode_int4" / "gemma4_e4b_qat_decode_int4.aimodel"
    (asset / "weights").mkdir(parents=True)
    with open(asset / "weights" / "weight.bin", "wb") as fh:
        fh.truncate(5_000_000)
    (asset / "model.mil").write_text("x" * 1000)
    path = write_transcript(build / "runs" / "r" / "r.jsonl", records())
    run = load_run(path)
    assert run.bundle.weight_bytes == 5_001_000 and "size of" in run.bundle.source
    s = summarise(run)  # header's metadata sha256 is of the other metadata.json (with weight_bytes)
    assert any("differs from" in n.text and n.level == "warning" for n in s.notes)


def test_roofline_without_a_bandwidth_figure_says_so(tmp_path, monkeypatch):
    base = archs.get_arch("h18p")
    extra = {"observed_bandwidth_gbps": None} if hasattr(base, "observed_bandwidth_gbps") else {}
    monkeypatch.setitem(archs.ARCHS, "hnobw", dataclasses.replace(base, name="hnobw", bandwidth_gbps=None, **extra))
    dev = {**header()["device"], "arch": "hnobw"}
    path = write_transcript(build_folder(tmp_path) / "runs" / "x" / "r.jsonl", records(device=dev))
    s = summarise(load_run(path))
    assert s.roofline.roofline_tok_s is None and s.roofline.bytes_per_token > 3e9
    assert "needs a bandwidth figure" in s.roofline.note and "--bandwidth" in s.roofline.note
    assert "needs a bandwidth figure" in render_markdown(build_report([load_run(path)]))


def test_registry_estimate_when_no_bundle_files(tmp_path):
    path = write_transcript(tmp_path / "loose" / "r.jsonl", records())
    run = load_run(path)
    est = estimate_weight_bytes(MODELS["e4b"], "int4", head_quant="int4")  # convert's default head
    assert run.bundle.weight_bytes == est.total_bytes and "registry" in run.bundle.source
    # the quant is the one the run recorded (bundle.quant), the model the one bundlename made the name from
    int8 = {**BUNDLE, "name": "gemma4_e4b_qat_decode_int8", "quant": "int8"}
    run = load_run(write_transcript(tmp_path / "loose8" / "r.jsonl", records(bundle=int8)))
    assert run.bundle.weight_bytes == estimate_weight_bytes(MODELS["e4b"], "int8", head_quant="int8").total_bytes
    unrecorded = {k: v for k, v in BUNDLE.items() if k != "quant"}
    run = load_run(write_transcript(tmp_path / "noquant" / "r.jsonl", records(bundle=unrecorded)))
    assert run.bundle is None and "records no quantization" in run.bundle_note and "--bundle" in run.bundle_note


def test_e4b_estimate_matches_the_hf_module_count():
    """The registry-only weight count equals transformers' Gemma 4 E4B linears (meta device, no weights)."""
    torch = pytest.importorskip("torch")
    from transformers.models.gemma4 import modeling_gemma4
    from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig

    s = MODELS["e4b"]
    cfg = Gemma4TextConfig(
        vocab_size=s.vocab_size, vocab_size_per_layer_input=s.vocab_size, hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size, num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads, num_key_value_heads=s.num_key_value_heads, head_dim=s.head_dim,
        global_head_dim=s.global_head_dim, hidden_size_per_layer_input=s.hidden_size_per_layer_input,
        num_kv_shared_layers=s.num_kv_shared_layers, tie_word_embeddings=True, attention_k_eq_v=False)
    with torch.device("meta"):
        model = modeling_gemma4.Gemma4ForCausalLM(cfg)
    first_shared = s.num_hidden_layers - s.num_kv_shared_layers
    linear = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name == "lm_head":
            continue
        parts = name.split(".")
        layer = int(parts[parts.index("layers") + 1]) if "layers" in parts else -1
        if parts[-1] in ("k_proj", "v_proj") and layer >= first_shared:
            continue  # the QAT checkpoint prunes them; shared layers read their source's cache
        linear += module.weight.numel()
    est = estimate_weight_bytes(s, "int4", head_quant="fp16")
    assert est.params["linear_total"] == linear
    assert est.params["embedding_lm_head"] == model.model.embed_tokens.weight.numel()
    assert est.total_bytes == linear * 4.5 / 8 + s.vocab_size * s.hidden_size * 2
    assert est.bundle_bytes == est.total_bytes  # tied: the one table is stored and streamed
    assert est.kv_bytes_per_position == 24 * 2 * 2 * 512 * 2
    # The default head follows the weights: an untied int4 head streams at 4.5 bits; the fp16
    # embedding is stored too but streams one row per token.
    untied = estimate_weight_bytes(s, "int4")
    table = s.vocab_size * s.hidden_size
    assert untied.head_quant == "int4" and untied.params["lm_head"] == table
    assert untied.total_bytes == linear * 4.5 / 8 + table * 4.5 / 8 + s.hidden_size * 2
    assert untied.bundle_bytes == linear * 4.5 / 8 + table * 4.5 / 8 + table * 2


def test_untied_head_bundle_streams_the_head_not_the_embedding_table(tmp_path):
    """Weights from the asset size: an int4-head bundle's fp16 embedding table counts one row."""
    build = build_folder(tmp_path, weight_bytes=None)
    bundle = build / "bundle" / "gemma4_e4b_qat_decode_int4"
    meta = json.loads((bundle / "metadata.json").read_text())
    asset = bundle / "gemma4_e4b_qat_decode_int4.aimodel"
    asset.mkdir()
    with open(asset / "weight.bin", "wb") as fh:
        fh.truncate(5_000_000)
    meta["gemmaios"]["head_quant"] = "int4"
    meta["gemmaios"]["head"] = {"tied": False, "shape": [1000, 256], "embedding_bytes": 512_000}
    (bundle / "metadata.json").write_text(json.dumps(meta))
    facts = bundle_facts_from_dir(bundle)
    assert facts.weight_bytes == 5_000_000 - 512_000 + 512 and "head_quant int4" in facts.source
    meta["gemmaios"]["head"] = {"tied": True, "shape": [1000, 256], "embedding_bytes": 512_000}
    meta["gemmaios"]["head_quant"] = "fp16"
    (bundle / "metadata.json").write_text(json.dumps(meta))
    assert bundle_facts_from_dir(bundle).weight_bytes == 5_000_000
    del meta["gemmaios"]["head"]
    meta["gemmaios"]["head_quant"] = "int8"
    (bundle / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ReportError, match="head"):
        bundle_facts_from_dir(bundle)


def test_roofline_arithmetic():
    b = bytes_per_decoded_token(2_000_000_000, 100_000, 100, 10_756)
    assert b == 2_010_010_756
    assert roofline_tok_s(b, 60.0) == pytest.approx(60e9 / 2_010_010_756)


def test_crashed_run_is_reported_incomplete(tmp_path):
    recs = records(with_footer=False)[:-1]  # no footer, and trial 3 lost its second prompt
    path = write_transcript(tmp_path / "crash" / "r.jsonl", recs)
    s = summarise(load_run(path))
    assert s.valid and not s.complete
    assert any(n.level == "error" and "no footer" in n.text for n in s.notes)
    assert any("trial 3 has 1 of 2 prompts" in n.text for n in s.notes)
    assert s.decode_tok_s.n == 3 and s.per_trial[-1].prompts == 1
    gates = {g.name: g for g in apply_gates(s)}
    assert not gates["run completed"].passed and gates["transcript valid"].passed


def test_truncated_log_is_an_invalid_run_with_its_line(tmp_path):
    path = write_transcript(tmp_path / "trunc" / "r.jsonl", records())
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:8]) + lines[8][:40])  # the app died mid-write of record 9
    [run] = load_runs([path.parent])
    assert not run.valid and run.error.line == 9
    report = build_report([run])
    s = report.runs[0]
    assert not s.valid and s.error_line == 9 and "truncated" in s.error
    assert [g.passed for g in s.gates] == [False] and not report.passed
    assert "INVALID — line 9" in render_markdown(report)
    suite = ET.fromstring(render_junit(report)).find("testsuite")
    assert suite.get("failures") == "1" and "line 9" in suite.find("testcase/failure").get("message")


def test_thermal_throttled_battery_and_unlock_notes(tmp_path):
    recs = records(thermal={2: "serious", 3: "fair"})
    recs[-1] = footer(battery_state="charging", battery_level=0.15, seconds_since_unlock=120.0)
    path = write_transcript(tmp_path / "hot" / "r.jsonl", recs)
    s = summarise(load_run(path))
    warnings = [n.text for n in s.notes if n.level == "warning"]
    assert any("fair/serious" in w and "trial(s) 2, 3" in w and "throttled" in w for w in warnings)
    assert any("battery at 15%" in w for w in warnings) and any("battery charging" in w for w in warnings)
    # footer 120 s after unlock, run lasted 60 s → started 60 s after unlock
    assert any("started 60 s after unlock" in w for w in warnings)
    assert [t.thermal for t in s.per_trial] == ["nominal", "nominal", "serious", "fair"]


def test_gates_and_junit(run_path):
    assert parse_fail_under("decode=12.5, prefill=30") == {"decode": 12.5, "prefill": 30.0}
    with pytest.raises(ReportError, match="KEY=NUMBER"):
        parse_fail_under("speed=3")
    report = build_report(load_runs([run_path]), bandwidth_gbps=60.0,
                          fail_under=parse_fail_under("decode=12.5,prefill=30,headroom=1"))
    gates = {g.name: g for g in report.runs[0].gates}
    assert gates["decode >= 12.5"].passed and "15.5" in gates["decode >= 12.5"].detail
    assert not gates["prefill >= 30"].passed and "25" in gates["prefill >= 30"].detail
    assert gates["headroom >= 1"].passed and not report.passed
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert suite.get("tests") == "5" and suite.get("failures") == "1"
    assert cases["prefill >= 30"].find("failure") is not None and cases["decode >= 12.5"].find("failure") is None


class RecordedScorer:
    """Stands in for gemmaios.oracle in these tests: verdicts derived from the fixtures' own ids."""

    def __init__(self, oracle_ids: list[int]) -> None:
        self.oracle_ids = oracle_ids

    def oracle(self, transcript, oracle_path):
        good = sum(p.generated_ids == self.oracle_ids for p in transcript.prompts)
        total = len(transcript.prompts)
        return Score("oracle", good, total, good == total, f"{good}/{total} exact")

    def determinism(self, a, b, labels):
        pairs = {(p.trial, p.index): p.generated_ids for p in b.prompts}
        good = sum(pairs.get((p.trial, p.index)) == p.generated_ids for p in a.prompts)
        return Score("determinism", good, len(a.prompts), good == len(a.prompts), f"{labels[0]} vs {labels[1]}")

    def trials(self, transcript):
        return None


def test_oracle_gate_and_cross_run_determinism(tmp_path):
    build = build_folder(tmp_path)
    (build / "oracle").mkdir()
    (build / "oracle" / "oracle.json").write_text("{}")
    a = write_transcript(build / "runs" / "a" / "a.jsonl", records())
    recs = records(run_id="run-b")
    recs[8]["generated_ids"] = list(range(100, 131)) + [7]  # one prompt diverges at its last token
    b = write_transcript(build / "runs" / "b" / "b.jsonl", recs)
    scorer = RecordedScorer(list(range(100, 132)))
    report = build_report(load_runs([a, b]), scorer=scorer, require_oracle="exact")
    sa, sb = report.runs
    assert sa.oracle.label == "8/8" and sb.oracle.label == "7/8"
    assert [g.passed for g in sa.gates if g.name == "oracle exact"] == [True]
    assert [g.passed for g in sb.gates if g.name == "oracle exact"] == [False]
    assert sb.determinism[0].label == "7/8" and sa.determinism[0] is sb.determinism[0]
    md = render_markdown(report)
    assert "8/8" in md and "7/8" in md
    no_oracle = build_report(load_runs([tmp_path / "build" / "runs" / "a"]), require_oracle="exact")
    assert not no_oracle.passed and "no oracle score" in no_oracle.runs[0].gates[-1].detail


def test_compare_refuses_different_prompt_sets_and_bundles(tmp_path, run_path):
    other_set = {**PROMPT_SET, "sha256": "c" * 64}
    b = write_transcript(tmp_path / "other" / "b.jsonl", records(run_id="run-b", prompt_set=other_set))
    sa, sb = (summarise(load_run(p)) for p in (run_path, b))
    with pytest.raises(IncomparableRuns, match="prompt sets differ"):
        compare(sa, sb)
    c = compare(sa, sb, allow_different=True)
    assert any("prompt sets differ" in n for n in c.notes)
    other_bundle = {**BUNDLE, "metadata_sha256": "d" * 64}
    d = write_transcript(tmp_path / "other" / "d.jsonl", records(run_id="run-d", bundle=other_bundle))
    with pytest.raises(IncomparableRuns, match="bundles differ"):
        compare(sa, summarise(load_run(d)))


def test_compare_deltas(tmp_path, run_path):
    faster = {t: [(p, ps, d, ds / 2, tt) for p, ps, d, ds, tt in rows] for t, rows in TRIALS.items()}
    b = write_transcript(tmp_path / "fast" / "b.jsonl", records(run_id="run-b", trials=faster))
    c = compare(summarise(load_run(run_path)), summarise(load_run(b)))
    row = {r.metric: r for r in c.rows}["decode tok/s (median)"]
    assert (row.a, row.b) == (pytest.approx(15.5), pytest.approx(31.0))
    assert row.delta == pytest.approx(15.5) and row.delta_pct == pytest.approx(100.0)
    assert "Δ %" in render_markdown(build_report(load_runs([run_path, b]), compare_pair=(0, 1)))


def test_written_report_files_agree(tmp_path, run_path):
    report = build_report(load_runs([run_path.parent]), bandwidth_gbps=60.0)
    files = write_report(report, tmp_path / "out", junit=tmp_path / "out" / "junit.xml")
    data = json.loads(files["json"].read_text())
    assert data["schema"] == "gemmaios.report/1" and data["passed"] is True
    run = data["runs"][0]
    assert run["decode_tok_s"]["median"] == pytest.approx(15.5) and "series" not in run
    assert run["roofline"]["roofline_tok_s"] == pytest.approx(report.runs[0].roofline.roofline_tok_s)
    html = files["html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3 and "<script" not in html and "http" not in html.split("<body>")[1]
    md = files["markdown"].read_text()
    assert "15.5 (min 12.4, max 15.5, n=3)" in md and "warm-up (excluded)" in md
    assert "Σ prefill_tokens / Σ prefill_seconds" in md  # definitions stated


def test_cli_exit_codes_and_outputs(tmp_path, run_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    ok = runner.invoke(app, ["report", str(run_path.parent), "--out", str(out), "--json", "--bandwidth", "60",
                             "--junit", str(out / "j.xml"), "--fail-under", "decode=12.5"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout[ok.stdout.index("{"):ok.stdout.rindex("}") + 1])["passed"] is True
    assert ET.parse(out / "j.xml").getroot().find("testsuite").get("failures") == "0"
    bad = runner.invoke(app, ["report", str(run_path.parent), "--out", str(out), "--fail-under", "decode=16"])
    assert bad.exit_code == 1
    other = write_transcript(tmp_path / "o" / "b.jsonl", records(run_id="b", prompt_set={**PROMPT_SET, "sha256": "e" * 64}))
    refused = runner.invoke(app, ["report", "--compare", str(run_path), str(other), "--out", str(out)])
    assert refused.exit_code == 2 and "prompt sets differ" in " ".join(refused.output.split())
    allowed = runner.invoke(app, ["report", "--compare", str(run_path), str(other), "--out", str(out),
                                  "--allow-different"])
    assert allowed.exit_code == 0 and "Comparison" in (out / "report.md").read_text()
    # default output folder: <build>/reports for a run inside a build folder
    default = runner.invoke(app, ["report", str(run_path.parent)])
    assert default.exit_code == 0 and (run_path.parents[2] / "reports" / "report.html").is_file()


def test_real_oracle_library_scores_through_the_adapter(tmp_path):
    """Runs once gemmaios.oracle (issue 5) is merged: the default scorer goes through it."""
    oracle = pytest.importorskip("gemmaios.oracle", reason="gemmaios.oracle not merged into this branch yet")
    from gemmaios.report import default_scorer

    ids = list(range(100, 132))
    prompts = [oracle.OraclePrompt(id=f"p{i}", text="x", prompt_ids=list(range(2, 2 + n)), generated_ids=ids,
                                   top_k=[oracle.TopK([t, 1], [5.0, 1.0]) for t in ids])
               for i, n in enumerate((20, 40))]
    o = oracle.Oracle(model={"id": "test"}, tokenizer_sha256="0", chat_template=False, prompt_set=dict(PROMPT_SET),
                      max_new_tokens=32, top_k=2, eos_token_ids=[1], prompts=prompts)
    build = build_folder(tmp_path)
    o.save(build / "oracle" / "oracle.json")
    path = write_transcript(build / "runs" / "a" / "a.jsonl", records())
    report = build_report(load_runs([path]), scorer=default_scorer(), require_oracle="exact")
    s = report.runs[0]
    assert s.oracle.label == "8/8" and s.trial_determinism.label == "6/6" and report.passed


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (Debian: apt-get install -y chromium)")
def test_html_plots_render_in_headless_chromium(tmp_path, run_path):
    report = build_report(load_runs([run_path]), bandwidth_gbps=60.0)
    html = render_html(report)
    # Probe only in the test copy: after load, record each image's decoded width on <body>.
    probe = ("<script>window.addEventListener('load',()=>{document.body.dataset.imgs="
             "[...document.images].map(i=>i.complete+':'+i.naturalWidth+'x'+i.naturalHeight).join(',')})</script>")
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", probe + "</body>"))
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    match = re.search(r'data-imgs="([^"]*)"', result.stdout)
    assert match, result.stderr[-2000:]
    sizes = match.group(1).split(",")
    assert len(sizes) == 3
    for entry in sizes:
        complete, dims = entry.split(":")
        width, height = map(int, dims.split("x"))
        assert complete == "true" and width > 300 and height > 150


def test_run_killed_before_any_prompt(tmp_path):
    path = write_transcript(tmp_path / "early" / "r.jsonl", records(with_footer=False, trials={}))
    report = build_report(load_runs([path]), bandwidth_gbps=60.0)
    s = report.runs[0]
    assert s.valid and not s.complete and s.decode_tok_s is None and s.ttft_s is None
    assert s.roofline.efficiency is None and s.load_cold_s == 12.5
    assert not report.passed and "INCOMPLETE" in render_markdown(report)
    assert render_html(report).count("data:image/png;base64,") == 1  # footprint only: no trial, no tokens


def test_explicit_bundle_without_facts_is_an_error(tmp_path, run_path):
    empty = tmp_path / "not-a-bundle"
    empty.mkdir()
    with pytest.raises(ReportError, match="metadata.json"):
        load_run(run_path, bundle_dir=empty)


def test_decode_step_fit_recovers_the_per_position_cost(tmp_path):
    recs = records()
    for r in recs:
        if r["type"] == "prompt":  # 50 ms + 0.2 ms per cached position, exactly
            r["decode_token_seconds"] = [0.050 + 0.0002 * (r["prefill_tokens"] + 1 + i) for i in range(31)]
    s = summarise(load_run(write_transcript(tmp_path / "fit" / "r.jsonl", recs)))
    assert s.decode_step_fit["intercept_ms"] == pytest.approx(50.0)
    assert s.decode_step_fit["ms_per_1k_positions"] == pytest.approx(200.0)
    assert s.decode_step_fit["positions"] == [21, 71] and s.decode_step_fit["tokens"] == 6 * 31


def test_prefill_ab_medians_ratio_gates_and_a_token_difference(tmp_path):
    # trials alternate the prefill function: 0 and 2 on, 1 and 3 off; each setting's first trial is its warm-up
    lines = records()
    for r in lines:
        if r["type"] == "prompt":
            on = r["trial"] % 2 == 0
            r["prefill_function"] = "prefill_16" if on else None
            r["peak_phys_footprint_bytes"] = 2_100_000_000 if on else 2_000_000_000
    path = write_transcript(build_folder(tmp_path) / "runs" / "r" / "run-a.jsonl", lines)
    s = summarise(load_run(path.parent))
    ab = s.prefill_ab
    assert ab.on.function == "prefill_16" and ab.off.function is None
    assert ab.on.warmup_trials == [0] and ab.on.measured_trials == [2]
    assert ab.off.warmup_trials == [1] and ab.off.measured_trials == [3]
    assert ab.on.prefill_tok_s.median == pytest.approx(20) and ab.off.prefill_tok_s.median == pytest.approx(25)
    assert ab.prefill_ratio == pytest.approx(0.8) and ab.decode_ratio == pytest.approx(12.4 / 15.5)
    assert ab.footprint_delta_bytes == 100_000_000 and ab.prompts_differing == []
    assert "prefill 20.0 (prefill_16) vs 25.0 (main only) tok/s = 0.80×" in ab.line
    gates = {g.name: g for g in apply_gates(s, parse_fail_under("prefill_on=19,prefill_ratio=1,decode_ratio=0.79"))}
    assert gates["prefill_on >= 19"].passed and not gates["prefill_ratio >= 1"].passed
    assert gates["decode_ratio >= 0.79"].passed
    assert "prefill A/B" in render_markdown(build_report(load_runs([path])))
    # a setting that changes the generated tokens is called out
    for r in lines:
        if r["type"] == "prompt" and r["trial"] == 1 and r["index"] == 0:
            r["generated_ids"] = [7] * 32
    path = write_transcript(tmp_path / "runs2" / "run-b.jsonl", lines)
    s = summarise(load_run(path))
    assert s.prefill_ab.prompts_differing == ["p0"] and "DIFFER on 1 of 2" in s.prefill_ab.line
    assert any("different tokens for p0" in n.text for n in s.notes if n.level == "warning")
    # a plain run has no A/B figures, and an A/B gate on it fails saying why
    plain = summarise(load_run(write_transcript(tmp_path / "runs3" / "run-c.jsonl", records())))
    assert plain.prefill_ab is None
    gate = apply_gates(plain, parse_fail_under("decode_ratio=0.97"))[-1]
    assert not gate.passed and "not a `bench --ab-prefill` run" in gate.detail


def test_kv_by_context_beside_the_weights(tmp_path, run_path):
    """Issue 27: KV read per token and KV memory at 1k/4k/8k/32k next to the weights, in the report."""
    # a loose E4B run: registry facts, the per-layer K/V dims (20 sliding layers 2x256, 4 full 2x512)
    loose = load_run(write_transcript(tmp_path / "loose" / "r.jsonl", records()))
    r = summarise(loose, bandwidth_gbps=60.0).roofline
    assert [c.context for c in r.by_context] == [1024, 4096, 8192, 32768]
    per_position_read = 20 * 2 * 2 * 256 * 2 + 4 * 2 * 2 * 512 * 2  # 57,344 B
    for c in r.by_context:
        assert c.capacity == c.context
        assert c.kv_read_bytes == per_position_read * c.context
        assert c.kv_state_bytes == 2 * 24 * 2 * 512 * 2 * c.capacity
        assert c.weight_bytes == loose.bundle.weight_bytes
        assert r.context_roofline(c) == pytest.approx(60e9 / (c.weight_bytes + c.kv_read_bytes + c.ple_row_bytes))
    assert "cache-owning layers' own K/V rows" in r.by_context_note
    md = render_markdown(build_report([loose]))
    assert "| 32768 | 32768 | 1.88 GB | 3.22 GB |" in md  # roofline.size_text: a unit that shows the figure
    html = render_html(build_report([loose], bandwidth_gbps=60.0))
    assert "<td>32768</td><td>32768</td>\n<td>1.88 GB</td><td>3.22 GB</td>" in html
    # a bundle the registry does not name: the padded state row is the (upper-bound) read
    run = load_run(run_path)
    r = summarise(run).roofline
    assert [c.kv_read_bytes for c in r.by_context] == [98_304 * n for n in (1024, 4096, 8192, 32768)]
    assert "upper bound" in r.by_context_note


def _probe_run(tmp_path, platform: str, ab_kv: bool = False):
    """An iPhone-shaped probe run: four prompts, one trial (two with `ab_kv`: the KV cache from 256, then 384),
    scored by the real oracle library. The KV bindings follow the engine's rule in order (doubling: 256,
    1024, 2048, then 2048 again, it never shrinks; from 384: 384, 1536, 1536, 1536). The phone stands in
    for #124 as reported: a binding of 2048 or 4096 decodes garbage, any other is exact."""
    oracle = pytest.importorskip("gemmaios.oracle")
    from gemmaios.contract import KV_FAULT_WARNING, kv_bound_capacity, kv_fault_warning

    lengths = (20, 900, 1500, 30)
    good = list(range(100, 132))
    bad = [7] * 32  # wrong from the first token, as #124 reports
    prompts = [oracle.OraclePrompt(id=f"p{i}", text="x", prompt_ids=list(range(2, 2 + n)) if n < 1000 else
                                   [2 + (k % 50) for k in range(n)], generated_ids=good,
                                   top_k=[oracle.TopK([t, 1], [5.0, 1.0]) for t in good]) for i, n in enumerate(lengths)]
    set_ = {"name": "long-context", "sha256": "b" * 64, "count": len(prompts)}
    o = oracle.Oracle(model={"id": "test"}, tokenizer_sha256="0", chat_template=False, prompt_set=set_,
                      max_new_tokens=32, top_k=2, eos_token_ids=[1], prompts=prompts)
    build = build_folder(tmp_path)
    o.save(build / "oracle" / "oracle.json")
    recs = records(trials={}, prompt_set=set_, platform=platform)
    settings = ["from-256", "from-384"] if ab_kv else [None]
    recs[0]["trials"] = len(settings)
    footer_rec = recs.pop()
    for trial, growth in enumerate(settings):
        bound = 384 if growth == "from-384" else 256
        for i, n in enumerate(lengths):
            bound = kv_bound_capacity(n + 32, 3072 if growth == "from-384" else 4096, bound)
            rec = prompt(trial, i, (n, 1.0, 31, 2.0, 1.1), generated=bad if bound in (2048, 4096) else good)
            rec["prompt_ids"] = prompts[i].prompt_ids
            rec["kv_capacity"] = bound
            rec["warnings"] = [KV_FAULT_WARNING] if kv_fault_warning(bound, platform) else []
            if growth:
                rec["kv_growth"] = growth
            recs.append(rec)
    recs.append(footer_rec)
    path = write_transcript(build / "runs" / platform / "r.jsonl", recs)
    from gemmaios.report import default_scorer

    return build_report(load_runs([path]), scorer=default_scorer()).runs[0]


def test_probe_buckets_name_124_when_only_bindings_above_1024_break(tmp_path):
    from gemmaios.contract import KV_FAULT_ISSUE, KV_FAULT_WARNING

    s = _probe_run(tmp_path, "iOS")
    [probe] = s.context_probes
    assert [(b.label, b.prompts, b.exact, b.capacities) for b in probe.buckets] == [
        ("≤ 1024", 3, 2, [256, 1024, 2048]), ("1025–2048", 1, 0, [2048])]
    assert probe.within_safe == (2, 2) and probe.above_safe == (0, 2) and probe.fault_signature
    warnings = [n.text for n in s.notes if n.level == "warning"]
    assert any(t.startswith(KV_FAULT_WARNING) and "2048" in t and KV_FAULT_ISSUE in t for t in warnings)
    assert any("signature of " + KV_FAULT_ISSUE in t for t in warnings)
    from gemmaios.report import default_scorer

    md = render_markdown(build_report(load_runs([Path(s.path)]), scorer=default_scorer()))
    assert "| — | ≤ 1024 | 3 | 2 | 2 | 256/1024/2048 |" in md and f"**warning**: {KV_FAULT_WARNING}" in md


def test_probe_on_the_host_runtime_has_buckets_but_no_ios_warning(tmp_path):
    s = _probe_run(tmp_path, "host-runtime")
    assert s.context_probes[0].fault_signature  # the agreement pattern is there ...
    assert not [n for n in s.notes if "#124" in n.text]  # ... but only iOS runs are guarded
    from gemmaios.report import default_scorer

    md = render_markdown(build_report(load_runs([Path(s.path)]), scorer=default_scorer()))
    assert "| — | 1025–2048 | 1 | 0 | 0 | 2048 |" in md and "oracle by context" in md
    html = render_html(build_report(load_runs([Path(s.path)]), scorer=default_scorer()))
    assert "<td>1025–2048</td><td>1</td><td>0</td><td>0</td>\n<td>2048</td>" in html


def test_ab_kv_run_gives_each_growth_its_own_buckets(tmp_path):
    """`bench --ab-kv`: the KV cache grown from 256 breaks where it binds 2048; grown from 384 it never binds
    2048/4096, so on a phone where #124 follows the bound size it holds, and the report says so per setting."""
    from gemmaios.contract import KV_GROWTH_ALT, KV_GROWTH_DOUBLING

    s = _probe_run(tmp_path, "iOS", ab_kv=True)
    upstream, alternate = s.context_probes
    assert (upstream.growth, alternate.growth) == (KV_GROWTH_DOUBLING, KV_GROWTH_ALT)
    assert upstream.fault_signature and upstream.above_safe == (0, 2)
    assert not alternate.fault_signature and alternate.above_safe == (3, 3)  # 932 tokens already bind 1536
    assert [c for b in alternate.buckets for c in b.capacities] == [384, 1536, 1536]
    texts = [n.text for n in s.notes]
    assert any("grown from 256" in t and "signature of apple/coreai-models#124" in t for t in texts)
    assert any("grown from 384 held" in t and "bindings 1536" in t for t in texts)
    md = render_markdown(build_report(load_runs([Path(s.path)]), scorer=__import__("gemmaios.report").report
                                      .default_scorer()))
    assert "| from-384 | 1025–2048 | 1 | 1 | 1 | 1536 |" in md and "| from-256 | 1025–2048 | 1 | 0 | 0 | 2048 |" in md
