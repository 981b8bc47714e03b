"""The app's audio front end (GemmaiosCore LogMel.swift and AudioResampler.swift, issue 28)
against Hugging Face's `Gemma4AudioFeatureExtractor` and scipy's `resample_poly`.

The contract's AUDIO_* facts (generated into Contract.swift) are checked to be HF's extractor
defaults, and its length arithmetic against HF's output on many lengths. Then the project's own
clips (`gemmaios.audio.clips`: tones, a chirp, silence, seeded noise, espeak-ng speech; clips at
22.05/44.1/48 kHz resampled to 16 kHz by scipy) go through HF's extractor in the fp32 the model
gets; `swift test --filter AudioInputTests` compares the Swift features (masks exactly, values
within LogMelTolerance), the Swift resampler against scipy, and the chained path (Swift resampler
then Swift features) against HF on scipy's samples. Measured errors are printed in the Swift
summary; docs/app.md states them.
"""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest
from conftest import SWIFT_RESULTS
from safetensors.numpy import save_file
from swift_toolchain import CORE, run, swift_cache

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


def test_resample_keeps_a_tone_and_drops_what_16k_cannot_hold():
    for rate in (44_100, 48_000, clips.ESPEAK_RATE):
        low = clips.resample(clips.Clip("low", clips.tone(1_000.0, 0.5, rate=rate), rate))
        assert low.rate == c.AUDIO_SAMPLE_RATE and low.samples.dtype == np.float32
        assert len(low.samples) == -(-round(0.5 * rate) * c.AUDIO_SAMPLE_RATE // rate)
        expected = clips.tone(1_000.0, 0.5)
        assert np.abs(low.samples[200:-200] - expected[200:-200]).max() < 2e-3  # the same tone, edges aside
        high = clips.resample(clips.Clip("high", clips.tone(10_000.0, 0.5, rate=rate), rate))
        assert np.abs(high.samples[200:-200]).max() < 2e-3  # 10 kHz: filtered out (< -48 dB), not aliased to 6 kHz
    same = clips.Clip("same", clips.silence(0.1), c.AUDIO_SAMPLE_RATE)
    assert clips.resample(same) is same
    with pytest.raises(clips.AudioClipError, match="cannot resample"):
        clips.resample(clips.Clip("bad", clips.silence(0.1), 0))


def vector_cases() -> list[tuple[str, np.ndarray, int, int | None]]:
    """(name, samples, rate, static pad) for the Swift comparison: the built-in clips (speech at
    espeak-ng's 22.05 kHz), clips recorded at 44.1 and 48 kHz, and two static pads (the contract's
    30 s grid for the speech, and a clip longer than 30 s cut by it)."""
    out = [(x.name, x.samples, x.rate, None) for x in clips.builtin_clips()]
    speech = out[-1]
    out += [
        ("chirp-48k", clips.chirp(30.0, 23_000.0, 0.9, rate=48_000, amplitude=0.6), 48_000, None),
        ("noise-44k1", clips.white_noise(0.55, seed=1, rate=44_100, amplitude=0.2), 44_100, None),
        ("tone-44k1", clips.tone(5_500.0, 0.4, rate=44_100, amplitude=0.9), 44_100, None),
        ("speech-static-30s", speech[1], speech[2], c.AUDIO_MAX_SAMPLES),
        ("noise-31s-static", clips.white_noise(31.0, seed=2, amplitude=0.05), c.AUDIO_SAMPLE_RATE, c.AUDIO_MAX_SAMPLES),
    ]
    return out


@pytest.fixture(scope="module")
def audio_vectors(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio-vectors")
    e = hf_extractor()
    save_file({"window": e.window.astype(np.float32), "mel_filters": np.ascontiguousarray(e.mel_filters, np.float64)},
              str(root / "extractor.safetensors"))
    cases = []
    for name, samples, rate, pad_to in vector_cases():
        tensors = {}
        if rate != c.AUDIO_SAMPLE_RATE:
            tensors["source"] = samples
            samples = clips.resample(clips.Clip(name, samples, rate)).samples  # scipy's resample_poly
        features, mask = hf_features(e, samples, pad_to)
        tensors.update(waveform=samples, input_features=features.astype(np.float32),
                       input_features_mask=mask.astype(np.uint8))
        save_file(tensors, str(root / f"{name}.safetensors"))
        case = {"name": name, "file": f"{name}.safetensors", "frames": int(mask.size), "real_frames": int(mask.sum())}
        if rate != c.AUDIO_SAMPLE_RATE:
            case["source_rate"] = rate
        if pad_to:
            case["pad_to"] = pad_to
        cases.append(case)
    (root / "cases.json").write_text(json.dumps({"clips": cases}, indent=1))
    return root, cases


def test_vectors_cover_rates_masks_and_static_pads(audio_vectors):
    _, cases = audio_vectors
    assert {x.get("source_rate") for x in cases} >= {None, clips.ESPEAK_RATE, 44_100, 48_000}
    assert any(x["real_frames"] < x["frames"] for x in cases)  # padded frames the mask drops
    assert any(x["real_frames"] == 0 for x in cases)  # a clip shorter than half a window
    static = [x for x in cases if x.get("pad_to")]
    assert static and all(x["frames"] == c.audio_mel_frames(c.AUDIO_MAX_SAMPLES) for x in static)


def test_swift_log_mel_matches_hf(swift_toolchain, audio_vectors):
    folder, cases = audio_vectors
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", swift_cache("GemmaiosCore"),
                  "--filter", "AudioInputTests"], env={"GEMMAIOS_AUDIO_VECTORS": str(folder)})
    assert "Test Case 'AudioInputTests.testMatchesHuggingFace' passed" in output, output[-4000:]
    assert re.search(r"Executed \d+ tests, with 0 failures", output)
    per_clip = re.findall(r"gemmaios-audio-clip: (\S+) .*?max abs error (\S+)", output)
    assert [name for name, _ in per_clip] == [x["name"] for x in cases]
    line = re.search(r"gemmaios-audio-vectors: (\d+) clips, (\d+) frames, (\d+) features, max abs error (\S+) \((\S+)\), "
                     r"tolerance (\S+); (\d+) resampled, max abs sample error (\S+), tolerance (\S+); "
                     r"resampled\+features max abs error (\S+)", output)
    assert line, output[-3000:]
    assert int(line.group(1)) == len(cases)
    assert int(line.group(7)) == sum("source_rate" in x for x in cases)
    assert float(line.group(4)) <= float(line.group(6)) and float(line.group(8)) <= float(line.group(9))
    assert float(line.group(10)) <= float(line.group(6))
    SWIFT_RESULTS.append(f"Swift log-mel vs HF Gemma4AudioFeatureExtractor: {line.group(1)} clips, {line.group(3)} "
                         f"features, max abs error {line.group(4)} ({line.group(5)}; tolerance {line.group(6)}), masks "
                         f"exact; resampler vs scipy resample_poly on {line.group(7)} clips: max abs error "
                         f"{line.group(8)} (tolerance {line.group(9)}); resampled+features {line.group(10)}")


