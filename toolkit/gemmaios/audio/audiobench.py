"""Audio prompts in the bench: the prompt-set entries and clip files the app reads, and their scoring.

The app step gives an audio-capable build one bench prompt per audio-oracle clip (`audio_prompts`):
its `audio` field names `clips/<name>.safetensors` (payload-relative; one tensor `samples`, float32
[N] mono at 16 kHz, the samples HF's feature extractor got in the oracle, contract
`BENCH_AUDIO_TENSOR`), and its `prompt_ids` are the oracle's expanded ids with
`boa + audio x n + eoa` folded back to the one audio placeholder (`vision.imagebench.fold_placeholder`
with the audio markers). The app (BenchImages.swift's BenchAudio) computes the log-mel features
(GemmaiosCore LogMel, HF's extractor), expands the placeholder with its own soft-token count,
rewrites the soft tokens to V + k, runs the audio asset and the decode, and records
`prefill_tokens` = the expanded length and `audio` = the file.

`score_audio_prompts` judges those transcript records against the audio oracle by prompt id with
the image prompts' rule (`vision.imagebench.score_spliced_prompts`): a different soft-token count is
a prompt mismatch, a flip is exact / near-tie / diverged by the oracle's margin.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .. import contract as c
from ..vision.imagebench import Markers, fold_placeholder, score_spliced_prompts
from ..vision.preprocess import VisionError
from .clipset import AudioError
from .oracle import AUDIO_ORACLE_DIR, AUDIO_ORACLE_FILE, load_audio_record


def audio_markers(facts: dict) -> Markers:
    """The audio marker ids (the audio oracle's `audio_spec`, metadata `gemmaios.audio`) in the
    placeholder folding's terms: the placeholder, its begin and end markers."""
    return Markers(int(facts["audio_token_id"]), int(facts["boa_token_id"]), int(facts["eoa_token_id"]))


def audio_oracle_path(oracle_dir: Path) -> Path:
    return Path(oracle_dir) / AUDIO_ORACLE_FILE


def audio_oracle_folders(oracle_path: Path | None, build_dir: Path | None, recorded: str | None = None) -> list[Path]:
    """Where a run's audio oracle may be, in order: `audio/` beside an oracle.json given by name,
    then the build's (`recorded`: the oracle step's `audio_oracle` detail, default oracle/audio)."""
    folders = [Path(oracle_path).parent / Path(AUDIO_ORACLE_DIR).name] if oracle_path else []
    if build_dir is not None:
        folders.append(Path(build_dir) / (recorded or AUDIO_ORACLE_DIR))
    return folders


def _oracle_data(oracle_dir: Path) -> dict:
    path = audio_oracle_path(oracle_dir)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise AudioError(f"the audio oracle {path} is missing",
                         hint="run the oracle step with --audio (`gemmaios build ... --audio`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise AudioError(f"the audio oracle {path} cannot be read: {exc}", hint="run the oracle step again") from exc


def _record_file(oracle_dir: Path, name: str) -> Path:
    path = Path(oracle_dir) / f"{name}.safetensors"
    if not path.is_file():
        raise AudioError(f"the audio oracle has no clip record {path.name} in {oracle_dir}",
                         hint="run the oracle step with --audio again")
    return path


def clip_file_rel(name: str) -> str:
    """The clip file of prompt `name`, relative to the payload folder (and to the prompt set's folder)."""
    return f"{c.PAYLOAD_CLIPS_DIR}/{name}.safetensors"


def audio_prompts(oracle_dir: Path) -> tuple[list[dict], dict[str, str]]:
    """The bench prompt-set entries for the audio oracle's prompts, and for each clip file
    (payload-relative) the oracle record (<name>.safetensors) it is written from."""
    data = _oracle_data(oracle_dir)
    markers = audio_markers(data["prompt_set"]["audio_spec"])
    prompts, sources = [], {}
    for p in data["prompts"]:
        rel = clip_file_rel(p["id"])
        try:
            folded = fold_placeholder(p["prompt_ids"], markers)
        except VisionError:
            raise AudioError(f"the audio oracle's prompt {p['id']!r} holds an audio token {markers.image} outside "
                             f"boa ({markers.boi}) ... eoa ({markers.eoi})",
                             hint="run the oracle step with --audio again (its prompt_ids are HF's expanded ids)") from None
        prompts.append({"id": str(p["id"]), "prompt_ids": folded, c.PROMPT_AUDIO_FIELD: rel})
        sources[rel] = str(_record_file(oracle_dir, p["id"]))
    return prompts, sources


def audio_prompts_sha256(oracle_dir: Path) -> str:
    """What identifies the audio prompts: each prompt's id, expanded ids and the clip's samples."""
    data = _oracle_data(oracle_dir)
    items = []
    for p in data["prompts"]:
        _record_file(oracle_dir, p["id"])
        samples = np.ascontiguousarray(load_audio_record(oracle_dir, p["id"]).samples, np.float32)
        items.append([p["id"], p["prompt_ids"], hashlib.sha256(samples.tobytes()).hexdigest()])
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def with_audio_prompt_set(name: str, sha256: str, oracle_dir: Path) -> tuple[str, str]:
    """Name and sha256 of a bench prompt set holding the prompts of (name, sha256) — the text
    oracle's, or the text and image oracles' — and then the audio oracle's."""
    data = _oracle_data(oracle_dir)
    out_name = f"{name}+{data['prompt_set'].get('name', 'clips')}"
    sha = hashlib.sha256(f"{sha256}+{audio_prompts_sha256(oracle_dir)}".encode()).hexdigest()
    return out_name, sha


def write_clip_file(record: Path, dest: Path) -> Path:
    """A bench clip file: the oracle record's samples (what HF's extractor got) as the one tensor
    `samples`, float32 [N] at the contract's sample rate."""
    from safetensors.numpy import save_file

    name = Path(record).name.removesuffix(".safetensors")
    samples = np.ascontiguousarray(load_audio_record(Path(record).parent, name).samples, np.float32)
    if samples.ndim != 1:
        raise AudioError(f"{record} holds samples of shape {list(samples.shape)}, not mono [N]",
                         hint="run the oracle step with --audio again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    save_file({c.BENCH_AUDIO_TENSOR: samples}, str(tmp))
    tmp.replace(dest)
    return dest


def read_clip_file(path: Path) -> np.ndarray:
    """A bench clip file's samples (float32 [N]), refused as the app refuses it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise AudioError(f"{path} is not a safetensors clip file: {exc}", hint="run `gemmaios app` again") from exc
    samples = tensors.get(c.BENCH_AUDIO_TENSOR)
    if samples is None or samples.dtype != np.float32 or samples.ndim != 1:
        got = "no such tensor" if samples is None else f"{samples.dtype} {list(samples.shape)}"
        raise AudioError(f"{path}: tensor {c.BENCH_AUDIO_TENSOR!r} expected F32 [N], got {got}",
                         hint="run `gemmaios app` again")
    return samples


# ---- scoring ------------------------------------------------------------------------------------

def score_audio_prompts(transcript, oracle_dir: Path, *, prompt_set_sha256: str | None = None,
                        near_tie_margin: float | None = None):
    """The transcript's audio prompt records (those with `audio`) against the audio oracle
    (gemmaios.oracle.OracleScore, the text scoring's verdicts); None when it has none.
    `prompt_set_sha256`: the sha256 of the prompts before the audio ones (the text oracle's, or
    the text and image oracles' mixed set); the run's recorded prompt set is checked against it
    plus the audio oracle's."""
    from ..oracle import load_oracle

    records = [r for r in transcript.prompts if r.audio]
    if not records:
        return None
    oracle = load_oracle(audio_oracle_path(oracle_dir))
    markers = audio_markers(oracle.prompt_set["audio_spec"])
    expected = None
    if prompt_set_sha256 is not None:
        _, expected = with_audio_prompt_set("", prompt_set_sha256, oracle_dir)
    return score_spliced_prompts(transcript, records, oracle, markers, noun="clip", oracle_name="audio oracle",
                                 expected_sha256=expected, near_tie_margin=near_tie_margin)
