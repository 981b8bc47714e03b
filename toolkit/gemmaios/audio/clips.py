"""The project's own audio clips (issue 28): tones, a linear chirp, silence, seeded white noise and
speech synthesised by espeak-ng (a Debian package, scripts/system-deps.sh), so HF's feature
extractor, the audio oracle and the Swift log-mel front end meet the same material with nothing
downloaded. Everything is deterministic: numpy from fixed parameters and seeds, and espeak-ng
(same version, same text) writes the same samples.

Samples are float32 mono in [-1, 1]; WAV files are 16-bit PCM (`read_wav` also takes 8/24/32-bit
PCM and several channels, which it averages to mono).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import AUDIO_SAMPLE_RATE
from ..errors import GemmaiosError

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22_050  # espeak-ng's output rate (Hz)


class AudioClipError(GemmaiosError):
    """An audio clip cannot be made or read."""


@dataclass(frozen=True)
class Clip:
    name: str
    samples: np.ndarray  # float32 [N], mono, in [-1, 1]
    rate: int  # Hz

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def _times(seconds: float, rate: int) -> np.ndarray:
    return np.arange(round(seconds * rate), dtype=np.float64) / rate


def tone(freq: float, seconds: float, rate: int = AUDIO_SAMPLE_RATE, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * _times(seconds, rate))).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, rate: int = AUDIO_SAMPLE_RATE, amplitude: float = 0.5) -> np.ndarray:
    """A linear sweep from f0 to f1 Hz."""
    t = _times(seconds, rate)
    return (amplitude * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)))).astype(np.float32)


def silence(seconds: float, rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.float32)


def white_noise(seconds: float, seed: int, rate: int = AUDIO_SAMPLE_RATE, amplitude: float = 0.1) -> np.ndarray:
    """Gaussian noise of standard deviation `amplitude`, clipped to [-1, 1]."""
    noise = np.random.default_rng(seed).normal(0.0, amplitude, round(seconds * rate))
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


def speech(text: str, *, voice: str = "en", words_per_minute: int = 160) -> Clip:
    """`text` spoken by espeak-ng, at its own rate (ESPEAK_RATE); resample to 16 kHz before features."""
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise AudioClipError(f"{ESPEAK} is not installed, so no speech clip can be synthesised",
                             hint="install it: `apt-get install -y espeak-ng` (scripts/system-deps.sh does)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        result = subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text],
                                capture_output=True, text=True)
        if result.returncode != 0 or not path.is_file():
            raise AudioClipError(f"{ESPEAK} failed ({result.returncode}) on {text!r}: {result.stderr.strip()}",
                                 hint=f"check that `{ESPEAK} -v {voice} \"hello\"` works on this machine")
        clip = read_wav(path)
    return Clip(name=f"speech-{voice}", samples=clip.samples, rate=clip.rate)


def read_wav(path: Path) -> Clip:
    """A PCM WAV file as float32 mono (channels averaged; integers scaled by 1/2^(bits-1))."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except (wave.Error, EOFError, OSError, RuntimeError) as err:  # RuntimeError: the stdlib's on a short chunk
        raise AudioClipError(f"{path} is not a PCM WAV file this toolkit reads ({err})",
                             hint="convert it to 16-bit PCM WAV, e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`") from err
    if width not in (1, 2, 3, 4) or channels < 1:
        raise AudioClipError(f"{path} holds {8 * width}-bit samples in {channels} channel(s), which this toolkit "
                             "does not read", hint="convert it to 16-bit PCM WAV, e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`")
    if width == 1:
        values = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        values = np.where(ints >= 1 << 23, ints - (1 << 24), ints) / float(1 << 23)
    else:
        values = np.frombuffer(raw, {2: "<i2", 4: "<i4"}[width]).astype(np.float64) / float(1 << (8 * width - 1))
    mono = values.reshape(-1, channels).mean(axis=1)
    return Clip(name=path.stem, samples=mono.astype(np.float32), rate=rate)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """16-bit PCM mono (values clipped to [-1, 1], scaled by 32767 and rounded)."""
    ints = np.rint(np.clip(np.asarray(samples, np.float64), -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(ints.tobytes())
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
