"""The Swift front end's test clips (issue 28): tones, a linear chirp, silence, seeded white noise
and speech synthesised by espeak-ng, drawn by `audio.clipset` (the one source of the project's
clip synthesis and 16-bit WAV reading and writing), so HF's feature extractor, the audio oracle
and the Swift log-mel front end meet the same material with nothing downloaded. Everything is
deterministic: numpy from fixed parameters and seeds, and espeak-ng (same version, same text)
writes the same samples.

Here a clip keeps its own rate (`Clip`): samples are float32 mono in [-1, 1]; WAV files are
16-bit PCM (`read_wav` also takes 8/24/32-bit PCM and several channels, which it averages to
mono), and `resample` is the app's resampler's design (scipy's `resample_poly`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import AUDIO_SAMPLE_RATE
from . import clipset
from .clipset import ESPEAK_RATE, AudioClipError, chirp, silence, white_noise

__all__ = ["ESPEAK_RATE", "SPEECH_TEXT", "AudioClipError", "Clip", "builtin_clips", "chirp", "read_wav", "resample",
           "silence", "speech", "tone", "white_noise", "write_wav"]


@dataclass(frozen=True)
class Clip:
    name: str
    samples: np.ndarray  # float32 [N], mono, in [-1, 1]
    rate: int  # Hz

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def tone(freq: float, seconds: float, rate: int = AUDIO_SAMPLE_RATE, amplitude: float = 0.5) -> np.ndarray:
    """A plain sine (no fade), float32."""
    return clipset.tone(freq, seconds, amplitude, fade=0.0, rate=rate).astype(np.float32)


def speech(text: str, *, voice: str = "en", words_per_minute: int = 160) -> Clip:
    """`text` spoken by espeak-ng, at its own rate (ESPEAK_RATE); resample to 16 kHz before features."""
    rate, samples = clipset.espeak(text, voice=voice, speed=words_per_minute)
    return Clip(name=f"speech-{voice}", samples=samples.astype(np.float32), rate=rate)


def read_wav(path: Path) -> Clip:
    """A PCM WAV file as float32 mono at its own rate (channels averaged; integers scaled by 1/2^(bits-1))."""
    rate, samples = clipset.read_wav_file(path)
    return Clip(name=Path(path).stem, samples=samples.astype(np.float32), rate=rate)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM mono (clipset.to_pcm16: round(x * 32768), clipped to the int16 range)."""
    Path(path).write_bytes(clipset.wav_bytes(samples, rate))
    return Path(path)


def resample(clip: Clip, rate: int = AUDIO_SAMPLE_RATE) -> Clip:
    """`clip` at `rate` by scipy's `resample_poly` with its defaults (Kaiser beta 5 windowed sinc, 10
    zero crossings), in float64: the design GemmaiosCore's AudioResampler.swift follows (they agree
    to ~1e-17 on the test clips), so Python's 16 kHz samples are the app's."""
    if clip.rate == rate:
        return clip
    if clip.rate <= 0 or rate <= 0:
        raise AudioClipError(f"cannot resample {clip.name!r} from {clip.rate} Hz to {rate} Hz",
                             hint="sample rates must be positive integers (Hz)")
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(clip.rate, rate)
    out = resample_poly(np.asarray(clip.samples, np.float64), rate // g, clip.rate // g)
    return Clip(name=clip.name, samples=out.astype(np.float32), rate=rate)


SPEECH_TEXT = "The quick brown fox jumps over the lazy dog."


def builtin_clips(*, with_speech: bool = True) -> list[Clip]:
    """The built-in set at 16 kHz (speech stays at espeak-ng's rate: `resample` brings it to 16 kHz).
    Lengths are chosen off the 128-sample padding grid and the hop so padding and masks matter."""
    r = AUDIO_SAMPLE_RATE
    clips = [
        Clip("tone-440", tone(440.0, 0.5), r),
        Clip("tone-3k-quiet", tone(3000.0, 0.37, amplitude=0.01), r),
        Clip("chirp", chirp(50.0, 7950.0, 1.2, amplitude=0.8), r),
        Clip("silence", silence(0.3), r),
        Clip("noise", white_noise(0.71, seed=0), r),
        Clip("short", tone(1000.0, 150 / r), r),  # 150 samples: one frame, not a real one (it needs 161)
    ]
    if with_speech:
        clips.append(speech(SPEECH_TEXT))
    return clips
