"""`gemma4_unified` (the 12B as it ships): the text path loads, matches HF, and builds for the Mac."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from gemmaios.checkpoint import (
    CheckpointError,
    UnsupportedInput,
    load_checkpoint,
    require_inputs,
    supported_inputs,
)
from gemmaios.cli import app
from gemmaios.decode_model import DecodeSpec, Gemma4Decode, use_flash_decode
from gemmaios.hf_text import load_hf_text_decoder
from gemmaios.parity import FP32_LOGIT_TOLERANCE, decode_steps
from gemmaios.tiny import TINY_UNIFIED, generate_tiny_checkpoint

# Longer than the tiny sliding window (8), so sliding and full layers both see evicted keys.
SEQUENCE = [2, 41, 97, 150, 12, 260, 33, 71, 180, 5, 99, 300, 64, 17, 222, 140, 8, 350, 77, 120, 45, 201, 9, 310]
PROMPT = 4


@pytest.fixture(scope="module")
def unified_dir(tmp_path_factory):
    # named like a real folder: the build names the bundle after it
    return generate_tiny_checkpoint(tmp_path_factory.mktemp("unified") / "12b_unified", TINY_UNIFIED)


@pytest.fixture(scope="module")
def unified(unified_dir):
    return load_checkpoint(unified_dir, model_id="tiny")


def test_the_tiny_checkpoint_has_the_released_12b_layout(unified_dir):
    from safetensors import safe_open

    config = json.loads((unified_dir / "config.json").read_text())
    assert config["model_type"] == "gemma4_unified"
    assert config["text_config"]["model_type"] == "gemma4_unified_text"
    assert config["text_config"]["use_bidirectional_attention"] == "vision"
    assert "hidden_size_per_layer_input" not in config["text_config"]  # the unified text config has no PLE field
    with safe_open(str(unified_dir / "model.safetensors"), "np") as handle:
        names = set(handle.keys())
    assert "model.language_model.embed_tokens.weight" in names
    assert "model.language_model.layers.5.self_attn.k_proj.weight" in names
    assert "model.language_model.layers.5.self_attn.v_proj.weight" not in names  # k_eq_v on full layers
    assert {"model.embed_vision.embedding_projection.weight", "model.embed_audio.embedding_projection.weight",
            "model.vision_embedder.patch_dense.weight"} <= names


def test_gemma4_unified_loads_its_text_decoder(unified):
    assert unified.model_type == "gemma4_unified"
    assert unified.weight_prefix == "model.language_model."
    tc = unified.text_config
    # mapped onto what the converter reads: no per-layer embeddings (Gemma4TextConfig's default is 256)
    assert (tc["model_type"], tc["hidden_size_per_layer_input"], tc["vocab_size_per_layer_input"]) == ("gemma4_text", 0, 392)
    spec = DecodeSpec.from_text_config(tc)
    assert spec.ple_dim == 0 and spec.num_layers == 12 and spec.num_heads == 16
    full = [lay for lay in spec.layers if lay.layer_type == "full_attention"]
    assert [(lay.index, lay.head_dim, lay.kv_heads, lay.k_eq_v) for lay in full] == [(5, 512, 1, True), (11, 512, 1, True)]
    assert unified.describe()["model_type"] == "gemma4_unified"


@pytest.mark.parametrize("flash", [None, "g8"])
def test_our_decoder_matches_hf_gemma4_unified_on_text(unified, flash):
    """fp32, fed one token per call as the engine does, against HF's full gemma4_unified model (text-only input)."""
    from transformers import Gemma4UnifiedForCausalLM, Gemma4UnifiedForConditionalGeneration

    hf = Gemma4UnifiedForConditionalGeneration.from_pretrained(unified.path, dtype=torch.float32,
                                                                attn_implementation="eager").eval()
    with torch.no_grad():
        want = hf(input_ids=torch.tensor([SEQUENCE])).logits[0, PROMPT - 1 : -1].float()
        # the gates' reference (the text decoder alone) is the same model
        text_only = load_hf_text_decoder(unified, attn_implementation="eager")
        assert isinstance(text_only, Gemma4UnifiedForCausalLM)
        assert (text_only(input_ids=torch.tensor([SEQUENCE])).logits[0, PROMPT - 1 : -1] - want).abs().max() < 1e-5
    ours = Gemma4Decode(unified, quant="fp16", dtype=torch.float32).eval()
    use_flash_decode(ours, flash)
    steps = len(SEQUENCE) - PROMPT
    tokens, got = decode_steps(ours, SEQUENCE[:PROMPT], steps, forced=SEQUENCE[PROMPT:])
    err = (got - want).abs().max().item()
    assert err < FP32_LOGIT_TOLERANCE, err
    assert tokens == want.argmax(-1).tolist()
    assert want.std() > 0.3  # real logits, not a degenerate model


