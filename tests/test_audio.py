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


def test_16_bit_pcm_reads_as_int_over_32768(tmp_path):
    """One 16-bit scaling, as HF (soundfile/libsndfile) and AVAudioFile read PCM: int / 32768, written
    back as round(x * 32768) clipped to the int16 range, so samples on the 16-bit grid go through a
    WAV file and a clip bank unchanged; the shipped bank (data) reads as its int16 / 32768."""
    import wave

    from gemmaios.audio import clips, tinymodel

    ints = np.array([-32768, -16384, -1, 0, 1, 12345, 32767], "<i2")
    path = tmp_path / "grid.wav"
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SAMPLE_RATE)
        fh.writeframes(ints.tobytes())
    grid = ints / np.float32(32768)
    assert np.array_equal(clipset.read_wav(path), grid) and np.array_equal(clips.read_wav(path).samples, grid)
    assert clipset.wav_bytes(grid) == path.read_bytes()
    clipset.save_bank({"g": grid}, tmp_path / "g.npz")
    assert np.array_equal(clipset.load_bank(tmp_path / "g.npz")["g"], grid)
    assert clipset.to_pcm16(np.array([1.0, 1.5, -1.0, -2.0, 0.5 / 32768, 1.5 / 32768])).tolist() == [
        32767, 32767, -32768, -32768, 0, 2]
    with np.load(tinymodel.SHIPPED_DIR / tinymodel.CLIPS) as raw:
        shipped = {k: raw[k] for k in raw.files}
    for name, samples in tinymodel.builtin_speech().items():
        assert np.array_equal(samples, shipped[name] / np.float32(32768))


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


def test_decode_module_audio_splice_matches_hf(audio_checkpoint, hf_audio_model):
    """Our S=1 decode module, fed token by token with the audio rows in the soft-token input
    (ids V + k, pad PLE row), against HF's logits on the same clip (fp32)."""
    from transformers import AutoTokenizer

    from gemmaios import contract
    from gemmaios.audio.encoder import hf_audio_features
    from gemmaios.audio.preprocess import AudioSpec, splice_ids
    from gemmaios.audio.tinymodel import QUESTION, processor_config
    from gemmaios.decode_model import Gemma4Decode
    from gemmaios.tinycorpus import chat_prompt

    spec = AudioSpec.from_config(audio_checkpoint.config, processor_config())
    hf_tok = AutoTokenizer.from_pretrained(str(audio_checkpoint.path))
    prepared = prepare(BUILTIN_CLIPS[2].samples(), spec)
    ids = expand_prompt(chat_prompt(QUESTION), spec, hf_tok, prepared.num_soft_tokens)
    features = torch.from_numpy(prepared.input_features)[None]
    mask = torch.from_numpy(prepared.input_features_mask)[None]
    with torch.no_grad():
        hf = hf_audio_model(input_ids=torch.tensor([ids]), input_features=features, input_features_mask=mask).logits[0]
    rows = hf_audio_features(hf_audio_model, prepared.input_features, prepared.input_features_mask)
    embeds = torch.zeros(spec.max_soft_tokens, rows.shape[1])
    embeds[: rows.shape[0]] = rows
    model = Gemma4Decode(audio_checkpoint, quant="fp16", dtype=torch.float32, image_tokens=spec.max_soft_tokens).eval()
    assert model.input_names()[-1] == contract.AUDIO_EMBEDS_INPUT
    per_layer = hf_audio_model.model.language_model.embed_tokens_per_layer
    layers, dim = model.spec.num_layers, model.spec.ple_dim
    spliced = splice_ids(ids, spec)
    assert spliced.count(spec.vocab_size) == 1 and max(spliced) == spec.vocab_size + prepared.num_soft_tokens - 1
    key, value = model.new_cache(len(ids))
    worst = 0.0
    with torch.no_grad():
        for i, token in enumerate(spliced):
            row = contract.ple_row(token, spec.vocab_size, spec.pad_token_id)
            ple = per_layer(torch.tensor([[row]])).reshape(1, 1, layers, dim).float()
            logits = model(torch.tensor([[token]], dtype=torch.int32), torch.arange(i + 1, dtype=torch.int32)[None],
                           ple, embeds, key, value)[0, 0]
            worst = max(worst, float(torch.max(torch.abs(logits - hf[i]))))
    assert len(ids) > 3 * 8  # the walk crosses the sliding window (8)
    assert worst < 1e-3, worst  # fp32 throughout: only summation order differs
    # and the clip matters: other rows give other logits at the answer's first token
    with torch.no_grad():
        other = hf_audio_model(input_ids=torch.tensor([ids]), input_features=torch.zeros_like(features),
                               input_features_mask=mask).logits[0]
    assert float(torch.max(torch.abs(other[-1] - hf[-1]))) > 1e-3
    with pytest.raises(AudioError, match="more than 50 audio soft tokens"):
        splice_ids([spec.audio_token_id] * 51, spec)


