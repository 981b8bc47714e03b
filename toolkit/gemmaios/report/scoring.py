"""Oracle and determinism verdicts as the report shows them, and the adapter over gemmaios.oracle."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..transcript import Transcript


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
    toolkit = __package__.rpartition(".")[0]  # gemmaios (this module lives in gemmaios.report)
    if importlib.util.find_spec(f"{toolkit}.oracle") is None:
        return None
    return OracleModuleScorer(importlib.import_module(f"{toolkit}.oracle"))
