"""Audio → model inputs, as Hugging Face's Gemma 4 feature extractor and processor do it.

`prepare` runs transformers' own `Gemma4AudioFeatureExtractor` (128-bin log-mel at 16 kHz,
20 ms frames every 10 ms) padded to a static `max_samples` (the longest clip the audio asset
takes), with the frame mask; the soft-token count is the mask after the encoder's two
stride-2 subsampling convolutions (`Gemma4Processor.replace_audio_token`'s arithmetic).
`expand_prompt` puts `boa + audio x n + eoa` where the prompt says `<audio>`; `splice_ids`
rewrites the k-th audio soft token to id `V + k`, as images are (contract.AUDIO_EMBEDS_INPUT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import contract
from .clipset import MAX_SAMPLES, SAMPLE_RATE, AudioError

DEFAULT_MAX_SECONDS = 30.0  # HF's feature extractor truncates at 480 000 samples (750 soft tokens)
AUDIO_PLACEHOLDER = "<audio>"  # where a prompt text puts the clip (replaced by the expansion)


@dataclass(frozen=True)
class AudioSpec:
    """The facts audio preprocessing and the splice depend on (from the checkpoint's config)."""

    feature_size: int  # mel bins
    sampling_rate: int
    max_samples: int  # the longest clip: the static padding of the features
    audio_token_id: int
    boa_token_id: int
    eoa_token_id: int
    vocab_size: int
    pad_token_id: int

    @property
    def max_frames(self) -> int:
        return frames_for(self.max_samples)

    @property
    def max_soft_tokens(self) -> int:
        return soft_tokens_for_frames(self.max_frames)

    @property
    def max_seconds(self) -> float:
        return self.max_samples / self.sampling_rate

    @classmethod
    def from_config(cls, config: dict, processor: dict | None = None, max_samples: int = MAX_SAMPLES) -> AudioSpec:
        audio = config.get("audio_config")
        if not audio:
            raise AudioError("this checkpoint has no audio tower (config.json has no audio_config)",
                             hint="audio input needs a Gemma 4 E2B/E4B checkpoint with an audio encoder")
        processor = dict(processor or {})
        processor = processor.get("feature_extractor", processor)
        text = config["text_config"]
        return cls(
            feature_size=int(processor.get("feature_size") or 128),
            sampling_rate=int(processor.get("sampling_rate") or SAMPLE_RATE),
            max_samples=int(max_samples),
            audio_token_id=int(config["audio_token_id"]),
            boa_token_id=int(config["boa_token_id"]),
            eoa_token_id=int(config.get("eoa_token_id") or config["eoa_token_index"]),
            vocab_size=int(text["vocab_size"]),
            pad_token_id=int(text.get("pad_token_id") or 0),
        )

    @classmethod
    def from_checkpoint(cls, path) -> AudioSpec:
        """From config.json, the feature extractor's settings (preprocessor_config.json or the
        `feature_extractor` block of processor_config.json) and the longest clip: the tiny
        checkpoints' marker names it (`max_audio_seconds`), else HF's 30 s (750 soft tokens)."""
        import json
        from pathlib import Path

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        processor: dict = {}
        for name in ("preprocessor_config.json", "processor_config.json"):
            if (path / name).is_file():
                processor = json.loads((path / name).read_text())
                break
        seconds = DEFAULT_MAX_SECONDS
        marker = path / "gemmaios_tiny.json"
        if marker.is_file():
            seconds = float(json.loads(marker.read_text()).get("max_audio_seconds") or seconds)
        rate = int(processor.get("feature_extractor", processor).get("sampling_rate") or SAMPLE_RATE)
        return cls.from_config(config, processor, int(round(seconds * rate)))

    @classmethod
    def from_bundle(cls, facts: dict) -> AudioSpec:
        """From a bundle's metadata.json `gemmaios.audio` (what the app reads too)."""
        return cls(**{k: int(facts[k]) for k in cls.__dataclass_fields__})

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "max_frames": self.max_frames, "max_soft_tokens": self.max_soft_tokens}


