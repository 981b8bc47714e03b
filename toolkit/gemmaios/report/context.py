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
    growth: str | None = None  # the KV growth these prompts ran under (None: not recorded)
    # by KV binding: prompts (held, total) at bindings within the safe capacity and above it
    within_safe: tuple[int, int] = (0, 0)
    above_safe: tuple[int, int] = (0, 0)
    fault_signature: bool = False  # agreement breaks above the safe binding while the bindings within it hold

    @property
    def line(self) -> str:
        return (f"[KV cache grown {self.growth.replace('-', ' ')}] " if self.growth else "") + " · ".join(
            b.line for b in self.buckets)


def _bucket_label(context: int) -> str:
    lower = 0
    for upper in BUCKETS:
        if context <= upper:
            return f"≤ {upper}" if lower == 0 else f"{lower + 1}–{upper}"
        lower = upper
    return f"> {BUCKETS[-1]}"


def context_probes(t: Transcript, verdicts: list[dict], trials: list[int]) -> list[ContextProbe]:
    """Agreement by context bucket over the `trials` prompts, one probe per KV growth setting the run
    used (`bench --ab-kv` alternates two); empty when no prompt passes 1024 tokens of context and none
    recorded a KV binding above the safe capacity (nothing long to show)."""
    by_key = {(v["trial"], v["index"]): v["verdict"] for v in verdicts}
    rows = [p for p in t.prompts if p.trial in trials and not (p.image or p.audio) and (p.trial, p.index) in by_key]
    longest = max((p.prefill_tokens + len(p.generated_ids) for p in rows), default=0)
    widest = max((p.kv_capacity or 0 for p in rows), default=0)
    if longest <= IOS_KV_SAFE_CAPACITY and widest <= IOS_KV_SAFE_CAPACITY:
        return []
    growths = sorted({p.kv_growth for p in rows}, key=lambda g: (g is not None, g or ""))
    return [_probe([p for p in rows if p.kv_growth == g], by_key, g) for g in growths]


def _probe(rows: list, by_key: dict, growth: str | None) -> ContextProbe:
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
    probe = ContextProbe([groups[k] for k in order if k in groups], growth, tuple(within), tuple(above))
    probe.fault_signature = bool(within[1]) and within[0] == within[1] and above[1] > 0 and above[0] < above[1]
    return probe


def kv_guard_notes(t: Transcript, platform: str, probes: list[ContextProbe]) -> list[tuple[str, str]]:
    """(level, text) notes: the #124 warning for iOS bindings above the safe capacity, and what each
    probe's agreement says about it (per KV growth setting)."""
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
    for probe in probes:
        setting = f" with the KV cache grown {probe.growth.replace('-', ' ')}" if probe.growth else ""
        w, a = probe.within_safe, probe.above_safe
        if probe.fault_signature:
            notes.append(("warning", f"agreement with the fp32 oracle breaks above a {IOS_KV_SAFE_CAPACITY}-position KV "
                                     f"binding{setting} ({a[0]}/{a[1]} held) while the bindings within it hold "
                                     f"({w[0]}/{w[1]}): the signature of {KV_FAULT_ISSUE}"))
        elif a[1] and a[0] == a[1]:
            sizes = sorted({c for b in probe.buckets for c in b.capacities if c > IOS_KV_SAFE_CAPACITY})
            notes.append(("info", f"every prompt bound above {IOS_KV_SAFE_CAPACITY} KV positions{setting} held against "
                                  f"the fp32 oracle ({a[0]}/{a[1]}, bindings {'/'.join(map(str, sizes))}) on "
                                  f"{t.header.get('device', {}).get('os_version') or 'this OS'}: {KV_FAULT_ISSUE} did "
                                  "not show there (confirm over more prompts before lifting the guard)"))
    return notes
