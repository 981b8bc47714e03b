"""The project's own test sounds: a pure tone of one of three pitches, short or long, at 16 kHz.

Drawn with numpy from a seed only, so the same case always yields the same samples. The tiny
unified model is trained to say which pitch and which length it hears; its gates play the
built-in set (`BUILTIN_TONES`, unjittered). Lengths are counted in the model's audio tokens
(`samples_per_token` samples each: 640 on the 12B, 16 on the tiny), so a clip's token count says
"short" or "long" on any model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLING_RATE = 16_000
PITCHES = {"low": 300.0, "middle": 1000.0, "high": 3000.0}  # Hz
LENGTHS = {"short": (10, 16), "long": (26, 36)}  # audio tokens (inclusive range; built-ins take the middle)


@dataclass(frozen=True)
class ToneCase:
    """One clip: its pitch and length, and the jitter seed (0: the canonical clip)."""

    name: str
    pitch: str
    length: str
    jitter: int = 0

    def answer(self) -> str:
        return f"A {self.pitch} tone, {self.length}."

    def samples(self, samples_per_token: int, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
        """float32 mono samples in [-1, 1]: the tone (jittered: pitch +-6 %, any phase, loudness, length)."""
        lo, hi = LENGTHS[self.length]
        rng = np.random.default_rng(self.jitter)
        if self.jitter:
            tokens = int(rng.integers(lo, hi + 1))
            freq = PITCHES[self.pitch] * float(rng.uniform(0.94, 1.06))
            phase, amplitude = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.3, 0.9))
        else:
            tokens, freq, phase, amplitude = (lo + hi) // 2, PITCHES[self.pitch], 0.0, 0.5
        t = np.arange(tokens * samples_per_token) / sampling_rate
        return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


BUILTIN_TONES = tuple(ToneCase(f"{p}-{n}", p, n) for p in PITCHES for n in LENGTHS)


def training_tones(variants: int = 30) -> list[ToneCase]:
    """Every pitch x length, `variants` jittered copies each (jitter seeds 1..variants)."""
    return [ToneCase(f"{p}-{n}-{j}", p, n, j) for p in PITCHES for n in LENGTHS for j in range(1, variants + 1)]
