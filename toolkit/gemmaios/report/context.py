"""Oracle agreement by context length, and the iOS KV guard (issue 27, apple/coreai-models#124).

The long-context probe (`gemmaios oracle --prompts long-context`) puts prompts past 1k, 2k and 4k
tokens into a bench; here each prompt's verdict against the fp32 oracle is grouped by how long its
context grew (prompt + generated tokens) and by the KV capacity the engine had bound for it. On
iOS a binding above `contract.IOS_KV_SAFE_CAPACITY` carries the named #124 warning, and agreement
that breaks only above it while the bindings within it hold is named as #124's signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..contract import IOS_KV_SAFE_CAPACITY, KV_FAULT_ISSUE, KV_FAULT_WARNING
from ..transcript import Transcript

# Context buckets (upper bounds, tokens): the probe's prompts cross each of them.
BUCKETS = (1024, 2048, 4096, 8192)
HELD = ("exact", "near-tie")  # gemmaios.oracle.scoring's verdicts that pass the oracle


@dataclass
class ContextBucket:
    label: str  # "≤ 1024", "1025–2048", …
    prompts: int
    exact: int
    held: int  # exact or diverging only at a near-tie
    capacities: list[int] = field(default_factory=list)  # distinct KV capacities bound (recorded)

    @property
    def line(self) -> str:
        kv = ("KV bound " + "/".join(map(str, self.capacities))) if self.capacities else "KV binding not recorded"
        return f"{self.label}: {self.exact}/{self.prompts} exact ({self.held} within the margin rule; {kv})"


@dataclass
class ContextProbe:
    buckets: list[ContextBucket]
    # by KV binding: prompts (held, total) at bindings within the safe capacity and above it
    within_safe: tuple[int, int] = (0, 0)
    above_safe: tuple[int, int] = (0, 0)
    fault_signature: bool = False  # agreement breaks above the safe binding while the bindings within it hold

    @property
    def line(self) -> str:
        return " · ".join(b.line for b in self.buckets)


def _bucket_label(context: int) -> str:
    lower = 0
    for upper in BUCKETS:
        if context <= upper:
            return f"≤ {upper}" if lower == 0 else f"{lower + 1}–{upper}"
        lower = upper
    return f"> {BUCKETS[-1]}"


def context_probe(t: Transcript, verdicts: list[dict], trials: list[int]) -> ContextProbe | None:
    """Agreement by context bucket over the `trials` prompts (None when no prompt passes 1024 tokens
    of context and none recorded a KV binding above the safe capacity: nothing long to show)."""
    by_key = {(v["trial"], v["index"]): v["verdict"] for v in verdicts}
    rows = [p for p in t.prompts if p.trial in trials and not p.image and (p.trial, p.index) in by_key]
    longest = max((p.prefill_tokens + len(p.generated_ids) for p in rows), default=0)
    widest = max((p.kv_capacity or 0 for p in rows), default=0)
    if longest <= IOS_KV_SAFE_CAPACITY and widest <= IOS_KV_SAFE_CAPACITY:
        return None
    order = [*(_bucket_label(u) for u in BUCKETS), f"> {BUCKETS[-1]}"]
    groups: dict[str, ContextBucket] = {}
    within, above = [0, 0], [0, 0]
    for p in rows:
        verdict = by_key[(p.trial, p.index)]
        label = _bucket_label(p.prefill_tokens + len(p.generated_ids))
        b = groups.setdefault(label, ContextBucket(label, 0, 0, 0))
        b.prompts += 1
        b.exact += verdict == "exact"
        b.held += verdict in HELD
        if p.kv_capacity and p.kv_capacity not in b.capacities:
            b.capacities = sorted([*b.capacities, p.kv_capacity])
        if p.kv_capacity:
            side = within if p.kv_capacity <= IOS_KV_SAFE_CAPACITY else above
            side[0] += verdict in HELD
            side[1] += 1
    probe = ContextProbe([groups[k] for k in order if k in groups], tuple(within), tuple(above))
    probe.fault_signature = bool(within[1]) and within[0] == within[1] and above[1] > 0 and above[0] < above[1]
    return probe


def kv_guard_notes(t: Transcript, platform: str, probe: ContextProbe | None) -> list[tuple[str, str]]:
    """(level, text) notes: the #124 warning for iOS bindings above the safe capacity, and what the
    probe's agreement says about it."""
    if platform != "iOS":
        return []
    above = sorted({p.kv_capacity for p in t.prompts if p.kv_capacity and p.kv_capacity > IOS_KV_SAFE_CAPACITY})
    named = sum(KV_FAULT_WARNING in p.warnings for p in t.prompts)
    notes = []
    if above or named:
        count = sum(1 for p in t.prompts if p.kv_capacity and p.kv_capacity > IOS_KV_SAFE_CAPACITY) or named
        notes.append(("warning", f"{KV_FAULT_WARNING}: {count} prompt record(s) ran with the KV cache bound at "
                                 f"{'/'.join(map(str, above)) or 'above ' + str(IOS_KV_SAFE_CAPACITY)} positions; on "
                                 f"iOS 27 beta an on-device compiled pipelined bundle decodes wrong tokens at 2048 or "
                                 f"4096 ({KV_FAULT_ISSUE}); their tokens are suspect until a phone run shows them exact"))
    if probe and probe.fault_signature:
        w, a = probe.within_safe, probe.above_safe
        notes.append(("warning", f"agreement with the fp32 oracle breaks above a {IOS_KV_SAFE_CAPACITY}-position KV "
                                 f"binding ({a[0]}/{a[1]} held) while the bindings within it hold ({w[0]}/{w[1]}): "
                                 f"the signature of {KV_FAULT_ISSUE}; keep --max-context {IOS_KV_SAFE_CAPACITY} on iOS"))
    elif probe and probe.above_safe[1] and probe.above_safe[0] == probe.above_safe[1]:
        notes.append(("info", f"every prompt bound above {IOS_KV_SAFE_CAPACITY} KV positions held against the fp32 "
                              f"oracle ({probe.above_safe[0]}/{probe.above_safe[1]}) on "
                              f"{t.header.get('device', {}).get('os_version') or 'this OS'}: {KV_FAULT_ISSUE} did "
                              "not show here (confirm over more prompts before lifting the guard)"))
    return notes
