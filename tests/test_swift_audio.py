"""The app's audio front end (GemmaiosCore LogMel.swift and AudioResampler.swift, issue 28)
against Hugging Face's `Gemma4AudioFeatureExtractor` and scipy's `resample_poly`.

The contract's AUDIO_* facts (generated into Contract.swift) are checked to be HF's extractor
defaults, and its length arithmetic against HF's output on many lengths. Then the project's own
clips (`gemmaios.audio.clips`: tones, a chirp, silence, seeded noise, espeak-ng speech; clips at
22.05/44.1/48 kHz resampled to 16 kHz by scipy) go through HF's extractor in the fp32 the model
gets; `swift test --filter AudioInputTests` compares the Swift features (masks exactly, values
within LogMelTolerance), the Swift resampler against scipy, and the chained path (Swift resampler
then Swift features) against HF on scipy's samples. Measured errors are printed in the Swift
summary; docs/audio.md states them.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from gemmaios import contract as c
from gemmaios.audio import clips

# lengths around the padding grid, the hop, the semicausal half frame and the 30 s cut
LENGTHS = (0, 1, 100, 127, 128, 159, 160, 161, 200, 320, 321, 480, 481, 8000, 16000, 16001,
           c.AUDIO_MAX_SAMPLES - 1, c.AUDIO_MAX_SAMPLES, c.AUDIO_MAX_SAMPLES + 1, 500_000)


def hf_extractor():
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor

    return Gemma4AudioFeatureExtractor()


def hf_features(extractor, samples: np.ndarray, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HF's features [F, 128] f32 and mask [F] for one clip, called as Gemma4Processor calls it (a
    batch of one: a bare 1-D array trips HF's own squeeze), or padded to a static `pad_to`."""
    kwargs = {"padding": "max_length", "max_length": pad_to} if pad_to else {}
    out = extractor([np.asarray(samples, np.float32)], return_tensors="np", **kwargs)
    return out["input_features"][0], out["input_features_mask"][0]


def scipy_resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """scipy's resample_poly to 16 kHz in float64 (its defaults: Kaiser beta 5, 10 zero crossings)."""
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, c.AUDIO_SAMPLE_RATE)
    return resample_poly(np.asarray(samples, np.float64), c.AUDIO_SAMPLE_RATE // g, rate // g).astype(np.float32)


def test_contract_facts_are_hfs_extractor_defaults():
    from transformers.audio_utils import mel_filter_bank, window_function
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor

    e = hf_extractor()
    assert (e.sampling_rate, e.feature_size, e.frame_length, e.hop_length, e.fft_length) == (
        c.AUDIO_SAMPLE_RATE, c.AUDIO_MEL_BINS, c.AUDIO_FRAME_LENGTH, c.AUDIO_HOP_LENGTH, c.AUDIO_FFT_LENGTH)
    assert (e.min_frequency, e.max_frequency, float(e.mel_floor)) == (
        c.AUDIO_MIN_FREQUENCY, c.AUDIO_MAX_FREQUENCY, c.AUDIO_MEL_FLOOR)
    call = inspect.signature(Gemma4AudioFeatureExtractor.__call__).parameters
    assert call["max_length"].default == c.AUDIO_MAX_SAMPLES and call["truncation"].default is True
    assert call["pad_to_multiple_of"].default == c.AUDIO_PAD_MULTIPLE and call["padding"].default == "longest"
    # what the Swift side does not implement must be off in HF's defaults
    assert e.preemphasis == 0 and e.dither == 0 and e.input_scale_factor == 1 and not e.fft_overdrive
    assert e.per_bin_mean is None and e.per_bin_stddev is None
    assert e.padding_value == 0 and e.padding_side == "right"
    # the window and filter bank LogMel.swift builds: periodic Hann, HTK mel without area norm
    assert np.array_equal(e.window, window_function(c.AUDIO_FRAME_LENGTH, "hann", periodic=True).astype(np.float32))
    with pytest.warns(UserWarning):  # HF's own: the top filter falls between bins (harmless, HF says)
        bank = mel_filter_bank(c.AUDIO_FFT_LENGTH // 2 + 1, c.AUDIO_MEL_BINS, c.AUDIO_MIN_FREQUENCY,
                               c.AUDIO_MAX_FREQUENCY, c.AUDIO_SAMPLE_RATE, norm=None, mel_scale="htk")
    assert np.array_equal(e.mel_filters, bank)


@pytest.mark.parametrize("pad_to", [None, 16000, c.AUDIO_MAX_SAMPLES])
def test_contract_lengths_follow_hf(pad_to):
    e = hf_extractor()
    for n in LENGTHS:
        if pad_to and n > 2 * pad_to:
            continue
        samples = np.full(n, 0.25, np.float32)
        features, mask = hf_features(e, samples, pad_to)
        padded = -(-pad_to // c.AUDIO_PAD_MULTIPLE) * c.AUDIO_PAD_MULTIPLE if pad_to else c.audio_padded_samples(n)
        frames = c.audio_mel_frames(padded)
        assert features.shape == (frames, c.AUDIO_MEL_BINS), (n, pad_to)
        real = c.audio_real_frames(min(n, padded), frames)
        assert mask.tolist() == [True] * real + [False] * (frames - real), (n, pad_to)
        assert (features[real:] == 0).all()


def test_builtin_clips_are_deterministic():
    first, second = clips.builtin_clips(), clips.builtin_clips()
    assert [x.name for x in first] == [x.name for x in second]
    assert len({x.name for x in first}) == len(first)
    for a, b in zip(first, second, strict=True):
        assert a.rate == b.rate and np.array_equal(a.samples, b.samples) and a.samples.dtype == np.float32
        assert np.abs(a.samples).max() <= 1.0
    speech = next(x for x in first if x.name.startswith("speech"))
    assert speech.rate == clips.ESPEAK_RATE and 1.5 < speech.seconds < 6 and np.abs(speech.samples).max() > 0.1


def test_wav_round_trip(tmp_path):
    samples = clips.chirp(100.0, 3000.0, 0.2, rate=44_100)
    path = clips.write_wav(tmp_path / "chirp.wav", samples, 44_100)
    back = clips.read_wav(path)
    assert back.rate == 44_100 and back.samples.shape == samples.shape
    assert np.abs(back.samples - samples).max() <= 1 / 32767
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEnot really")
    with pytest.raises(clips.AudioClipError, match="not a PCM WAV file"):
        clips.read_wav(tmp_path / "bad.wav")
