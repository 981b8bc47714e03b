"""The tiny unified model's training kit (gemmaios.unified): its sounds, its gate prompts, and the loader
that ships the trained weights into the 12b-unified checkpoint when they are in the package.

Training itself is proven by a run (`python -m gemmaios.unified.tinymodel`, see its docstring); the
trained model's gates (8/8 token-exact under Core AI's runtime) are in tests/test_unified_bundle.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gemmaios import tiny
from gemmaios.unified.tinymodel import GATE_PROMPTS, gate_inputs, spec_of, text_tokenizer, tokenize_with
from gemmaios.unified.tones import BUILTIN_TONES, LENGTHS, PITCHES, ToneCase, training_tones


def dominant_hz(samples: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("case", BUILTIN_TONES, ids=[c.name for c in BUILTIN_TONES])
def test_each_tone_sounds_at_its_pitch_for_its_length(case):
    samples = case.samples(16)
    lo, hi = LENGTHS[case.length]
    assert lo * 16 <= len(samples) <= hi * 16 and len(samples) % 16 == 0
    # the FFT bin is 16000 / len(samples) wide: 30-60 Hz here
    assert abs(dominant_hz(samples) - PITCHES[case.pitch]) <= 16_000 / len(samples)
    assert np.array_equal(samples, case.samples(16))  # the same case, the same samples
    assert case.answer() == f"A {case.pitch} tone, {case.length}."


def test_training_tones_are_jittered_copies_never_the_gate_ones():
    tones = training_tones(4)
    assert len(tones) == len(PITCHES) * len(LENGTHS) * 4
    assert all(t.jitter > 0 for t in tones)
    a, b = ToneCase("x", "high", "long", 1).samples(16), ToneCase("x", "high", "long", 2).samples(16)
    assert not np.array_equal(a[: min(len(a), len(b))], b[: min(len(a), len(b))])
    longs = [len(t.samples(640)) // 640 for t in tones if t.length == "long"]  # the 12B's token width
    assert min(longs) >= LENGTHS["long"][0] and max(longs) <= LENGTHS["long"][1]


def test_the_eight_gate_prompts_cover_image_audio_and_mixed():
    kinds = [p.layout for p in GATE_PROMPTS]
    assert len(GATE_PROMPTS) == 8
    assert (kinds.count("image"), kinds.count("audio"), kinds.count("image+audio") + kinds.count("audio+image")) == (3, 3, 2)
    spec = spec_of(tiny.tiny_unified_config())
    tokenize = tokenize_with(text_tokenizer())
    for prompt in GATE_PROMPTS:
        inputs = gate_inputs(prompt, spec, tokenize)
        ids = np.asarray(inputs.ids)
        assert len(inputs.images) == ("image" in prompt.layout) and len(inputs.clips) == ("audio" in prompt.layout)
        if inputs.images:  # one bidirectional block, longer than the sliding window
            assert (ids == spec.image_token_id).sum() == inputs.images[0].num_soft_tokens > spec.sliding_window
        if inputs.clips:
            assert (ids == spec.audio_token_id).sum() == len(inputs.clips[0])
        assert ids.max() < spec.vocab_size and ids[0] == 2  # <bos>
    mixed = GATE_PROMPTS[-1]
    assert mixed.answer() == f"{mixed.tone.answer()} A {mixed.image.colour} {mixed.image.shape} in a tall picture."


def fake_shipped(folder, tokenizer_bytes=None):
    """A shipped folder as `ship` writes it (weights, tokenizer, trained.json with their sha256s), with the
    seeded random weights standing in for trained ones."""
    from gemmaios.files import sha256_file

    folder.mkdir()
    tiny.build_tiny_unified_model().save_pretrained(folder, safe_serialization=True)
    (folder / "config.json").unlink()
    (folder / "tokenizer.json").write_bytes(tokenizer_bytes or (tiny.SHIPPED_DIR / "tokenizer.json").read_bytes())
    names = ("model.safetensors", "tokenizer.json")
    (folder / "trained.json").write_text(json.dumps({"sha256": {n: sha256_file(folder / n) for n in names}}))
    return folder


def test_the_checkpoint_takes_the_trained_weights_when_they_are_shipped(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file
    from transformers import Gemma4UnifiedForConditionalGeneration

    absent = tmp_path / "absent"
    monkeypatch.setattr(tiny, "TINY_UNIFIED_SHIPPED_DIR", absent)
    random = tiny.generate_tiny_checkpoint(tmp_path / "random", tiny.TINY_UNIFIED)
    assert tiny.tiny_weights(random) == "random" and not tiny.tiny_unified_trained()

    shipped = fake_shipped(tmp_path / "shipped")
    monkeypatch.setattr(tiny, "TINY_UNIFIED_SHIPPED_DIR", shipped)
    path = tiny.generate_tiny_checkpoint(tmp_path / "trained", tiny.TINY_UNIFIED)
    marker = json.loads((path / tiny.MARKER_FILE).read_text())
    assert tiny.tiny_weights(path) == "trained" and marker["variant"] == tiny.TINY_UNIFIED
    assert (path / "tokenizer.json").read_bytes() == (tiny.SHIPPED_DIR / "tokenizer.json").read_bytes()
    assert json.loads((path / "processor_config.json").read_text()) == tiny.TINY_UNIFIED_PROCESSOR
    assert (path / "model.safetensors").read_bytes() == (shipped / "model.safetensors").read_bytes()
    model, info = Gemma4UnifiedForConditionalGeneration.from_pretrained(path, dtype=torch.float32,
                                                                         output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # HF reads every tensor of the shipped file
    want = load_file(str(shipped / "model.safetensors"))["model.embed_audio.embedding_projection.weight"]
    assert torch.equal(model.model.embed_audio.embedding_projection.weight, want)


def test_a_shipped_file_that_does_not_match_its_record_is_named(tmp_path, monkeypatch):
    shipped = fake_shipped(tmp_path / "shipped")
    (shipped / "tokenizer.json").write_text("{}")
    monkeypatch.setattr(tiny, "TINY_UNIFIED_SHIPPED_DIR", shipped)
    with pytest.raises(tiny.TinyWeightsError) as err:
        tiny.generate_tiny_checkpoint(tmp_path / "trained", tiny.TINY_UNIFIED)
    assert "tokenizer.json" in str(err.value) and "gemmaios.unified.tinymodel" in err.value.hint
    assert not (tmp_path / "trained").exists()


# ---- recording weights trained elsewhere (`--record-only`) ------------------------------------------

TRAINING_LOG = """step 15/120 mixed loss 5.5453
step 30/120 audio loss 3.4760
step 45/120 image loss 2.7925
step 60/120 text loss 4.1296
step 75/120 mixed loss 0.8610
step 90/120 audio loss 0.0312
step 105/120 image loss 0.5021
step 120/120 text loss 1.2500
Writing model shards: 100%
"""


def test_losses_come_from_the_logs_progress_lines_of_a_finished_run():
    from gemmaios.errors import TrainingRecordError
    from gemmaios.unified.tinymodel import losses_from_log

    got = losses_from_log(TRAINING_LOG, 120, "run.log")
    assert got["first_loss"] == {"mixed": 5.5453, "audio": 3.476, "image": 2.7925, "text": 4.1296}
    assert got["final_loss"] == {"mixed": 0.861, "audio": 0.0312, "image": 0.5021, "text": 1.25}
    assert got["loss_steps"]["final"] == {"mixed": 75, "audio": 90, "image": 105, "text": 120}
    assert got["loss_steps"]["first"]["mixed"] == 15 and got["loss_source"] == "run.log: one logged step every 15"
    with pytest.raises(TrainingRecordError, match="did not finish"):
        losses_from_log(TRAINING_LOG.replace("step 120/120 text loss 1.2500\n", ""), 120)
    with pytest.raises(TrainingRecordError, match="not 1500"):
        losses_from_log(TRAINING_LOG, 1500)
    with pytest.raises(TrainingRecordError, match="no `step"):
        losses_from_log("Killed\n", 120)


def test_record_only_measures_the_folders_weights_and_states_only_what_the_run_says(tmp_path, monkeypatch):
    """The record-only path loads the folder's weights as the checkpoint will (every tensor), hands them to
    the same measurement as `ship`, and writes trained.json with the log's losses, the stated settings and
    tools, this machine's tools for the margins, and no training seconds (not known here)."""
    import torch
    from safetensors.torch import load_file

    from gemmaios.unified import tinymodel

    folder = fake_shipped(tmp_path / "trained")
    (folder / "trained.json").unlink()
    (tmp_path / "run.log").write_text(TRAINING_LOG)
    seen = {}

    def gates(model, tok, *, int4_grid=False):  # the measurement itself is the trained run's (see the docstring)
        seen["model"] = model
        return [{"prompt": p.name, "text": "x", "expected": p.answer(), "right": False, "min_margin": 0.5,
                 "margins": [0.5]} for p in tinymodel.GATE_PROMPTS]

    monkeypatch.setattr(tinymodel, "gate_margins", gates)
    monkeypatch.setattr(tinymodel, "text_margins", lambda model, tok: {"steps": 1})
    assert tinymodel.main(["--record-only", str(folder), "--training-log", str(tmp_path / "run.log"), "--steps", "120",
                           "--device", "cuda", "--kinds", "image,mixed,text", "--trained-with", "torch=2.11.0",
                           "--trained-with", "transformers=5.17.0"]) == 0
    saved = load_file(str(folder / "model.safetensors"))
    assert torch.equal(seen["model"].model.embed_audio.embedding_projection.weight,
                       saved["model.embed_audio.embedding_projection.weight"])
    assert seen["model"].lm_head.weight.data_ptr() == seen["model"].model.language_model.embed_tokens.weight.data_ptr()
    record = tiny.tiny_unified_record(folder)  # its sha256s match the files
    training = record["training"]
    assert (training["steps"], training["qat_steps"], training["device"], training["seed"]) == (120, 24, "cuda", tiny.TINY_SEED)
    assert training["tools"] == {"torch": "2.11.0", "transformers": "5.17.0"} and "seconds" not in training
    assert training["kinds"] == ["image", "mixed", "text"]  # the run's cycle, stated as it was given
    assert training["first_loss"]["mixed"] == 5.5453 and training["final_loss"]["text"] == 1.25
    assert record["margins_measured"]["device"] == "cpu" and "torch" in record["margins_measured"]["tools"]
    assert record["gate_margins"]["answers_right"] == 0 and record["text_margins"] == {"steps": 1}


