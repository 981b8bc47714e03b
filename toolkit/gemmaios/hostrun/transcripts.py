"""Transcript records of a host run, in the app's format (platform `host-runtime`)."""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from .. import __version__
from ..contract import PROMPT_KV_CAPACITY, PROMPT_WARNINGS
from .hostfacts import HOST_PLATFORM, Progress
from .runner import BundleRunner


def host_device() -> dict:
    """The transcript's `device` object for a host run (no phone: arch is unset)."""
    return {"product_type": platform.machine(), "name": socket.gethostname(), "os_version": platform.platform(),
            "arch": None, "udid": "", "runtime": "coreai-core " + coreai_version()}


def coreai_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("coreai-core")
    except metadata.PackageNotFoundError:
        return "unknown"


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def transcript_records(
    runner: BundleRunner,
    prompts: Sequence[tuple[str, list[int]]] | Sequence[tuple[int, str, list[int]]],
    *,
    prompt_set: dict,
    max_new_tokens: int,
    trials: int,
    run_id: str,
    progress: Progress | None = None,
) -> list[dict]:
    """Run every prompt `trials` times and return the transcript records (header … footer).

    `prompts`: (id, ids) pairs, indexed in order, or (index, id, ids) triples keeping the oracle's
    indexes when some of its prompts are left out (those past the bundle's context)."""
    indexed = indexed_prompts(prompts)
    t0 = time.perf_counter()
    records = header_records(runner, prompt_set=prompt_set, max_new_tokens=max_new_tokens, trials=trials,
                             run_id=run_id)
    for trial in range(trials):
        records += trial_records(runner, indexed, trial, max_new_tokens, t0, progress=progress)
    return [*records, footer_record()]


def indexed_prompts(prompts) -> list[tuple[int, str, list[int]]]:
    return [p if len(p) == 3 else (i, *p) for i, p in enumerate(prompts)]


def header_records(runner: BundleRunner, *, prompt_set: dict, max_new_tokens: int, trials: int, run_id: str,
                   ab: dict | None = None) -> list[dict]:
    """The header and the load record of a host run; `ab`: the A/B facts of a `--ab` run (which side, the
    other build, the order the sides took turns in)."""
    header = {
        "type": "header", "schema": _schema(), "run_id": run_id,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": host_device(), "bundle": runner.bundle.header(),
        "app": {"version": __version__, "toolkit_version": __version__},
        "prompt_set": prompt_set, "trials": trials, "max_new_tokens": max_new_tokens,
        "platform": HOST_PLATFORM, "decode": {"stop_at_eos": False},
    }
    if ab is not None:
        header["ab"] = ab
    return [header, {"type": "load", "seconds": round(runner.load_seconds, 4), "cold": True}]


def trial_records(runner: BundleRunner, indexed: Sequence[tuple[int, str, list[int]]], trial: int,
                  max_new_tokens: int, t0: float, *, memory: bool = True,
                  progress: Progress | None = None) -> list[dict]:
    """One trial over the prompts: a prompt record each (and a memory record before it, the process's
    resident size, unless `memory` is off: an A/B run holds both bundles in one process, so its size is
    neither bundle's footprint)."""
    records: list[dict] = []
    for index, prompt_id, ids in indexed:
        gen = runner.generate(ids, max_new_tokens)
        record = {
            "type": "prompt", "trial": trial, "index": index, "prompt_id": prompt_id,
            "prompt_ids": gen.prompt_ids, "generated_ids": gen.generated_ids,
            "prefill_tokens": len(gen.prompt_ids), "prefill_seconds": round(gen.prefill_seconds, 6),
            "ttft_seconds": round(gen.ttft_seconds, 6), "decode_tokens": gen.decode_tokens,
            "decode_seconds": round(gen.decode_seconds, 6),
            "decode_token_seconds": [round(s, 6) for s in gen.decode_token_seconds],
            "seconds_since_launch": round(time.perf_counter() - t0, 3),
            PROMPT_KV_CAPACITY: gen.kv_capacity, PROMPT_WARNINGS: [],  # the host binds what it needs
        }
        if memory:
            rss = _rss_bytes()
            records.append({"type": "memory", "t": round(time.perf_counter() - t0, 3), "phys_footprint_bytes": rss})
            record["peak_phys_footprint_bytes"] = rss
        records.append(record)
        if progress:
            progress(1)
    return records


def footer_record() -> dict:
    return {"type": "footer", "completed": True, "ended_at": datetime.now(UTC).isoformat(timespec="seconds")}


def _schema() -> str:
    from ..transcript import SCHEMA

    return SCHEMA


def run_id_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


