"""The audio gate: an audio bundle's two assets under Core AI's runtime against the audio oracle.

Per oracle clip: the saved log-mel features go through the audio asset (its real rows compared
with HF's audio soft tokens), then the expanded prompt, spliced, through `main` with those rows,
greedy for the oracle's N tokens, scored with the oracle's rule (vision.gate.soft_token_gate).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..vision.gate import SoftTokenGateFailed, soft_token_gate
from .oracle import AUDIO_ORACLE_FILE, load_audio_record

# fp16 CPU runtime vs fp32 HF: measured 1.0e-3..2.4e-3 on features of magnitude ~0.33 (tests/test_audio.py).
FEATURE_ERROR_BOUND = 0.05


class AudioGateFailed(SoftTokenGateFailed):
    """The audio bundle's clip prompts diverge from the audio oracle under Core AI's runtime."""

    kind, asset, package = "audio", "audio", "gemmaios.audio"


def audio_gate(bundle_dir: Path, oracle_dir: Path, tables_dir: Path | None, *, near_tie_margin: float | None = None,
               feature_error_bound: float = FEATURE_ERROR_BOUND, progress: Callable | None = None) -> dict:
    oracle_dir = Path(oracle_dir)

    def encode(runner, prompt_id: str):
        record = load_audio_record(oracle_dir, prompt_id)
        return runner.encode_audio(record.prepared), record.audio_features

    return soft_token_gate(bundle_dir, oracle_dir / AUDIO_ORACLE_FILE, tables_dir, encode, error=AudioGateFailed,
                           near_tie_margin=near_tie_margin, feature_error_bound=feature_error_bound, progress=progress)


def build_audio_check(oracle_dir: Path, tables_dir: Path | None, progress: Callable | None = None):
    """The convert step's audio gate on the staged bundle (see audio_gate)."""

    def check(staged: Path) -> dict:
        return audio_gate(staged, oracle_dir, tables_dir, progress=progress)

    return check
