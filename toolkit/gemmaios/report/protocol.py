"""The bench protocol's figures (issue 16): cold launches against warm trials, thermal state at
start / peak / end, energy from the battery's drop, the sustained phase's tok/s over time, and
the prompt lengths prefill was measured on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..contract import LAUNCH_KIND_COLD
from ..transcript import THERMAL_STATES, PromptRecord, Transcript

NOMINAL_VOLTAGE_V = 3.85  # a Li-ion cell's nominal voltage, when the phone reports none
CHARGING_STATES = ("charging", "full")


@dataclass
class ColdLaunches:
    """One-trial launches, each its own process (`bench --cold N`)."""

    launches: int
    trials: list[int]
    # process start → first token (launch, model load, prefill), per cold launch
    ttft_since_launch_s: Any = None  # summary.Stat
    ttft_s: Any = None  # the first prompt's engine-side TTFT (prefill + first sample), per cold launch
    prefill_tok_s: Any = None
    decode_tok_s: Any = None
    load_s: Any = None


@dataclass
class Thermal:
    start: str
    peak: str
    end: str
    transitions: list[tuple[float | None, int, str]] = field(default_factory=list)  # (t, launch, new state)

    @property
    def line(self) -> str:
        moves = ", ".join(f"{state}{f' at {t:.0f} s' if t is not None else ''}"
                          + (f" (launch {launch})" if launch else "") for t, launch, state in self.transitions)
        return f"start {self.start} · peak {self.peak} · end {self.end}" + (f"; changes: {moves}" if moves else
                                                                           "; no change recorded")


@dataclass
class Energy:
    """Battery drop over the run; mWh only when the battery's capacity is known."""

    start_level: float
    end_level: float
    minutes: float
    tokens: int
    charging: bool
    capacity_mah: float | None = None
    capacity_source: str = ""
    voltage_v: float | None = None
    voltage_source: str = ""
    unavailable: str = ""  # why no capacity

    @property
    def drop_pct(self) -> float:
        return (self.start_level - self.end_level) * 100

    @property
    def pct_per_minute(self) -> float | None:
        return self.drop_pct / self.minutes if self.minutes > 0 else None

    @property
    def pct_per_1k_tokens(self) -> float | None:
        return self.drop_pct / self.tokens * 1000 if self.tokens else None

    @property
    def mwh(self) -> float | None:
        if self.capacity_mah is None or self.voltage_v is None:
            return None
        return self.drop_pct / 100 * self.capacity_mah * self.voltage_v

    @property
    def mwh_per_1k_tokens(self) -> float | None:
        return self.mwh / self.tokens * 1000 if self.mwh is not None and self.tokens else None

    @property
    def method(self) -> str:
        return "mWh" if self.mwh is not None else "battery % (no capacity)"

    def json_extra(self) -> dict:
        return {"drop_pct": self.drop_pct, "pct_per_minute": self.pct_per_minute,
                "pct_per_1k_tokens": self.pct_per_1k_tokens, "mwh": None if self.charging else self.mwh,
                "mwh_per_1k_tokens": None if self.charging else self.mwh_per_1k_tokens, "method": self.method}

    @property
    def line(self) -> str:
        head = (f"battery {self.start_level:.0%} → {self.end_level:.0%} ({self.drop_pct:.1f} points) over "
                f"{self.minutes:.1f} min, {self.tokens} tokens")
        if self.charging:
            return head + " — CHARGING: no energy figure (the charger fed the phone)"
        if self.drop_pct <= 0:
            return head + " — no drop at the level's 1% resolution: run longer (e.g. --duration 600) for a figure"
        rate = (f"{self.pct_per_minute:.2f} %/min, {self.pct_per_1k_tokens:.2f} % per 1k tokens"
                if self.pct_per_1k_tokens is not None else f"{self.pct_per_minute:.2f} %/min")
        if self.mwh is None:
            return f"{head}: {rate} (percent of the battery, not mWh: {self.unavailable or 'no capacity known'})"
        per_1k = f", {self.mwh_per_1k_tokens:.1f} mWh per 1k tokens" if self.mwh_per_1k_tokens is not None else ""
        return (f"{head}: {self.mwh:.0f} mWh{per_1k} = drop × {self.capacity_mah:.0f} mAh ({self.capacity_source}) × "
                f"{self.voltage_v:.2f} V ({self.voltage_source}); {rate}")


