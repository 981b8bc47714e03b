"""Audio in for Gemma 4 E2B/E4B: the project's clips, HF's feature extractor, the tiny model that hears."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gemmaios.audio import clipset
from gemmaios.audio.clipset import BUILTIN_CLIPS, SAMPLE_RATE, AudioError, ClipCase, EspeakMissing
from gemmaios.audio.preprocess import (
    AUDIO_PLACEHOLDER,
    expand_prompt,
    feature_extractor,
    prepare,
    subsample_mask,
)

needs_espeak = pytest.mark.skipif(not clipset.shutil.which("espeak-ng"),
                                  reason="espeak-ng is not installed (scripts/system-deps.sh installs it)")


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    return float(np.argmax(spec) * SAMPLE_RATE / len(x))


def test_tones_silence_and_noise_are_what_they_say():
    high, low = ClipCase("h", "tone", "high").samples(), ClipCase("l", "tone", "low").samples()
    assert abs(_peak_hz(high) - 2000) < 5 and abs(_peak_hz(low) - 300) < 5
    assert not ClipCase("s", "silence").samples().any()
    noise = ClipCase("n", "noise").samples()
    assert 0.2 < noise.std() < 0.3
    # jittered copies stay in their band, and the same seed gives the same samples
    for case in (c for c in clipset.training_cases(4) if c.kind == "tone"):
        lo, hi = clipset.TONES[case.value]
        assert lo - 5 < _peak_hz(case.samples()) < hi + 5
        assert np.array_equal(case.samples(), case.samples())


@needs_espeak
def test_spoken_words_come_from_espeak():
    one, seven = ClipCase("a", "word", "one").samples(), ClipCase("b", "word", "seven").samples()
    assert 0.2 * SAMPLE_RATE < len(one) < clipset.MAX_SAMPLES
    assert abs(float(np.abs(one).max()) - 0.7) < 1e-6  # normalised built-in level
    assert len(one) != len(seven)
    jittered = [c for c in clipset.training_cases(2) if c.kind == "word"][:2]
    assert not np.array_equal(jittered[0].samples(), jittered[1].samples())


def test_missing_espeak_is_a_named_error(monkeypatch):
    monkeypatch.setattr(clipset.shutil, "which", lambda name: None)
    with pytest.raises(EspeakMissing, match="espeak-ng is not installed") as err:
        ClipCase("w", "word", "one").samples()
    assert "apt-get install -y espeak-ng" in err.value.hint
    # a clip bank stands in for espeak-ng
    bank = {"w": np.full(8000, 0.1, np.float32)}
    assert ClipCase("w", "word", "one").samples(bank).shape == (8000,)


def test_wav_and_bank_round_trip(tmp_path):
    x = ClipCase("t", "tone", "high").samples()
    path = tmp_path / "t.wav"
    path.write_bytes(clipset.wav_bytes(x))
    back = clipset.read_wav(path)
    assert back.shape == x.shape and np.max(np.abs(back - x)) < 1e-4
    # another rate is resampled to 16 kHz, keeping the pitch
    path.write_bytes(clipset.wav_bytes(0.5 * np.sin(2 * np.pi * 1000 * np.arange(11025) / 22050), rate=22050))
    back = clipset.read_wav(path)
    assert len(back) == 8000 and abs(_peak_hz(back) - 1000) < 5
    clipset.save_bank({"t": x}, tmp_path / "b.npz")
    assert np.max(np.abs(clipset.load_bank(tmp_path / "b.npz")["t"] - x)) < 1e-4
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with pytest.raises(AudioError, match="cannot read"):
        clipset.read_wav(tmp_path / "bad.wav")


@pytest.fixture(scope="module")
def tiny_parts():
    from gemmaios.audio import tinymodel as tm
    from gemmaios.tiny import SHIPPED_DIR as TEXT_DIR

    tok = tm.tokenizer_with_markers(TEXT_DIR / "tokenizer.json")
    config = tm.model_config(tok)
    return tm, tok, tm.hf_tokenizer(tok), config, tm.audio_spec(config)


def test_features_and_token_count_follow_hf(tiny_parts):
    """Static padding to the longest clip changes no valid frame; the count is HF's processor's."""
    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor

    _, _, hf_tok, _, spec = tiny_parts
    assert (spec.max_frames, spec.max_soft_tokens, spec.max_seconds) == (199, 50, 2.0)
    fe = feature_extractor(spec)
    proc = Gemma4Processor.__new__(Gemma4Processor)
    proc.feature_extractor, proc.audio_seq_length = fe, 750
    for case in (BUILTIN_CLIPS[4], BUILTIN_CLIPS[7], ClipCase("short", "tone", "low", 3)):
        x = case.samples()
        prepared = prepare(x, spec, fe)
        assert prepared.input_features.shape == (199, 128) and prepared.input_features_mask.shape == (199,)
        hf = fe([x], return_tensors="np")  # HF's own padding (to a multiple of 128 samples)
        n = int(hf["input_features_mask"][0].sum())
        assert int(prepared.input_features_mask.sum()) == n
        np.testing.assert_allclose(prepared.input_features[:n], hf["input_features"][0][:n], atol=1e-5)
        assert not prepared.input_features[n:].any()
        assert prepared.num_soft_tokens == proc._compute_audio_num_tokens(x, SAMPLE_RATE)
        assert prepared.num_soft_tokens == int(subsample_mask(hf["input_features_mask"][0]).sum())
    ids = expand_prompt(f"hear {AUDIO_PLACEHOLDER} this", spec, hf_tok, 5)
    assert ids.count(spec.audio_token_id) == 5
    assert ids[ids.index(spec.boa_token_id) + 6] == spec.eoa_token_id
    with pytest.raises(AudioError, match="at most 2 s"):
        prepare(np.zeros(40000, np.float32), spec, fe)
    with pytest.raises(AudioError, match="exactly once"):
        expand_prompt("no clip", spec, hf_tok, 5)


def test_tiny_audio_checkpoint_loads_in_transformers(tmp_path, tiny_parts):
    """The config with an audio tower loads by HF's Gemma4ForConditionalGeneration and feature
    extractor; a padded clip gives the same soft tokens and logits as HF's own padding."""
    from transformers import AutoFeatureExtractor, Gemma4ForConditionalGeneration

    from gemmaios.tiny import SHIPPED_DIR as TEXT_DIR
    from gemmaios.tinycorpus import chat_prompt

    tm, tok, hf_tok, config, spec = tiny_parts
    tm.initial_model(config, TEXT_DIR / "model.safetensors").save_pretrained(tmp_path / "raw")
    tok.save(str(tmp_path / "tokenizer.json"))
    ckpt = tm.write_checkpoint(tmp_path / "ckpt", tmp_path / "raw" / "model.safetensors", tmp_path / "tokenizer.json",
                               {"weights": "untrained"})
    loaded = Gemma4ForConditionalGeneration.from_pretrained(ckpt).eval()
    assert loaded.model.audio_tower is not None and loaded.model.vision_tower is None
    assert type(loaded.model.audio_tower).__name__ == "Gemma4AudioModel"
    assert json.loads((ckpt / "config.json").read_text())["audio_token_id"] == spec.audio_token_id
    fe = AutoFeatureExtractor.from_pretrained(ckpt)
    assert type(fe).__name__ == "Gemma4AudioFeatureExtractor"
    x = BUILTIN_CLIPS[5].samples()
    prepared = prepare(x, spec, fe)
    hf = fe([x], return_tensors="pt")
    ids = expand_prompt(chat_prompt(tm.QUESTION), spec, hf_tok, prepared.num_soft_tokens)
    with torch.no_grad():
        a = loaded(input_ids=torch.tensor([ids]), input_features=torch.from_numpy(prepared.input_features)[None],
                   input_features_mask=torch.from_numpy(prepared.input_features_mask)[None]).logits
        b = loaded(input_ids=torch.tensor([ids]), input_features=hf["input_features"],
                   input_features_mask=hf["input_features_mask"]).logits
        silent = loaded(input_ids=torch.tensor([ids]), input_features=torch.zeros(1, 199, 128),
                        input_features_mask=torch.from_numpy(prepared.input_features_mask)[None]).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (a - silent).abs().max() > 1e-3  # the clip reaches the logits


