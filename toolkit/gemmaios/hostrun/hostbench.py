"""Chat tokenization and the host bench (`gemmaios run --bench`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..buildlayout import BUILD_RUNS_DIR, TABLES_DIR
from .bundleinfo import BundleInfo, find_bundle
from .errors import HostRunError
from .hostfacts import HOST_PLATFORM
from .runner import BundleRunner
from .transcripts import (
    footer_record,
    header_records,
    host_device,
    run_id_now,
    transcript_records,
    trial_records,
)


class BundleTokenizer:
    """The bundle's own tokenizer/ folder, encoding prompts the way the oracle and the app do."""

    def __init__(self, bundle: BundleInfo) -> None:
        from transformers import AutoTokenizer

        folder = bundle.dir / "tokenizer"
        if not (folder / "tokenizer.json").is_file():
            raise HostRunError(f"{bundle.dir} has no tokenizer/tokenizer.json", hint="convert the bundle again")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        eos: set[int] = set()
        gen = folder / "generation_config.json"
        if gen.is_file():
            value = json.loads(gen.read_text()).get("eos_token_id")
            eos |= {value} if isinstance(value, int) else set(value or [])
        if self.tokenizer.eos_token_id is not None:
            eos.add(int(self.tokenizer.eos_token_id))
        for special in ("<end_of_turn>", "<turn|>"):
            tid = self.tokenizer.convert_tokens_to_ids(special)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                eos.add(tid)
        self.eos_ids = sorted(eos)

    def encode(self, text: str, chat: bool = True) -> list[int]:
        from ..oracle.prompts import Prompt
        from ..oracle.reference import encode_prompt

        return encode_prompt(self.tokenizer, Prompt("prompt", text), chat, where=self.tokenizer.name_or_path)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


@dataclass
class HostBenchResult:
    run_dir: Path
    transcript: Path
    score: str | None
    passed: bool | None
    skipped: list[str] = field(default_factory=list)  # oracle prompts past the bundle's context (not run)


def host_bench(
    build_dir: Path,
    bundle_dir: Path | None = None,
    *,
    trials: int = 1,
    max_new_tokens: int | None = None,
    progress_factory: Callable[[int], Any] | None = None,
) -> HostBenchResult:
    """Run the oracle's prompt set through the bundle on this machine; write `<build>/runs/<id>-host/`.

    The transcript has the app's format (platform `host-runtime`), so `gemmaios score` and
    `gemmaios report` read it unchanged; it is scored against the oracle here too.
    """
    from ..files import write_json_atomic
    from ..oracle.records import ORACLE_FILE, load_oracle
    from ..oracle.scoring import score_against_oracle
    from ..transcript import read_transcript, write_transcript

    build_dir = Path(build_dir)
    bundle_dir = Path(bundle_dir) if bundle_dir else find_bundle(build_dir)
    if trials < 1:
        raise HostRunError(f"--trials must be at least 1, got {trials}", hint="pass --trials 1 or more")
    oracle = load_oracle(build_dir / ORACLE_FILE)
    tokens = max_new_tokens or oracle.max_new_tokens
    run_id = run_id_now()
    run_dir = build_dir / BUILD_RUNS_DIR / f"{run_id}-host"
    tables = build_dir / TABLES_DIR
    with BundleRunner(bundle_dir, tables if tables.is_dir() else None) as runner:
        # A prompt whose context (prompt + new tokens) passes the bundle's cannot run: it is left out
        # and named (the long-context probe on a short-context build), the others keep their indexes.
        fits = [(i, p.id, p.prompt_ids) for i, p in enumerate(oracle.prompts)
                if len(p.prompt_ids) + tokens <= runner.bundle.max_context]
        skipped = [f"{p.id} ({len(p.prompt_ids)} + {tokens} tokens)" for p in oracle.prompts
                   if len(p.prompt_ids) + tokens > runner.bundle.max_context]
        if not fits:
            raise HostRunError(f"no oracle prompt fits {runner.bundle.name}'s context of {runner.bundle.max_context} "
                               f"tokens with {tokens} new ones", hint="convert with a larger --max-context, or re-run "
                               "`gemmaios oracle` with shorter prompts or fewer --tokens")
        prompts = fits
        advance = progress_factory(trials * len(prompts)) if progress_factory else None
        records = transcript_records(runner, prompts, prompt_set=oracle.prompt_set, max_new_tokens=tokens,
                                     trials=trials, run_id=run_id, progress=advance)
    # Written complete in a staging name and renamed: an interrupted bench leaves no half log.
    staging = write_transcript(run_dir / f".{run_id}.jsonl.partial", records)
    transcript = run_dir / f"{run_id}.jsonl"
    os.replace(staging, transcript)
    score = score_against_oracle(read_transcript(transcript, require_complete=True), oracle)
    write_json_atomic(run_dir / "run.json", {"status": "completed", "run_id": run_id, "platform": HOST_PLATFORM,
                                             "bundle": str(bundle_dir), "trials": trials, "transcript": transcript.name,
                                             "oracle": score.summary, "device": host_device(),
                                             "skipped_prompts": skipped})
    return HostBenchResult(run_dir, transcript, score.summary, score.passed, skipped)




# ---- `--ab`: two bundles of one model, taking turns (issue 31) ----------------------------------------------

AB_SIDES = ("a", "b")


