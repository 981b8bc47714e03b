"""Bench report: device transcripts → tok/s, load time, footprint, roofline, oracle and determinism.

`load_runs` reads transcripts strictly (a damaged log becomes an *invalid* run carrying the
TranscriptError and its line, never skipped), `summarise` turns one run into the figures
the model cards publish, measured the same way every time (see DEFINITIONS), `gates` checks
them against CI thresholds, `compare` puts two runs side by side, and the `render_*`
functions write Markdown, a self-contained HTML page (plots inline), JSON and JUnit XML.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import importlib.util
import io
import json
import math
import re
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .archs import get_arch
from .errors import GemmaiosError
from .pipeline import sha256_file
from .registry import MODELS
from .roofline import (
    GB,
    RooflineError,
    bytes_per_decoded_token,
    estimate_weight_bytes,
    ple_row_bytes,
    roofline_tok_s,
)
from .transcript import PromptRecord, Transcript, TranscriptError, read_transcript

# Settled-device rules (seed 002: "bench a settled device (a just-unlocked iPhone under-reads ~35%)").
SETTLE_SECONDS = 300.0  # a run that starts sooner than this after unlock is not settled
LOW_BATTERY = 0.20
THROTTLED_STATES = ("serious", "critical")

DEFINITIONS = [
    "prefill tok/s = Σ prefill_tokens / Σ prefill_seconds over a trial's prompts: prompt tokens, timed from the "
    "first engine call to the first logits.",
    "decode tok/s = Σ decode_tokens / Σ decode_seconds over a trial's prompts: tokens after the first generated "
    "one, timed from the first to the last generated token.",
    "median / min / max are taken over the measured trials' rates; trial 0 is the warm-up and is excluded "
    "whenever a later trial exists.",
    "time to first token (TTFT) = the app's ttft_seconds per measured prompt (first engine call to the first generated token: prefill + first sample); median/min/max over prompts.",
    "load: the first `load` record with cold=true is the cold load (on-device specialization / first map); "
    "later loads are warm.",
    "peak footprint = the largest phys_footprint over prompt records and memory samples; headroom = the "
    "architecture's entitled limit − peak (1 GB = 1e9 bytes).",
    "roofline tok/s = memory bandwidth / bytes streamed per decoded token (weights + KV at the mean decode "
    "context + one PLE row); efficiency = measured decode median / roofline.",
]


class ReportError(GemmaiosError):
    """A report cannot be produced as asked (no transcripts, bad option, unreadable bundle facts)."""


class IncomparableRuns(ReportError):
    """Two runs used different prompt sets or bundles, so their figures do not compare."""


# ----------------------------------------------------------------------------- scoring


@dataclass
class Score:
    """An oracle or determinism verdict as the report shows and gates it."""

    kind: str  # "oracle" | "determinism"
    good: int  # exact matches / token-identical pairs
    total: int
    passed: bool  # oracle: every prompt exact or diverging only at a near-tie; determinism: all identical
    summary: str

    @property
    def label(self) -> str:
        return f"{self.good}/{self.total}"

    @property
    def exact(self) -> bool:
        return self.total > 0 and self.good == self.total


class Scorer(Protocol):
    """What the report needs from the oracle library (gemmaios.oracle implements the comparison)."""

    def oracle(self, transcript: Transcript, oracle_path: Path) -> Score: ...

    def determinism(self, a: Transcript, b: Transcript, labels: tuple[str, str]) -> Score: ...

    def trials(self, transcript: Transcript) -> Score | None: ...


class OracleModuleScorer:
    """Adapter over `gemmaios.oracle` (issue 5), the one place the comparison is implemented.

    INTEGRATION POINT: written against gemmaios.oracle's `load_oracle`, `score_against_oracle`,
    `compare_runs` and `compare_trials` (OracleScore.exact/.total/.passed/.summary,
    DeterminismScore.identical/.total/.passed/.summary). If those names change, change them here.
    """

    def __init__(self, module: Any) -> None:
        self.m = module

    def oracle(self, transcript: Transcript, oracle_path: Path) -> Score:
        s = self.m.score_against_oracle(transcript, self.m.load_oracle(oracle_path))
        return Score("oracle", s.exact, s.total, s.passed, s.summary)

    def determinism(self, a: Transcript, b: Transcript, labels: tuple[str, str]) -> Score:
        s = self.m.compare_runs(a, b, labels=labels)
        return Score("determinism", s.identical, s.total, s.passed, s.summary)

    def trials(self, transcript: Transcript) -> Score | None:
        s = self.m.compare_trials(transcript)
        return Score("determinism", s.identical, s.total, s.passed, s.summary) if s.total else None


def default_scorer() -> Scorer | None:
    """The oracle library's scorer, or None when gemmaios.oracle is not installed."""
    if importlib.util.find_spec(f"{__package__}.oracle") is None:
        return None
    return OracleModuleScorer(importlib.import_module(f"{__package__}.oracle"))


# ----------------------------------------------------------------------------- loading


@dataclass
class BundleFacts:
    """What the bandwidth model needs to know about the bundle a run used."""

    name: str
    weight_bytes: int
    kv_bytes_per_position: int
    ple_row_bytes: int
    source: str