def frames_for(num_samples: int, frame_length: int = 320, hop: int = 160) -> int:
    """Mel frames of `num_samples` samples (the extractor's semicausal framing)."""
    return max(0, (num_samples + frame_length // 2 - (frame_length + 1)) // hop + 1)


def soft_tokens_for_frames(frames: int) -> int:
    for _ in range(2):  # two stride-2 convolutions, kernel 3, padding 1
        frames = (frames + 2 - 3) // 2 + 1
    return frames


def subsample_mask(mask: np.ndarray) -> np.ndarray:
    """The frame mask after the encoder's two stride-2 convolutions (valid soft tokens)."""
    for _ in range(2):
        t_out = (len(mask) + 2 - 3) // 2 + 1
        mask = mask[::2][:t_out]
    return mask


@dataclass
class PreparedAudio:
    """One clip as the audio asset takes it: padded log-mel features and their frame mask."""

    input_features: np.ndarray  # float32 [max_frames, feature_size]; padding rows 0
    input_features_mask: np.ndarray  # bool [max_frames]
    num_soft_tokens: int  # encoder output rows that are real (the first ones)


def feature_extractor(spec: AudioSpec | None = None):
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor

    if spec is None:
        return Gemma4AudioFeatureExtractor()
    return Gemma4AudioFeatureExtractor(feature_size=spec.feature_size, sampling_rate=spec.sampling_rate)


def prepare(samples: np.ndarray, spec: AudioSpec, extractor=None) -> PreparedAudio:
    """float mono samples at the spec's rate → padded features, mask and soft-token count."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim != 1:
        raise AudioError(f"a clip must be mono samples [N], got shape {list(samples.shape)}",
                         hint="mix the channels down to one")
    if len(samples) > spec.max_samples:
        raise AudioError(f"the clip lasts {len(samples) / spec.sampling_rate:.2f} s; this model's audio asset takes "
                         f"at most {spec.max_seconds:g} s", hint="trim the clip")
    if len(samples) < 2 * 320:
        raise AudioError(f"the clip lasts {1000 * len(samples) / spec.sampling_rate:.0f} ms, too short to hear",
                         hint="give at least 40 ms of audio")
    out = (extractor or feature_extractor(spec))([samples], padding="max_length", max_length=spec.max_samples,
                                                 pad_to_multiple_of=None, return_tensors="np")
    features = np.asarray(out["input_features"][0], np.float32)
    mask = np.asarray(out["input_features_mask"][0], bool)
    return PreparedAudio(features, mask, int(subsample_mask(mask).sum()))


def expansion_text(spec: AudioSpec, tokenizer, num_soft_tokens: int) -> str:
    """`boa + audio x n + eoa` as transformers' Gemma4Processor.replace_audio_token writes it."""
    boa, audio, eoa = (tokenizer.convert_ids_to_tokens(i) for i in (spec.boa_token_id, spec.audio_token_id,
                                                                      spec.eoa_token_id))
    return f"{boa}{audio * num_soft_tokens}{eoa}"


def expand_prompt(text: str, spec: AudioSpec, tokenizer, num_soft_tokens: int) -> list[int]:
    """Token ids of a rendered prompt whose one `<audio>` becomes `boa + audio x n + eoa` (HF ids)."""
    if text.count(AUDIO_PLACEHOLDER) != 1:
        raise AudioError(f"an audio prompt must contain {AUDIO_PLACEHOLDER!r} exactly once",
                         hint=f"put {AUDIO_PLACEHOLDER} where the clip goes")
    text = text.replace(AUDIO_PLACEHOLDER, expansion_text(spec, tokenizer, num_soft_tokens))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def splice_ids(ids: Sequence[int], spec: AudioSpec) -> list[int]:
    """HF ids → graph ids: the k-th audio soft token becomes V + k (k < the asset's rows).

    The same id space and the same static rows of `main` as images (contract.AUDIO_EMBEDS_INPUT):
    a prompt holds one clip or one picture, and the rows are bound with that encoder's output."""
    out, count = contract.splice_soft_tokens(ids, spec.audio_token_id, spec.vocab_size)
    if count > spec.max_soft_tokens:
        raise AudioError(f"the prompt has more than {spec.max_soft_tokens} audio soft tokens",
                         hint="one clip per prompt, expanded with its own num_soft_tokens")
    return out