# ---- the app's reader (GemmaiosCore AudioClip) against the toolkit's (clips.read_wav + clips.resample) ----

def write_pcm16(path, channels: np.ndarray, rate: int):
    """A 16-bit PCM WAV of `channels` [C, N] (values already on the int16 grid / 32768)."""
    import wave

    ints = np.rint(channels * 32768).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels.shape[0])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.ascontiguousarray(ints.T).tobytes())


@pytest.fixture(scope="module")
def reader_vectors(tmp_path_factory):
    """WAV files the toolkit reads (`read_wav`, `resample`, HF's extractor on the result), and the
    same PCM as the Float32 channels the app's float reader hands AudioClip."""
    root = tmp_path_factory.mktemp("audio-reader-vectors")
    e = hf_extractor()

    def grid(x):  # on the 16-bit grid, as a WAV holds it
        return np.clip(np.rint(np.asarray(x, np.float64) * 32768), -32768, 32767) / 32768

    stereo = np.stack([grid(clips.chirp(80.0, 12_000.0, 1.3, rate=44_100, amplitude=0.5)),
                       grid(clips.white_noise(1.3, seed=3, rate=44_100, amplitude=0.2))])
    long = grid(clips.white_noise(32.0, seed=4, rate=48_000, amplitude=0.1))[None, :]
    cases = []
    for name, channels, rate in (("stereo-44k1", stereo, 44_100), ("mono-48k-32s", long, 48_000)):
        path = root / f"{name}.wav"
        write_pcm16(path, channels, rate)
        clip = clips.resample(clips.read_wav(path))  # the toolkit's path: the whole file, then the cut
        waveform = clip.samples[: c.AUDIO_MAX_SAMPLES]
        features, mask = hf_features(e, waveform)
        save_file({"channels": channels.astype(np.float32), "waveform": waveform,
                   "input_features": features.astype(np.float32), "input_features_mask": mask.astype(np.uint8)},
                  str(root / f"{name}.safetensors"))
        cases.append({"name": name, "file": f"{name}.safetensors", "rate": rate, "channels": int(channels.shape[0]),
                      "truncated": len(clip.samples) > c.AUDIO_MAX_SAMPLES})
    (root / "cases.json").write_text(json.dumps({"clips": cases}, indent=1))
    return root, cases


def test_swift_audio_clip_reads_what_the_toolkit_reads(swift_toolchain, reader_vectors):
    folder, cases = reader_vectors
    assert [x["truncated"] for x in cases] == [False, True]
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", swift_cache("GemmaiosCore"),
                  "--filter", "AudioClipTests"], env={"GEMMAIOS_AUDIO_CLIP_VECTORS": str(folder)})
    assert "Test Case 'AudioClipTests.testMatchesTheToolkitsReader' passed" in output, output[-4000:]
    assert re.search(r"Executed \d+ tests, with 0 failures", output)
    lines = re.findall(r"gemmaios-audio-reader: (\S+) .*?(\d+) of (\d+) frames read.*?max abs sample error (\S+), "
                       r"features (\S+)", output)
    assert [x[0] for x in lines] == [x["name"] for x in cases], output[-3000:]
    long = lines[1]
    assert int(long[1]) < int(long[2])  # the 32 s clip was read only up to the frames the cut needs
    SWIFT_RESULTS.append("Swift AudioClip vs the toolkit's read_wav + resample + HF features: " + "; ".join(
        f"{n}: {read} of {total} frames read, max abs sample error {s}, features {f}" for n, read, total, s, f in lines))
