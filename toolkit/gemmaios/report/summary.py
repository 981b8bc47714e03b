"""One run → the figures the model cards publish (tok/s, TTFT, load, footprint, settledness, scores), measured
the same way every time (see DEFINITIONS).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..archs import get_arch
from ..errors import GemmaiosError
from ..roofline import GB
from ..transcript import SHORT_PREFILL_TOKENS, PromptRecord, Transcript
from . import protocol
from .bandwidth import Roofline, run_roofline
from .runs import RunData
from .scoring import Score, Scorer
from .stats import Stat, rate

# Settled-device rules (seed 002: "bench a settled device (a just-unlocked iPhone under-reads ~35%)").
SETTLE_SECONDS = 300.0  # a run that starts sooner than this after unlock is not settled
LOW_BATTERY = 0.20
THROTTLED_STATES = ("serious", "critical")

# What each figure means, keyed by the figure; a report lists those its runs show (definitions_for).
DEFINITION_TEXTS: dict[str, str] = {
    "prefill": "prefill tok/s = Σ prefill_tokens / Σ prefill_seconds over a trial's prompts: prompt tokens, timed "
               "from the first engine call to the first logits.",
    "decode": "decode tok/s = Σ decode_tokens / Σ decode_seconds over a trial's prompts: tokens after the first "
              "generated one, timed from the first to the last generated token.",
    "trials": "median / min / max are taken over the measured warm trials' rates (n = how many); each warm launch's "
              "first trial is its warm-up and is excluded whenever the launch ran a later one.",
    "cold": "cold launch (`bench --cold N`): its own app launch (the previous process terminated) running one trial; "
            "cold TTFT = process start → first generated token (launch, model load, prefill). Cold trials are "
            "reported apart and never mixed into the warm medians.",
    "thermal": "thermal: ProcessInfo.thermalState at each launch's start, at every change, with each prompt and "
               "sample, and at the end; peak = the most severe state seen.",
    "energy": "energy = battery-level drop from the first launch's start to the end of the run; mWh = drop × the "
              "battery's capacity (IORegistry, read by `bench`) × its voltage (IORegistry, else 3.85 V nominal); "
              "without a capacity, % of the battery per minute and per 1k generated tokens. Meaningless while "
              "charging; the level has 1% resolution, so short runs show no drop.",
    "sustained": "sustained tok/s = tokens decoded in each fixed interval / the interval, over `--duration` seconds "
                 "of back-to-back generations (the time between generations counts).",
    "prompt_lengths": "prompt lengths: prefill tok/s is per prompt length — the report lists each prompt's token "
                      "count next to its prefill rate; prompts under 256 tokens say little about long-prompt prefill.",
    "ttft": "time to first token (TTFT) = ttft_seconds per measured prompt as the app (or `gemmaios run --bench`) "
            "records it: first engine call to the first generated token (prefill + first sample); median/min/max "
            "over prompts.",
    "load": "load: the first `load` record with cold=true is the cold load (on-device specialization / first map); "
            "later loads are warm.",
    "footprint": "peak footprint = the largest phys_footprint over prompt records and memory samples "
                 "(1 GB = 1e9 bytes).",
    "headroom": "headroom = the architecture's entitled limit − peak footprint.",
    "roofline": "roofline tok/s = memory bandwidth / bytes streamed per decoded token (weights + KV at the mean "
                "decode context + one PLE row); efficiency = measured decode median / roofline.",
}
DEFINITIONS = list(DEFINITION_TEXTS.values())  # every definition (a report shows definitions_for its runs)


def definitions_for(runs: list[RunSummary]) -> list[str]:
    """The definitions of the figures these runs show: an iPhone bench's cold launches, thermal states, energy,
    sustained phase and headroom are defined only where a run has them (a host run has none)."""
    shown = {"prefill", "decode", "trials", "prompt_lengths", "ttft", "load", "footprint"}
    for s in runs:
        shown |= {key for key, present in (
            ("cold", s.cold), ("thermal", s.thermal), ("energy", s.energy), ("sustained", s.sustained),
            ("headroom", s.headroom_bytes is not None), ("roofline", s.roofline)) if present}
    return [text for key, text in DEFINITION_TEXTS.items() if key in shown]


@dataclass
class TrialRates:
    trial: int
    prompts: int
    prefill_tok_s: float | None
    decode_tok_s: float | None
    warmup: bool
    thermal: str
    kind: str = "warm"  # the launch kind that ran it: cold | warm


@dataclass
class Note:
    level: str  # "error" | "warning" | "info"
    text: str


@dataclass
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass
class RunSummary:
    label: str
    path: str
    valid: bool
    complete: bool
    run_id: str = ""
    device: dict = field(default_factory=dict)
    bundle: dict = field(default_factory=dict)
    prompt_set: dict = field(default_factory=dict)
    platform: str = ""
    trials_planned: int = 0
    failure: str | None = None  # "the app's bench failed [at prompt P]: <reason>", from its failure record
    measured_trials: list[int] = field(default_factory=list)
    warmup_trials: list[int] = field(default_factory=list)
    prompts_measured: int = 0
    prefill_tok_s: Stat | None = None
    decode_tok_s: Stat | None = None
    ttft_s: Stat | None = None
    per_trial: list[TrialRates] = field(default_factory=list)
    load_cold_s: float | None = None
    load_warm_s: Stat | None = None
    peak_footprint_bytes: int | None = None
    entitled_limit_bytes: float | None = None
    headroom_bytes: float | None = None
    min_available_bytes: int | None = None
    roofline: Roofline | None = None
    # seconds per decoded token ≈ intercept + slope × cached positions (least squares over measured tokens)
    decode_step_fit: dict | None = None
    oracle: Score | None = None
    image_oracle: Score | None = None  # the run's image prompts vs the image oracle (issue 17)
    image_prompt_records: int = 0  # prompt records with an image (all trials)
    audio_oracle: Score | None = None  # the run's audio prompts vs the audio oracle (issue 28)
    audio_prompt_records: int = 0  # prompt records with a clip (all trials)
    trial_determinism: Score | None = None
    determinism: list[Score] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    error: str = ""
    error_line: int | None = None
    gates: list[Gate] = field(default_factory=list)
    # a run alternating the prefill function on/off (`bench --ab-prefill`): report.ab.PrefillAB
    prefill_ab: Any = None
    # the bench protocol (issue 16): report.protocol's ColdLaunches, Thermal, Energy, Sustained, PromptLength
    cold_trials: list[int] = field(default_factory=list)
    cold: Any = None
    thermal: Any = None
    energy: Any = None
    sustained: Any = None
    prompt_lengths: list = field(default_factory=list)
    # issue 27: oracle agreement by context bucket (report.context.ContextProbe, one per KV growth setting),
    # when a prompt ran long
    context_probes: list = field(default_factory=list)
    # plot series (kept out of the JSON)
    series: dict = field(default_factory=dict, repr=False)

    def warn(self, text: str) -> None:
        self.notes.append(Note("warning", text))

    def info(self, text: str) -> None:
        self.notes.append(Note("info", text))


def _trial_rates(prompts: list[PromptRecord], trial: int, warmup: bool, kind: str = "warm") -> TrialRates:
    states = [p.thermal_state for p in prompts if p.thermal_state]
    worst = max(states, key=("nominal", "fair", "serious", "critical").index) if states else "unknown"
    return TrialRates(
        trial=trial,
        prompts=len(prompts),
        prefill_tok_s=rate(sum(p.prefill_tokens for p in prompts), sum(p.prefill_seconds for p in prompts)),
        decode_tok_s=rate(sum(p.decode_tokens for p in prompts), sum(p.decode_seconds for p in prompts)),
        warmup=warmup,
        thermal=worst,
        kind=kind,
    )


def decode_step_fit(prompts: list[PromptRecord]) -> dict | None:
    """Fit decode_token_seconds against context position: how much each cached token costs."""
    xs, ys = [], []
    for p in prompts:
        for i, dt in enumerate(p.decode_token_seconds):
            xs.append(p.prefill_tokens + 1 + i)
            ys.append(dt)
    if len(set(xs)) < 2:
        return None
    slope, intercept = statistics.linear_regression(xs, ys)
    return {"intercept_ms": intercept * 1e3, "ms_per_1k_positions": slope * 1e6, "tokens": len(xs),
            "positions": [min(xs), max(xs)]}


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def summarise(run: RunData, *, scorer: Scorer | None = None, bandwidth_gbps: float | None = None,
              include_warmup: bool = False) -> RunSummary:
    """The published figures of one run, with notes on everything that qualifies them."""
    if not run.valid:
        assert run.error is not None
        s = RunSummary(label=run.label, path=str(run.path), valid=False, complete=False,
                       error=str(run.error).splitlines()[0], error_line=run.error.line)
        s.notes.append(Note("error", f"invalid transcript, not summarised: {s.error}"))
        return s
    t = run.transcript
    assert t is not None
    h = t.header
    s = RunSummary(label=run.label, path=str(run.path), valid=True, complete=t.complete, run_id=h["run_id"],
                   device=dict(h["device"]), bundle=dict(h["bundle"]), prompt_set=dict(h["prompt_set"]),
                   platform=h.get("platform", ""), trials_planned=h["trials"])
    if t.failure is not None:
        at = t.failure.get("prompt_id")
        s.failure = "the app's bench failed" + (f" at prompt {at}" if at else "") + f": {t.failure['reason']}"
        s.notes.append(Note("error", f"no footer: {s.failure} (after {len(t.prompts)} prompt record(s)); figures "
                                     "cover what was recorded"))
    elif not t.complete:
        s.notes.append(Note("error", f"no footer: the run did not finish (crash, jetsam kill or timeout) after "
                                     f"{len(t.prompts)} prompt record(s); figures cover what was recorded"))

    trials = t.trials
    cold, warm, measured = protocol.trial_groups(t, include_warmup)
    s.cold_trials, s.warmup_trials, s.measured_trials = cold, warm, measured
    if t.launches:
        s.trials_planned = sum(ln["trials"] for ln in t.launches)
        planned_launches = h.get("launches")
        if isinstance(planned_launches, int) and len(t.launches) < planned_launches:
            s.warn(f"{len(t.launches)} of {planned_launches} planned launches recorded")
    warm_trials = [n for n in trials if n not in cold]
    if len(warm_trials) == 1 and not include_warmup:
        s.info(f"only warm trial {warm_trials[0]} was recorded: no warm-up trial could be excluded")
    expected = h["prompt_set"].get("count")
    # prompts a bench left out, past the bundle's context (the long-context probe on a shorter build), each named
    # by the host bench or by `bench` from the app's set; they are not missing records
    left_out = run.run_info.get("skipped_prompts") or []
    for n in trials:
        rows = t.trial(n)
        s.per_trial.append(_trial_rates(rows, n, n in warm, t.trial_kind(n)))
        if expected and len(rows) + len(left_out) < expected:
            s.warn(f"trial {n} has {len(rows)} of {expected} prompts")
    if left_out:
        s.info(f"{len(left_out)} prompt(s) left out, past the bundle's context: {', '.join(map(str, left_out))}")
    if trials and len(trials) < s.trials_planned and t.complete:
        s.warn(f"{len(trials)} of {s.trials_planned} planned trials recorded")
    rows = [p for p in t.prompts if p.trial in measured]
    s.prompts_measured = len(rows)
    s.prefill_tok_s = Stat.of([r.prefill_tok_s for r in s.per_trial if r.trial in measured])
    s.decode_tok_s = Stat.of([r.decode_tok_s for r in s.per_trial if r.trial in measured])
    s.cold = protocol.cold_launches(t, cold, Stat.of, rate)
    s.ttft_s = Stat.of([p.ttft_seconds for p in rows])

    cold_loads = [ld["seconds"] for ld in t.loads if ld["cold"]]
    s.load_cold_s = cold_loads[0] if cold_loads else None
    s.load_warm_s = Stat.of([ld["seconds"] for ld in t.loads if not ld["cold"]])

    from .ab import prefill_ab

    s.prefill_ab = prefill_ab(t, include_warmup=include_warmup)
    if s.prefill_ab is not None:
        s.info("the run alternates the prefill function on and off: the prefill/decode medians above mix both "
               "settings; the prefill A/B line gives each setting's")
        if s.prefill_ab.prompts_differing:
            s.warn(f"the two prefill settings generated different tokens for {', '.join(s.prefill_ab.prompts_differing)}"
                   " (the chunked walk should be bit-identical)")
    _memory(s, t)
    _settled(s, t)
    _protocol(s, run, t, rows)
    s.roofline = run_roofline(run, rows, bandwidth_gbps, arch=s.device.get("arch"),
                              decode_median=s.decode_tok_s.median if s.decode_tok_s else None, info=s.info)
    if run.bundle_note:
        s.warn(run.bundle_note)
    _scores(s, run, scorer)
    from .context import context_probes, kv_guard_notes

    s.context_probes = context_probes(t, s.oracle.prompts if s.oracle else [], trials)  # warm-up trials too
    for level, text in kv_guard_notes(t, s.platform, s.context_probes):
        s.notes.append(Note(level, text))
    s.decode_step_fit = decode_step_fit(rows)
    s.series = {
        "trials": [(r.trial, r.prefill_tok_s, r.decode_tok_s, r.warmup) for r in s.per_trial],
        "memory": sorted([(m["t"], m["phys_footprint_bytes"]) for m in t.memory]),
        "decode_points": [(p.prefill_tokens + 1 + i, 1.0 / dt) for p in rows
                          for i, dt in enumerate(p.decode_token_seconds) if dt > 0],
        "sustained": protocol.sustained(t)[1],
        "sustained_thermal": protocol.sustained_thermal_marks(t),
        "cold_warm": [(r.trial, r.kind, r.prefill_tok_s, r.decode_tok_s) for r in s.per_trial if not r.warmup],
    }
    return s


def _protocol(s: RunSummary, run: RunData, t: Transcript, rows: list[PromptRecord]) -> None:
    """Cold launches, thermal start/peak/end, energy, the sustained phase and the prompt lengths."""
    s.thermal = protocol.thermal(t)
    s.sustained, _series = protocol.sustained(t)
    s.energy = protocol.energy(t, run.run_info.get("battery"))
    if s.energy is not None and s.energy.charging:
        s.warn("the phone was charging during the run: the battery drop is no energy figure (and charging heats "
               "the phone); bench unplugged for energy")
    s.prompt_lengths = protocol.prompt_lengths(rows or [p for p in t.prompts if p.trial in s.cold_trials])
    if s.prompt_lengths and max(p.tokens for p in s.prompt_lengths) < SHORT_PREFILL_TOKENS:
        s.info(f"prefill was measured on prompts of at most {max(p.tokens for p in s.prompt_lengths)} tokens "
               f"(< {SHORT_PREFILL_TOKENS}): the rate says little about long prompts; bench a long-prompt "
               "set too (`gemmaios oracle --prompts long-prefill`, then `gemmaios app` and `gemmaios deploy`)")
    if s.cold is not None and s.cold.ttft_since_launch_s is None:
        s.warn("the cold launches recorded no process-start time to first token (an app before the bench protocol)")


def _memory(s: RunSummary, t: Transcript) -> None:
    peaks = [p.peak_phys_footprint_bytes for p in t.prompts if p.peak_phys_footprint_bytes is not None]
    peaks += [m["phys_footprint_bytes"] for m in t.memory]
    s.peak_footprint_bytes = max(peaks) if peaks else None
    avail = [p.os_proc_available_memory_bytes for p in t.prompts if p.os_proc_available_memory_bytes is not None]
    avail += [m["available_bytes"] for m in t.memory if isinstance(m.get("available_bytes"), int)]
    s.min_available_bytes = min(avail) if avail else None
    arch_name = s.device.get("arch")
    limit = None
    if arch_name:
        try:
            limit = get_arch(arch_name).entitled_limit_gb
        except GemmaiosError:
            s.warn(f"device arch {arch_name!r} is not in the architecture registry: no entitled limit")
    if limit is not None:
        s.entitled_limit_bytes = limit * GB
        if s.peak_footprint_bytes is not None:
            s.headroom_bytes = s.entitled_limit_bytes - s.peak_footprint_bytes
            if s.headroom_bytes < 0:
                s.warn("peak footprint exceeds the entitled limit: the app relied on the increased-memory "
                       "entitlement (or was about to be killed)")
    elif s.platform == "iOS":
        s.info("no entitled limit known for this device's architecture: headroom not computed")


def _settled(s: RunSummary, t: Transcript) -> None:
    """Settled-device rules: thermal state, battery, and time since unlock."""
    hot = sorted({state for _t, state in t.thermal_states() if state != "nominal"},
                 key=("fair", "serious", "critical").index)
    if hot:
        trials = sorted({p.trial for p in t.prompts if p.thermal_state in hot})
        parts = [f"trial(s) {', '.join(map(str, trials))}"] if trials else []
        if any(sm.get("thermal_state") in hot for sm in t.samples):
            parts.append("the sustained phase")
        where = "during " + (" and ".join(parts) if parts else "the run")
        throttled = any(state in THROTTLED_STATES for state in hot)
        s.warn(f"thermal state {'/'.join(hot)} {where}"
               + (": the device was throttled, figures under-read a settled device" if throttled
                  else ": above nominal, figures may under-read"))
    f = t.footer or {}
    level, state = f.get("battery_level"), f.get("battery_state")
    if isinstance(level, (int, float)) and level >= 0 and level < LOW_BATTERY:
        s.warn(f"battery at {level:.0%}: low-power behaviour may slow the run")
    if state in ("charging", "full"):
        s.warn(f"battery {state}: the device was plugged in (charging heat skews thermals); bench unplugged")
    unlock = f.get("seconds_since_unlock")
    if isinstance(unlock, (int, float)):
        start, end = _parse_time(t.header.get("started_at")), _parse_time(f.get("ended_at"))
        elapsed = (end - start).total_seconds() if start and end else 0.0
        at_start = unlock - max(elapsed, 0.0)
        if at_start < SETTLE_SECONDS:
            s.warn(f"the run started {max(at_start, 0):.0f} s after unlock (< {SETTLE_SECONDS:.0f} s): a "
                   "just-unlocked iPhone under-reads (~35% per the E4B card); let it settle and re-run")


def _scores(s: RunSummary, run: RunData, scorer: Scorer | None) -> None:
    assert run.transcript is not None
    if scorer is None:
        s.info("oracle and determinism scores unavailable: gemmaios.oracle is not installed")
        return
    if run.oracle_path is not None:
        try:
            s.oracle = scorer.oracle(run.transcript, run.oracle_path)
        except GemmaiosError as exc:
            s.warn(f"oracle scoring failed: {str(exc).splitlines()[0]}")
    else:
        s.info("no oracle.json found for this run (pass --oracle): oracle score not computed")
    images = s.image_prompt_records = sum(1 for p in run.transcript.prompts if p.image)
    if images and run.image_oracle_dir is None:
        s.warn(f"{images} image prompt record(s) but no image oracle (oracle/images/oracle.json in the build, or "
               "images/ beside --oracle): image prompts not scored")
    elif images:
        try:
            s.image_oracle = scorer.images(run.transcript, run.image_oracle_dir, run.oracle_path)
        except GemmaiosError as exc:
            s.warn(f"image oracle scoring failed: {str(exc).splitlines()[0]}")
    clips = s.audio_prompt_records = sum(1 for p in run.transcript.prompts if p.audio)
    if clips and run.audio_oracle_dir is None:
        s.warn(f"{clips} audio prompt record(s) but no audio oracle (oracle/audio/oracle.json in the build, or "
               "audio/ beside --oracle): audio prompts not scored")
    elif clips:
        try:
            s.audio_oracle = scorer.audio(run.transcript, run.audio_oracle_dir, run.oracle_path, run.image_oracle_dir)
        except GemmaiosError as exc:
            s.warn(f"audio oracle scoring failed: {str(exc).splitlines()[0]}")
    s.trial_determinism = scorer.trials(run.transcript)


def cross_run_determinism(runs: list[RunData], summaries: list[RunSummary], scorer: Scorer | None) -> None:
    """Every further valid run against the first valid run with the same prompt set (e.g. iPhone vs Mac)."""
    if scorer is None:
        return
    valid = [(r, s) for r, s in zip(runs, summaries, strict=True) if r.valid]
    if len(valid) < 2:
        return
    (ref, ref_s), rest = valid[0], valid[1:]
    for run, summary in rest:
        if summary.prompt_set.get("sha256") != ref_s.prompt_set.get("sha256"):
            summary.warn(f"prompt set differs from {ref_s.label}: no run-vs-run determinism")
            continue
        assert run.transcript is not None and ref.transcript is not None
        score = scorer.determinism(run.transcript, ref.transcript, labels=(summary.label, ref_s.label))
        summary.determinism.append(score)
        ref_s.determinism.append(score)
