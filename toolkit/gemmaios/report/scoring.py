"""Oracle and determinism verdicts as the report shows them, and the adapter over gemmaios.oracle."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
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
    # per prompt (image prompts): {prompt_id, trial, index, verdict, compared, divergence, margin, note}
    prompts: list[dict] = field(default_factory=list)

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

    def images(self, transcript: Transcript, image_oracle_dir: Path, text_oracle_path: Path | None) -> Score | None: ...

    def audio(self, transcript: Transcript, audio_oracle_dir: Path, text_oracle_path: Path | None,
              image_oracle_dir: Path | None) -> Score | None: ...


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
        rows = [{"prompt_id": p.prompt_id, "trial": p.trial, "index": p.index, "verdict": p.verdict,
                 "compared": p.compared, "divergence": p.divergence, "margin": p.margin} for p in s.prompts]
        return Score("oracle", s.exact, s.total, s.passed, s.summary, rows)

    def determinism(self, a: Transcript, b: Transcript, labels: tuple[str, str]) -> Score:
        s = self.m.compare_runs(a, b, labels=labels)
        return Score("determinism", s.identical, s.total, s.passed, s.summary)

    def trials(self, transcript: Transcript) -> Score | None:
        s = self.m.compare_trials(transcript)
        return Score("determinism", s.identical, s.total, s.passed, s.summary) if s.total else None

    def images(self, transcript: Transcript, image_oracle_dir: Path, text_oracle_path: Path | None) -> Score | None:
        """The run's image prompts against the image oracle (gemmaios.vision.imagebench), same verdicts and
        margin rule as the text prompts; None when the run has no image prompts."""
        from ..vision.imagebench import score_image_prompts

        text_sha = self.m.load_oracle(text_oracle_path).prompt_set.get("sha256") if text_oracle_path else None
        s = score_image_prompts(transcript, image_oracle_dir, text_prompt_set_sha256=text_sha)
        if s is None:
            return None
        return _per_prompt("image oracle", s)

    def audio(self, transcript: Transcript, audio_oracle_dir: Path, text_oracle_path: Path | None,
              image_oracle_dir: Path | None) -> Score | None:
        """The run's audio prompts against the audio oracle (gemmaios.audio.audiobench), as images; the
        prompt set is checked as the text oracle's prompts (then the image oracle's, for a run that has
        image prompts too) plus the audio oracle's. None when the run has no audio prompts."""
        from ..audio.audiobench import score_audio_prompts
        from ..vision.imagebench import mixed_prompt_set

        before = self.m.load_oracle(text_oracle_path).prompt_set.get("sha256") if text_oracle_path else None
        if before is not None and image_oracle_dir is not None and any(r.image for r in transcript.prompts):
            _, before = mixed_prompt_set("", before, image_oracle_dir)
        s = score_audio_prompts(transcript, audio_oracle_dir, prompt_set_sha256=before)
        if s is None:
            return None
        return _per_prompt("audio oracle", s)


def _per_prompt(kind: str, s) -> Score:
    """An OracleScore of image or audio prompts as the report shows it, a row per prompt."""
    summary = s.summary + "".join(f"; {w}" for w in s.warnings)
    rows = [{"prompt_id": p.prompt_id, "trial": p.trial, "index": p.index, "verdict": p.verdict,
             "compared": p.compared, "divergence": p.divergence, "expected": p.expected, "got": p.got,
             "margin": p.margin, "note": p.note} for p in s.prompts]
    return Score(kind, s.exact, s.total, s.passed, summary, rows)


def default_scorer() -> Scorer | None:
    """The oracle library's scorer, or None when gemmaios.oracle is not installed."""
    toolkit = __package__.rpartition(".")[0]  # gemmaios (this module lives in gemmaios.report)
    if importlib.util.find_spec(f"{toolkit}.oracle") is None:
        return None
    return OracleModuleScorer(importlib.import_module(f"{toolkit}.oracle"))