def test_out_of_scope_inputs_are_refused_by_name_only_when_asked(unified, unified_dir, tiny_checkpoint, tmp_path):
    require_inputs(unified, ["text", "image", "audio"])  # the 12B's multimodal bundle takes all three
    assert supported_inputs(unified) == ("text", "image", "audio")
    with pytest.raises(UnsupportedInput, match="no vision encoder"):
        require_inputs(tiny_checkpoint, ["image"])
    with pytest.raises(UnsupportedInput, match="audio"):
        require_inputs(tiny_checkpoint, ["audio"])
    with pytest.raises(UnsupportedInput, match="unknown input kind"):
        require_inputs(unified, ["video"])
    for f in unified_dir.iterdir():  # a unified config without its audio embedder
        shutil.copy(f, tmp_path / f.name)
    config = json.loads((unified_dir / "config.json").read_text())
    config["audio_config"] = None
    (tmp_path / "config.json").write_text(json.dumps(config))
    no_audio = load_checkpoint(tmp_path, model_id="x")
    assert supported_inputs(no_audio) == ("text", "image")
    with pytest.raises(UnsupportedInput, match="no audio_config") as audio:
        require_inputs(no_audio, ["audio"])
    assert audio.value.kind == "audio" and audio.value.hint


def test_unified_configs_the_text_path_cannot_run_are_refused(unified_dir, tmp_path):
    for f in unified_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    config = json.loads((unified_dir / "config.json").read_text())
    config["text_config"]["use_bidirectional_attention"] = "all"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedInput, match="causal attention") as err:
        load_checkpoint(tmp_path, model_id="x")
    assert err.value.kind == "text"
    del config["text_config"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="without a `text_config`"):
        load_checkpoint(tmp_path, model_id="x")


@pytest.mark.full
def test_tiny_unified_converts_for_the_mac(unified_dir, tmp_path):
    out = tmp_path / "build"
    result = CliRunner().invoke(app, ["convert", "--model", str(unified_dir), "--target", "mac", "--quant", "int8",
                                      "--max-context", "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    steps = json.loads((out / "build.json").read_text())["steps"]
    assert steps["checkpoint"]["status"] == "done"
    assert "tables" not in steps  # no per-layer embeddings: nothing to write (n/a is not recorded)
    assert steps["oracle"]["status"] == "done"
    details = steps["convert"]["details"]
    assert details["name"] == "gemma4_12b_unified_decode_int8_msdpa_g8"
    gates = details["gates"]
    # gate 1 ran our decoder against transformers' Gemma4UnifiedForCausalLM: every greedy token equal
    assert gates["fp32_greedy"]["passed"] and gates["fp32_greedy"]["token_matches"] == 128
    assert gates["quantized"]["passed"]
    assert gates["flash_decode"]["passed"] and gates["flash_decode"]["full_layers"] == [5, 11]
    # Linux cannot run the Metal kernel: said, not passed
    assert gates["bundle_run"]["status"] == "not run"
    assert (out / details["aimodel"] / "main.mlirb").is_file()
    meta = json.loads((out / details["metadata"]).read_text())["gemmaios"]
    assert meta["target"] == "mac" and meta["flash_decode"]["full_layers"] == [5, 11]


@pytest.mark.parametrize("flags, says", [
    (["--vision"], "add --target mac"),  # the 12B's multimodal bundle is the Mac one
    (["--audio", "--target", "mac", "--kernel", "nope"], "--kernel"),
])
def test_multimodal_12b_options_are_refused_before_building(unified_dir, tmp_path, flags, says):
    """`convert --vision/--audio` on gemma4_unified without --target mac names the fix and builds nothing."""
    out = tmp_path / "build"
    result = CliRunner().invoke(app, ["convert", "--model", str(unified_dir), *flags, "--max-context", "64",
                                      "--out", str(out)])
    assert result.exit_code != 0
    assert says in result.output
    assert not list(out.rglob("*.aimodel"))


def test_audio_on_a_model_without_an_audio_tower_is_refused(tiny_checkpoint, tmp_path):
    from gemmaios.checkpoint import resolve_checkpoint
    from gemmaios.convert.options import check_audio, check_unified_multimodal

    check_unified_multimodal(tiny_checkpoint, vision=False, audio=True, target="ios")  # not the 12B's question
    for checkpoint in (tiny_checkpoint, resolve_checkpoint("tiny-vision")):  # text only; images but no audio
        with pytest.raises(UnsupportedInput, match="has no audio tower") as err:
            check_audio(checkpoint, "provider", "ios")
        assert err.value.kind == "audio" and "audio_config" in str(err.value)
