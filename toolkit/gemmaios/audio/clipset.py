"""The project's own audio clips, one source of clip synthesis: spoken words (espeak-ng), tones,
chirps, silence and noise; 16-bit PCM WAV read/write; clip banks.

Tones, silence and noise are drawn with numpy from fixed parameters and integer seeds, so the same
source always yields the same samples. Spoken words come from espeak-ng (`apt-get install -y
espeak-ng`, scripts/system-deps.sh); the model's clips are resampled from its 22 050 Hz to 16 kHz
in the frequency domain (numpy only). The tiny model that hears (`audio.tinymodel`) is trained to
say what a clip holds, and the audio oracle runs the built-in set (`BUILTIN_CLIPS`). espeak-ng's
voices change between releases, so the built-in spoken clips' samples are recorded once
(`data/tiny-audio/clips.npz`) and read back from there; training clips for machines without
espeak-ng are written by `python -m gemmaios.audio.clipset --out clips.npz` and passed to the
trainer with `--clips`. The Swift front end's test clips (`audio.clips`) are drawn by the same
functions.

16-bit PCM is read as int / 32768, as HF (soundfile), libsndfile and AVAudioFile read it, and
written as round(x * 32768) clipped to the int16 range, so a clip on the 16-bit grid goes through a
WAV file or a clip bank unchanged.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import AUDIO_SAMPLE_RATE
from ..errors import GemmaiosError

SAMPLE_RATE = AUDIO_SAMPLE_RATE  # 16 kHz
ESPEAK = "espeak-ng"
ESPEAK_RATE = 22_050  # espeak-ng's output rate (Hz)
PCM16_SCALE = 32768.0  # 16-bit PCM <-> float: int / 32768, as HF / soundfile / AVAudioFile read it
MAX_SECONDS = 2.0  # the longest clip the tiny model hears (its audio asset's static frame count)
MAX_SAMPLES = int(SAMPLE_RATE * MAX_SECONDS)

WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
TONES = {"low": (180.0, 420.0), "high": (1400.0, 3200.0)}  # Hz ranges trained; the built-ins sit inside
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-scotland")
KINDS = ("word", "tone", "silence", "noise")
WAV_HINT = "convert it to 16-bit PCM WAV, e.g. `ffmpeg -i IN -ac 1 -ar 16000 -c:a pcm_s16le OUT.wav`"


class AudioError(GemmaiosError):
    """An audio clip, audio prompt or audio bundle cannot be used."""


class AudioClipError(AudioError):
    """An audio clip cannot be made or read."""


class EspeakMissing(AudioClipError):
    """espeak-ng, which speaks the project's word clips, is not installed."""


