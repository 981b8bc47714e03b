"""The two pieces of arithmetic every report figure is made of: a rate (tokens / seconds) and a
median / min / max over runs or trials (`Stat`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def rate(tokens: int, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 else None


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
