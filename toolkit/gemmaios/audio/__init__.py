"""Audio input for Gemma 4 E2B/E4B: the project's clips, HF's log-mel features, the tiny model that hears.

Modules: `clipset` (the one source of the project's clips: spoken words via espeak-ng, tones,
chirps, silence, noise; 16-bit WAV read/write as int / 32768; the model's clips at 16 kHz and clip
banks for machines without espeak-ng), `clips` (the Swift front end's test clips, drawn by clipset,
and the app's resampling), `preprocess` (transformers' Gemma 4 feature extractor padded to a static maximum clip
length, the frame mask, the soft-token count and the `boa + audio x n + eoa` expansion),
`tinymodel` (the tiny E-series model with an audio tower, its training script and shipped record).
The log-mel front end's facts are in `gemmaios.contract` (AUDIO_*); the app's copy of HF's feature
extractor is GemmaiosCore's LogMel.swift, checked against HF by tests/test_swift_audio.py.
"""

from .clipset import BUILTIN_CLIPS, AudioError, ClipCase, EspeakMissing
from .preprocess import AUDIO_PLACEHOLDER, AudioSpec, PreparedAudio, expand_prompt, prepare

__all__ = ["AUDIO_PLACEHOLDER", "BUILTIN_CLIPS", "AudioError", "AudioSpec", "ClipCase", "EspeakMissing",
           "PreparedAudio", "expand_prompt", "prepare"]