def test_training_loss_falls(tiny_parts):
    """A few clip batches on one CPU thread: the answer loss falls (the long run is on a GPU)."""
    tm = tiny_parts[0]
    bank = {c.name: ClipCase(c.name, "tone", "low", c.variant).samples()
            for c in clipset.training_cases(1) if c.kind == "word"}  # stand-ins: no espeak needed
    result = tm.train_tiny_audio(steps=16, variants=1, text_every=0, batch=4, speech=bank)
    assert len(result.losses) == 16 and all(np.isfinite(result.losses))
    assert np.mean(result.losses[-4:]) < 0.7 * np.mean(result.losses[:2]), result.losses


@pytest.fixture(scope="module")
def hf_audio_model(audio_checkpoint):
    from transformers import Gemma4ForConditionalGeneration

    return Gemma4ForConditionalGeneration.from_pretrained(str(audio_checkpoint.path), dtype=torch.float32).eval()


def _prepared_builtins(spec):
    fe = feature_extractor(spec)
    return [(case, prepare(case.samples(), spec, fe)) for case in BUILTIN_CLIPS]


def test_audio_encoder_matches_hf_in_fp32(audio_checkpoint, hf_audio_model):
    """The static module (band-masked [T, T] attention, gathered relative positions) equals HF's
    chunked eager attention on every real row, for clips of every length."""
    from gemmaios.audio.encoder import AudioEncoder, hf_audio_features, load_audio_modules
    from gemmaios.audio.preprocess import AudioSpec
    from gemmaios.audio.tinymodel import processor_config

    spec = AudioSpec.from_config(audio_checkpoint.config, processor_config())
    tower, embedder = load_audio_modules(audio_checkpoint)
    encoder = AudioEncoder(tower, embedder, spec.max_frames, dtype=torch.float32).eval()
    assert encoder.max_soft_tokens == spec.max_soft_tokens == 50
    for case, prepared in _prepared_builtins(spec):
        want = hf_audio_features(hf_audio_model, prepared.input_features, prepared.input_features_mask)
        assert want.shape == (prepared.num_soft_tokens, 64)
        with torch.no_grad():
            got = encoder(torch.from_numpy(prepared.input_features)[None],
                          torch.from_numpy(prepared.input_features_mask.astype(np.int32))[None])
        assert got.shape == (50, 64)
        assert torch.max(torch.abs(got[: prepared.num_soft_tokens] - want)) < 1e-5, case.name