@dataclass
class RunData:
    """One transcript: parsed, or the error that stopped parsing it (the run is then invalid)."""

    path: Path
    transcript: Transcript | None = None
    error: TranscriptError | None = None
    bundle: BundleFacts | None = None
    bundle_note: str = ""
    oracle_path: Path | None = None
    build_dir: Path | None = None

    @property
    def valid(self) -> bool:
        return self.transcript is not None

    @property
    def label(self) -> str:
        if self.transcript is not None:
            dev = self.transcript.device
            return f"{self.transcript.header['run_id']} ({dev.get('name') or dev.get('product_type', '?')})"
        return self.path.name


def transcript_paths(path: Path) -> list[Path]:
    """A .jsonl file, or every *.jsonl in a run folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"))
        if not found:
            raise ReportError(f"{path} holds no *.jsonl transcripts",
                              hint="pass a run folder from `gemmaios bench` (build/<name>/runs/<stamp>-<udid>/)")
        return found
    raise ReportError(f"{path} does not exist", hint="pass a run folder or a transcript .jsonl")


def find_build_dir(path: Path) -> Path | None:
    """The build folder a run folder lives in (build/<slug>/runs/<stamp>/), if any."""
    for parent in list(Path(path).resolve().parents)[:4]:
        if (parent / "build.json").is_file():
            return parent
    return None


def load_run(path: Path, *, bundle_dir: Path | None = None, oracle_path: Path | None = None) -> RunData:
    """Read one transcript (or a run folder holding exactly one) with its bundle facts and oracle."""
    paths = transcript_paths(path)
    if len(paths) > 1:
        raise ReportError(f"{path} holds {len(paths)} transcripts", hint="use load_runs, or pass one .jsonl")
    return _load(paths[0], bundle_dir, oracle_path)


def load_runs(paths: Iterable[Path], *, bundle_dir: Path | None = None,
              oracle_path: Path | None = None) -> list[RunData]:
    runs = [_load(p, bundle_dir, oracle_path) for path in paths for p in transcript_paths(path)]
    if not runs:
        raise ReportError("no runs given", hint="gemmaios report <run-dir>...")
    return runs


def _load(path: Path, bundle_dir: Path | None, oracle_path: Path | None) -> RunData:
    run = RunData(path=Path(path), build_dir=find_build_dir(path))
    try:
        run.transcript = read_transcript(path)
    except TranscriptError as exc:
        run.error = exc
        return run
    manifest = _manifest(run.build_dir)
    run.oracle_path = oracle_path or _oracle_in_build(run.build_dir, manifest)
    try:
        run.bundle, run.bundle_note = _bundle_facts(run.transcript, run.build_dir, manifest, bundle_dir)
    except (ReportError, RooflineError) as exc:
        if bundle_dir is not None:
            raise  # asked for by name (--bundle): say so rather than report without it
        run.bundle_note = str(exc).splitlines()[0]
    return run


def _manifest(build_dir: Path | None) -> dict:
    if build_dir is None:
        return {}
    try:
        return json.loads((build_dir / "build.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _step_details(manifest: dict, step: str) -> dict:
    return (manifest.get("steps", {}).get(step) or {}).get("details") or {}


def _oracle_in_build(build_dir: Path | None, manifest: dict) -> Path | None:
    if build_dir is None:
        return None
    rel = _step_details(manifest, "oracle").get("oracle") or "oracle/oracle.json"
    candidate = build_dir / rel
    return candidate if candidate.is_file() else None


_BUNDLE_NAME = re.compile(r"^gemma4_(?P<key>[a-z0-9]+?)(?:_qat)?_decode_(?P<quant>int4|int8|fp16)")


def _bundle_facts(t: Transcript, build_dir: Path | None, manifest: dict,
                  bundle_dir: Path | None) -> tuple[BundleFacts | None, str]:
    """From an explicit bundle folder, else the build's convert output, else the registry."""
    name = t.bundle.get("name", "")
    if bundle_dir is None and build_dir is not None:
        rel = _step_details(manifest, "convert").get("bundle_dir")
        if rel and (build_dir / rel / "metadata.json").is_file():
            bundle_dir = build_dir / rel
    if bundle_dir is not None:
        facts = bundle_facts_from_dir(bundle_dir, tables=_step_details(manifest, "tables"))
        note = ""
        recorded = t.bundle.get("metadata_sha256")
        if facts.name and name and facts.name != name:
            note = f"the run names bundle {name!r} but the bundle read for the roofline is {facts.name!r}"
        elif recorded and recorded != sha256_file(bundle_dir / "metadata.json"):
            note = (f"the run's bundle metadata sha256 {recorded[:12]} differs from {bundle_dir}/metadata.json: "
                    "the roofline uses that folder's facts, which may not be what ran")
        return facts, note
    match = _BUNDLE_NAME.match(name)
    spec = MODELS.get(match["key"]) if match else None
    if spec is None:
        return None, f"no bundle files and {name!r} is not a registry model: pass --bundle for the roofline"
    # The bundle name does not say how the head is stored; convert's default follows --quant.
    est = estimate_weight_bytes(spec, quant=match["quant"], head_quant=match["quant"])
    return BundleFacts(name, est.total_bytes, est.kv_bytes_per_position, est.ple_row_bytes,
                       source=f"estimated from registry {spec.key!r} ({'; '.join(est.assumptions)})"), ""