def test_record_only_refuses_a_log_without_the_tools_or_a_folder_without_weights(tmp_path, capsys):
    from gemmaios.unified import tinymodel

    (tmp_path / "run.log").write_text(TRAINING_LOG)
    args = ["--record-only", str(tmp_path), "--training-log", str(tmp_path / "run.log"), "--steps", "120"]
    with pytest.raises(SystemExit):
        tinymodel.main(args)  # no --trained-with
    assert "--trained-with" in capsys.readouterr().err
    assert tinymodel.main([*args, "--trained-with", "torch=2.11.0"]) == 1
    assert "has no model.safetensors" in capsys.readouterr().out and not (tmp_path / "trained.json").exists()


def test_a_run_can_weight_its_batch_kinds_and_refuses_unknown_ones(capsys):
    """`--kinds` is the cycle of batch kinds (a continuation whose audio is learnt gives pictures more steps);
    each step trains the kind its turn names, and a kind the trainer does not know is refused before any step."""
    from gemmaios.unified import tinymodel

    result = tinymodel.train_tiny_unified(steps=3, batch=1, variants=1, kinds=("text", "image"))
    assert result.kinds == ("text", "image")
    assert {k: len(v) for k, v in result.losses.items()} == {"text": 2, "image": 1}
    with pytest.raises(ValueError, match="video"):
        tinymodel.train_tiny_unified(steps=1, kinds=("image", "video"))
    with pytest.raises(SystemExit):
        tinymodel.main(["--kinds", "image,video", "--steps", "1"])
    assert "--kinds image,video: each must be one of image, audio, mixed, text" in capsys.readouterr().err
