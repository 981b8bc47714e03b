"""The report as a whole: every run summarised, gated, cross-checked for determinism and optionally compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from .. import __version__
from .comparison import Comparison, compare
from .gates import apply_gates
from .runs import RunData
from .scoring import Scorer
from .summary import RunSummary, cross_run_determinism, summarise


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