def _asset_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


_DTYPE_BYTES = {"float16": 2, "fp16": 2, "bfloat16": 2, "float32": 4, "fp32": 4, "int8": 1}


def _is_static(dim: Any) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim > 0


def _untied_embedding_bytes(ours: dict) -> int:
    """Stored but not streamed: with an untied int4/int8 head (convert's `head_quant`), the fp16
    embedding table is in the asset yet decode gathers one row of it; its size less that row."""
    head_quant = ours.get("head_quant", "fp16")  # bundles from before head_quant: tied fp16
    head = ours.get("head") or {}
    if head_quant == "fp16" or head.get("tied", False):
        return 0
    shape = head.get("shape")
    if not shape:
        raise ReportError(f"metadata.json records head_quant {head_quant} but no gemmaios.head.shape",
                          hint="re-convert with this gemmaios, or pass --bundle of a bundle that records it")
    row = int(shape[1]) * 2
    return int(head.get("embedding_bytes") or int(shape[0]) * row) - row


def bundle_facts_from_dir(bundle_dir: Path, tables: dict | None = None) -> BundleFacts:
    """Bandwidth facts of a converted bundle folder.

    Reads what convert records in `metadata.json` → `gemmaios`: weights = `weight_bytes`
    when recorded, else the size of the `.aimodel` asset (less the fp16 embedding table but one
    row when `head_quant` is int4/int8: that head is an untied copy); KV bytes per position = the state
    specs (`states`: each {shape, dtype}, the sequence dim dynamic = None) summed over K and
    V; PLE row = `ple_table.shape` [V, L*D] (tbl bundles) or the tables step's `shape`.
    """
    bundle_dir = Path(bundle_dir)
    meta_path = bundle_dir / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read {meta_path} ({exc})", hint="pass --bundle <bundle folder> of the run") from exc
    ours = meta.get("gemmaios") or {}
    name = meta.get("name") or ours.get("name") or bundle_dir.name
    if "weight_bytes" in ours:
        weight_bytes, weight_src = int(ours["weight_bytes"]), "metadata weight_bytes"
    else:
        assets = sorted(bundle_dir.glob("*.aimodel")) or [bundle_dir / meta.get("assets", {}).get("main", "")]
        if not assets[0].exists() or assets[0] == bundle_dir:
            raise ReportError(f"{bundle_dir} has no .aimodel asset", hint="run `gemmaios convert` or pass --bundle")
        weight_bytes, weight_src = _asset_bytes(assets[0]), f"size of {assets[0].name}"
        untied = _untied_embedding_bytes(ours)
        if untied:
            weight_bytes -= untied
            weight_src += (f" less the fp16 embedding table ({untied / GB:.3f} GB net; head_quant "
                           f"{ours.get('head_quant')}: the untied head is read whole, the embedding one row per token)")
    kv = 0
    states = ours.get("states") or []
    for state in states.values() if isinstance(states, dict) else states:
        dims = state.get("shape", [])
        static = [d for d in dims if _is_static(d)]
        if len(static) == len(dims) - 1:  # exactly one dynamic (sequence) dim
            kv += math.prod(static) * _DTYPE_BYTES.get(str(state.get("dtype", "float16")).lower(), 2)
    if not kv:
        raise ReportError(f"{meta_path} records no KV state specs (gemmaios.states with one dynamic dim)",
                          hint="re-convert with this gemmaios, or pass --bundle of a bundle that records them")
    shape = (ours.get("ple_table") or {}).get("shape") or (tables or {}).get("shape")
    ple = ple_row_bytes(1, int(shape[1])) if shape else 0
    return BundleFacts(name, weight_bytes, kv, ple,
                       source=f"bundle {bundle_dir.name}: weights = {weight_src}; KV from the state specs; "
                              f"PLE row {'from table shape' if shape else 'none recorded'}")


# ----------------------------------------------------------------------------- summary


@dataclass
class Stat:
    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        values = [v for v in values if v is not None]
        return cls(statistics.median(values), min(values), max(values), len(values)) if values else None


@dataclass
class TrialRates:
    trial: int
    prompts: int
    prefill_tok_s: float | None
    decode_tok_s: float | None
    warmup: bool
    thermal: str


@dataclass
class Roofline:
    weight_bytes: int
    kv_bytes: float
    ple_row_bytes: int
    context: float
    bytes_per_token: float
    bandwidth_gbps: float | None
    bandwidth_kind: str  # "peak (arch registry)" | "observed effective (arch registry)" | "--bandwidth"
    roofline_tok_s: float | None
    efficiency: float | None  # measured decode median / roofline
    source: str
    note: str = ""


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
    trial_determinism: Score | None = None
    determinism: list[Score] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    error: str = ""
    error_line: int | None = None
    gates: list[Gate] = field(default_factory=list)
    # plot series (kept out of the JSON)
    series: dict = field(default_factory=dict, repr=False)

    def warn(self, text: str) -> None:
        self.notes.append(Note("warning", text))

    def info(self, text: str) -> None:
        self.notes.append(Note("info", text))


