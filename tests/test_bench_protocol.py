"""The bench protocol (issue 16): cold launches apart from warm trials, thermal state at start /
peak / end, energy from the battery's drop, sustained decode with tok/s over time, and the prompt
lengths prefill was measured on — from the launch settings through the stand-in app and the
transcript to the report.

The device tests run the real flow against the loopback simulator: every cold launch is its own
stand-in process started through DVT process control, and the sustained phase really decodes the
tiny bundle for its duration (a few seconds here; figures are not asserted, only their shape).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from device_helpers import UDID, add_device, deploy, flat, records
from devicebuild import BUNDLE_ID
from devicesim import SimApp
from swift_toolchain import vectors
from typer.testing import CliRunner

from gemmaios import contract
from gemmaios import devicebench as bench_mod
from gemmaios.cli import app as cli_app
from gemmaios.report import build_report, load_runs, plots, render_json, render_markdown
from gemmaios.report.protocol import NOMINAL_VOLTAGE_V
from gemmaios.transcript import TranscriptError, read_transcript, write_transcript

# ---- launch plan and settings -----------------------------------------------------------------------


def test_launch_plan_runs_cold_launches_first_and_gives_the_sustained_phase_to_the_last():
    plan = bench_mod.launch_plan(3, cold=2, duration=600)
    assert [(p.index, p.kind, p.first_trial, p.trials, p.duration) for p in plan] == [
        (0, "cold", 0, 1, 0), (1, "cold", 1, 1, 0), (2, "warm", 2, 3, 600)]
    assert [(p.kind, p.trials) for p in bench_mod.launch_plan(0, cold=2)] == [("cold", 1), ("cold", 1)]
    with pytest.raises(bench_mod.BenchSettingsError, match="nothing to run"):
        bench_mod.launch_plan(0, cold=0)


def test_a_plain_bench_sends_exactly_the_old_settings_and_a_cold_launch_adds_the_protocols():
    plain = bench_mod.launch_environment("r1", 3, "U", launch=bench_mod.launch_plan(3)[0], launches=1)
    assert plain == {contract.ENV["bench"]: "1", contract.ENV["trials"]: "3", contract.ENV["runId"]: "r1",
                     contract.ENV["udid"]: "U"}
    plan = bench_mod.launch_plan(4, cold=2, duration=20)
    cold = bench_mod.launch_environment("r1", 4, "U", launch=plan[1], launches=3)
    assert cold[contract.ENV["trials"]] == "1" and cold[contract.ENV["coldLaunch"]] == "1"
    assert (cold[contract.ENV["launchIndex"]], cold[contract.ENV["launches"]], cold[contract.ENV["firstTrial"]]) == \
        ("1", "3", "1")
    assert contract.ENV["duration"] not in cold
    warm = bench_mod.launch_environment("r1", 4, "U", launch=plan[2], launches=3, sample_interval=2)
    assert contract.ENV["coldLaunch"] not in warm and warm[contract.ENV["trials"]] == "4"
    assert (warm[contract.ENV["duration"]], warm[contract.ENV["sampleInterval"]]) == ("20", "2")


@pytest.mark.parametrize("kw,text", [({"trials": 0}, "nothing to run"), ({"cold": -1}, "must not be negative"),
                                     ({"duration": 5, "sample_interval": 10}, "longer than --duration")])
def test_impossible_bench_settings_are_refused_before_the_phone_is_touched(tmp_path, kw, text):
    with pytest.raises(bench_mod.BenchSettingsError, match=text):
        bench_mod.bench(tmp_path, **kw)


# ---- transcripts --------------------------------------------------------------------------------------

def _header(**over) -> dict:
    h = {"type": "header", "schema": contract.TRANSCRIPT_SCHEMA, "run_id": "run-p", "started_at": "2026-11-24T10:00:00Z",
         "device": {"product_type": "iPhone18,1", "name": "Test iPhone", "os_version": "27.0", "arch": "h18p",
                    "udid": "0000-TEST"},
         "bundle": {"name": "b", "metadata_sha256": "ab" * 32, "quant": "int4", "ple": "tbl"},
         "prompt_set": {"name": "s", "sha256": "cd" * 32, "count": 2}, "trials": 1, "max_new_tokens": 8,
         "platform": "iOS", "launches": 3}
    h.update(over)
    return h


def _launch(index: int, kind: str, first: int, trials: int, battery: float, state: str = "unplugged",
            thermal: str = "nominal") -> dict:
    return {"type": "launch", "index": index, "kind": kind, "first_trial": first, "trials": trials, "launches": 3,
            "thermal_state": thermal, "battery_level": battery, "battery_state": state, "seconds_since_launch": 0.3}


def _prompt(trial: int, index: int, launch: int, *, prefill: tuple[int, float], decode: tuple[int, float],
            thermal: str = "nominal", since_launch: float | None = None) -> dict:
    tokens, seconds = decode
    record = {"type": "prompt", "trial": trial, "index": index, "prompt_id": f"p{index}",
              "prompt_ids": list(range(2, 2 + prefill[0])), "generated_ids": list(range(100, 101 + tokens)),
              "prefill_tokens": prefill[0], "prefill_seconds": prefill[1], "ttft_seconds": prefill[1] + 0.01,
              "decode_tokens": tokens, "decode_seconds": seconds, "decode_token_seconds": [seconds / tokens] * tokens,
              "thermal_state": thermal, "launch": launch}
    if since_launch is not None:
        record["ttft_since_launch_seconds"] = since_launch
    return record


def protocol_records(*, charging: bool = False, end_battery: float = 0.78, samples: bool = True) -> list[dict]:
    """Two cold launches (slow: load in the TTFT), then a warm launch of 3 trials and a sustained phase
    that heats the phone from nominal to serious."""
    state = "charging" if charging else "unplugged"
    out = [_header()]
    for n in range(2):  # cold: prefill 64 tok in 2 s = 32 tok/s, decode 8 tok in 1 s
        out += [_launch(n, "cold", n, 1, 0.80, state),
                {"type": "load", "seconds": 6.0 + n, "cold": False, "launch": n},
                _prompt(n, 0, n, prefill=(64, 2.0), decode=(8, 1.0), since_launch=9.5 + n),
                _prompt(n, 1, n, prefill=(600, 10.0), decode=(8, 1.0)),
                {"type": "launch_end", "index": n, "thermal_state": "nominal", "battery_level": 0.80,
                 "battery_state": state}]
    out += [_launch(2, "warm", 2, 3, 0.80, state), {"type": "load", "seconds": 5.0, "cold": False, "launch": 2}]
    for trial, decode_s in ((2, 4.0), (3, 0.5), (4, 0.4)):  # trial 2 is the warm launch's warm-up
        out += [_prompt(trial, 0, 2, prefill=(64, 0.5), decode=(8, decode_s)),
                _prompt(trial, 1, 2, prefill=(600, 3.0), decode=(8, decode_s))]
    if samples:
        for i, (rate, thermal) in enumerate([(20.0, "nominal"), (19.0, "nominal"), (15.0, "serious"), (14.0, "fair")]):
            if i == 2:
                out.append({"type": "thermal", "t": 101.5 + i * 2, "state": "serious", "launch": 2})
            if i == 3:
                out.append({"type": "thermal", "t": 101.5 + i * 2, "state": "fair", "launch": 2})
            out.append({"type": "sample", "t": 102.0 + i * 2, "interval_s": 2.0, "tokens": int(rate * 2),
                        "tok_s": rate, "thermal_state": thermal, "launch": 2})
    out += [{"type": "launch_end", "index": 2, "thermal_state": "fair", "battery_level": end_battery,
             "battery_state": state, "sustained_tokens": 136},
            {"type": "footer", "completed": True, "ended_at": "2026-11-24T10:10:00Z", "battery_level": end_battery,
             "battery_state": state, "thermal_state": "fair", "seconds_since_unlock": 900.0}]
    return out


def _run_folder(tmp_path: Path, recs: list[dict], battery: dict | None = None) -> Path:
    folder = tmp_path / "runs" / "20261124T100000Z-0000-TEST"
    write_transcript(folder / "run-p.jsonl", recs)
    if battery is not None:
        (folder / "run.json").write_text(json.dumps({"status": "completed", "battery": battery}))
    return folder


def test_the_transcript_keeps_each_trials_launch_kind_and_every_thermal_observation(tmp_path):
    t = read_transcript(write_transcript(tmp_path / "t.jsonl", protocol_records()), require_complete=True)
    assert [ln["kind"] for ln in t.launches] == ["cold", "cold", "warm"]
    assert [t.trial_kind(n) for n in t.trials] == ["cold", "cold", "warm", "warm", "warm"]
    assert len(t.samples) == 4 and [r["state"] for r in t.thermal] == ["serious", "fair"]
    states = [s for _t, s in t.thermal_states()]
    assert states[0] == "nominal" and "serious" in states and states[-1] == "fair"


@pytest.mark.parametrize("mutate,problem", [
    (lambda r: r[6].update(index=2), "launch 2 where launch 1 was due"),  # launch 1's record lost
    (lambda r: r[1].update(kind="lukewarm"), "launch.kind 'lukewarm'"),
    (lambda r: r[1].update(battery_level=80), "battery_level must be a fraction"),
    (lambda r: r[3].update(launch=2), "prompt of launch 2 inside launch 0"),
    (lambda r: r.insert(2, {"type": "thermal", "t": 1.0, "state": "toasty"}), "thermal.state 'toasty'"),
    (lambda r: r.insert(2, {"type": "sample", "t": 1.0, "interval_s": 0, "tokens": 3, "tok_s": 1.0}),
     "interval_s must be positive"),
])
def test_damaged_protocol_records_are_errors_with_their_line(tmp_path, mutate, problem):
    recs = protocol_records()
    mutate(recs)
    with pytest.raises(TranscriptError, match=problem.replace("(", r"\(")):
        read_transcript(write_transcript(tmp_path / "t.jsonl", recs))


# ---- report --------------------------------------------------------------------------------------------

def _summary(folder: Path):
    report = build_report(load_runs([folder]), scorer=None)
    return report, report.runs[0]


def test_cold_launches_and_warm_trials_are_reported_apart(tmp_path):
    report, s = _summary(_run_folder(tmp_path, protocol_records()))
    assert (s.cold_trials, s.warmup_trials, s.measured_trials) == ([0, 1], [2], [3, 4])
    assert s.trials_planned == 5
    assert [t.kind for t in s.per_trial] == ["cold", "cold", "warm", "warm", "warm"]
    # warm decode: 16 tokens / 1.0 s and / 0.8 s (the warm-up's 4 s per prompt and the cold trials excluded)
    assert s.decode_tok_s.median == pytest.approx((16 / 1.0 + 16 / 0.8) / 2)
    assert s.cold.launches == 2 and s.cold.decode_tok_s.median == pytest.approx(8.0)
    assert (s.cold.ttft_since_launch_s.min, s.cold.ttft_since_launch_s.max) == (9.5, 10.5)
    assert s.cold.load_s.median == pytest.approx(6.5)
    md = render_markdown(report)
    assert "| cold launch TTFT s (process start → first token) | 10.000 (min 9.500, max 10.500, n=2) |" in md
    assert "| decode tok/s (warm) |" in md and "| 0 | cold |" in md and "| 2 | warm |" in md
    assert "cold launches vs warm trials" in plots(s)


def test_thermal_state_at_start_peak_and_end(tmp_path):
    _report, s = _summary(_run_folder(tmp_path, protocol_records()))
    assert (s.thermal.start, s.thermal.peak, s.thermal.end) == ("nominal", "serious", "fair")
    assert [state for _t, _launch, state in s.thermal.transitions] == ["serious", "fair"]
    assert any("thermal state fair/serious during the sustained phase" in n.text for n in s.notes)


def test_sustained_phase_gives_tok_s_over_time_and_its_plot_marks_the_thermal_transitions(tmp_path):
    report, s = _summary(_run_folder(tmp_path, protocol_records()))
    assert s.sustained.samples == 4 and s.sustained.tokens == 136
    assert (s.sustained.first_tok_s, s.sustained.last_tok_s) == (20.0, 14.0)
    assert s.sustained.change_pct == pytest.approx(-30.0)
    assert [round(t) for t, _rate, _state in s.series["sustained"]] == [2, 4, 6, 8]
    assert [state for _t, state in s.series["sustained_thermal"]] == ["serious", "fair"]
    figures = plots(s)
    assert "tok/s over time (sustained)" in figures and len(figures["tok/s over time (sustained)"]) > 1000
    md = render_markdown(report)
    assert "| sustained decode | 8 s of continuous decode, 136 tokens, 4 samples every 2 s: tok/s first 20.0 → " \
           "last 14.0 (-30% first → last)" in md
    assert "| 6 | 15.0 | serious |" in md
    assert json.loads(render_json(report))["runs"][0]["sustained"]["change_pct"] == pytest.approx(-30.0)


def test_no_sustained_phase_no_sustained_plot(tmp_path):
    _report, s = _summary(_run_folder(tmp_path, protocol_records(samples=False)))
    assert s.sustained is None and "tok/s over time (sustained)" not in plots(s)


def test_energy_in_mwh_from_the_battery_capacity_bench_read(tmp_path):
    battery = {"capacity_mah": 3500.0, "capacity_source": "IORegistry NominalChargeCapacity", "voltage_v": 3.9}
    report, s = _summary(_run_folder(tmp_path, protocol_records(), battery))
    e = s.energy
    assert e.drop_pct == pytest.approx(2.0) and e.minutes == pytest.approx(10.0)
    assert e.mwh == pytest.approx(0.02 * 3500 * 3.9)  # 273 mWh
    tokens = 4 * 9 + 6 * 9 + 136  # prompts' generated ids + sustained tokens
    assert e.tokens == tokens and e.mwh_per_1k_tokens == pytest.approx(273 / tokens * 1000)
    md = render_markdown(report)
    assert "| energy (mWh) | battery 80% → 78% (2.0 points) over 10.0 min" in md
    assert "273 mWh" in md and "3500 mAh (IORegistry NominalChargeCapacity) × 3.90 V (IORegistry Voltage)" in md


def test_energy_without_a_capacity_is_battery_percent_and_says_why(tmp_path):
    battery = {"unavailable": "diagnostics_relay did not answer (StartServiceError)"}
    report, s = _summary(_run_folder(tmp_path, protocol_records(), battery))
    assert s.energy.mwh is None and s.energy.pct_per_minute == pytest.approx(0.2)
    md = render_markdown(report)
    assert "| energy (battery % (no capacity)) |" in md and "0.20 %/min" in md
    assert "not mWh: diagnostics_relay did not answer (StartServiceError)" in md
    # a capacity without a voltage: the nominal voltage, said so
    _r, s = _summary(_run_folder(tmp_path / "v", protocol_records(), {"capacity_mah": 3000}))
    assert s.energy.voltage_v == NOMINAL_VOLTAGE_V and "nominal" in s.energy.voltage_source


def test_energy_while_charging_is_flagged_and_not_given(tmp_path):
    battery = {"capacity_mah": 3500.0, "capacity_source": "IORegistry DesignCapacity", "voltage_v": 3.9}
    report, s = _summary(_run_folder(tmp_path, protocol_records(charging=True), battery))
    assert s.energy.charging
    assert any(n.level == "warning" and "charging during the run" in n.text for n in s.notes)
    assert "CHARGING: no energy figure" in render_markdown(report)
    assert json.loads(render_json(report))["runs"][0]["energy"]["mwh"] is None


def test_no_drop_says_the_run_was_too_short(tmp_path):
    _report, s = _summary(_run_folder(tmp_path, protocol_records(end_battery=0.80), {}))
    assert s.energy.drop_pct == 0 and "no drop at the level's 1% resolution" in s.energy.line


def test_prompt_lengths_stand_next_to_prefill_tok_s(tmp_path):
    report, s = _summary(_run_folder(tmp_path, protocol_records()))
    assert [(p.prompt_id, p.tokens) for p in s.prompt_lengths] == [("p0", 64), ("p1", 600)]
    assert s.prompt_lengths[1].prefill_tok_s == pytest.approx(200.0)  # 600 tok / 3 s over the measured trials
    md = render_markdown(report)
    assert "| prompt lengths (tokens) | 2 prompts of 64–600 tokens (median 332); per prompt: p0 64 tok → 128.0 tok/s, " \
           "p1 600 tok → 200.0 tok/s |" in md
    assert "| p1 | 600 | 200.0 |" in md
    assert not any("at most" in n.text for n in s.notes)  # a 600-token prompt is long enough


def test_short_prompts_only_are_said_to_say_little_about_prefill(tmp_path):
    recs = [r for r in protocol_records() if not (r["type"] == "prompt" and r["index"] == 1)]
    _report, s = _summary(_run_folder(tmp_path, recs))
    assert any("at most 64 tokens" in n.text and "long-prefill" in n.text for n in s.notes)


def test_a_transcript_before_the_protocol_reports_as_before(tmp_path):
    recs = [r for r in protocol_records() if r["type"] not in ("launch", "launch_end", "thermal", "sample")
            and r.get("launch", 2) == 2]
    for r in recs:
        r.pop("launch", None)
    _report, s = _summary(_run_folder(tmp_path, recs))
    assert s.cold is None and s.energy is None and s.sustained is None and s.cold_trials == []
    assert (s.warmup_trials, s.measured_trials) == ([2], [3, 4])


# ---- on the simulated iPhone -------------------------------------------------------------------------

def _deployed(sim, build, **state):
    device = add_device(sim, **state)
    deploy(build, verify=False)
    return device


def test_cold_launches_are_separate_processes_and_the_report_keeps_them_apart(sim, build, monkeypatch):
    device = _deployed(sim, build, app=SimApp(memory_interval=0.2))
    real_bench = bench_mod.bench  # the CLI polls every 2 s; poll faster here
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.1}))
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--cold", "2", "--trials", "2", "--timeout", "240",
                                       "--bundle-id", BUNDLE_ID])
    assert ran.exit_code == 0, ran.output
    assert "launch 1 (cold, 1 trial)" in flat(ran.output) and "launch 3 (warm, 2 trials)" in flat(ran.output)
    launches = device.launches[-3:]
    assert len({ln["pid"] for ln in launches}) == 3  # each its own process
    envs = [ln["environment"] for ln in launches]
    assert [e.get(contract.ENV["coldLaunch"]) for e in envs] == ["1", "1", None]
    assert [e[contract.ENV["launchIndex"]] for e in envs] == ["0", "1", "2"]
    assert len({e[contract.ENV["runId"]] for e in envs}) == 1
    log = next((build / "runs").glob(f"*-{UDID}/*.jsonl"))
    lines = records(log)
    assert [ln["type"] for ln in lines].count("header") == 1 and lines[-1]["type"] == "footer"
    t = read_transcript(log, require_complete=True)
    assert [(ln["kind"], ln["first_trial"], ln["trials"]) for ln in t.launches] == [("cold", 0, 1), ("cold", 1, 1),
                                                                                  ("warm", 2, 2)]
    assert [len(t.trial(n)) for n in t.trials] == [2, 2, 2, 2]
    cold_firsts = [t.trial(n)[0] for n in (0, 1)]
    loads = {ld["launch"]: ld["seconds"] for ld in t.loads}
    for p in cold_firsts:  # process start → first token covers the model load and the prefill
        assert p.ttft_since_launch_seconds > loads[p.launch] + p.ttft_seconds * 0.5
    assert all(p.ttft_since_launch_seconds is None for n in (2, 3) for p in t.trial(n))
    run_json = json.loads((log.parent / "run.json").read_text())
    assert [ln["kind"] for ln in run_json["launches"]] == ["cold", "cold", "warm"]
    assert "diagnostics_relay" in run_json["battery"]["unavailable"]  # the simulator serves no IORegistry
    assert "note: the bench prompt set's longest prompt has" in flat(ran.output)  # the tiny set's prompts are short
    assert run_json["notes"] and run_json["warnings"] == []
    report = build_report(load_runs([log.parent]), scorer=None)
    s = report.runs[0]
    assert (s.cold_trials, s.warmup_trials, s.measured_trials) == ([0, 1], [2], [3])
    assert s.cold.launches == 2 and s.cold.ttft_since_launch_s.n == 2
    assert "cold launch TTFT s" in render_markdown(report)


def test_a_sustained_run_samples_tok_s_over_time_with_thermal_changes_and_battery_drain(sim, build):
    app = SimApp(memory_interval=0.5, thermal_state=[[0, "nominal"], [4.0, "fair"]], battery_drain_per_minute=0.06)
    _deployed(sim, build, app=app)
    result = bench_mod.bench(build, trials=1, duration=8, sample_interval=2, timeout=240, poll=0.1)
    assert result.status == bench_mod.COMPLETED and result.validation == "ok"
    t = read_transcript(result.transcript, require_complete=True)
    assert t.header["duration_s"] == 8 and t.launches[0]["duration_s"] == 8
    samples = t.samples
    assert len(samples) == 4 and all(s["interval_s"] == pytest.approx(2.0) for s in samples)
    assert all(s["tokens"] > 0 and s["tok_s"] == pytest.approx(s["tokens"] / 2, rel=1e-3) for s in samples)
    assert samples[-1]["t"] - samples[0]["t"] == pytest.approx(6.0, abs=0.01)
    assert t.launch_ends[-1]["sustained_tokens"] == sum(s["tokens"] for s in samples)
    assert [r["state"] for r in t.thermal] == ["fair"] and t.launch_ends[-1]["thermal_peak"] == "fair"
    assert t.launches[0]["battery_level"] > t.footer["battery_level"]  # drained while decoding
    report = build_report(load_runs([result.run_dir]), scorer=None)
    s = report.runs[0]
    assert s.sustained.samples == 4 and len(s.series["sustained"]) == 4
    assert "tok/s over time (sustained)" in plots(s)
    assert (s.thermal.start, s.thermal.end) == ("nominal", "fair")
    assert s.energy.drop_pct > 0 and s.energy.mwh is None and s.energy.pct_per_minute > 0
    assert "energy (battery % (no capacity))" in render_markdown(report)


def test_ab_kv_alternates_the_kv_start_and_records_each_binding(sim, build):
    """Issue 27: `bench --ab-kv` on the simulated iPhone: even trials grow the KV cache from 256 (upstream),
    odd trials from 384 (the #124 candidate: never 2048/4096, context capped at the largest 384·2^k); a switch
    reloads the engine, and every prompt record carries the binding the engine had for it."""
    with pytest.raises(bench_mod.BenchSettingsError, match="--ab-kv"):
        bench_mod.bench(build, trials=1, ab_kv=True)
    device = _deployed(sim, build)
    result = bench_mod.bench(build, trials=2, ab_kv=True, timeout=240, poll=0.1)
    assert result.status == bench_mod.COMPLETED and result.validation == "ok"
    assert device.launches[-1]["environment"][contract.ENV["abKV"]] == "1"
    t = read_transcript(result.transcript, require_complete=True)
    assert t.header["ab_kv"] is True
    assert [ld[contract.PROMPT_KV_GROWTH] for ld in t.loads] == [contract.KV_GROWTH_DOUBLING, contract.KV_GROWTH_ALT]
    bundle_context = json.loads(next((build / "bundle").glob("*/metadata.json")).read_text())["language"][
        "max_context_length"]
    max_new = t.header["max_new_tokens"]
    for trial, growth, start, context in ((0, contract.KV_GROWTH_DOUBLING, 256, bundle_context),
                                          (1, contract.KV_GROWTH_ALT, 384, contract.kv_alt_max_context(bundle_context))):
        rows, bound = t.trial(trial), start
        assert rows and all(p.kv_growth == growth for p in rows)
        for p in rows:  # in order: the binding only grows while the engine lives
            bound = contract.kv_bound_capacity(p.prefill_tokens + max_new, context, bound)
            assert p.kv_capacity == bound and p.warnings == []
    assert {p.kv_capacity for p in t.trial(1)} <= {384, 768}


# ---- the Swift core and the stand-in agree -----------------------------------------------------------

def _vectors(bin_dir: Path, *args, env: dict | None = None):
    return json.loads(vectors(bin_dir, *map(str, args), env=env))


def test_swift_and_the_stand_in_read_each_launch_bench_sends_alike(core_build, tmp_path):
    from devicesim.standin import CompiledApp, LaunchSettings

    executable = tmp_path / "App"  # the stand-in reads the compiled-in Contract from the app's "binary"
    executable.write_text(contract.render_swift() + "\nenum AppConfig {\n    static let defaultTrials = 3\n}\n")
    app = CompiledApp(executable)
    plan = bench_mod.launch_plan(4, cold=2, duration=30)
    for launch in plan:
        env = bench_mod.launch_environment("r", 4, "U", launch=launch, launches=len(plan), sample_interval=5)
        blank = {v: "" for v in contract.ENV.values()}  # nothing from the test process's own environment
        swift = _vectors(core_build, "bench-launch", 3, env={**blank, **env})
        standin = LaunchSettings(app, [], env)
        assert swift == {"kind": launch.kind, "launch_index": launch.index, "launches": 3,
                         "trials": list(range(launch.first_trial, launch.first_trial + launch.trials)),
                         "appends": launch.index > 0, "writes_footer": launch is plan[-1],
                         "duration": launch.duration, "sample_interval": 5 if launch.duration else 10}
        assert (standin.launch_kind, standin.launch_index, list(standin.trial_numbers), standin.appends,
                standin.writes_footer, standin.duration) == (swift["kind"], swift["launch_index"], swift["trials"],
                                                             swift["appends"], swift["writes_footer"], swift["duration"])
        if launch.duration:
            assert standin.sample_interval == swift["sample_interval"]


def test_swift_and_the_stand_in_sample_sustained_tok_s_alike(core_build):
    from devicesim.benchprotocol import SustainedMeter

    times = [10.05 + 0.07 * i for i in range(40)] + [14.9 + 0.05 * i for i in range(60)]  # a pause, then more
    swift = _vectors(core_build, "sustained", 10, 7, 2, 18, *times)
    meter = SustainedMeter(10, 7, 2)
    samples = []
    for t in times:
        if t < meter.end:
            samples += meter.token(t)
    samples += meter.finish(18)
    assert [(s["t"], s["interval_s"], s["tokens"]) for s in swift] == [pytest.approx(x) for x in samples]
    assert [s["interval_s"] for s in swift] == [2, 2, 2, pytest.approx(1)]
    assert sum(s["tokens"] for s in swift) == sum(1 for t in times if t < 17)


def test_compare_puts_the_protocol_figures_side_by_side_only_when_a_run_has_them(tmp_path):
    from gemmaios.report import compare

    battery = {"capacity_mah": 3500.0, "capacity_source": "IORegistry DesignCapacity", "voltage_v": 3.9}
    _r, a = _summary(_run_folder(tmp_path / "a", protocol_records(), battery))
    slower = protocol_records()
    for r in slower:
        if r["type"] == "sample":
            r["tok_s"] /= 2
    _r, b = _summary(_run_folder(tmp_path / "b", slower, battery))
    rows = {row.metric: row for row in compare(a, b).rows}
    assert rows["sustained tok/s (median)"].delta_pct == pytest.approx(-50.0)
    assert rows["cold launch TTFT s (median)"].a == pytest.approx(10.0)
    assert rows["energy mWh per 1k tokens"].a == pytest.approx(a.energy.mwh_per_1k_tokens)
    plain = [r for r in protocol_records() if r["type"] not in ("launch", "launch_end", "thermal", "sample")
             and r.get("launch", 2) == 2]
    _r, old = _summary(_run_folder(tmp_path / "old", plain))
    assert not any("sustained" in row.metric or "cold launch" in row.metric for row in compare(old, old).rows)


def test_the_report_command_prints_the_protocol_figures(tmp_path):
    folder = _run_folder(tmp_path, protocol_records(), {"unavailable": "diagnostics_relay did not answer"})
    ran = CliRunner().invoke(cli_app, ["report", str(folder), "--out", str(tmp_path / "report")])
    assert ran.exit_code == 0, ran.output
    text = flat(ran.output)
    assert "cold launches: 2, time to first token from process start 10.00 s (median)" in text
    assert "thermal: start nominal · peak serious · end fair" in text
    assert "energy: battery 80% → 78%" in text and "sustained: 8 s of continuous decode" in text
    html = (tmp_path / "report" / "report.html").read_text()
    assert 'alt="tok/s over time (sustained)"' in html and "<td>p1</td><td>600</td>" in html


def test_bench_warns_up_front_when_no_prompt_is_long_enough_for_prefill(tmp_path):
    from gemmaios.payload import PROMPT_SET_BUILD_REL

    path = tmp_path / PROMPT_SET_BUILD_REL
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"prompts": [{"id": "a", "prompt_ids": [2] * 40}, {"id": "b", "prompt_ids": [2] * 90}]}))
    assert "longest prompt has 90 tokens" in bench_mod.prompt_set_warning(tmp_path)  # bench: result.notes
    path.write_text(json.dumps({"prompts": [{"id": "a", "prompt_ids": [2] * 40}, {"id": "b", "prompt_ids": [2] * 600}]}))
    assert bench_mod.prompt_set_warning(tmp_path) is None
    assert bench_mod.prompt_set_warning(tmp_path / "nowhere") is None


def test_bench_names_the_prompts_the_app_left_out_past_the_context(tmp_path):
    """The app writes no record of a prompt past its engine's context (BenchRunner.swift): `bench` names each from
    the build's prompt set and the bundle's context, as the host bench does; with --ab-kv the 384 start caps the
    context at 3072 of 4096, so a 3.2k-token prompt is named with the trials it missed. A prompt missing for any
    other reason, or a run without its footer, names nothing."""
    from transcript_fakes import build_folder
    from transcript_fakes import records as fake_records

    build = build_folder(tmp_path)
    meta = build / "bundle" / "gemma4_e4b_qat_decode_int4" / contract.BUNDLE_METADATA_FILE
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "language": {"max_context_length": 4096}}))
    lengths = {"short": 20, "ledger": 3200, "chat": 5000}
    (build / "app").mkdir()
    (build / "app" / contract.PROMPT_SET_FILE).write_text(json.dumps({"max_new_tokens": 8, "prompts": [
        {"id": name, "prompt_ids": [2] * n} for name, n in lengths.items()]}))
    rows = {0: [(20, 1.0, 7, 1.0, 1.0), (3200, 9.0, 7, 1.0, 9.0)], 1: [(20, 1.0, 7, 1.0, 1.0)]}
    recs = fake_records(trials=rows, max_new_tokens=8)
    for r in recs:
        if r["type"] == "prompt":
            r["prompt_id"] = ["short", "ledger"][r["index"]]
    path = write_transcript(tmp_path / "run.jsonl", recs)
    assert bench_mod.left_out_prompts(build, path, ab_kv=True) == ["ledger (3200 + 8 tokens; trial 1)",
                                                                    "chat (5000 + 8 tokens)"]
    assert bench_mod.left_out_prompts(build, path) == ["chat (5000 + 8 tokens)"]  # 3208 fits 4096: not left out
    unfinished = write_transcript(tmp_path / "cut.jsonl", recs[:-1])
    assert bench_mod.left_out_prompts(build, unfinished, ab_kv=True) == []
