"""The bundle runs: Core AI's own runtime executes every converted tiny bundle against the oracle.

The built-in tiny model is trained, so its greedy margins are real and a bundle is held to
token-exact agreement with the fp32 oracle (flips only at near-ties). On Linux the runtime is
coreai-core's CPU runtime (f16 accumulation), run through `AIModelAsset.executable()`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from devicebuild import copy_build
from typer.testing import CliRunner

from gemmaios import hostrun
from gemmaios.oracle import ORACLE_FILE, load_oracle
from gemmaios.transcript import read_transcript


def gate_report(build_dir: Path) -> dict:
    manifest = json.loads((build_dir / "build.json").read_text())
    return manifest["steps"]["convert"]["details"]["gates"]["bundle_run"]


# int4/provider is the session's demo build (make test); the other three are a build each (make test-all).
# The PLE mode is independent of the weights' quantization (the table is int8 either way), so the table
# path runs at int4 alone: fp16/int8 with tbl cost ~2 min each and tested nothing the others do not.
QUANT_PLE = [("fp16", "provider"), ("int8", "provider"), ("int4", "provider"), ("int4", "tbl")]


@pytest.mark.parametrize("quant,ple", [pytest.param(q, p, marks=[] if (q, p) == ("int4", "provider") else pytest.mark.full)
                                      for q, p in QUANT_PLE])
def test_every_bundle_runs_token_exact_under_core_ai(tiny_bundle_builds, quant, ple):
    out = tiny_bundle_builds(quant, ple)
    report = gate_report(out)
    oracle = load_oracle(out / ORACLE_FILE)
    assert report["total"] == len(oracle.prompts) == 8
    # Anything below 8/8 must be a flip at a near-tie (the gate would have failed otherwise).
    for verdict in report["verdicts"]:
        assert verdict["verdict"] in ("exact", "near-tie"), verdict
    assert report["exact"] >= 7, report["summary"]
    assert report["max_logit_error"] <= report["logit_error_bound"]
    assert report["oracle_median_margin"] > 1.0  # a trained model: real decisions, not near-ties
    metadata = json.loads(next((out / "bundle").glob("*/metadata.json")).read_text())
    assert metadata["gemmaios"]["gates"]["bundle_run"]["summary"] == report["summary"]
    assert report["logit_error_bound"] == hostrun.LOGIT_ERROR_BOUND  # heads of 16/32: the calibrated shape


def test_the_logit_bound_widens_with_the_head_the_runtime_sums_in_f16():
    """The E4B-shaped tiny model (heads of 16 and 32) keeps the calibrated bound; 512-wide heads (the 12B/31B and
    their tiny shapes) get four times it, which the trained 12B-shaped model's bundles need (0.427 fp16, 0.473
    int4, both 8/8 token-exact) and still hold with room."""
    from gemmaios.tiny import tiny_12b_text_config_kwargs, tiny_text_config_kwargs

    assert hostrun.logit_error_bound(tiny_text_config_kwargs()) == hostrun.LOGIT_ERROR_BOUND
    assert hostrun.logit_error_bound(tiny_12b_text_config_kwargs()) == pytest.approx(4 * hostrun.LOGIT_ERROR_BOUND)
    assert hostrun.logit_error_bound({"head_dim": 256, "global_head_dim": 512}) == pytest.approx(1.0)
    # the unified checkpoint states its full layers' heads per layer, as the 12B's config does
    unified = {"head_dim": 16, "per_layer_config": {"05": {"head_dim": 512, "num_key_value_heads": 1}}}
    assert hostrun.logit_error_bound(unified) == pytest.approx(1.0)


def test_runner_reproduces_the_gate_and_teacher_forcing_agrees(tiny_bundle_builds):
    out = tiny_bundle_builds("int4", "provider")
    oracle = load_oracle(out / ORACLE_FILE)
    bundle = hostrun.find_bundle(out)
    with hostrun.BundleRunner(bundle, out / "tables") as runner:
        first = oracle.prompts[0]
        gen = runner.generate(first.prompt_ids, oracle.max_new_tokens, keep_logits=True)
        forced = runner.forced(first.prompt_ids, gen.generated_ids)
        # The runtime is deterministic: the forced walk along its own tokens gives the same logits.
        np.testing.assert_array_equal(np.stack(gen.logits), forced)
        assert gen.generated_ids == first.generated_ids
        stopped = runner.generate(first.prompt_ids, 64, stop_ids=oracle.eos_token_ids)
        assert stopped.generated_ids[-1] in oracle.eos_token_ids or len(stopped.generated_ids) == 64


@pytest.mark.full
def test_swapped_layers_fail_the_gate(tiny_bundle_builds, tmp_path):
    """A bundle converted from a checkpoint with two layers' MLPs swapped is caught by the runtime gate
    (the first and the last layer's: the retrained tiny model's margins carry it through a swap of two
    neighbouring middle layers token for token)."""
    from safetensors.torch import load_file, save_file

    from gemmaios.checkpoint import resolve_checkpoint
    from gemmaios.convert import convert_checkpoint

    good = tiny_bundle_builds("int8", "provider")
    broken_dir = tmp_path / "broken"
    shutil.copytree(good / "checkpoint", broken_dir)
    weights = load_file(str(broken_dir / "model.safetensors"))
    for part in ("gate_proj", "up_proj", "down_proj"):
        a, b = f"model.layers.0.mlp.{part}.weight", f"model.layers.11.mlp.{part}.weight"
        weights[a], weights[b] = weights[b].clone(), weights[a].clone()
    save_file(weights, str(broken_dir / "model.safetensors"), metadata={"format": "pt"})
    broken = resolve_checkpoint(str(broken_dir))
    check = hostrun.build_bundle_check(broken, good / ORACLE_FILE, good / "tables", quant="int8", head_quant="int8")
    with pytest.raises(hostrun.BundleGateFailed) as err:
        convert_checkpoint(broken, tmp_path / "bundle", "int8", "provider", 256, gates=False, bundle_check=check)
    assert err.value.prompt is not None and err.value.position is not None
    assert "diverged at generated token" in str(err.value)
    assert not any((tmp_path / "bundle").glob("gemma4_*")), "a failed gate must leave no bundle behind"


@pytest.mark.full  # a full runtime gate walk; the gate itself runs in every make-test build
def test_wrong_ple_scale_fails_the_gate(tiny_bundle_builds, tmp_path):
    out = tiny_bundle_builds("int4", "provider")
    tables = tmp_path / "tables"
    shutil.copytree(out / "tables", tables)
    scale = np.fromfile(tables / "embed_per_layer.scale.f32", "<f4")
    (scale * -3.0).astype("<f4").tofile(tables / "embed_per_layer.scale.f32")  # same size: loads, wrong rows
    with pytest.raises(hostrun.BundleGateFailed) as err:
        hostrun.bundle_gate(hostrun.find_bundle(out), load_oracle(out / ORACLE_FILE), tables)
    assert "diverged" in str(err.value)


@pytest.mark.full
def test_host_bench_transcript_is_scored_and_reported(tiny_bundle_builds, tmp_path):
    from gemmaios import report as rep

    out = copy_build(tiny_bundle_builds("int4", "provider"), tmp_path / "build")  # the bench writes runs/ into it
    result = hostrun.host_bench(out, trials=2)
    transcript = read_transcript(result.transcript, require_complete=True)
    assert transcript.header["platform"] == hostrun.HOST_PLATFORM
    assert transcript.header["bundle"]["name"] == hostrun.find_bundle(out).name
    assert len(transcript.prompts) == 16 and transcript.memory
    assert result.passed and result.score.startswith("16/16 exact"), result.score  # 2 trials x 8 prompts
    data = rep.load_runs([result.run_dir])
    summary = rep.build_report(data, scorer=rep.default_scorer())
    assert summary.runs[0].decode_tok_s is not None


def test_cli_run_answers_a_prompt_and_benches(tiny_bundle_builds, tmp_path):
    from gemmaios.cli import app

    out = copy_build(tiny_bundle_builds("int4", "provider"), tmp_path / "build")  # `run --bench` writes runs/
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--out", str(out), "--prompt", "What is the capital of France?", "-n", "24"])
    assert result.exit_code == 0, result.output
    assert "Paris" in result.output
    assert "tok/s" in result.output
    bench = runner.invoke(app, ["run", "--out", str(out), "--bench"])
    assert bench.exit_code == 0, bench.output
    assert "exact vs fp32 oracle" in bench.output
    _assert_host_report(runner, app, out)


def _assert_host_report(runner, app, out: Path) -> None:
    """`gemmaios report` of the host bench just run (issue 26): the numbers shown are right or absent; no
    iPhone-only row or definition; the legend of the tok/s plot beside the bars, not over them."""
    from gemmaios import report as rep
    from gemmaios.buildfolder import latest_run
    from gemmaios.report.html_page import figures

    reports = out / "host-report"
    made = runner.invoke(app, ["report", str(latest_run(out)), "--out", str(reports)])
    assert made.exit_code == 0, made.output
    markdown = (reports / "report.md").read_text()
    headline = markdown.split("| trial |")[0]
    rows = {k.strip(): v.strip(" |") for k, v in (line.strip("| ").split(" | ", 1) for line in headline.splitlines()
                                                  if line.startswith("| ") and not line.startswith("| |"))}
    assert "None" not in markdown and "0.000 GB" not in markdown and "0.00 GB" not in markdown
    run = rep.load_run(latest_run(out))
    summary = rep.summarise(run)
    n = len(summary.measured_trials)
    assert n == summary.decode_tok_s.n == summary.prefill_tok_s.n >= 1
    assert rows["trials"].startswith(f"{n} measured (trial")  # the count beside `n=`, not a trial number
    assert f"n={n})" in rows["decode tok/s"]
    assert " · arch" not in rows["device"] and "host-runtime" in rows["device"]
    assert "headroom" not in rows  # no entitled limit off the iPhone: no `— vs —` row
    assert "thermal" not in markdown.split("## Definitions")[0]  # no column of `unknown`
    weights = run.bundle.weight_bytes  # the tiny bundle's, read from the build folder
    assert 1e3 <= weights < 1e9
    shown = f"{weights / 1e6:.2f} MB" if weights >= 1e6 else f"{weights / 1e3:.2f} KB"
    assert f"weights {shown}" in rows["bytes / decoded token"]
    definitions = markdown.split("## Definitions")[1]
    for iphone_only in ("cold launch", "ProcessInfo.thermalState", "battery-level", "sustained tok/s", "headroom ="):
        assert iphone_only not in definitions
    assert "prefill tok/s =" in definitions and "peak footprint =" in definitions
    data = json.loads((reports / "report.json").read_text())
    assert not any("thermalState" in d for d in data["definitions"])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures(summary)["tok/s per trial"]
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    [ax] = fig.axes
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [patch.get_window_extent(renderer) for patch in ax.patches]
    assert bars and not any(legend.overlaps(bar) for bar in bars)


def test_runner_refuses_bad_inputs(tiny_bundle_builds, tmp_path):
    out = tiny_bundle_builds("int4", "provider")
    bundle = hostrun.find_bundle(out)
    with pytest.raises(hostrun.HostRunError, match="no PLE tables"):
        hostrun.BundleRunner(bundle, None)
    with pytest.raises(hostrun.HostRunError, match="does not exist"):
        hostrun.BundleRunner(tmp_path / "nothing", out / "tables")
    with hostrun.BundleRunner(bundle, out / "tables") as runner:
        with pytest.raises(hostrun.HostRunError, match="outside the bundle's vocabulary"):
            runner.generate([2, 10_000], 1)
        with pytest.raises(hostrun.HostRunError, match="exceed the bundle's context"):
            runner.generate([2], runner.bundle.max_context + 1)


def test_large_bundle_gate_is_skipped_and_says_why(tiny_bundle_builds, monkeypatch):
    out = tiny_bundle_builds("int4", "provider")
    monkeypatch.setattr(hostrun.hostfacts, "LARGE_BUNDLE_BYTES", 1)
    from gemmaios.checkpoint import resolve_checkpoint

    check = hostrun.build_bundle_check(resolve_checkpoint(str(out / "checkpoint")), out / ORACLE_FILE, out / "tables",
                                       quant="int4", head_quant="int4")
    result = check(hostrun.find_bundle(out))
    assert result["status"] == "skipped"
    assert "min per token" in result["summary"]


@pytest.mark.full
def test_kernel_bundle_gate_says_the_runtime_cannot_run_it(mac_12b_build):
    """12B-shaped Mac bundles call our Metal kernel: the Linux runtime cannot run it, and the gate says so
    (the session's tiny 12B Mac build, whose convert step ran the bundle-run gate)."""
    gate = json.loads((mac_12b_build / "build.json").read_text())["steps"]["convert"]["details"]["gates"]["bundle_run"]
    assert gate["status"] == "not run"
    assert "metal4_kernel" in gate["summary"] and "Mac" in gate["summary"]


@pytest.mark.full
def test_long_context_probe_runs_as_far_as_the_context_allows(tiny_bundle_builds, tmp_path):
    """Issue 27: the packaged probe on the tiny int4 bundle under Core AI's runtime. Its context is 4096 and
    its tokenizer makes the probe's 2.5k-token chat about 6k tokens: the controls run (one single-turn, one
    two-turn rendered by the chat template), the chat is left out and named, each record carries the KV binding."""
    from gemmaios.oracle import load_prompt_set, run_oracle
    from gemmaios.oracle.prompts import PromptSet
    from gemmaios.transcript import read_transcript

    out = copy_build(tiny_bundle_builds("int4", "provider"), tmp_path / "build")
    probe = load_prompt_set(Path("long-context"))
    too_long = next(p for p in probe.prompts if p.id == "chat-2.5k")
    subset = PromptSet(probe.name, [*probe.prompts[:2], too_long], probe.chat_template)  # the controls, the chat
    oracle = run_oracle(out / "checkpoint", subset, out=out / ORACLE_FILE)
    assert len(oracle.prompts[2].prompt_ids) + oracle.max_new_tokens > hostrun.BundleInfo.load(hostrun.find_bundle(out)).max_context
    result = hostrun.host_bench(out, trials=1)
    assert result.skipped == [f"chat-2.5k ({len(oracle.prompts[2].prompt_ids)} + 32 tokens)"]
    transcript = read_transcript(result.transcript, require_complete=True)
    assert [(p.index, p.prompt_id) for p in transcript.prompts] == [(0, "short-capital"), (1, "short-followup")]
    for p, ref in zip(transcript.prompts, oracle.prompts, strict=False):
        assert p.prompt_ids == ref.prompt_ids and p.kv_capacity == len(ref.prompt_ids) + 32 and p.warnings == []
    assert transcript.prompts[0].generated_ids == oracle.prompts[0].generated_ids  # the single turn, token-exact
    assert json.loads((result.run_dir / "run.json").read_text())["skipped_prompts"] == result.skipped