@dataclass(frozen=True)
class ClipCase:
    """One clip: what it holds (`kind`, and the word or tone pitch in `value`) and how it is
    drawn (`variant` 0 is the plain built-in rendering; others are jittered from that seed)."""

    name: str
    kind: str
    value: str = ""
    variant: int = 0

    def answer(self) -> str:
        if self.kind == "word":
            return f"{self.value.capitalize()}. The clip is the spoken word {self.value}."
        if self.kind == "tone":
            return f"{self.value.capitalize()} tone. The clip is a {self.value} beep."
        if self.kind == "silence":
            return "Silence. The clip is quiet."
        if self.kind == "noise":
            return "Noise. The clip is a hiss."
        raise AudioError(f"unknown clip kind {self.kind!r}", hint=f"known: {', '.join(KINDS)}")

    def samples(self, speech: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """float32 mono samples at 16 kHz, at most MAX_SAMPLES; word clips come from `speech`
        (name -> samples, e.g. a clip bank) when it has this clip, else from espeak-ng."""
        if speech is not None and self.name in speech:
            return np.asarray(speech[self.name], np.float32)
        return render(self)


def render(case: ClipCase) -> np.ndarray:
    rng = np.random.default_rng(case.variant)
    jitter = case.variant != 0
    if case.kind == "word":
        voice = VOICES[int(rng.integers(len(VOICES)))] if jitter else "en-us"
        speed = int(rng.integers(130, 201)) if jitter else 160
        pitch = int(rng.integers(25, 76)) if jitter else 50
        x = speak(case.value, voice=voice, speed=speed, pitch=pitch)
        peak = float(np.max(np.abs(x))) or 1.0
        x = x / peak * (float(rng.uniform(0.3, 0.9)) if jitter else 0.7)
    elif case.kind == "tone":
        lo, hi = TONES[case.value]
        freq = float(rng.uniform(lo, hi)) if jitter else {"low": 300.0, "high": 2000.0}[case.value]
        seconds = float(rng.uniform(0.5, 1.2)) if jitter else 0.8
        x = tone(freq, seconds, float(rng.uniform(0.2, 0.8)) if jitter else 0.5)
    elif case.kind == "silence":
        seconds = float(rng.uniform(0.5, 1.2)) if jitter else 0.8
        level = float(rng.uniform(0.0, 0.002)) if jitter else 0.0
        x = level * rng.standard_normal(int(seconds * SAMPLE_RATE))
    elif case.kind == "noise":
        seconds = float(rng.uniform(0.5, 1.2)) if jitter else 0.8
        x = float(rng.uniform(0.1, 0.4) if jitter else 0.25) * rng.standard_normal(int(seconds * SAMPLE_RATE))
    else:
        raise AudioError(f"unknown clip kind {case.kind!r}", hint=f"known: {', '.join(KINDS)}")
    if jitter:  # a little lead-in silence and room noise
        lead = np.zeros(int(rng.uniform(0.0, 0.15) * SAMPLE_RATE))
        x = np.concatenate([lead, x])
        x = x + float(rng.uniform(0.0, 0.003)) * rng.standard_normal(len(x))
    return np.clip(x[:MAX_SAMPLES], -1.0, 1.0).astype(np.float32)


def tone(freq: float, seconds: float, amplitude: float = 0.5, fade: float = 0.01, *,
         rate: int = SAMPLE_RATE) -> np.ndarray:
    """A sine at `freq` Hz (float64), with `fade`-second linear ramps at both ends (none at 0)."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / fade) if fade > 0 else np.ones(n)
    return amplitude * ramp * np.sin(2 * np.pi * freq * t)


def chirp(f0: float, f1: float, seconds: float, rate: int = SAMPLE_RATE, amplitude: float = 0.5) -> np.ndarray:
    """A linear sweep from f0 to f1 Hz (float32)."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    return (amplitude * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)))).astype(np.float32)


def silence(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.float32)


def white_noise(seconds: float, seed: int, rate: int = SAMPLE_RATE, amplitude: float = 0.1) -> np.ndarray:
    """Gaussian noise of standard deviation `amplitude`, clipped to [-1, 1] (float32)."""
    noise = np.random.default_rng(seed).normal(0.0, amplitude, round(seconds * rate))
    return np.clip(noise, -1.0, 1.0).astype(np.float32)


def espeak_path() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise EspeakMissing(f"{ESPEAK} is not installed: the spoken-word clips cannot be synthesised",
                            hint="install it (`apt-get install -y espeak-ng`, scripts/system-deps.sh), or pass a clip "
                                 "bank written where it is (`python -m gemmaios.audio.clipset --out clips.npz`)")
    return path


def espeak(text: str, *, voice: str = "en-us", speed: int = 160, pitch: int | None = None) -> tuple[int, np.ndarray]:
    """espeak-ng's rendering of `text` as it writes it: (its rate, ESPEAK_RATE; float64 mono samples)."""
    cmd = [espeak_path(), "-v", voice, "-s", str(speed), *(["-p", str(pitch)] if pitch is not None else []), "--stdout"]
    done = subprocess.run([*cmd, text], capture_output=True, check=False)
    if done.returncode != 0 or not done.stdout:
        raise AudioClipError(f"{ESPEAK} failed on {text!r} ({done.stderr.decode(errors='replace').strip()})",
                             hint=f"run `{' '.join(cmd)} {text!r} > /dev/null` to see why")
    return read_wav_bytes(done.stdout)


def speak(text: str, *, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """espeak-ng's rendering of `text`, float64 at 16 kHz, leading/trailing silence trimmed."""
    rate, x = espeak(text, voice=voice, speed=speed, pitch=pitch)
    x = resample(x, rate, SAMPLE_RATE)
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling in the frequency domain (numpy's real FFT)."""
    if rate == target:
        return np.asarray(x, np.float64)
    n = len(x)
    m = int(round(n * target / rate))
    spec = np.fft.rfft(np.asarray(x, np.float64))
    keep = min(len(spec), m // 2 + 1)
    out = np.zeros(m // 2 + 1, complex)
    out[:keep] = spec[:keep]
    return np.fft.irfft(out, n=m) * (m / n)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float samples → int16 (round(x * 32768), clipped to the int16 range)."""
    return np.clip(np.rint(np.asarray(samples, np.float64) * PCM16_SCALE), -32768, 32767).astype("<i2")


def from_pcm16(ints: np.ndarray) -> np.ndarray:
    """int16 → float32 samples (int / 32768)."""
    return (np.asarray(ints, np.float64) / PCM16_SCALE).astype(np.float32)


def read_wav_bytes(data: bytes, where: str = "the WAV") -> tuple[int, np.ndarray]:
    """(sample rate, float64 mono samples in [-1, 1]) of a PCM WAV (8/16/24/32-bit, channels averaged;
    integers scaled by 1/2^(bits-1), 8-bit by (v - 128) / 128).

    espeak-ng writes its stream with unknown lengths in the header (0x7fffffff), so the samples
    are read to the end of the bytes rather than trusting the header's count."""
    with wave.open(io.BytesIO(data), "rb") as fh:
        channels, width, rate = fh.getnchannels(), fh.getsampwidth(), fh.getframerate()
        raw = fh.readframes(fh.getnframes())
    if width not in (1, 2, 3, 4) or channels < 1:
        raise AudioClipError(f"{where} holds {8 * width}-bit samples in {channels} channel(s), which this toolkit "
                             "does not read", hint=WAV_HINT)
    raw = raw[: len(raw) // (width * channels) * (width * channels)]  # a stream cut mid-frame
    if width == 1:
        values = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) / 128
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        values = np.where(ints >= 1 << 23, ints - (1 << 24), ints) / float(1 << 23)
    else:
        values = np.frombuffer(raw, {2: "<i2", 4: "<i4"}[width]).astype(np.float64) / float(1 << (8 * width - 1))
    return rate, values.reshape(-1, channels).mean(axis=1)


def read_wav_file(path: Path) -> tuple[int, np.ndarray]:
    """`read_wav_bytes` of a file, its failures named."""
    path = Path(path)
    try:
        return read_wav_bytes(path.read_bytes(), where=str(path))
    except (wave.Error, EOFError, OSError, RuntimeError) as err:  # RuntimeError: the stdlib's on a short chunk
        raise AudioClipError(f"cannot read {path}: it is not a PCM WAV file this toolkit reads ({err})",
                             hint=WAV_HINT) from err


def read_wav(path: Path) -> np.ndarray:
    """A WAV file as float32 mono at 16 kHz (resampled if it is at another rate)."""
    rate, x = read_wav_file(path)
    return resample(x, rate, SAMPLE_RATE).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV (`to_pcm16`)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(to_pcm16(samples).tobytes())
    return buf.getvalue()


# The oracle's built-in clips: four spoken words, both tones, silence and noise; unjittered.
BUILTIN_CLIPS = (
    ClipCase("word-one", "word", "one"),
    ClipCase("word-four", "word", "four"),
    ClipCase("word-seven", "word", "seven"),
    ClipCase("word-nine", "word", "nine"),
    ClipCase("tone-high", "tone", "high"),
    ClipCase("tone-low", "tone", "low"),
    ClipCase("silence", "silence"),
    ClipCase("noise", "noise"),
)


def training_cases(variants: int = 30) -> list[ClipCase]:
    """Every word, both tones, silence and noise: `variants` jittered copies each (seeds
    1..variants, offset per class so no two classes share a seed)."""
    out = [ClipCase(f"word-{w}-{j}", "word", w, 1000 * i + j)
           for i, w in enumerate(WORDS) for j in range(1, variants + 1)]
    out += [ClipCase(f"tone-{p}-{j}", "tone", p, 20_000 + 1000 * i + j)
            for i, p in enumerate(TONES) for j in range(1, variants + 1)]
    out += [ClipCase(f"silence-{j}", "silence", "", 30_000 + j) for j in range(1, variants + 1)]
    out += [ClipCase(f"noise-{j}", "noise", "", 40_000 + j) for j in range(1, variants + 1)]
    return out


def speech_bank(cases, progress=None) -> dict[str, np.ndarray]:
    """name -> samples of every word clip in `cases` (espeak-ng)."""
    words = [c for c in cases if c.kind == "word"]
    bank = {}
    for i, case in enumerate(words):
        bank[case.name] = render(case)
        if progress:
            progress(i + 1, len(words))
    return bank


def save_bank(bank: dict[str, np.ndarray], path: Path) -> Path:
    """Write a clip bank (16-bit samples, one array per clip) as .npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: to_pcm16(v) for k, v in bank.items()}
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_bank(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(Path(path)) as data:
            return {k: from_pcm16(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise AudioError(f"cannot read the clip bank {path} ({exc})",
                         hint="write it again with `python -m gemmaios.audio.clipset --out clips.npz`") from exc


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gemmaios.audio.clipset",
                                     description="synthesise the spoken training and built-in clips into a clip bank (.npz)")
    parser.add_argument("--variants", type=int, default=30, help="jittered copies of each word")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        bank = speech_bank([*training_cases(args.variants), *BUILTIN_CLIPS])
    except AudioError as exc:
        print(f"error: {exc}")
        return 1
    save_bank(bank, args.out)
    print(f"wrote {len(bank)} spoken clips to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
