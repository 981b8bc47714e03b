"""Two runs side by side (`gemmaios report --compare`), refused when their prompt sets or bundles differ."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..roofline import GB
from .errors import IncomparableRuns
from .summary import RunSummary

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
# the bench protocol's figures (issue 16): a row only when one of the runs has the figure
PROTOCOL_METRICS = [
    ("cold launch TTFT s (median)",
     lambda s: s.cold.ttft_since_launch_s.median if s.cold and s.cold.ttft_since_launch_s else None, False),
    ("sustained tok/s (median)", lambda s: s.sustained.median_tok_s if s.sustained else None, True),
    ("sustained tok/s (last sample)", lambda s: s.sustained.last_tok_s if s.sustained else None, True),
    ("energy mWh per 1k tokens",
     lambda s: s.energy.mwh_per_1k_tokens if s.energy and not s.energy.charging else None, False),
]
COMPARE_METRICS += PROTOCOL_METRICS


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
        if va is None and vb is None and any(name == m[0] for m in PROTOCOL_METRICS):
            continue
        delta = vb - va if va is not None and vb is not None else None
        pct = delta / va * 100 if delta is not None and va else None
        rows.append(ComparisonRow(name, va, vb, delta, pct, higher))
    notes = [f"compared although {d} (--allow-different)" for d in diffs]
    for s in (a, b):
        notes += [f"{s.label}: {n.text}" for n in s.notes if n.level in ("warning", "error")]
    return Comparison(a.label, b.label, rows, notes)