def _rate(tokens: int, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 else None


def _trial_rates(prompts: list[PromptRecord], trial: int, warmup: bool) -> TrialRates:
    states = [p.thermal_state for p in prompts if p.thermal_state]
    worst = max(states, key=("nominal", "fair", "serious", "critical").index) if states else "unknown"
    return TrialRates(
        trial=trial,
        prompts=len(prompts),
        prefill_tok_s=_rate(sum(p.prefill_tokens for p in prompts), sum(p.prefill_seconds for p in prompts)),
        decode_tok_s=_rate(sum(p.decode_tokens for p in prompts), sum(p.decode_seconds for p in prompts)),
        warmup=warmup,
        thermal=worst,
    )


def _mean_decode_context(prompts: list[PromptRecord]) -> float:
    """Mean cached positions while decoding: token i after the first sees prompt + 1 + i."""
    total = sum(p.decode_tokens for p in prompts)
    if not total:
        return float(statistics.mean(p.prefill_tokens for p in prompts)) if prompts else 0.0
    # Σ_i (P + 1 + i) for i in 0..n-1 = n (P + 1) + n (n - 1) / 2
    weighted = sum(p.decode_tokens * (p.prefill_tokens + 1) + p.decode_tokens * (p.decode_tokens - 1) / 2
                   for p in prompts)
    return weighted / total


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
    if not t.complete:
        s.notes.append(Note("error", f"no footer: the run did not finish (crash, jetsam kill or timeout) after "
                                     f"{len(t.prompts)} prompt record(s); figures cover what was recorded"))

    trials = t.trials
    warm = [] if include_warmup or len(trials) < 2 else [trials[0]]
    measured = [n for n in trials if n not in warm]
    s.warmup_trials, s.measured_trials = warm, measured
    if len(trials) == 1 and not include_warmup:
        s.info(f"only trial {trials[0]} was recorded: no warm-up trial could be excluded")
    expected = h["prompt_set"].get("count")
    for n in trials:
        rows = t.trial(n)
        s.per_trial.append(_trial_rates(rows, n, n in warm))
        if expected and len(rows) < expected:
            s.warn(f"trial {n} has {len(rows)} of {expected} prompts")
    if trials and len(trials) < h["trials"] and t.complete:
        s.warn(f"{len(trials)} of {h['trials']} planned trials recorded")
    rows = [p for p in t.prompts if p.trial in measured]
    s.prompts_measured = len(rows)
    s.prefill_tok_s = Stat.of([r.prefill_tok_s for r in s.per_trial if not r.warmup])
    s.decode_tok_s = Stat.of([r.decode_tok_s for r in s.per_trial if not r.warmup])
    s.ttft_s = Stat.of([p.ttft_seconds for p in rows])

    cold = [ld["seconds"] for ld in t.loads if ld["cold"]]
    s.load_cold_s = cold[0] if cold else None
    s.load_warm_s = Stat.of([ld["seconds"] for ld in t.loads if not ld["cold"]])

    _memory(s, t)
    _settled(s, t)
    s.roofline = _roofline(s, run, rows, bandwidth_gbps)
    if run.bundle_note:
        s.warn(run.bundle_note)
    _scores(s, run, scorer)
    s.decode_step_fit = decode_step_fit(rows)
    s.series = {
        "trials": [(r.trial, r.prefill_tok_s, r.decode_tok_s, r.warmup) for r in s.per_trial],
        "memory": sorted([(m["t"], m["phys_footprint_bytes"]) for m in t.memory]),
        "decode_points": [(p.prefill_tokens + 1 + i, 1.0 / dt) for p in rows
                          for i, dt in enumerate(p.decode_token_seconds) if dt > 0],
    }
    return s


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
    hot = sorted({p.thermal_state for p in t.prompts if p.thermal_state not in (None, "nominal")},
                 key=("fair", "serious", "critical").index)
    if hot:
        trials = sorted({p.trial for p in t.prompts if p.thermal_state in hot})
        throttled = any(state in THROTTLED_STATES for state in hot)
        s.warn(f"thermal state {'/'.join(hot)} during trial(s) {', '.join(map(str, trials))}"
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


def _bandwidth(arch_name: str | None, override: float | None) -> tuple[float | None, str, str]:
    if override is not None:
        return override, "--bandwidth", ""
    if not arch_name:
        return None, "", "the transcript names no device arch: pass --bandwidth GBPS for the roofline"
    try:
        arch = get_arch(arch_name)
    except GemmaiosError:
        return None, "", f"arch {arch_name!r} is not in the registry: pass --bandwidth GBPS for the roofline"
    if arch.bandwidth_gbps is not None:
        return arch.bandwidth_gbps, f"peak ({arch_name}, arch registry)", ""
    observed = getattr(arch, "observed_bandwidth_gbps", None)
    if observed is not None:
        return observed, f"observed effective ({arch_name}, arch registry; no published peak)", ""
    return None, "", (f"the roofline needs a bandwidth figure: the registry has none for {arch_name!r}; "
                      "pass --bandwidth GBPS")


def _roofline(s: RunSummary, run: RunData, rows: list[PromptRecord], override: float | None) -> Roofline | None:
    if run.bundle is None:
        s.info("bandwidth model not computed: " + (run.bundle_note or "no bundle facts"))
        return None
    b = run.bundle
    ctx = _mean_decode_context(rows)
    total = bytes_per_decoded_token(b.weight_bytes, b.kv_bytes_per_position, ctx, b.ple_row_bytes)
    bw, kind, note = _bandwidth(s.device.get("arch"), override)
    roof = roofline_tok_s(total, bw) if bw else None
    eff = s.decode_tok_s.median / roof if roof and s.decode_tok_s else None
    if note:
        s.info(note)
    return Roofline(weight_bytes=b.weight_bytes, kv_bytes=b.kv_bytes_per_position * ctx, ple_row_bytes=b.ple_row_bytes,
                    context=ctx, bytes_per_token=total, bandwidth_gbps=bw, bandwidth_kind=kind, roofline_tok_s=roof,
                    efficiency=eff, source=b.source, note=note)


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


# ----------------------------------------------------------------------------- gates


GATE_KEYS = {"decode": "decode tok/s median", "prefill": "prefill tok/s median",
             "headroom": "headroom GB", "efficiency": "roofline efficiency %"}


def parse_fail_under(text: str | None) -> dict[str, float]:
    """`decode=12.5,prefill=18` → {"decode": 12.5, "prefill": 18.0}."""
    out: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in (text or "").split(","))):
        key, sep, value = item.partition("=")
        try:
            if not sep or key.strip() not in GATE_KEYS:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise ReportError(f"--fail-under item {item!r} is not KEY=NUMBER with KEY one of {', '.join(GATE_KEYS)}",
                              hint="e.g. --fail-under decode=12.5,prefill=18,headroom=1.0") from None
    return out


