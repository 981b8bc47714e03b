"""`--ab OTHER` (issue 31): two builds of one model benched in turns, on this machine (Core AI's runtime) and on
the simulated iPhone, compared in one table (gemmaios.abbench).

The builds are the session's: the uniform int4 demo build (tiny_build) and `--recipe tiny-mixed-248`
(tiny_mixed_build) on the host; on the phone the int8 app build and the mixed build with its app rendered under
another bundle id. Each test works on copies (a bench writes runs/ into both builds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from devicebuild import copy_build

from gemmaios.abbench import AB_JSON, AB_MD
from gemmaios.hostrun import ab_order
from gemmaios.report import bundle_facts_from_dir
from gemmaios.transcript import read_transcript


def test_ab_order_takes_turns_abba():
    assert ab_order(4) == [(0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b"), (3, "b"), (3, "a")]
    firsts = [side for r, side in ab_order(6) if (r, side) == next(t for t in ab_order(6) if t[0] == r)]
    assert firsts.count("a") == firsts.count("b") == 3


def _bundle(build: Path) -> Path:
    details = json.loads((build / "build.json").read_text())["steps"]["convert"]["details"]
    return build / details["bundle_dir"]


@pytest.fixture
def host_pair(tiny_build, tiny_mixed_build, tmp_path) -> tuple[Path, Path]:
    """Copies of the int4 and mixed builds, A's oracle cut to its first HOST_PROMPTS prompts (a CPU runtime decodes
    the tiny model at ~10 tok/s on 2 shared cores: the whole set takes minutes a trial)."""
    from gemmaios.oracle import ORACLE_FILE, load_oracle

    a = copy_build(tiny_build.path, tmp_path / "int4")
    oracle = load_oracle(a / ORACLE_FILE)
    oracle.prompts = oracle.prompts[:HOST_PROMPTS]
    oracle.save(a / ORACLE_FILE)
    return a, copy_build(tiny_mixed_build, tmp_path / "mixed")


HOST_PROMPTS = 3


@pytest.mark.full  # ~1.5 min on 2 shared cores: 2 x 2 trials of 3 prompts x 32 tokens, 2 x 96 forced tokens
def test_run_bench_ab_compares_int4_and_a_recipe_build_on_the_host(host_pair):
    """`gemmaios run --bench --ab` (abbench.host_ab): both bundles take turns (A B, B A) on A's oracle prompts;
    each side's transcript lands in its own build; the table's bytes per token are each bundle's metadata; the
    teacher-forced figures against fp32 put int4 near fp32 and the recipe within its floors. (On the whole oracle
    the recipe's figures equal its convert-time runtime gate's: docs/recipes.md.)"""
    from gemmaios.abbench import host_ab

    a, b = host_pair
    report = host_ab(a, b, trials=2).as_dict()
    [ta] = list(a.glob("runs/*-host-ab/*.jsonl"))
    [tb] = list(b.glob("runs/*-host-ab/*.jsonl"))
    assert report["transcripts"] == {"a": [str(ta)], "b": [str(tb)]}
    assert report["order"] == ["A0", "B0", "B1", "A1"]
    ra, rb = read_transcript(ta), read_transcript(tb)
    assert ra.header["ab"]["side"] == "a" and rb.header["ab"]["side"] == "b"
    # the turns really alternated: one clock for both sides
    start = {(side, p.trial): p.seconds_since_launch for side, t in (("a", ra), ("b", rb)) for p in t.prompts
             if p.index == 0}
    assert start["a", 0] < start["b", 0] < start["b", 1] < start["a", 1]
    assert [p.prompt_ids for p in ra.prompts] == [p.prompt_ids for p in rb.prompts]  # same prompts, same decoding
    assert not ra.memory and not rb.memory  # one process holds both: no per-bundle footprint

    builds = report["builds"]
    assert builds["a"]["storage"] == "int4" and builds["b"]["storage"] == "recipe tiny-mixed-248"
    meta_b = json.loads((_bundle(b) / "metadata.json").read_text())["gemmaios"]
    assert builds["b"]["weight_bytes_per_token"] == meta_b["recipe"]["bytes_per_token"]
    assert builds["a"]["weight_bytes_per_token"] == bundle_facts_from_dir(_bundle(a)).weight_bytes
    fa, fb = report["figures"]["a"], report["figures"]["b"]
    for f in (fa, fb):
        assert f["decode_tok_s"]["n"] == 1 and f["decode_tok_s"]["median"] > 0  # trial 0 is each side's warm-up
        assert f["prefill_tok_s"]["median"] > 0
        assert f["peak_footprint_bytes"] is None
    recipe = json.loads((_bundle(b) / "metadata.json").read_text())["gemmaios"]["recipe"]
    forced_a, forced_b = fa["forced_vs_fp32"], fb["forced_vs_fp32"]
    assert forced_a["tokens"] == forced_b["tokens"] == HOST_PROMPTS * 32
    assert forced_a["top1"] >= 0.95 and forced_a["kl_mean"] < 0.05  # int4, trained for its grid: near fp32
    # the recipe loses more, within the floors its runtime gate holds it to
    assert forced_a["kl_mean"] < forced_b["kl_mean"] <= recipe["floors"]["kl"]
    assert recipe["floors"]["top1"] <= forced_b["top1"] <= forced_a["top1"]
    ab = report["figures"]["forced_a_vs_b"]
    assert ab["tokens"] == forced_b["tokens"] and 0 < ab["kl_mean"]
    assert fa["oracle_exact"]["total"] == fb["oracle_exact"]["total"] == 2 * HOST_PROMPTS
    # the A/B table: every figure shown, none as None or 0
    table = {row["metric"]: row for row in report["table"]}
    assert table["peak memory footprint"]["a"] == "—"
    assert "None" not in json.dumps(report["table"])
    tokens = report["figures"]["tokens_a_vs_b"]
    assert table["A vs B: prompts token-identical"]["a"] == f"{tokens['identical']}/{tokens['pairs']}"
    md = (ta.parent / AB_MD).read_text()
    assert "| decode tok/s (median) |" in md and "recipe tiny-mixed-248" in md
    assert json.loads((ta.parent / AB_JSON).read_text())["table"] == report["table"]


# ---- the phone (the loopback simulator and its app stand-in) ------------------------------------------------

MIXED_BUNDLE_ID = "dev.gemmaios.bench.mixed"
OTHER_BUNDLE_ID = "dev.gemmaios.bench.other"


def _app_under(build: Path, options, bundle_id: str) -> Path:
    """`build` with its app rendered under `bundle_id` (documents), the short prompt set, and its .ipa."""
    from devicebuild import shrink_prompt_set
    from devicesim.appbuild import package_app

    from gemmaios.steps import run_build

    options.extra["app"] = {"allow_uncompiled": True, "allow_clone": False, "bundle_location": "documents",
                            "bundle_id": bundle_id}
    _, reports = run_build(options, build, only={"checkpoint", "app"})
    assert {r.name: r.status for r in reports}["app"] == "done"
    shrink_prompt_set(build)
    package_app(build)
    return build


def test_bench_ab_runs_two_apps_in_turns_on_the_simulated_iphone(sim, build, tiny_app_builds, tmp_path, monkeypatch):
    """`gemmaios bench --ab` with the session's int8 build twice, the second app under another bundle id: both apps
    run in ABBA order, each its own run and footprint; the same bundle decodes the same tokens, so the A vs B
    agreement is complete; the table is printed and ab.md / ab.json written beside A's first run."""
    from device_helpers import UDID, add_device, deploy, flat
    from devicebuild import tiny_options
    from typer.testing import CliRunner

    from gemmaios import devicebench
    from gemmaios.cli import app as cli_app

    other = _app_under(copy_build(tiny_app_builds["documents"], tmp_path / "other"), tiny_options("documents"),
                       OTHER_BUNDLE_ID)
    add_device(sim)
    deploy(build, verify=False)
    deploy(other, verify=False)
    real_bench = devicebench.bench  # the CLI polls every 2 s; poll faster here
    monkeypatch.setattr(devicebench, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.1}))
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--ab", str(other), "--trials", "2",
                                       "--timeout", "240", "--json"])
    assert ran.exit_code == 0, ran.output
    text = ran.output
    start = re.search(r"^\{$", text, re.M).start()
    report = json.loads(text[start:re.search(r"^\}$", text[start:], re.M).end() + start])
    assert report["order"] == ["A0", "B0", "B1", "A1"]
    runs = sorted((json.loads(f.read_text())["started_at"], json.loads(f.read_text())["run_id"], side,
                   json.loads(f.read_text())["bundle_id"])
                  for side, folder in (("a", build), ("b", other)) for f in folder.glob(f"runs/*-{UDID}/run.json"))
    assert [(side, bundle_id) for _, _, side, bundle_id in runs] == [
        ("a", "dev.gemmaios.bench"), ("b", OTHER_BUNDLE_ID), ("b", OTHER_BUNDLE_ID), ("a", "dev.gemmaios.bench")]
    assert len({run_id for _, run_id, side, _ in runs if side == "b"}) == 2  # back-to-back runs keep their own ids
    figures = report["figures"]
    for side in ("a", "b"):
        assert figures[side]["decode_tok_s"]["n"] == 2  # one measured warm trial per run, two runs a side
        assert figures[side]["peak_footprint_bytes"] > 0  # each app's own process
        assert len(report["transcripts"][side]) == 2
    agree = figures["tokens_a_vs_b"]
    assert agree["identical"] == agree["pairs"] == 4  # 2 trials x 2 prompts of the short set
    assert report["builds"]["a"]["weight_bytes_per_token"] == report["builds"]["b"]["weight_bytes_per_token"]
    first_a = Path(report["transcripts"]["a"][0]).parent
    assert json.loads((first_a / AB_JSON).read_text())["table"] == report["table"]
    assert "decode tok/s (median)" in flat(text) and "A vs B: prompts token-identical" in flat(text)


