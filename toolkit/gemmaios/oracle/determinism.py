"""Run-vs-run and trial-vs-trial determinism, judged token by token the same way as the oracle score."""

from __future__ import annotations

from dataclasses import dataclass

from ..transcript import Transcript
from .scoring import GenerationsLike, as_generations, first_divergence


@dataclass
class PairScore:
    trial: int
    index: int
    prompt_id: str
    identical: bool
    divergence: int | None = None
    note: str = ""


@dataclass
class DeterminismScore:
    pairs: list[PairScore]
    labels: tuple[str, str] = ("a", "b")

    @property
    def total(self) -> int:
        return len(self.pairs)

    @property
    def identical(self) -> int:
        return sum(p.identical for p in self.pairs)

    @property
    def passed(self) -> bool:
        return self.total > 0 and self.identical == self.total

    @property
    def summary(self) -> str:
        text = f"{self.identical}/{self.total} token-identical ({self.labels[0]} vs {self.labels[1]})"
        bad = [p for p in self.pairs if not p.identical]
        if bad:
            first = bad[0]
            at = f" at token {first.divergence}" if first.divergence is not None else ""
            text += f"; first difference: trial {first.trial} prompt {first.index}{at}{' (' + first.note + ')' if first.note else ''}"
        return text


def compare_runs(a: GenerationsLike, b: GenerationsLike, labels: tuple[str, str] = ("a", "b")) -> DeterminismScore:
    """Run-vs-run token identity, paired by (trial, prompt index).

    When one side ran a single trial (e.g. a Mac reference) every trial of the other side is
    compared with it, whatever its trial number, so 3 iPhone trials × 8 prompts against one
    Mac pass count as 24.
    """
    ga, gb = as_generations(a), as_generations(b)
    ka = {(g.trial, g.index): g for g in ga}
    kb = {(g.trial, g.index): g for g in gb}
    trials_a, trials_b = {t for t, _ in ka}, {t for t, _ in kb}
    if len(trials_b) == 1 and trials_a:
        kb = {(t, i): g for t in trials_a for (_, i), g in kb.items()}
    elif len(trials_a) == 1 and trials_b:
        ka = {(t, i): g for t in trials_b for (_, i), g in ka.items()}
    pairs = []
    for key in sorted(set(ka) | set(kb)):
        x, y = ka.get(key), kb.get(key)
        pid = (x or y).prompt_id
        if x is None or y is None:
            missing = labels[0] if x is None else labels[1]
            pairs.append(PairScore(key[0], key[1], pid, False, note=f"missing from {missing}"))
        elif x.prompt_ids != y.prompt_ids:
            pairs.append(PairScore(key[0], key[1], pid, False, first_divergence(x.prompt_ids, y.prompt_ids),
                                   note="prompt tokens differ"))
        else:
            at = first_divergence(x.generated_ids, y.generated_ids)
            pairs.append(PairScore(key[0], key[1], pid, at is None, at))
    return DeterminismScore(pairs, labels)


def compare_trials(transcript: Transcript) -> DeterminismScore:
    """Every trial after the first against trial 0 of the same run (run vs rerun on one device)."""
    gens = as_generations(transcript)
    trials = sorted({g.trial for g in gens})
    if len(trials) < 2:
        return DeterminismScore([], ("trial 0", "later trials"))
    first = [g for g in gens if g.trial == trials[0]]
    rest = [g for g in gens if g.trial != trials[0]]
    later = f"trial {trials[1]}" if len(trials) == 2 else f"trials {trials[1]}..{trials[-1]}"
    return compare_runs(rest, first, labels=(later, f"trial {trials[0]}"))
