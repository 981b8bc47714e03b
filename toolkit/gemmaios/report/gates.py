"""CI gates: `--fail-under` thresholds and the oracle/determinism requirements, checked against a summary."""

from __future__ import annotations

from ..roofline import GB
from .errors import ReportError
from .summary import Gate, RunSummary

GATE_KEYS = {"decode": "decode tok/s median", "prefill": "prefill tok/s median",
             "headroom": "headroom GB", "efficiency": "roofline efficiency %",
             # prefill A/B runs (`bench --ab-prefill`): the prefill function's setting against `main` only
             "prefill_on": "prefill tok/s median with the prefill function",
             "prefill_ratio": "prefill tok/s ratio, prefill function on / off",
             "decode_ratio": "decode tok/s ratio, prefill function on / off (0.97: within 3%)"}


AB_KEYS = ("prefill_on", "prefill_ratio", "decode_ratio")


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
    ab = s.prefill_ab
    if key == "prefill_on":
        return ab.on.prefill_tok_s.median if ab and ab.on.prefill_tok_s else None
    if key == "prefill_ratio":
        return ab.prefill_ratio if ab else None
    if key == "decode_ratio":
        return ab.decode_ratio if ab else None
    raise KeyError(key)


def apply_gates(s: RunSummary, fail_under: dict[str, float] | None = None,
                require_oracle: str | None = None) -> list[Gate]:
    """A valid transcript and a finished run always gate; thresholds and the oracle when asked."""
    gates = [Gate("transcript valid", s.valid, "ok" if s.valid else f"line {s.error_line}: {s.error}")]
    if s.valid:
        gates.append(Gate("run completed", s.complete, "footer written" if s.complete
                          else f"no footer: {s.failure}" if s.failure
                          else "no footer: crash, jetsam kill or timeout"))
    for key, threshold in (fail_under or {}).items():
        value = _metric(s, key) if s.valid else None
        if value is None:
            why = " (not a `bench --ab-prefill` run)" if key in AB_KEYS and s.valid and s.prefill_ab is None else ""
            gates.append(Gate(f"{key} >= {threshold:g}", False, f"{GATE_KEYS[key]} not available{why}"))
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
        if s.image_oracle is not None:  # a run with image prompts: they are held to the same rule
            ok = s.image_oracle.exact if require_oracle == "exact" else s.image_oracle.passed
            gates.append(Gate(f"image oracle {require_oracle}", ok, s.image_oracle.summary))
        elif s.image_prompt_records:
            gates.append(Gate(f"image oracle {require_oracle}", False,
                              f"{s.image_prompt_records} image prompt record(s) not scored (no image oracle)"))
        if s.audio_oracle is not None:  # a run with audio prompts: the same rule
            ok = s.audio_oracle.exact if require_oracle == "exact" else s.audio_oracle.passed
            gates.append(Gate(f"audio oracle {require_oracle}", ok, s.audio_oracle.summary))
        elif s.audio_prompt_records:
            gates.append(Gate(f"audio oracle {require_oracle}", False,
                              f"{s.audio_prompt_records} audio prompt record(s) not scored (no audio oracle)"))
    s.gates = gates
    return gates