def _metric(s: RunSummary, key: str) -> float | None:
    if key == "decode":
        return s.decode_tok_s.median if s.decode_tok_s else None
    if key == "prefill":
        return s.prefill_tok_s.median if s.prefill_tok_s else None
    if key == "headroom":
        return s.headroom_bytes / GB if s.headroom_bytes is not None else None
    if key == "efficiency":
        return s.roofline.efficiency * 100 if s.roofline and s.roofline.efficiency is not None else None
    raise KeyError(key)


def apply_gates(s: RunSummary, fail_under: dict[str, float] | None = None,
                require_oracle: str | None = None) -> list[Gate]:
    """A valid transcript and a finished run always gate; thresholds and the oracle when asked."""
    gates = [Gate("transcript valid", s.valid, "ok" if s.valid else f"line {s.error_line}: {s.error}")]
    if s.valid:
        gates.append(Gate("run completed", s.complete, "footer written" if s.complete
                          else "no footer: crash, jetsam kill or timeout"))
    for key, threshold in (fail_under or {}).items():
        value = _metric(s, key) if s.valid else None
        if value is None:
            gates.append(Gate(f"{key} >= {threshold:g}", False, f"{GATE_KEYS[key]} not available"))
        else:
            gates.append(Gate(f"{key} >= {threshold:g}", value >= threshold, f"{GATE_KEYS[key]} = {value:.3g}"))
    if require_oracle:
        if require_oracle not in ("exact", "near-tie"):
            raise ReportError(f"--require-oracle {require_oracle!r}", hint="use `exact` or `near-tie`")
        if s.oracle is None:
            gates.append(Gate(f"oracle {require_oracle}", False, "no oracle score (oracle.json or gemmaios.oracle missing)"))
        else:
            ok = s.oracle.exact if require_oracle == "exact" else s.oracle.passed
            gates.append(Gate(f"oracle {require_oracle}", ok, s.oracle.summary))
    s.gates = gates
    return gates


# ----------------------------------------------------------------------------- comparison


COMPARE_METRICS = [
    ("prefill tok/s (median)", lambda s: s.prefill_tok_s.median if s.prefill_tok_s else None, True),
    ("decode tok/s (median)", lambda s: s.decode_tok_s.median if s.decode_tok_s else None, True),
    ("TTFT s (median)", lambda s: s.ttft_s.median if s.ttft_s else None, False),
    ("cold load s", lambda s: s.load_cold_s, False),
    ("warm load s (median)", lambda s: s.load_warm_s.median if s.load_warm_s else None, False),
    ("peak footprint GB", lambda s: s.peak_footprint_bytes / GB if s.peak_footprint_bytes else None, False),
    ("headroom GB", lambda s: s.headroom_bytes / GB if s.headroom_bytes is not None else None, True),
    ("roofline efficiency %", lambda s: s.roofline.efficiency * 100 if s.roofline and s.roofline.efficiency else None,
     True),
]


@dataclass
class ComparisonRow:
    metric: str
    a: float | None
    b: float | None
    delta: float | None
    delta_pct: float | None
    higher_is_better: bool


@dataclass
class Comparison:
    a: str
    b: str
    rows: list[ComparisonRow]
    notes: list[str] = field(default_factory=list)


