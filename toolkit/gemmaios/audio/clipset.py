"""The project's own audio clips: spoken words (espeak-ng), tones, silence and noise, at 16 kHz.

Tones, silence and noise are drawn with numpy from integer seeds, so the same source always
yields the same samples. Spoken words come from espeak-ng (`apt-get install -y espeak-ng`),
resampled from its 22 050 Hz to 16 kHz in the frequency domain (numpy only). The tiny model
that hears (`audio.tinymodel`) is trained to say what a clip holds, and the audio oracle runs
the built-in set (`BUILTIN_CLIPS`). espeak-ng's voices change between releases, so the built-in
spoken clips' samples are recorded once (`data/tiny-audio/clips.npz`) and read back from there;
training clips for machines without espeak-ng are written by
`python -m gemmaios.audio.clipset --out clips.npz` and passed to the trainer with `--clips`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GemmaiosError

SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050
MAX_SECONDS = 2.0  # the longest clip the tiny model hears (its audio asset's static frame count)
MAX_SAMPLES = int(SAMPLE_RATE * MAX_SECONDS)

WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
TONES = {"low": (180.0, 420.0), "high": (1400.0, 3200.0)}  # Hz ranges trained; the built-ins sit inside
VOICES = ("en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-scotland")
KINDS = ("word", "tone", "silence", "noise")


class AudioError(GemmaiosError):
    """An audio clip, audio prompt or audio bundle cannot be used."""


class EspeakMissing(AudioError):
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


def tone(freq: float, seconds: float, amplitude: float = 0.5, fade: float = 0.01) -> np.ndarray:
    """A sine at `freq` Hz with `fade`-second linear ramps at both ends."""
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / fade) if fade > 0 else np.ones(n)
    return amplitude * ramp * np.sin(2 * np.pi * freq * t)


def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakMissing("espeak-ng is not installed: the spoken-word clips cannot be synthesised",
                            hint="install it (`apt-get install -y espeak-ng`, scripts/system-deps.sh), or pass a clip "
                                 "bank written where it is (`python -m gemmaios.audio.clipset --out clips.npz`)")
    return path


def speak(text: str, *, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """espeak-ng's rendering of `text`, float64 at 16 kHz, leading/trailing silence trimmed."""
    cmd = [espeak_path(), "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0 or not done.stdout:
        raise AudioError(f"espeak-ng failed on {text!r} ({done.stderr.decode(errors='replace').strip()})",
                         hint=f"run `{' '.join(cmd[:-1])} {text!r} > /dev/null` to see why")
    rate, x = read_wav_bytes(done.stdout)
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


def read_wav_bytes(data: bytes) -> tuple[int, np.ndarray]:
    """(sample rate, float64 mono samples in [-1, 1]) of a 16-bit PCM WAV.

    espeak-ng writes its stream with unknown lengths in the header (0x7fffffff), so the
    samples are read to the end of the bytes rather than trusting the header's count."""
    with wave.open(io.BytesIO(data)) as fh:
        rate, channels, width = fh.getframerate(), fh.getnchannels(), fh.getsampwidth()
    if width != 2:
        raise AudioError(f"the WAV holds {8 * width}-bit samples; 16-bit PCM is read",
                         hint="convert it, e.g. `ffmpeg -i in.wav -ac 1 -ar 16000 -c:a pcm_s16le out.wav`")
    start = data.find(b"data") + 8
    raw = np.frombuffer(data[start : start + (len(data) - start) // 2 * 2], "<i2")
    x = raw.reshape(-1, channels).mean(axis=1) / 32768.0
    return rate, x


def read_wav(path: Path) -> np.ndarray:
    """A WAV file as float32 mono at 16 kHz (resampled if it is at another rate)."""
    try:
        data = Path(path).read_bytes()
        rate, x = read_wav_bytes(data)
    except (OSError, wave.Error, EOFError) as exc:
        raise AudioError(f"cannot read {path} as a WAV file ({exc})",
                         hint="give a 16-bit PCM .wav, e.g. `ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav`") from exc
    return resample(x, rate, SAMPLE_RATE).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes(pcm.tobytes())
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
    arrays = {k: np.round(np.clip(v, -1, 1) * 32767).astype(np.int16) for k, v in bank.items()}
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_bank(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(Path(path)) as data:
            return {k: data[k].astype(np.float32) / 32767.0 for k in data.files}
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
