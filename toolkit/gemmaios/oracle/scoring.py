"""Device generations against the oracle: exact matches, where each divergence starts, and whether it started
at a near-tie.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..transcript import PromptRecord, Transcript
from .records import DEFAULT_TOP_K, Oracle
from .reference import ReferenceModel

# A flip where the oracle's top-1/top-2 logit gap is below this is a knife-edge tie: the
# fp32 reference itself would flip under fp16-class noise, so it is not evidence of a bug.
DEFAULT_NEAR_TIE_MARGIN = 0.1


@dataclass(frozen=True)
class Generation:
    """One generation to judge: what any runner (device, Mac, converted module) produced."""

    prompt_ids: tuple[int, ...]
    generated_ids: tuple[int, ...]
    index: int = 0
    trial: int = 0
    prompt_id: str = ""
    where: str = ""  # e.g. "run.jsonl:4", for messages


GenerationsLike = Transcript | Iterable[Generation | PromptRecord | tuple[Sequence[int], Sequence[int]]]


def as_generations(runs: GenerationsLike) -> list[Generation]:
    """Normalise a Transcript, PromptRecords, Generations or plain (prompt_ids, generated_ids) pairs."""
    if isinstance(runs, Transcript):
        path = runs.path
        return [_from_record(r, f"{path}:{r.line}") for r in runs.prompts]
    out = []
    for i, item in enumerate(runs):
        if isinstance(item, Generation):
            out.append(item)
        elif isinstance(item, PromptRecord):
            out.append(_from_record(item, f"line {item.line}"))
        else:
            prompt_ids, generated_ids = item
            out.append(Generation(tuple(prompt_ids), tuple(generated_ids), index=i))
    return out


def _from_record(r: PromptRecord, where: str) -> Generation:
    return Generation(tuple(r.prompt_ids), tuple(r.generated_ids), r.index, r.trial, r.prompt_id, where)


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """First index where the sequences differ (a length difference counts at the shorter end)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


EXACT, NEAR_TIE, DIVERGED, SHORT, PROMPT_MISMATCH, NO_ORACLE = (
    "exact", "near-tie", "diverged", "short", "prompt mismatch", "no oracle prompt",
)


@dataclass
class PromptScore:
    index: int
    trial: int
    prompt_id: str
    verdict: str  # one of EXACT, NEAR_TIE, DIVERGED, SHORT, PROMPT_MISMATCH, NO_ORACLE
    compared: int = 0  # tokens judged
    divergence: int | None = None  # position in generated_ids of the first difference
    expected: int | None = None  # oracle token there
    got: int | None = None  # device token there (None when the device stopped)
    margin: float | None = None  # oracle top-1/top-2 margin there
    got_rank: int | None = None  # device token's rank in the oracle's top-k there (None: outside)
    got_gap: float | None = None
    note: str = ""
    where: str = ""
    # (positions after the divergence where the run took the oracle's top-1 given its own
    # context, positions judged): filled by `explain_divergences`
    after_divergence: tuple[int, int] | None = None

    @property
    def exact(self) -> bool:
        return self.verdict == EXACT

    @property
    def near_tie(self) -> bool | None:
        """True/False at a divergence with an oracle margin; None when exact or not judged."""
        if self.verdict == NEAR_TIE:
            return True
        if self.verdict in (DIVERGED, SHORT) and self.margin is not None:
            return False
        return None


@dataclass
class OracleScore:
    prompts: list[PromptScore]
    near_tie_margin: float
    max_new_tokens: int
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.prompts)

    @property
    def exact(self) -> int:
        return sum(p.exact for p in self.prompts)

    @property
    def near_ties(self) -> list[PromptScore]:
        return [p for p in self.prompts if p.verdict == NEAR_TIE]

    @property
    def failures(self) -> list[PromptScore]:
        """Divergences that are not near-ties: what points at a conversion bug."""
        return [p for p in self.prompts if p.verdict not in (EXACT, NEAR_TIE)]

    @property
    def passed(self) -> bool:
        """Every generation exact or diverging only at a near-tie (the margin rule)."""
        return self.total > 0 and not self.failures

    @property
    def summary(self) -> str:
        text = f"{self.exact}/{self.total} exact vs fp32 oracle ({self.max_new_tokens} tokens)"
        if self.near_ties:
            text += f"; {len(self.near_ties)} near-tie flip(s) (margin < {self.near_tie_margin:g})"
        if self.failures:
            worst = self.failures[0]
            where = f"trial {worst.trial} prompt {worst.index}"
            detail = f"{worst.verdict} at token {worst.divergence}" if worst.divergence is not None else worst.verdict
            if worst.margin is not None:
                detail += f", oracle margin {worst.margin:.3g}"
            if worst.after_divergence and worst.after_divergence[1]:
                agree, judged = worst.after_divergence
                detail += f", then took the oracle's top-1 at {agree}/{judged} positions"
            text += f"; {len(self.failures)} hard divergence(s), first: {where} {detail}"
        return text


