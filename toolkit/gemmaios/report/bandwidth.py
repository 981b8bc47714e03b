"""The bandwidth (roofline) model: bytes streamed per decoded token against the architecture's memory
bandwidth.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from ..archs import get_arch
from ..errors import GemmaiosError
from ..registry import MODELS
from ..roofline import (
    ContextRow,
    bundle_context_rows,
    bytes_per_decoded_token,
    kv_layers_of,
    layer_context_rows,
    roofline_tok_s,
)
from ..transcript import PromptRecord
from .runs import RunData


@dataclass
class Roofline:
    weight_bytes: int
    kv_bytes: float
    ple_row_bytes: int
    context: float
    bytes_per_token: float
    bandwidth_gbps: float | None
    bandwidth_kind: str  # "peak (arch registry)" | "observed effective (arch registry)" | "--bandwidth"
    roofline_tok_s: float | None
    efficiency: float | None  # measured decode median / roofline
    source: str
    note: str = ""
    # issue 27: the KV cache beside the weights at 1k, 4k, 8k and 32k (roofline.REPORT_CONTEXTS)
    by_context: list[ContextRow] = field(default_factory=list)
    by_context_note: str = ""

    def context_roofline(self, row: ContextRow) -> float | None:
        return roofline_tok_s(row.bytes_per_token, self.bandwidth_gbps) if self.bandwidth_gbps else None


def _mean_decode_context(prompts: list[PromptRecord]) -> float:
    """Mean cached positions while decoding: token i after the first sees prompt + 1 + i."""
    total = sum(p.decode_tokens for p in prompts)
    if not total:
        return float(statistics.mean(p.prefill_tokens for p in prompts)) if prompts else 0.0
    # Σ_i (P + 1 + i) for i in 0..n-1 = n (P + 1) + n (n - 1) / 2
    weighted = sum(p.decode_tokens * (p.prefill_tokens + 1) + p.decode_tokens * (p.decode_tokens - 1) / 2
                   for p in prompts)
    return weighted / total


def _bandwidth(arch_name: str | None, override: float | None) -> tuple[float | None, str, str]:
    if override is not None:
        return override, "--bandwidth", ""
    if not arch_name:
        return None, "", "the transcript names no device arch: pass --bandwidth GBPS for the roofline"
    try:
        arch = get_arch(arch_name)
    except GemmaiosError:
        return None, "", f"arch {arch_name!r} is not in the registry: pass --bandwidth GBPS for the roofline"
    if arch.bandwidth_gbps is not None:
        return arch.bandwidth_gbps, f"peak ({arch_name}, arch registry)", ""
    observed = getattr(arch, "observed_bandwidth_gbps", None)
    if observed is not None:
        return observed, f"observed effective ({arch_name}, arch registry; no published peak)", ""
    return None, "", (f"the roofline needs a bandwidth figure: the registry has none for {arch_name!r}; "
                      "pass --bandwidth GBPS")


def run_roofline(run: RunData, rows: list[PromptRecord], override: float | None, *, arch: str | None,
                 decode_median: float | None, info: Callable[[str], None]) -> Roofline | None:
    """The run's roofline from its bundle facts and its device's architecture; what it cannot compute or
    had to assume goes to `info`."""
    if run.bundle is None:
        info("bandwidth model not computed: " + (run.bundle_note or "no bundle facts"))
        return None
    b = run.bundle
    ctx = _mean_decode_context(rows)
    total = bytes_per_decoded_token(b.weight_bytes, b.kv_bytes_per_position, ctx, b.ple_row_bytes)
    bw, kind, note = _bandwidth(arch, override)
    roof = roofline_tok_s(total, bw) if bw else None
    eff = decode_median / roof if roof and decode_median is not None else None
    if note:
        info(note)
    spec = MODELS.get(b.model_key) if b.model_key else None
    if spec is not None:
        by_context = layer_context_rows(kv_layers_of(spec), spec.sliding_window, b.weight_bytes, b.ple_row_bytes)
        context_note = (f"KV read = each of {spec.key}'s {spec.kv_slots} cache-owning layers' own K/V rows (fp16); "
                        "KV memory = the engine's unified padded state at the capacity it binds")
    else:
        by_context = bundle_context_rows(b.weight_bytes, b.kv_bytes_per_position, b.ple_row_bytes)
        context_note = ("not a registry model: KV read is the padded state row per position, an upper bound "
                        "(the graph reads each layer's own heads and dims)")
    return Roofline(weight_bytes=b.weight_bytes, kv_bytes=b.kv_bytes_per_position * ctx, ple_row_bytes=b.ple_row_bytes,
                    context=ctx, bytes_per_token=total, bandwidth_gbps=bw, bandwidth_kind=kind, roofline_tok_s=roof,
                    efficiency=eff, source=b.source, note=note, by_context=by_context, by_context_note=context_note)