@dataclass
class Sustained:
    seconds: float
    interval_s: float
    samples: int
    tokens: int
    first_tok_s: float
    last_tok_s: float
    median_tok_s: float
    min_tok_s: float
    max_tok_s: float

    @property
    def change_pct(self) -> float | None:
        return (self.last_tok_s / self.first_tok_s - 1) * 100 if self.first_tok_s > 0 else None

    def json_extra(self) -> dict:
        return {"change_pct": self.change_pct}

    @property
    def line(self) -> str:
        change = f" ({self.change_pct:+.0f}% first → last)" if self.change_pct is not None else ""
        return (f"{self.seconds:.0f} s of continuous decode, {self.tokens} tokens, {self.samples} samples every "
                f"{self.interval_s:g} s: tok/s first {self.first_tok_s:.1f} → last {self.last_tok_s:.1f}{change}; "
                f"median {self.median_tok_s:.1f}, min {self.min_tok_s:.1f}, max {self.max_tok_s:.1f}")


@dataclass
class PromptLength:
    prompt_id: str
    tokens: int
    prefill_tok_s: float | None  # median over the measured (warm) trials


# ---- trial kinds ----------------------------------------------------------------------------------

def trial_groups(t: Transcript, include_warmup: bool) -> tuple[list[int], list[int], list[int]]:
    """(cold trials, warm-up trials, measured warm trials). A warm launch's first trial is its
    warm-up, excluded whenever the launch ran a later one; cold launches' trials are their own
    group. A transcript without launch records is one warm launch."""
    cold, warmup, measured = [], [], []
    by_launch: dict[int, list[int]] = {}
    for trial in t.trials:
        if t.trial_kind(trial) == LAUNCH_KIND_COLD:
            cold.append(trial)
        else:
            launch = min(p.launch for p in t.prompts if p.trial == trial)
            by_launch.setdefault(launch, []).append(trial)
    for trials in by_launch.values():
        if not include_warmup and len(trials) > 1:
            warmup.append(trials[0])
            measured += trials[1:]
        else:
            measured += trials
    return cold, sorted(warmup), sorted(measured)


def cold_launches(t: Transcript, cold: list[int], stat, rate) -> ColdLaunches | None:
    if not cold:
        return None
    firsts = [min((p for p in t.prompts if p.trial == n), key=lambda p: p.index) for n in cold]
    launches = {p.launch for p in firsts}
    loads = [ld["seconds"] for ld in t.loads if ld.get("launch") in launches]
    prefill, decode = [], []
    for n in cold:
        rows = [p for p in t.prompts if p.trial == n]
        prefill.append(rate(sum(p.prefill_tokens for p in rows), sum(p.prefill_seconds for p in rows)))
        decode.append(rate(sum(p.decode_tokens for p in rows), sum(p.decode_seconds for p in rows)))
    return ColdLaunches(
        launches=len(launches), trials=cold,
        ttft_since_launch_s=stat([p.ttft_since_launch_seconds for p in firsts]),
        ttft_s=stat([p.ttft_seconds for p in firsts]),
        prefill_tok_s=stat(prefill), decode_tok_s=stat(decode), load_s=stat(loads))


# ---- thermal --------------------------------------------------------------------------------------

def thermal(t: Transcript) -> Thermal | None:
    seen = t.thermal_states()
    if not seen:
        return None
    states = [state for _t, state in seen]
    transitions, current, launch = [], None, 0
    for record in t.records:
        if record.get("type") == "launch":
            launch = record["index"]
        state = record.get("state") if record.get("type") == "thermal" else record.get("thermal_state")
        if state not in THERMAL_STATES:
            continue
        if current is not None and state != current:
            transitions.append((record.get("t", record.get("seconds_since_launch")), launch, state))
        current = state
    return Thermal(start=states[0], peak=max(states, key=THERMAL_STATES.index), end=states[-1],
                   transitions=transitions)


# ---- energy ---------------------------------------------------------------------------------------

def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _level(record: dict | None) -> float | None:
    value = (record or {}).get("battery_level")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None