@pytest.mark.full  # the mixed build is made for it (~3 min)
def test_deploy_bench_ab_int8_against_the_mixed_recipe_on_the_simulated_iphone(sim, build, tiny_mixed_build, tmp_path,
                                                                              monkeypatch):
    """The issue's case on the phone, through `gemmaios deploy --bench --ab`: the tiny-mixed-248 app (another bundle
    id) is on the phone; deploy installs the int8 app, then benches both in ABBA turns; each run is its build's
    bundle, each app has its own footprint, and the table has each bundle's bytes per token."""
    from device_helpers import UDID, add_device, deploy
    from typer.testing import CliRunner

    from gemmaios import devicebench
    from gemmaios.cli import app as cli_app
    from gemmaios.pipeline import BuildOptions

    mixed = _app_under(copy_build(tiny_mixed_build, tmp_path / "mixed"),
                       BuildOptions(model="tiny", recipe="tiny-mixed-248"), MIXED_BUNDLE_ID)
    add_device(sim)
    deploy(mixed, verify=False)
    real_bench = devicebench.bench
    monkeypatch.setattr(devicebench, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.1}))
    ran = CliRunner().invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled", "--no-verify", "--bench",
                                       "--ab", str(mixed), "--trials", "2", "--timeout", "240"])
    assert ran.exit_code == 0, ran.output
    [ab_json] = list(build.glob(f"runs/*-{UDID}/{AB_JSON}"))
    report = json.loads(ab_json.read_text())
    assert report["order"] == ["A0", "B0", "B1", "A1"]
    for side, folder, bundle_id in (("a", build, "dev.gemmaios.bench"), ("b", mixed, MIXED_BUNDLE_ID)):
        assert len(report["transcripts"][side]) == 2
        for path in report["transcripts"][side]:
            assert json.loads((Path(path).parent / "run.json").read_text())["bundle_id"] == bundle_id
            assert read_transcript(Path(path)).bundle["name"] == _bundle(folder).name
        assert report["figures"][side]["peak_footprint_bytes"] > 0
    builds = report["builds"]
    assert builds["a"]["storage"] == "int8" and builds["b"]["storage"] == "recipe tiny-mixed-248"
    assert builds["b"]["weight_bytes_per_token"] == json.loads(
        (_bundle(mixed) / "metadata.json").read_text())["gemmaios"]["recipe"]["bytes_per_token"]
    assert builds["b"]["weight_bytes_per_token"] < builds["a"]["weight_bytes_per_token"]
    assert "weight bytes / decoded token" in ran.output
    # the short prompt set is not the oracle's: no oracle figure rather than 0/n
    table = {row["metric"]: row for row in report["table"]}
    assert table["oracle: prompts token-exact"]["a"] == table["oracle: prompts token-exact"]["b"] == "—"
    assert any("not the oracle's" in note for note in report["notes"])


def test_bench_ab_refuses_two_apps_under_one_bundle_id_or_two_prompt_sets(build, bundled_build, tiny_app_builds,
                                                                          tmp_path):
    """Before any device work: one bundle id for both builds (the phone keeps one app), or different prompt sets."""
    from gemmaios import devicebench
    from gemmaios.abbench import device_ab
    from gemmaios.errors import AbBuildsError

    with pytest.raises(AbBuildsError, match="both builds install as dev.gemmaios.bench"):
        device_ab(build, bundled_build, devicebench.bench, udid=None, trials=2)
    longer = copy_build(tiny_app_builds["bundled"], tmp_path / "longer")  # its full prompt set
    with pytest.raises(AbBuildsError, match="different prompt sets"):
        device_ab(build, longer, devicebench.bench, udid=None, trials=2)