def compare(a: RunSummary, b: RunSummary, *, allow_different: bool = False) -> Comparison:
    """B relative to A. Refuses runs of different prompt sets or bundles unless allow_different."""
    for s in (a, b):
        if not s.valid:
            raise IncomparableRuns(f"{s.label} is not a valid run ({s.error})", hint="re-run the bench for a fresh log")
    diffs = []
    if a.prompt_set.get("sha256") != b.prompt_set.get("sha256"):
        diffs.append(f"prompt sets differ: {a.prompt_set.get('name')} {str(a.prompt_set.get('sha256'))[:12]} vs "
                     f"{b.prompt_set.get('name')} {str(b.prompt_set.get('sha256'))[:12]}")
    bundle_a = (a.bundle.get("name"), a.bundle.get("metadata_sha256"))
    bundle_b = (b.bundle.get("name"), b.bundle.get("metadata_sha256"))
    if bundle_a != bundle_b:
        diffs.append(f"bundles differ: {bundle_a[0]} {str(bundle_a[1])[:12]} vs {bundle_b[0]} {str(bundle_b[1])[:12]}")
    if diffs and not allow_different:
        raise IncomparableRuns(f"cannot compare {a.label} with {b.label}: " + "; ".join(diffs),
                               hint="compare runs of the same bundle and prompt set, or pass --allow-different")
    rows = []
    for name, get, higher in COMPARE_METRICS:
        va, vb = get(a), get(b)
        delta = vb - va if va is not None and vb is not None else None
        pct = delta / va * 100 if delta is not None and va else None
        rows.append(ComparisonRow(name, va, vb, delta, pct, higher))
    notes = [f"compared although {d} (--allow-different)" for d in diffs]
    for s in (a, b):
        notes += [f"{s.label}: {n.text}" for n in s.notes if n.level in ("warning", "error")]
    return Comparison(a.label, b.label, rows, notes)


# ----------------------------------------------------------------------------- report


@dataclass
class Report:
    runs: list[RunSummary]
    comparison: Comparison | None = None
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    toolkit_version: str = __version__

    @property
    def passed(self) -> bool:
        return all(g.passed for s in self.runs for g in s.gates)


def build_report(runs: list[RunData], *, scorer: Scorer | None = None, bandwidth_gbps: float | None = None,
                 include_warmup: bool = False, fail_under: dict[str, float] | None = None,
                 require_oracle: str | None = None, compare_pair: tuple[int, int] | None = None,
                 allow_different: bool = False) -> Report:
    summaries = [summarise(r, scorer=scorer, bandwidth_gbps=bandwidth_gbps, include_warmup=include_warmup)
                 for r in runs]
    cross_run_determinism(runs, summaries, scorer)
    for s in summaries:
        apply_gates(s, fail_under, require_oracle)
    comparison = None
    if compare_pair is not None:
        comparison = compare(summaries[compare_pair[0]], summaries[compare_pair[1]], allow_different=allow_different)
    return Report(summaries, comparison)


# ----------------------------------------------------------------------------- formatting


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def _gb(value: float | None) -> str:
    return "—" if value is None else f"{value / GB:.2f} GB"


def _stat(st: Stat | None, digits: int = 1) -> str:
    return "—" if st is None else f"{st.median:.{digits}f} (min {st.min:.{digits}f}, max {st.max:.{digits}f}, n={st.n})"


def headline_rows(s: RunSummary) -> list[tuple[str, str]]:
    """The per-run table shared by Markdown and HTML."""
    if not s.valid:
        return [("status", f"INVALID — line {s.error_line}: {s.error}")]
    dev = s.device
    rows = [
        ("status", "complete" if s.complete else "INCOMPLETE (no footer: crash, jetsam kill or timeout)"),
        ("device", f"{dev.get('name', '?')} · {dev.get('product_type', '?')} · {s.platform} {dev.get('os_version', '')}"
                   f" · arch {dev.get('arch', '?')}"),
        ("bundle", f"{s.bundle.get('name', '?')} ({s.bundle.get('quant', '?')}, PLE {s.bundle.get('ple', '?')})"),
        ("prompt set", f"{s.prompt_set.get('name', '?')} · {s.prompt_set.get('count', '?')} prompts · "
                       f"sha256 {str(s.prompt_set.get('sha256', ''))[:12]}"),
        ("trials", f"measured {', '.join(map(str, s.measured_trials)) or '—'}; warm-up excluded "
                   f"{', '.join(map(str, s.warmup_trials)) or 'none'} (of {s.trials_planned} planned)"),
        ("prefill tok/s", _stat(s.prefill_tok_s)),
        ("decode tok/s", _stat(s.decode_tok_s)),
        ("time to first token s", _stat(s.ttft_s, 3)),
        ("model load s", f"cold {fmt(s.load_cold_s, 2)}; warm {_stat(s.load_warm_s, 2)}"),
        ("peak footprint", _gb(s.peak_footprint_bytes)),
        ("headroom", f"{_gb(s.headroom_bytes)} vs entitled limit {_gb(s.entitled_limit_bytes)}"
                     + (f"; OS-reported available min {_gb(s.min_available_bytes)}" if s.min_available_bytes else "")),
        ("oracle", f"{s.oracle.label} — {s.oracle.summary}" if s.oracle else "—"),
        ("determinism (trials)", f"{s.trial_determinism.label} — {s.trial_determinism.summary}"
         if s.trial_determinism else "—"),
    ]
    rows += [("determinism (runs)", f"{d.label} — {d.summary}") for d in s.determinism]
    if s.decode_step_fit:
        f = s.decode_step_fit
        rows.append(("decode step vs context", f"{f['intercept_ms']:.1f} ms + {f['ms_per_1k_positions']:.2f} ms per "
                     f"1k cached positions (fit over {f['tokens']} tokens, positions {f['positions'][0]}–"
                     f"{f['positions'][1]})"))
    r = s.roofline
    if r:
        rows += [
            ("bytes / decoded token", f"{r.bytes_per_token / GB:.3f} GB = weights {r.weight_bytes / GB:.3f} GB + KV "
                                      f"{r.kv_bytes / 1e6:.1f} MB (mean context {r.context:.0f}) + PLE row "
                                      f"{r.ple_row_bytes} B"),
            ("roofline", f"{fmt(r.roofline_tok_s)} tok/s at {fmt(r.bandwidth_gbps)} GB/s ({r.bandwidth_kind}); efficiency "
                         f"{fmt(r.efficiency * 100 if r.efficiency is not None else None)}%" if r.bandwidth_gbps
             else r.note),
            ("bandwidth facts", r.source),
        ]
    return rows


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report, plots_dir: str | None = None) -> str:
    out = [f"# gemmaios bench report\n\nGenerated {report.generated_at} by gemmaios {report.toolkit_version}. "
           f"Gates: **{'PASS' if report.passed else 'FAIL'}**.\n"]
    for s in report.runs:
        out.append(f"## {_md_escape(s.label)}\n\n`{s.path}`\n\n| | |\n|---|---|")
        out += [f"| {k} | {_md_escape(v)} |" for k, v in headline_rows(s)]
        if s.per_trial:
            out.append("\n| trial | prompts | prefill tok/s | decode tok/s | thermal | |\n|---:|---:|---:|---:|---|---|")
            out += [f"| {t.trial} | {t.prompts} | {fmt(t.prefill_tok_s)} | {fmt(t.decode_tok_s)} | {t.thermal} | "
                    f"{'warm-up (excluded)' if t.warmup else ''} |" for t in s.per_trial]
        if s.notes:
            out.append("\n" + "\n".join(f"- **{n.level}**: {n.text}" for n in s.notes))
        if s.gates:
            out.append("\n| gate | result | detail |\n|---|---|---|")
            out += [f"| {g.name} | {'pass' if g.passed else '**FAIL**'} | {_md_escape(g.detail)} |" for g in s.gates]
        out.append("")
    if report.comparison:
        out.append(_comparison_md(report.comparison))
    out.append("## Definitions\n\n" + "\n".join(f"- {d}" for d in DEFINITIONS) + "\n")
    return "\n".join(out)


