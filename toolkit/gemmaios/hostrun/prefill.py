"""The chunked-prefill gate: prefill_C walks bit-identical to main-only walks under Core AI's runtime."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import GemmaiosError
from . import hostfacts
from .bundleinfo import BundleInfo, asset_weight_bytes, estimate_step_seconds
from .errors import HostRunError
from .hostfacts import Progress
from .runner import BundleRunner
from .transcripts import coreai_version


class PrefillGateFailed(GemmaiosError):
    """The saved bundle's chunked prefill differs from its one-token walk under Core AI's runtime."""

    def __init__(self, message: str, *, prompt: str | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.prompt = prompt


def long_prefill_prompt(prompts: Sequence[Sequence[int]], chunks: Sequence[int], sliding_window: int,
                        max_context: int) -> list[int]:
    """A prompt longer than the sliding window and several chunks long, from the given ids run together.

    Length: three chunks of the largest size, one of each smaller size, and 3 tokens left for
    `main` (tiny, C=16: 51 tokens), at least the window plus a chunk; capped so it fits.
    """
    sizes = sorted(chunks, reverse=True)
    want = max(3 * sizes[0] + sum(sizes[1:]) + 3, sliding_window + sizes[0] + 3)
    want = min(want, max_context - 1)
    pool = [int(t) for ids in prompts for t in ids]
    if not pool:
        raise HostRunError("no prompt ids to build the long prefill prompt from", hint="give at least one prompt")
    return [pool[i % len(pool)] for i in range(want)]


def prefill_gate(
    bundle_dir: Path,
    prompts: Sequence[tuple[str, Sequence[int]]],
    tables_dir: Path | None,
    *,
    progress: Progress | None = None,
) -> dict:
    """Each prompt prefilled twice through Core AI's runtime: `main` only, and full chunks through
    the bundle's `prefill_C` functions; last logits and both KV caches must be bit-identical.

    A prompt longer than the sliding window and several chunks long is added to `prompts`.
    Raises PrefillGateFailed naming the prompt and the first differing tensor.
    """
    started = time.perf_counter()
    rows = []
    with BundleRunner(bundle_dir, tables_dir) as runner:
        chunks = runner.prefill_chunks
        name = runner.bundle.name
        if not chunks:
            raise HostRunError(f"{name} has no prefill functions", hint="convert with --prefill-chunk 8 or 16")
        window = int((runner.bundle.facts.get("prefill") or {}).get("sliding_window") or 0)
        long_ids = long_prefill_prompt([ids for _, ids in prompts], chunks, window, runner.bundle.max_context)
        # A prompt of exactly two largest chunks, walked with a chunk ending it: the logits compared
        # are then prefill_C's own last-row output (the engine's routing ends every prompt in main).
        exact = long_ids[: 2 * chunks[0]]
        cases = [(pid, [int(t) for t in ids]) for pid, ids in prompts] + [("long", long_ids), ("exact-chunks", exact)]
        # Each size alone, then the whole ladder as the engine routes it (one walk for a single size).
        routes = [(c,) for c in chunks] + ([tuple(chunks)] if len(chunks) > 1 else [])
        for pid, ids in cases:
            capacity = len(ids) + 1
            plain = runner.prefill_snapshot(ids, capacity, chunked=False)
            for route in routes:
                last_in_main = pid != "exact-chunks"
                chunked = runner.prefill_snapshot(ids, capacity, chunked=True, sizes=route, last_in_main=last_in_main)
                if not last_in_main and chunked["calls"][-1] == 1:
                    raise HostRunError(f"{name}: the exact-chunks walk did not end in a chunk ({chunked['calls']})",
                                       hint="a gemmaios bug: report it")
                deltas = {key: float(np.max(np.abs(plain[key].astype(np.float32) - chunked[key].astype(np.float32))))
                          for key in ("logits", "keyCache", "valueCache")}
                same_bits = {key: bool(np.array_equal(plain[key].view(np.uint8), chunked[key].view(np.uint8)))
                             for key in ("logits", "keyCache", "valueCache")}
                calls = chunked["calls"]
                rows.append({"prompt": pid, "route": "+".join(f"prefill_{c}" for c in route), "tokens": len(ids),
                             "chunk_calls": [c for c in calls if c > 1], "main_calls": calls.count(1),
                             "max_abs_delta": deltas, "bit_identical": all(same_bits.values())})
                if not all(same_bits.values()):
                    worst = max(deltas, key=deltas.get)
                    raise PrefillGateFailed(
                        f"{name}: prompt {pid!r} ({len(ids)} tokens, calls {calls}): the chunked prefill's {worst} "
                        f"differs from the main-only walk by {deltas[worst]:.3g} under Core AI's runtime",
                        prompt=pid,
                        hint="the prefill_C graph does not compute what main does row by row; see "
                             "gemmaios.decode_model.DecoderLayer.forward_chunk")
            if progress:
                progress(1)
    chunked_tokens = sum(sum(r["chunk_calls"]) for r in rows)
    windowed = [r for r in rows if r["tokens"] > window and len(r["chunk_calls"]) >= 2]
    summary = (f"{len(cases)}/{len(cases)} prompts x {len(routes)} route(s) bit-identical (logits, keyCache, "
               f"valueCache: max |Δ| = 0.0), chunked prefill ({', '.join(r['route'] for r in rows[: len(routes)])}) "
               f"vs main only, under Core AI's runtime; "
               f"{chunked_tokens} tokens went through chunks; longest {max(r['tokens'] for r in rows)} tokens "
               f"(sliding window {window})")
    short = f"{len(cases)}/{len(cases)} prompts bit-identical to main under Core AI's runtime"
    return {"status": "passed", "summary": summary, "short": short, "chunks": chunks, "walks": rows, "prompt_count": len(cases),
            "long_prompts": len({r["prompt"] for r in windowed}), "seconds": round(time.perf_counter() - started, 2),
            "runtime": f"coreai-core {coreai_version()} ({platform.system()})"}


def build_prefill_check(
    oracle_path: Path | None,
    tables_dir: Path | None,
    *,
    prompts: Sequence[tuple[str, Sequence[int]]] | None = None,
    progress: Progress | None = None,
) -> Callable[[Path], dict]:
    """The convert step's chunked-prefill gate over the oracle's prompts (or `prompts`), see prefill_gate.

    Like the bundle-run gate, a bundle too large for a CPU runtime is recorded as skipped.
    """

    def check(staged: Path) -> dict:
        info = BundleInfo.load(staged)
        size = asset_weight_bytes(info)
        if size > hostfacts.LARGE_BUNDLE_BYTES:
            return {"status": "skipped", "summary": (
                f"skipped: a {size / 1e9:.1f} GB bundle takes ~{estimate_step_seconds(info) / 60:.0f} min per token on "
                "Core AI's CPU runtime; the chunked-prefill identity was proven on the tiny model")}
        cases = prompts
        if cases is None:
            from ..oracle.records import load_oracle

            oracle = load_oracle(oracle_path)
            cases = [(p.id, p.prompt_ids) for p in oracle.prompts]
        return prefill_gate(staged, cases, tables_dir, progress=progress)

    return check