def score_against_oracle(
    runs: GenerationsLike, oracle: Oracle, *, near_tie_margin: float = DEFAULT_NEAR_TIE_MARGIN
) -> OracleScore:
    """Judge each generation against the oracle prompt with the same index.

    A transcript's image and audio prompts (records with `image` / `audio`) are not judged here: they
    belong to the image oracle (gemmaios.vision.imagebench.score_image_prompts) and the audio oracle
    (gemmaios.audio.audiobench.score_audio_prompts), which also check the prompt set's sha256 of such
    a mixed set.
    """
    warnings: list[str] = []
    if isinstance(runs, Transcript):
        images = any(r.image or r.audio for r in runs.prompts)
        sha = runs.header.get("prompt_set", {}).get("sha256")
        if sha and sha != oracle.prompt_set.get("sha256") and not images:
            warnings.append(f"transcript prompt set {runs.header['prompt_set'].get('name')!r} ({sha[:12]}) is not the "
                            f"oracle's {oracle.prompt_set.get('name')!r} ({oracle.prompt_set.get('sha256', '')[:12]})")
        if runs.header.get("max_new_tokens", 0) > oracle.max_new_tokens:
            warnings.append(f"the run generated {runs.header['max_new_tokens']} tokens; only the oracle's "
                            f"{oracle.max_new_tokens} are judged (re-run `gemmaios oracle --tokens` to judge all)")
        runs = [_from_record(r, f"{runs.path}:{r.line}") for r in runs.prompts if not (r.image or r.audio)]
    scores = [_score_one(g, oracle, near_tie_margin) for g in as_generations(runs)]
    return OracleScore(scores, near_tie_margin, oracle.max_new_tokens, warnings)


def _score_one(g: Generation, oracle: Oracle, threshold: float) -> PromptScore:
    base = {"index": g.index, "trial": g.trial, "prompt_id": g.prompt_id, "where": g.where}
    if not 0 <= g.index < len(oracle.prompts):
        return PromptScore(**base, verdict=NO_ORACLE, note=f"the oracle has {len(oracle.prompts)} prompts")
    ref = oracle.prompts[g.index]
    base["prompt_id"] = g.prompt_id or ref.id
    if list(g.prompt_ids) != ref.prompt_ids:
        at = first_divergence(g.prompt_ids, ref.prompt_ids)
        return PromptScore(**base, verdict=PROMPT_MISMATCH, divergence=at,
                           note=f"prompt tokens differ from the oracle's at position {at} (tokenizer or chat template)")
    expected, got = ref.generated_ids, list(g.generated_ids)
    n = min(len(expected), len(got))
    at = next((i for i in range(n) if expected[i] != got[i]), None)
    if at is None:
        if len(got) >= len(expected):
            note = f"{len(got) - len(expected)} token(s) beyond the oracle not judged" if len(got) > len(expected) else ""
            return PromptScore(**base, verdict=EXACT, compared=len(expected), note=note)
        if got and got[-1] in oracle.eos_token_ids:
            return PromptScore(**base, verdict=EXACT, compared=len(got), note="stopped at EOS, as the oracle did")
        step = ref.top_k[len(got)]
        return PromptScore(**base, verdict=SHORT, compared=len(got), divergence=len(got), expected=expected[len(got)],
                           margin=step.margin, note=f"the run stopped after {len(got)} of {len(expected)} tokens")
    step = ref.top_k[at]
    verdict = NEAR_TIE if step.margin < threshold else DIVERGED
    return PromptScore(**base, verdict=verdict, compared=at + 1, divergence=at, expected=expected[at], got=got[at],
                       margin=step.margin, got_rank=step.rank(got[at]), got_gap=step.gap(got[at]))


def explain_divergences(
    score: OracleScore, runs: GenerationsLike, reference: ReferenceModel, top_k: int = DEFAULT_TOP_K
) -> OracleScore:
    """Teacher-force each diverged run's own tokens through the oracle.

    After a first flip the free-running oracle no longer applies, but the oracle given the
    run's own context still does: a healthy model that took a near-tie keeps choosing the
    oracle's top-1 afterwards, a broken one does not.
    """
    for judged, g in zip(score.prompts, as_generations(runs), strict=True):
        if judged.verdict in (DIVERGED, NEAR_TIE) and judged.divergence is not None:
            forced = reference.teacher_forced(list(g.prompt_ids) + list(g.generated_ids), top_k=top_k)
            judged.after_divergence = forced.agreement(len(g.prompt_ids) + judged.divergence + 1)
    return score