def _comparison_md(c: Comparison) -> str:
    lines = [f"## Comparison: B = {_md_escape(c.b)} vs A = {_md_escape(c.a)}\n",
             "| metric | A | B | Δ | Δ % |", "|---|---:|---:|---:|---:|"]
    for r in c.rows:
        lines.append(f"| {r.metric} | {fmt(r.a, 2)} | {fmt(r.b, 2)} | {fmt(r.delta, 2)} | {fmt(r.delta_pct, 1)} |")
    lines += [f"- {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "series"}
        if isinstance(obj, Score):
            data["label"] = obj.label
        return data
    if isinstance(obj, list | tuple):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def render_json(report: Report) -> str:
    data = _plain(report)
    data["passed"] = report.passed
    data["definitions"] = DEFINITIONS
    data["schema"] = "gemmaios.report/1"
    return json.dumps(data, indent=2, sort_keys=True)


def render_junit(report: Report) -> str:
    """One testsuite per run, one testcase per gate; a failed gate is a <failure>."""
    suites = ET.Element("testsuites", name="gemmaios report")
    for s in report.runs:
        suite = ET.SubElement(suites, "testsuite", name=s.label, tests=str(len(s.gates)),
                              failures=str(sum(not g.passed for g in s.gates)), errors="0")
        for g in s.gates:
            case = ET.SubElement(suite, "testcase", classname=f"gemmaios.report.{s.run_id or Path(s.path).stem}",
                                 name=g.name)
            if not g.passed:
                ET.SubElement(case, "failure", message=g.detail).text = g.detail
        if s.notes:
            ET.SubElement(suite, "system-out").text = "\n".join(f"{n.level}: {n.text}" for n in s.notes)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


# ----------------------------------------------------------------------------- plots and HTML


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(s: RunSummary) -> dict[str, str]:
    """Base64 PNGs: tok/s per trial, footprint over time, decode rate vs context position."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out: dict[str, str] = {}
    trials = s.series.get("trials") or []
    if trials:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        xs = [t[0] for t in trials]
        width = 0.38
        ax.bar([x - width / 2 for x in xs], [t[1] or 0 for t in trials], width, label="prefill", color="#4c78a8")
        ax.bar([x + width / 2 for x in xs], [t[2] or 0 for t in trials], width, label="decode", color="#f58518")
        for x, *_rest, warm in trials:
            if warm:
                ax.annotate("warm-up", (x, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        ax.set_xticks(xs)
        ax.set_xlabel("trial")
        ax.set_ylabel("tok/s")
        ax.set_title("tok/s per trial")
        ax.legend()
        out["tok/s per trial"] = _png(fig)
    memory = s.series.get("memory") or []
    if memory:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        ax.plot([m[0] for m in memory], [m[1] / GB for m in memory], marker=".", label="phys_footprint")
        if s.entitled_limit_bytes:
            ax.axhline(s.entitled_limit_bytes / GB, color="#d62728", linestyle="--", label="entitled limit")
        ax.set_xlabel("t (s, memory samples)")
        ax.set_ylabel("GB")
        ax.set_ylim(bottom=0)
        ax.set_title("footprint over time")
        ax.legend()
        out["footprint over time"] = _png(fig)
    points = s.series.get("decode_points") or []
    if points:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=6, alpha=0.5, label="per token")
        if s.roofline and s.roofline.roofline_tok_s:
            ax.axhline(s.roofline.roofline_tok_s, color="#d62728", linestyle="--", label="roofline")
        ax.set_xlabel("context position (cached tokens)")
        ax.set_ylabel("decode tok/s")
        ax.set_ylim(bottom=0)
        ax.set_title("decode rate vs context position")
        ax.legend()
        out["decode rate vs context position"] = _png(fig)
    return out


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gemmaios bench report</title>
<style>
body{font:14px/1.45 -apple-system,system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.fail{color:#b00020;font-weight:bold}.pass{color:#137333}
.warning{color:#8a5300}.error{color:#b00020}.plots img{max-width:49%;margin:.3em 0}
code{background:#f3f3f3;padding:0 .2em}
</style></head><body>
<h1>gemmaios bench report</h1>
<p>Generated {{ report.generated_at }} by gemmaios {{ report.toolkit_version }}. Gates:
<span class="{{ 'pass' if report.passed else 'fail' }}">{{ 'PASS' if report.passed else 'FAIL' }}</span></p>
{% for s, rows, figs in runs %}
<section class="run"><h2>{{ s.label }}</h2><p><code>{{ s.path }}</code></p>
<table>{% for k, v in rows %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% if s.per_trial %}<table><tr><th>trial</th><th>prompts</th><th>prefill tok/s</th><th>decode tok/s</th>
<th>thermal</th><th></th></tr>{% for t in s.per_trial %}<tr><td>{{ t.trial }}</td><td>{{ t.prompts }}</td>
<td>{{ fmt(t.prefill_tok_s) }}</td><td>{{ fmt(t.decode_tok_s) }}</td><td>{{ t.thermal }}</td>
<td>{{ 'warm-up (excluded)' if t.warmup else '' }}</td></tr>{% endfor %}</table>{% endif %}
{% if s.notes %}<ul>{% for n in s.notes %}<li class="{{ n.level }}">{{ n.level }}: {{ n.text }}</li>{% endfor %}</ul>{% endif %}
{% if s.gates %}<table><tr><th>gate</th><th>result</th><th>detail</th></tr>{% for g in s.gates %}<tr><td>{{ g.name }}</td>
<td class="{{ 'pass' if g.passed else 'fail' }}">{{ 'pass' if g.passed else 'FAIL' }}</td><td>{{ g.detail }}</td></tr>
{% endfor %}</table>{% endif %}
<div class="plots">{% for title, png in figs.items() %}<img alt="{{ title }}" title="{{ title }}"
 src="data:image/png;base64,{{ png }}">{% endfor %}</div></section>
{% endfor %}
{% if c %}<section><h2>Comparison: B = {{ c.b }} vs A = {{ c.a }}</h2><table><tr><th>metric</th><th>A</th><th>B</th>
<th>Δ</th><th>Δ %</th></tr>{% for r in c.rows %}<tr><td>{{ r.metric }}</td><td>{{ fmt(r.a, 2) }}</td>
<td>{{ fmt(r.b, 2) }}</td><td>{{ fmt(r.delta, 2) }}</td><td>{{ fmt(r.delta_pct) }}</td></tr>{% endfor %}</table>
{% if c.notes %}<ul>{% for n in c.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}</section>{% endif %}
<h2>Definitions</h2><ul>{% for d in definitions %}<li>{{ d }}</li>{% endfor %}</ul>
</body></html>
"""


def render_html(report: Report) -> str:
    """A self-contained page: tables plus matplotlib plots inline as base64 PNG (no external files)."""
    import jinja2

    env = jinja2.Environment(autoescape=True)
    template = env.from_string(_HTML)
    runs = [(s, headline_rows(s), plots(s) if s.valid else {}) for s in report.runs]
    return template.render(report=report, runs=runs, c=report.comparison, definitions=DEFINITIONS, fmt=fmt)


def write_report(report: Report, out_dir: Path, *, junit: Path | None = None) -> dict[str, Path]:
    """Write report.md/.html/.json (and JUnit XML when asked), each via a temp file + rename."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"the report folder {out_dir} is a file", hint="pass --out a folder (new or existing)")
    if junit is not None and Path(junit).is_dir():
        raise ReportError(f"--junit {junit} is a folder", hint="pass the XML file to write, e.g. --junit report.xml")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report folder {out_dir} ({exc.strerror or exc})",
                          hint="pass --out a folder you can write to") from exc
    files = {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "json": out_dir / "report.json"}
    texts = {"markdown": render_markdown(report), "html": render_html(report), "json": render_json(report)}
    if junit is not None:
        files["junit"] = Path(junit)
        texts["junit"] = render_junit(report)
    for key, path in files.items():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(texts[key])
        tmp.replace(path)
    return files


def default_out_dir(runs: list[RunData]) -> Path:
    """build/<slug>/reports/ for runs inside a build folder, else ./gemmaios-report/."""
    builds = {r.build_dir for r in runs}
    if len(builds) == 1 and (only := builds.pop()) is not None:
        return only / "reports"
    return Path("gemmaios-report")
