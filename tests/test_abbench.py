"""`--ab OTHER` (issue 31): two builds of one model benched in turns, on this machine (Core AI's runtime) and on
the simulated iPhone, compared in one table (gemmaios.abbench).

The builds are the session's: the uniform int4 demo build (tiny_build) and `--recipe tiny-mixed-248`
(tiny_mixed_build) on the host; on the phone the int8 app build and the mixed build with its app rendered under
another bundle id. Each test works on copies (a bench writes runs/ into both builds)."""

from __future__ import annotations

import json
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
    return copy_build(tiny_build.path, tmp_path / "int4"), copy_build(tiny_mixed_build, tmp_path / "mixed")


@pytest.mark.full  # ~3-4 min on 2 shared cores: 2 x 2 trials of 8 prompts x 32 tokens, then 2 x 256 forced tokens
def test_run_bench_ab_compares_int4_and_a_recipe_build_on_the_host(host_pair):
    """`gemmaios run --bench --ab` (abbench.host_ab): both bundles take turns (A B, B A) on the oracle's prompts; each side's
    transcript lands in its own build; the table's bytes per token are each bundle's metadata; the teacher-forced
    KL and top-1 of the recipe side are what its convert-time runtime gate measured (same runtime, same prompts)."""
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
    gate = json.loads((b / "build.json").read_text())["steps"]["convert"]["details"]["gates"]["bundle_run"]
    forced_b = fb["forced_vs_fp32"]
    assert forced_b["tokens"] == gate["tokens"]
    assert forced_b["kl_mean"] == pytest.approx(gate["kl_mean"], abs=1e-3)
    assert forced_b["top1"] == pytest.approx(gate["top1"], abs=1e-3)
    assert fa["forced_vs_fp32"]["kl_mean"] < forced_b["kl_mean"]  # int4 (trained for its grid) is closer to fp32
    assert fa["oracle_exact"]["total"] == fb["oracle_exact"]["total"] == 16
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


def _bench_ab(sim, a: Path, b: Path):
    from device_helpers import UDID, add_device, deploy

    from gemmaios import devicebench
    from gemmaios.abbench import device_ab

    add_device(sim)
    deploy(a, verify=False)
    deploy(b, verify=False)
    report, results = device_ab(a, b, devicebench.bench, udid=UDID, trials=2, timeout=240, poll=0.1)
    assert [len(results[s]) for s in ("a", "b")] == [2, 2]
    assert report.order == ["A0", "B0", "B1", "A1"]
    started = sorted((json.loads((r.run_dir / "run.json").read_text())["started_at"], r.run_id, side)
                     for side in ("a", "b") for r in results[side])
    assert [side for _, _, side in started] == ["a", "b", "b", "a"]
    figures = report.as_dict()["figures"]
    for side in ("a", "b"):
        assert figures[side]["decode_tok_s"]["n"] == 2  # one measured warm trial per run, two runs a side
        assert figures[side]["peak_footprint_bytes"] > 0  # each app's own process
    assert (results["a"][0].run_dir / AB_MD).is_file()
    rows = {row.metric: row for row in report.rows}
    assert rows["peak memory footprint"].a != "—" and rows["decode tok/s (median)"].change.endswith("%")
    return report, results


def test_bench_ab_runs_two_apps_in_turns_on_the_simulated_iphone(sim, build, tiny_app_builds, tmp_path):
    """`bench --ab` (abbench.device_ab) with the session's int8 build twice, the second app under another bundle
    id: both apps run in ABBA order, each its own run and footprint; the same bundle decodes the same tokens, so
    the A vs B agreement is complete."""
    from devicebuild import tiny_options

    other = _app_under(copy_build(tiny_app_builds["documents"], tmp_path / "other"), tiny_options("documents"),
                       OTHER_BUNDLE_ID)
    report, results = _bench_ab(sim, build, other)
    for side, bundle_id in (("a", "dev.gemmaios.bench"), ("b", OTHER_BUNDLE_ID)):
        for r in results[side]:
            assert json.loads((r.run_dir / "run.json").read_text())["bundle_id"] == bundle_id
    agree = report.figures["tokens_a_vs_b"]
    assert agree["identical"] == agree["pairs"] == 4  # 2 trials x 2 prompts of the short set
    assert report.a.weight_bytes_per_token == report.b.weight_bytes_per_token


@pytest.mark.full  # the mixed build is made for it (~3 min)
def test_bench_ab_int8_against_the_mixed_recipe_on_the_simulated_iphone(sim, build, tiny_mixed_build, tmp_path):
    """The issue's case on the phone: the int8 app against the tiny-mixed-248 app (another bundle id); each run is
    its build's bundle and the table has each bundle's bytes per token."""
    from gemmaios.pipeline import BuildOptions

    mixed = _app_under(copy_build(tiny_mixed_build, tmp_path / "mixed"),
                       BuildOptions(model="tiny", recipe="tiny-mixed-248"), MIXED_BUNDLE_ID)
    report, results = _bench_ab(sim, build, mixed)
    for side, folder, bundle_id in (("a", build, "dev.gemmaios.bench"), ("b", mixed, MIXED_BUNDLE_ID)):
        for r in results[side]:
            assert json.loads((r.run_dir / "run.json").read_text())["bundle_id"] == bundle_id
            assert read_transcript(r.transcript).bundle["name"] == _bundle(folder).name
    assert report.a.storage == "int8" and report.b.storage == "recipe tiny-mixed-248"
    assert report.b.weight_bytes_per_token == json.loads(
        (_bundle(mixed) / "metadata.json").read_text())["gemmaios"]["recipe"]["bytes_per_token"]
    assert report.b.weight_bytes_per_token < report.a.weight_bytes_per_token


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