def test_no_audio_tower_is_a_named_error(tiny_checkpoint):
    from gemmaios.audio.encoder import load_audio_modules
    from gemmaios.audio.preprocess import AudioSpec

    with pytest.raises(AudioError, match="no audio tower"):
        AudioSpec.from_config({"text_config": {}, "audio_config": None})
    from gemmaios.checkpoint import resolve_checkpoint

    with pytest.raises(AudioError, match="has no audio tower"):
        load_audio_modules(resolve_checkpoint("tiny-vision"))


def test_audio_asset_under_core_ai(audio_checkpoint, audio_asset, hf_audio_model):
    """The fp16 asset's static I/O, and its rows under Core AI's Linux runtime against HF fp32."""
    from gemmaios import contract
    from gemmaios.audio.encoder import hf_audio_features
    from gemmaios.audio.export import run_audio_asset
    from gemmaios.audio.preprocess import AudioSpec
    from gemmaios.audio.tinymodel import processor_config

    path, facts = audio_asset
    assert [(i["name"], i["dtype"], i["shape"]) for i in facts["inputs"]] == [
        (contract.AUDIO_FEATURES_INPUT, "Float16", [1, 199, 128]), (contract.AUDIO_MASK_INPUT, "Int32", [1, 199])]
    assert [(o["name"], o["shape"]) for o in facts["outputs"]] == [(contract.AUDIO_OUTPUT, [50, 64])]
    assert facts["max_soft_tokens"] == 50 and facts["max_seconds"] == 2.0
    spec = AudioSpec.from_config(audio_checkpoint.config, processor_config())
    errors = []
    for _, prepared in _prepared_builtins(spec):
        want = hf_audio_features(hf_audio_model, prepared.input_features, prepared.input_features_mask).numpy()
        got = run_audio_asset(path, prepared.input_features, prepared.input_features_mask)
        assert got.shape == (50, 64) and got.dtype == np.float16
        errors.append(float(np.max(np.abs(got[: prepared.num_soft_tokens].astype(np.float32) - want))))
    # measured 1.0e-3..2.4e-3 on features of magnitude ~0.33 (fp16 CPU runtime vs fp32 HF)
    assert max(errors) < 0.01, errors
