"""Prefill A/B (issue 18): a run whose trials alternate the bundle's prefill function on and off
(`gemmaios bench --ab-prefill`) → each setting's prefill and decode tok/s medians, their ratios,
the footprint difference, and whether both settings generated the same tokens."""

from __future__ import annotations

from dataclasses import dataclass

from ..transcript import PromptRecord, Transcript
from .stats import Stat, rate


@dataclass
class SettingRates:
    function: str | None  # the prefill function, None: `main` only
    measured_trials: list[int]
    warmup_trials: list[int]
    prefill_tok_s: Stat | None
    decode_tok_s: Stat | None
    peak_footprint_bytes: int | None

    @property
    def label(self) -> str:
        return self.function or "main only"


@dataclass
class PrefillAB:
    on: SettingRates
    off: SettingRates
    prefill_ratio: float | None  # on / off prefill tok/s medians
    decode_ratio: float | None  # on / off decode tok/s medians (1.0: the prefill function costs decode nothing)
    footprint_delta_bytes: int | None  # on − off peak footprint
    prompts_compared: int
    prompts_differing: list[str]  # prompt ids whose generated tokens differ between the settings

    @property
    def line(self) -> str:
        def med(st: Stat | None) -> str:
            return "—" if st is None else f"{st.median:.1f}"

        def ratio(r: float | None) -> str:
            return "—" if r is None else f"{r:.2f}×"

        same = (f"tokens identical on {self.prompts_compared} prompts" if not self.prompts_differing
                else f"tokens DIFFER on {len(self.prompts_differing)} of {self.prompts_compared} prompts")
        delta = "" if self.footprint_delta_bytes is None else f"; footprint {self.footprint_delta_bytes / 1e9:+.3f} GB"
        return (f"prefill {med(self.on.prefill_tok_s)} ({self.on.label}) vs {med(self.off.prefill_tok_s)} "
                f"({self.off.label}) tok/s = {ratio(self.prefill_ratio)}; decode {med(self.on.decode_tok_s)} vs "
                f"{med(self.off.decode_tok_s)} tok/s = {ratio(self.decode_ratio)}{delta}; {same}")


def _setting(prompts: list[PromptRecord], function: str | None, include_warmup: bool) -> SettingRates:
    trials = sorted({p.trial for p in prompts})
    warm = [] if include_warmup or len(trials) < 2 else trials[:1]  # each setting's first trial follows a (re)load
    measured = [t for t in trials if t not in warm]
    rates_p, rates_d = [], []
    for t in measured:
        rows = [p for p in prompts if p.trial == t]
        rates_p.append(rate(sum(p.prefill_tokens for p in rows), sum(p.prefill_seconds for p in rows)))
        rates_d.append(rate(sum(p.decode_tokens for p in rows), sum(p.decode_seconds for p in rows)))
    peaks = [p.peak_phys_footprint_bytes for p in prompts if p.peak_phys_footprint_bytes is not None]
    return SettingRates(function, measured, warm, Stat.of(rates_p), Stat.of(rates_d), max(peaks) if peaks else None)


def _ratio(a: Stat | None, b: Stat | None) -> float | None:
    return a.median / b.median if a and b and b.median > 0 else None


def prefill_ab(t: Transcript, *, include_warmup: bool = False) -> PrefillAB | None:
    """The A/B figures, or None unless the run holds prompts of both settings."""
    on_rows = [p for p in t.prompts if p.prefill_function]
    off_rows = [p for p in t.prompts if not p.prefill_function]
    if not on_rows or not off_rows:
        return None
    functions = sorted({p.prefill_function for p in on_rows})
    on = _setting(on_rows, ", ".join(functions), include_warmup)
    off = _setting(off_rows, None, include_warmup)
    first_on = {p.index: p for p in on_rows if p.trial == min(q.trial for q in on_rows)}
    first_off = {p.index: p for p in off_rows if p.trial == min(q.trial for q in off_rows)}
    shared = sorted(set(first_on) & set(first_off))
    differ = [first_on[i].prompt_id for i in shared if first_on[i].generated_ids != first_off[i].generated_ids]
    delta = (on.peak_footprint_bytes - off.peak_footprint_bytes
             if on.peak_footprint_bytes is not None and off.peak_footprint_bytes is not None else None)
    return PrefillAB(on, off, _ratio(on.prefill_tok_s, off.prefill_tok_s), _ratio(on.decode_tok_s, off.decode_tok_s),
                     delta, len(shared), differ)
