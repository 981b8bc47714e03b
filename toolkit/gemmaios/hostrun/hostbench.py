"""Chat tokenization and the host bench (`gemmaios run --bench`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..buildlayout import BUILD_RUNS_DIR, TABLES_DIR
from .bundleinfo import BundleInfo, find_bundle
from .errors import HostRunError
from .hostfacts import HOST_PLATFORM
from .runner import BundleRunner
from .transcripts import host_device, run_id_now, transcript_records


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


