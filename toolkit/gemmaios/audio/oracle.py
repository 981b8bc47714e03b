"""The audio oracle: HF's feature extractor and Gemma4ForConditionalGeneration in fp32 on the built-in clips.

Written to a folder (`oracle/audio/` in a build):

  oracle.json             schema gemmaios.oracle/1; one prompt per clip, prompt_ids = the expanded
                          prompt as HF tokenizes it (audio_token_id x num_soft_tokens)
  <name>.wav              the clip (16-bit PCM, 16 kHz; audio.clipset makes it)
  <name>.safetensors      what HF's feature extractor made of it, for the Swift log-mel test and the
                          runtime gate:
                            samples              float32 [N]            the clip as the extractor got it
                            input_features       float32 [max_frames, 128]  (padding rows 0)
                            input_features_mask  int32   [max_frames]   1 for a real frame
                            input_ids            int32   [T]  expanded prompt, HF ids
                            spliced_input_ids    int32   [T]  the same with audio soft token k -> V + k
                            num_soft_tokens      int32   [1]
                            audio_features       float32 [num_soft_tokens, hidden]  HF's audio soft tokens
                          metadata: wav (the clip's file name), prompt
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..buildlayout import AUDIO_ORACLE_DIR  # noqa: F401  (re-exported)
from .clipset import BUILTIN_CLIPS, AudioError, ClipCase, from_pcm16, to_pcm16, wav_bytes
from .preprocess import AudioSpec, PreparedAudio, expand_prompt, feature_extractor, prepare, splice_ids

AUDIO_ORACLE_FILE = "oracle.json"
QUESTION = "What do you hear?\n<audio>"  # as the tiny model is trained (audio.tinymodel.QUESTION)


@dataclass
class AudioRecord:
    """One oracle clip's saved tensors."""

    name: str
    samples: np.ndarray
    prepared: PreparedAudio
    input_ids: list[int]
    spliced_input_ids: list[int]
    audio_features: np.ndarray


def run_audio_oracle(checkpoint_dir: Path, out_dir: Path, cases: tuple[ClipCase, ...] = BUILTIN_CLIPS,
                     max_new_tokens: int = 32, top_k: int = 5, question: str = QUESTION,
                     speech: dict | None = None, progress=None):
    """Greedy fp32 generations for each clip (written to `out_dir`); returns the Oracle.

    `speech`: name -> samples of the spoken clips (default: the tiny model's recorded ones when the
    package ships them, else espeak-ng speaks them)."""
    import torch

    from ..oracle.encoders import EncoderReference, single_thread
    from .encoder import hf_audio_features
    from .tinymodel import builtin_speech

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = EncoderReference(checkpoint_dir)
    spec = AudioSpec.from_checkpoint(checkpoint_dir)
    extractor = feature_extractor(spec)
    speech = builtin_speech() if speech is None else speech
    records = []
    with single_thread():
        for case in cases:
            samples = case.samples(speech)
            wav = out_dir / f"{case.name}.wav"
            wav.write_bytes(wav_bytes(samples))
            samples = from_pcm16(to_pcm16(samples))  # as the .wav holds it
            prepared = prepare(samples, spec, extractor)
            text = ref.chat_text(question)
            ids = expand_prompt(text, spec, ref.tokenizer, prepared.num_soft_tokens)
            soft = hf_audio_features(ref.model, prepared.input_features, prepared.input_features_mask).numpy()
            generated, steps = ref.greedy({"input_ids": torch.tensor([ids]),
                                           "input_features": torch.from_numpy(prepared.input_features)[None],
                                           "input_features_mask": torch.from_numpy(prepared.input_features_mask)[None]},
                                          max_new_tokens, top_k)
            records.append(ref.record(
                out_dir / f"{case.name}.safetensors", case.name, text, ids, splice_ids(ids, spec),
                prepared.num_soft_tokens, generated, steps,
                {"samples": samples, "input_features": prepared.input_features.astype(np.float32),
                 "input_features_mask": prepared.input_features_mask.astype(np.int32),
                 "audio_features": soft.astype(np.float32)}, {"wav": wav.name}))
            if progress:
                progress(1)
    oracle = ref.oracle(records, {"name": "builtin-clips", "clips": [c.name for c in cases], "audio_spec": spec.as_dict()},
                        max_new_tokens, top_k)
    oracle.save(out_dir / AUDIO_ORACLE_FILE)
    return oracle


def load_audio_record(oracle_dir: Path, name: str) -> AudioRecord:
    from safetensors.numpy import load_file

    path = Path(oracle_dir) / f"{name}.safetensors"
    if not path.is_file():
        raise AudioError(f"the audio oracle has no {path.name} in {oracle_dir}",
                         hint="run the audio oracle again (gemmaios.audio.oracle.run_audio_oracle)")
    t = load_file(str(path))
    prepared = PreparedAudio(t["input_features"], t["input_features_mask"].astype(bool), int(t["num_soft_tokens"][0]))
    return AudioRecord(name, t["samples"], prepared, t["input_ids"].tolist(), t["spliced_input_ids"].tolist(),
                       t["audio_features"])


def audio_oracle_summary(oracle_dir: Path) -> dict:
    data = json.loads((Path(oracle_dir) / AUDIO_ORACLE_FILE).read_text())
    return {"prompts": len(data["prompts"]), "clips": data["prompt_set"]["clips"]}