@pytest.mark.full
def test_audio_bundle_splice_under_core_ai(audio_bundle, hf_audio_model):
    """`convert --audio` on E-series: the audio asset beside the decoder, metadata gemmaios.audio,
    and under Core AI's runtime the spliced walk's logits follow HF's fp32 ones on the same clip."""
    from transformers import AutoTokenizer

    from gemmaios import contract
    from gemmaios.audio.preprocess import AudioSpec
    from gemmaios.audio.tinymodel import QUESTION
    from gemmaios.hostrun import LOGIT_ERROR_BOUND, BundleRunner, HostRunError
    from gemmaios.tinycorpus import chat_prompt

    bundle_dir, tables, checkpoint = audio_bundle
    assert bundle_dir.name.endswith("-audio")
    meta = json.loads((bundle_dir / "metadata.json").read_text())["gemmaios"]
    facts = meta[contract.AUDIO_METADATA_KEY]
    assert (bundle_dir / facts[contract.AUDIO_ASSET_FIELD]).exists()
    assert facts["embeds_rows"] == facts["max_soft_tokens"] == 50 and facts[contract.SPLICED_PLE_ROW_KEY] == 0
    assert [i["shape"] for i in meta["inputs"] if i["name"] == contract.AUDIO_EMBEDS_INPUT] == [[50, 64]]
    spec = AudioSpec.from_bundle(facts)
    assert spec == AudioSpec.from_checkpoint(checkpoint.path)
    hf_tok = AutoTokenizer.from_pretrained(str(checkpoint.path))
    prepared = prepare(BUILTIN_CLIPS[0].samples(), spec)
    ids = expand_prompt(chat_prompt(QUESTION), spec, hf_tok, prepared.num_soft_tokens)
    continuation = hf_tok("One. The clip", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hf = hf_audio_model(input_ids=torch.tensor([ids + continuation]),
                            input_features=torch.from_numpy(prepared.input_features)[None],
                            input_features_mask=torch.from_numpy(prepared.input_features_mask)[None]).logits[0]
    want = hf[len(ids) - 1 : len(ids) - 1 + len(continuation)].numpy()
    with BundleRunner(bundle_dir, tables) as runner:
        got = runner.forced(ids, continuation, image=prepared)
        silent = runner.forced(ids, continuation, image=prepare(BUILTIN_CLIPS[6].samples(), spec))
        with pytest.raises(HostRunError, match="no image was given"):
            runner.forced(ids, continuation)
    assert got.shape == want.shape
    err = float(np.max(np.abs(got - want)))
    # fp16 CPU runtime vs fp32 HF: measured 0.04-0.11 over the 8 built-in clips (logits ~10), 0.064 on this
    # one; the text bundle gate's bound (hostrun.LOGIT_ERROR_BOUND) holds
    assert err < LOGIT_ERROR_BOUND, err
    assert float(np.max(np.abs(silent - got))) > 10 * err  # the clip, not the prompt, moved them


@pytest.mark.full
def test_the_model_that_hears_runs_its_clips_token_exact_at_int4(audio_app_build):
    """The shipped tiny-audio weights built at the default int4: the convert step's audio gate ran all 8 clip
    prompts token-exact against the fp32 HF oracle under Core AI's runtime, on margins that are real decisions,
    and the oracle (fp32 HF) says what each clip holds."""
    from transformers import AutoTokenizer

    from gemmaios.audio.oracle import AUDIO_ORACLE_DIR, AUDIO_ORACLE_FILE
    from gemmaios.oracle import load_oracle

    build = json.loads((audio_app_build / "build.json").read_text())
    assert build["options"]["quant"] == "int4"
    details = build["steps"]["convert"]["details"]
    report = details["gates"]["audio_run"]
    assert report["total"] == len(BUILTIN_CLIPS) == 8
    assert report["exact"] == 8, report["summary"]
    assert report["max_feature_error"] <= report["feature_error_bound"]
    assert report["oracle_median_margin"] > 1.0 and report["oracle_min_margin"] > 0.5
    tok = AutoTokenizer.from_pretrained(str(audio_app_build / details["bundle_dir"] / "tokenizer"))
    answers = {p.id: tok.decode(p.generated_ids, skip_special_tokens=True)
               for p in load_oracle(audio_app_build / AUDIO_ORACLE_DIR / AUDIO_ORACLE_FILE).prompts}
    for case in BUILTIN_CLIPS:
        assert case.answer().startswith(answers[case.name].strip()), (case.name, answers[case.name])


@pytest.mark.full
def test_cli_run_hears_a_clip(audio_bundle, tmp_path):
    from typer.testing import CliRunner

    from gemmaios.cli import app

    bundle_dir, tables, _ = audio_bundle
    wav = tmp_path / "clip.wav"
    wav.write_bytes(clipset.wav_bytes(BUILTIN_CLIPS[4].samples()))
    result = CliRunner().invoke(app, ["run", "--bundle", str(bundle_dir), "--tables", str(tables), "--audio", str(wav),
                                      "--prompt", "What do you hear?", "-n", "4", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["new_tokens"] == 4 and record["prompt_tokens"] > 20  # 20 soft tokens of a 0.8 s clip + the turn
    long = tmp_path / "long.wav"
    long.write_bytes(clipset.wav_bytes(np.zeros(3 * SAMPLE_RATE, np.float32)))
    result = CliRunner().invoke(app, ["run", "--bundle", str(bundle_dir), "--tables", str(tables), "--audio", str(long),
                                      "--prompt", "hi"])
    assert result.exit_code != 0 and "at most 2 s" in result.output


def test_audio_oracle_saves_hf_features_and_tokens(audio_checkpoint, hf_audio_model, tmp_path):
    """The oracle's files: the clip as a .wav, HF's features of exactly those samples, the expanded and
    spliced prompt, HF's soft tokens and greedy tokens."""
    from gemmaios.audio.oracle import AUDIO_ORACLE_FILE, load_audio_record, run_audio_oracle
    from gemmaios.audio.preprocess import AudioSpec, splice_ids
    from gemmaios.oracle.records import load_oracle

    cases = (BUILTIN_CLIPS[0], BUILTIN_CLIPS[4])
    oracle = run_audio_oracle(audio_checkpoint.path, tmp_path, cases=cases, max_new_tokens=4)
    assert [p.id for p in load_oracle(tmp_path / AUDIO_ORACLE_FILE).prompts] == [c.name for c in cases]
    spec = AudioSpec.from_checkpoint(audio_checkpoint.path)
    for case, prompt in zip(cases, oracle.prompts, strict=True):
        record = load_audio_record(tmp_path, case.name)
        samples = clipset.read_wav(tmp_path / f"{case.name}.wav")
        np.testing.assert_array_equal(samples, record.samples)
        fresh = prepare(samples, spec)
        np.testing.assert_array_equal(fresh.input_features, record.prepared.input_features)
        np.testing.assert_array_equal(fresh.input_features_mask, record.prepared.input_features_mask)
        assert record.input_ids == prompt.prompt_ids and record.spliced_input_ids == splice_ids(prompt.prompt_ids, spec)
        assert record.input_ids.count(spec.audio_token_id) == record.prepared.num_soft_tokens == len(record.audio_features)
        with torch.no_grad():
            out = hf_audio_model(input_ids=torch.tensor([prompt.prompt_ids]),
                                 input_features=torch.from_numpy(record.prepared.input_features)[None],
                                 input_features_mask=torch.from_numpy(record.prepared.input_features_mask)[None])
        assert int(out.logits[0, -1].argmax()) == prompt.generated_ids[0]
    with pytest.raises(AudioError, match="no nope.safetensors"):
        load_audio_record(tmp_path, "nope")


@needs_espeak
def test_clip_bank_feeds_a_machine_without_espeak(tmp_path, monkeypatch):
    """`python -m gemmaios.audio.clipset --out` writes every spoken clip the trainer and the shipped
    record need; without espeak-ng the trainer's CLI stops before training when the bank lacks one."""
    from gemmaios.audio import tinymodel

    assert clipset.main(["--variants", "1", "--out", str(tmp_path / "bank.npz")]) == 0
    bank = clipset.load_bank(tmp_path / "bank.npz")
    words = [c.name for c in [*clipset.training_cases(1), *BUILTIN_CLIPS] if c.kind == "word"]
    assert sorted(bank) == sorted(words)
    np.testing.assert_allclose(bank["word-seven"], ClipCase("word-seven", "word", "seven").samples(), atol=1e-4)
    monkeypatch.setattr(clipset.shutil, "which", lambda name: None)
    trained = []
    monkeypatch.setattr(tinymodel, "train_tiny_audio", lambda **kw: trained.append(kw))
    out = tmp_path / "out"
    assert tinymodel.main(["--variants", "2", "--clips", str(tmp_path / "bank.npz"), "--out", str(out)]) == 1
    assert not trained  # stopped before any training: the bank has one variant, 2 were asked
    keys = ("training", "clip_margins", "clip_margins_int4_grid", "text_margins", "clip_answers")
    monkeypatch.setattr(tinymodel, "ship", lambda result, out: dict.fromkeys(keys, 0))
    assert tinymodel.main(["--variants", "1", "--clips", str(tmp_path / "bank.npz"), "--out", str(out)]) == 0
    assert set(trained[0]["speech"]) == {c.name for c in clipset.training_cases(1) if c.kind == "word"} | {
        c.name for c in BUILTIN_CLIPS if c.kind == "word"}
    assert sorted(clipset.load_bank(out / tinymodel.CLIPS)) == sorted(c.name for c in BUILTIN_CLIPS if c.kind == "word")


def test_record_only_records_weights_trained_elsewhere(tiny_parts, tmp_path, capsys, monkeypatch):
    """`--record-only DIR --training-log LOG`: weights written by a (here 2-step CPU) run are
    recorded with the facts the command line and log state (no invented seconds), the margins
    measured here on the weights as loaded from DIR; a log of another or unfinished run is refused.
    (The measurement is ship()'s; here on 2 clips and 2 text prompts, 8 steps each, to stay cheap.)"""
    import functools

    from gemmaios import tinytrain

    tm = tiny_parts[0]
    measure = functools.partial(tm.clip_margins, cases=BUILTIN_CLIPS[:2], steps=8)
    monkeypatch.setattr(tm, "clip_margins", measure)
    prompts = tinytrain.evaluation_prompts()[:2]
    monkeypatch.setattr(tinytrain, "evaluation_prompts", lambda: prompts)
    monkeypatch.setattr(tinytrain, "greedy_margins", functools.partial(tinytrain.greedy_margins, steps=8))
    words = [c for c in [*clipset.training_cases(1), *BUILTIN_CLIPS] if c.kind == "word"]
    bank = {c.name: ClipCase(c.name, "tone", "low", c.variant).samples() for c in words}  # no espeak needed
    result = tm.train_tiny_audio(steps=2, variants=1, text_every=0, batch=2, speech=bank)
    out = tmp_path / "w"
    tm.ensure_builtin_clips(out, bank)
    tm.write_weights(result.model, result.tokenizer, out)
    log = tmp_path / "train.log"
    log.write_text("noise\n" + "".join(f"step {i + 1}/2 loss {loss:.4f}\n" for i, loss in enumerate(result.losses)))
    args = ["--record-only", str(out), "--training-log", str(log), "--device", "cuda", "--variants", "1",
            "--trained-with", "torch=2.11.0", "--trained-with", "transformers=5.17.0"]
    assert tm.main([*args, "--steps", "3"]) == 1  # the log is a 2-step run
    (tmp_path / "short.log").write_text(log.read_text().splitlines()[1] + "\n")
    assert tm.main([*args[:3], str(tmp_path / "short.log"), *args[4:], "--steps", "2"]) == 1  # unfinished
    assert "not a finished 2-step run" in capsys.readouterr().out and not (out / tm.RECORD).exists()
    assert tm.main([*args, "--steps", "2"]) == 0
    record = tm.shipped_record(out)  # the sha256s match the files
    training = record["training"]
    assert {k: training[k] for k in ("steps", "qat_steps", "seed", "device", "clip_variants", "tools")} == {
        "steps": 2, "qat_steps": 0, "seed": 1234, "device": "cuda", "clip_variants": 1,
        "tools": {"torch": "2.11.0", "transformers": "5.17.0"}}
    assert training["first_logged_loss"] == {"step": 1, "loss": round(result.losses[0], 4)}
    assert training["final_logged_loss"] == {"step": 2, "loss": round(result.losses[1], 4)}
    assert "seconds" not in training and training["measured_on"] == {"device": "cpu", "tools": tm.tool_versions()}
    # the margins are the trained model's, measured on the weights as written
    want = measure(result.model, result.tokenizer, speech=clipset.load_bank(out / tm.CLIPS))
    assert set(record["clip_answers"]) == {r["clip"] for r in want}
    for run in want:
        got = record["clip_answers"][run["clip"]]
        assert got["text"] == run["text"] and abs(got["min_margin"] - run["min_margin"]) < 1e-3
    assert record["clip_margins_int4_grid"]["steps"] == 16 and record["text_margins"]["steps"] == 16


def test_shipped_tiny_audio_weights_match_their_record():
    """The weights in data/tiny-audio are those its trained.json was measured on (sha256s), with
    the built-in spoken clips the oracle reads, and the record states how they were trained."""
    from gemmaios.audio import tinymodel as tm

    record = tm.shipped_record()
    assert set(record["sha256"]) == {tm.WEIGHTS, tm.TOKENIZER, tm.CLIPS}
    assert sorted(tm.builtin_speech()) == sorted(c.name for c in BUILTIN_CLIPS if c.kind == "word")
    training = record["training"]
    # the last qat_steps on the int4 grid (--qat-fraction; the shipped run continued an earlier one: init_from)
    assert 0 < training["qat_steps"] <= training["steps"]
    assert len(training.get("init_from", {"sha256": "0" * 64})["sha256"]) == 64
    assert set(record["clip_answers"]) == {c.name for c in BUILTIN_CLIPS}


def test_tiny_audio_is_a_built_in_model_cached_until_its_weights_or_format_change(tmp_path, monkeypatch):
    """`--model tiny-audio` resolves to a checkpoint of the shipped weights (no folder of that name needed),
    written once into the cache beside tiny-vision's, reused while its marker names the shipped weights'
    sha256 and this format, and written again when it names others."""
    from gemmaios.audio import tinymodel as tm
    from gemmaios.checkpoint import check_model_source, resolve_checkpoint
    from gemmaios.files import sha256_file
    from gemmaios.tiny import TINY_AUDIO_ID

    monkeypatch.setenv("GEMMAIOS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no ./tiny-audio folder stands in for the built-in
    written = []
    real = tm.generate_tiny_audio_checkpoint
    monkeypatch.setattr(tm, "generate_tiny_audio_checkpoint", lambda out: written.append(out) or real(out))
    check_model_source(TINY_AUDIO_ID)

    ckpt = resolve_checkpoint(TINY_AUDIO_ID)
    assert TINY_AUDIO_ID == "tiny-audio" and ckpt.model_id == "tiny-audio" and not ckpt.is_tiny
    assert ckpt.path == tmp_path / "cache" / f"tiny-audio-v{tm.TINY_AUDIO_FORMAT}" == tm.default_dir()
    shipped = tm.shipped_record()["sha256"][tm.WEIGHTS]
    assert [sha256_file(f) for f in ckpt.weight_files] == [shipped]
    assert ckpt.config["audio_config"] and ckpt.config.get("vision_config") is None
    assert written == [ckpt.path]

    sentinel = ckpt.path / "left-by-the-first-call"
    sentinel.touch()
    assert resolve_checkpoint(TINY_AUDIO_ID).path == ckpt.path
    assert written == [ckpt.path] and sentinel.exists()  # reused, not written again

    marker_path = ckpt.path / tm.MARKER_FILE
    marker = json.loads(marker_path.read_text())
    assert (marker["format"], marker["weights_sha256"]) == (tm.TINY_AUDIO_FORMAT, shipped)
    for stale in ({**marker, "weights_sha256": "0" * 64}, {**marker, "format": tm.TINY_AUDIO_FORMAT - 1}, None):
        marker_path.write_text("not json" if stale is None else json.dumps(stale))
        sentinel.touch()
        again = resolve_checkpoint(TINY_AUDIO_ID)
        assert again.path == ckpt.path and not sentinel.exists()  # the folder was written anew
        assert json.loads(marker_path.read_text()) == marker
        assert [sha256_file(f) for f in again.weight_files] == [shipped]
    assert len(written) == 4


def test_cli_takes_the_built_in_id_with_audio(tmp_path, monkeypatch):
    """`build`/`convert --model tiny-audio --audio` reach the build with that model and flag (no folder of that
    name: the id is checked before any build folder is made)."""
    from typer.testing import CliRunner

    from gemmaios import cli

    monkeypatch.chdir(tmp_path)
    ran = []
    monkeypatch.setattr(cli, "_run", lambda options, *args, **kwargs: ran.append(options))  # the steps: not here
    for command in ("build", "convert"):
        result = CliRunner().invoke(cli.app, [command, "--model", "tiny-audio", "--audio", "--quant", "int8",
                                              "--out", str(tmp_path / command)])
        assert result.exit_code == 0, result.output
    assert [(o.model, o.audio, o.quant) for o in ran] == [("tiny-audio", True, "int8")] * 2


def test_soft_token_gate_errors_share_one_format():
    """The image and audio gates' errors are one base's (SoftTokenGateFailed): the same message and hint
    wording, naming each one's prompts, asset and package; the quantized-decoder hint only where the
    asset's features matched HF's and the decoder is quantized."""
    from gemmaios.audio.gate import AudioGateFailed
    from gemmaios.vision.gate import ImageGateFailed, SoftTokenGateFailed

    for cls, kind, asset, package in ((ImageGateFailed, "image", "vision", "gemmaios.vision"),
                                      (AudioGateFailed, "audio", "audio", "gemmaios.audio")):
        assert issubclass(cls, SoftTokenGateFailed)
        err = cls.diverged("b-audio", "noise", 2, [5, 6, 7], [5, 6, 9], 1.23456, "7/8 exact", quant="fp16")
        assert type(err) is cls
        assert str(err).startswith(f"b-audio: {kind} prompt 'noise' diverged at token 2: oracle [5, 6, 7], bundle "
                                   "[5, 6, 9] (oracle margin 1.23) — 7/8 exact")
        assert err.hint == (f"the {asset} asset, the splice or the PLE rows of {kind} tokens compute something other "
                            f"than HF; see {package}")
        assert cls.diverged("b", "p", 0, [1], [2], 0.5, "s", quant=None).hint == err.hint
        quantized = cls.diverged("b", "p", 0, [1], [2], 0.5, "s", quant="int4").hint
        assert quantized.startswith(f"the {asset} asset's features match HF's; the int4 decoder changed a token the "
                                    "fp32 model decides by a margin of 0.5")
        err = cls.features_differ("b", 0.123456, 0.05, "8/8 exact")
        assert str(err) == (f"b: the {asset} asset's features differ from HF's by 0.123 (bound 0.05) — 8/8 exact"
                            "\n  → convert again and report it")