def ab_order(rounds: int) -> list[tuple[int, str]]:
    """The turns of an A/B run: (round, side) with A first in even rounds and B first in odd ones (ABBA...),
    so neither side always runs first, or after the other has warmed the machine."""
    return [(r, side) for r in range(rounds) for side in (AB_SIDES if r % 2 == 0 else AB_SIDES[::-1])]


@dataclass
class HostAbResult:
    run_id: str
    transcripts: dict[str, Path]  # side → its transcript, in its own build's runs/<id>-host-ab/
    order: list[tuple[int, str]]
    skipped: list[str]
    forced: dict[str, dict | None]  # side → teacher-forced {kl_mean, kl_max, top1, tokens} vs fp32 (None: not run)
    forced_ab: dict | None  # KL(A || B) and top-1 A = B, teacher-forced along the oracle's tokens
    note: str = ""  # why a figure is absent


def host_ab_bench(
    sides: dict[str, tuple[Path, Path]],
    oracle_path: Path,
    *,
    trials: int,
    reference: Callable[[list[int], list[int]], Any] | None = None,
    reference_note: str = "",
    progress_factory: Callable[[int], Any] | None = None,
) -> HostAbResult:
    """Both sides' bundles (`sides`: "a"/"b" → (build folder, bundle folder)) loaded once, then the oracle's
    prompts (`oracle_path`, the same set and decoding for both) run trial by trial in `ab_order`: A B, B A, ...
    Each side's transcript goes to `<its build>/runs/<run id>-host-ab/`, with no memory records (one process
    holds both bundles: its size is neither's footprint).

    Agreement, teacher-forced along the oracle's tokens: each side against `reference` (the fp32 model's
    logits; None: not computed, `reference_note` says why) as mean KL and top-1 agreement, and A against B."""
    from ..files import write_json_atomic
    from ..oracle.records import load_oracle
    from ..recipe import kl_top1
    from ..transcript import write_transcript

    if trials < 2:
        raise HostRunError(f"--ab takes turns trial by trial (A then B, then B then A), and {trials} trial would "
                           "always run A first", hint="pass --trials 2 or more (an even number balances the order)")
    oracle = load_oracle(oracle_path)
    tokens = oracle.max_new_tokens
    run_id = run_id_now()
    order = ab_order(trials)
    runners: dict[str, BundleRunner] = {}
    with ExitStack() as stack:
        for side, (build, bundle) in sides.items():
            tables = Path(build) / TABLES_DIR
            runners[side] = stack.enter_context(BundleRunner(bundle, tables if tables.is_dir() else None))
        context = min(r.bundle.max_context for r in runners.values())
        fits = [(i, p.id, p.prompt_ids) for i, p in enumerate(oracle.prompts)
                if len(p.prompt_ids) + tokens <= context]
        skipped = [f"{p.id} ({len(p.prompt_ids)} + {tokens} tokens)" for p in oracle.prompts
                   if len(p.prompt_ids) + tokens > context]
        if not fits:
            raise HostRunError(f"no oracle prompt fits both bundles' context ({context} tokens) with {tokens} new ones",
                               hint="convert with a larger --max-context, or re-run `gemmaios oracle` with shorter "
                                    "prompts or fewer --tokens")
        forced_prompts = [oracle.prompts[i] for i, _, _ in fits]
        advance = progress_factory(len(order) * len(fits) + len(sides) * len(forced_prompts)) if progress_factory else None
        t0 = time.perf_counter()
        records = {side: header_records(runners[side], prompt_set=oracle.prompt_set, max_new_tokens=tokens,
                                        trials=trials, run_id=run_id,
                                        ab={"side": side, "order": [f"{s}{r}" for r, s in order],
                                            "other": str(sides[AB_SIDES[1 - AB_SIDES.index(side)]][0])})
                   for side in sides}
        for trial, side in order:
            records[side] += trial_records(runners[side], fits, trial, tokens, t0, memory=False, progress=advance)
        logits = {side: [] for side in sides}
        for side in sides:
            for p in forced_prompts:
                logits[side].append(runners[side].forced(p.prompt_ids, p.generated_ids))
                if advance:
                    advance(1)
    import numpy as np

    forced: dict[str, dict | None] = dict.fromkeys(sides)
    if reference is not None:
        refs = np.concatenate([reference(p.prompt_ids, p.generated_ids) for p in forced_prompts])
        forced = {side: kl_top1(refs, np.concatenate(logits[side])) for side in sides}
    forced_ab = kl_top1(np.concatenate(logits["a"]), np.concatenate(logits["b"]))
    transcripts = {}
    for side, (build, bundle) in sides.items():
        run_dir = Path(build) / BUILD_RUNS_DIR / f"{run_id}-host-ab"
        staging = write_transcript(run_dir / f".{run_id}.jsonl.partial", [*records[side], footer_record()])
        transcripts[side] = run_dir / f"{run_id}.jsonl"
        os.replace(staging, transcripts[side])
        write_json_atomic(run_dir / "run.json", {"status": "completed", "run_id": run_id, "platform": HOST_PLATFORM,
                                                 "bundle": str(bundle), "trials": trials,
                                                 "transcript": transcripts[side].name, "device": host_device(),
                                                 "oracle_file": str(oracle_path), "skipped_prompts": skipped,
                                                 "ab": records[side][0]["ab"]})
    return HostAbResult(run_id, transcripts, order, skipped, forced, forced_ab,
                        note="" if reference is not None else reference_note)