def energy(t: Transcript, battery: dict | None) -> Energy | None:
    """Battery drop from the first launch's start to the run's end. `battery` is what `bench` read
    from the phone's IORegistry (run.json): the capacity for mWh, or why there is none."""
    if not t.launches:
        return None  # a transcript before issue 16 records no start level
    end_record = t.footer if _level(t.footer) is not None else (t.launch_ends[-1] if t.launch_ends else None)
    start, end = _level(t.launches[0]), _level(end_record)
    if start is None or end is None:
        return None
    began, ended = _parse_time(t.header.get("started_at")), _parse_time((t.footer or {}).get("ended_at"))
    if began and ended:
        minutes = max((ended - began).total_seconds(), 0.0) / 60
    else:
        spans = {e["index"]: e.get("seconds_since_launch", 0) for e in t.launch_ends}
        minutes = sum(max(spans.get(ln["index"], 0) - ln.get("seconds_since_launch", 0), 0) for ln in t.launches) / 60
    tokens = sum(len(p.generated_ids) for p in t.prompts) + sum(s["tokens"] for s in t.samples)
    states = [r.get("battery_state") for r in [*t.launches, *t.launch_ends, t.footer or {}]]
    e = Energy(start_level=start, end_level=end, minutes=minutes, tokens=tokens,
               charging=any(s in CHARGING_STATES for s in states))
    battery = battery or {}
    capacity = battery.get("capacity_mah")
    if isinstance(capacity, int | float) and capacity > 0:
        e.capacity_mah, e.capacity_source = float(capacity), battery.get("capacity_source") or "run.json"
        voltage = battery.get("voltage_v")
        if isinstance(voltage, int | float) and voltage > 0:
            e.voltage_v, e.voltage_source = float(voltage), "IORegistry Voltage"
        else:
            e.voltage_v, e.voltage_source = NOMINAL_VOLTAGE_V, "nominal Li-ion, the phone reported none"
    else:
        e.unavailable = battery.get("unavailable") or "the run recorded no battery capacity"
    return e


# ---- sustained ------------------------------------------------------------------------------------

def sustained(t: Transcript) -> tuple[Sustained | None, list[tuple[float, float, str]]]:
    """The sustained phase's summary and its series (t since the phase began, tok/s, thermal state)."""
    samples = t.samples
    if not samples:
        return None, []
    start = samples[0]["t"] - samples[0]["interval_s"]
    rates = [s["tok_s"] for s in samples]
    full = [s for s in samples if abs(s["interval_s"] - samples[0]["interval_s"]) < 1e-6] or samples
    summary = Sustained(
        seconds=samples[-1]["t"] - start, interval_s=samples[0]["interval_s"], samples=len(samples),
        tokens=sum(s["tokens"] for s in samples), first_tok_s=full[0]["tok_s"], last_tok_s=full[-1]["tok_s"],
        median_tok_s=statistics.median(rates), min_tok_s=min(s["tok_s"] for s in full), max_tok_s=max(rates))
    series = [(s["t"] - start, s["tok_s"], s.get("thermal_state") or "") for s in samples]
    return summary, series


def sustained_thermal_marks(t: Transcript) -> list[tuple[float, str]]:
    """Thermal changes inside the sustained phase, on the same time axis as its series."""
    if not t.samples:
        return []
    launch = t.samples[0].get("launch", 0)
    start = t.samples[0]["t"] - t.samples[0]["interval_s"]
    marks = [(r["t"] - start, r["state"]) for r in t.thermal if r.get("launch", 0) == launch and r["t"] >= start]
    last = None
    for s in t.samples:  # changes seen by the samples' own polling, when no thermal record came first
        state = s.get("thermal_state")
        if last is not None and state and state != last and not any(m[1] == state for m in marks):
            marks.append((s["t"] - start, state))
        last = state or last
    return sorted(marks)


# ---- prompt lengths -------------------------------------------------------------------------------

def prompt_lengths(rows: list[PromptRecord]) -> list[PromptLength]:
    by_prompt: dict[str, list[PromptRecord]] = {}
    for p in rows:
        by_prompt.setdefault(p.prompt_id, []).append(p)
    out = []
    for prompt_id, records in by_prompt.items():
        rates = [r.prefill_tok_s for r in records if r.prefill_tok_s is not None]
        out.append(PromptLength(prompt_id, records[0].prefill_tokens, statistics.median(rates) if rates else None))
    return sorted(out, key=lambda p: p.tokens)


def prompt_lengths_line(lengths: list[PromptLength]) -> str:
    if not lengths:
        return "—"
    tokens = [p.tokens for p in lengths]
    return (f"{len(lengths)} prompts of {min(tokens)}–{max(tokens)} tokens (median {statistics.median(tokens):g}); "
            "per prompt: " + ", ".join(f"{p.prompt_id} {p.tokens} tok → "
                                       + (f"{p.prefill_tok_s:.1f} tok/s" if p.prefill_tok_s is not None else "—")
                                       for p in lengths))
