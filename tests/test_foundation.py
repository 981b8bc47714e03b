"""Issue 2: tiny model, checkpoint validation, registry, manifest-driven pipeline, CLI."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from gemmaios.checkpoint import load_checkpoint, resolve_checkpoint
from gemmaios.cli import app
from gemmaios.errors import CheckpointError, RegistryError
from gemmaios.pipeline import FAILED, SKIPPED, BuildOptions, sha256_file
from gemmaios.registry import MODELS, check_against_config, get_model, verify_checkpoint_config
from gemmaios.steps import run_build
from gemmaios.tiny import SPECIAL_TOKEN_IDS, SPECIAL_TOKENS, generate_tiny_checkpoint

runner = CliRunner()


def test_tiny_checkpoint_is_deterministic(tmp_path, tiny_checkpoint):
    again = generate_tiny_checkpoint(tmp_path / "again")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert sha256_file(again / name) == sha256_file(tiny_checkpoint.path / name), name


def test_tiny_keeps_every_e4b_structural_feature(tiny_checkpoint):
    cfg = tiny_checkpoint.text_config
    assert cfg["model_type"] == "gemma4_text"
    assert cfg["hidden_size_per_layer_input"] > 0 and cfg["vocab_size_per_layer_input"] == cfg["vocab_size"]
    assert 0 < cfg["num_kv_shared_layers"] < cfg["num_hidden_layers"]
    types = cfg["layer_types"]
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    assert full == [i for i in range(len(types)) if (i + 1) % 6 == 0] and full[-1] == len(types) - 1
    global_dims = {v["head_dim"] for v in cfg["per_layer_config"].values()}
    assert global_dims == {2 * cfg["head_dim"]}
    assert cfg["final_logit_softcapping"] == 30.0 and cfg["tie_word_embeddings"] is True
    # Shared layers have no K/V weights of their own: the checkpoint really is KV-shared.
    first_shared = cfg["num_hidden_layers"] - cfg["num_kv_shared_layers"]
    assert tiny_checkpoint.has_tensor("model.layers.0.self_attn.k_proj.weight")
    assert not tiny_checkpoint.has_tensor(f"model.layers.{first_shared}.self_attn.k_proj.weight")
    assert tiny_checkpoint.has_tensor("model.embed_tokens_per_layer.weight")


def test_tiny_tokenizer_has_gemma_special_tokens(tiny_checkpoint):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_checkpoint.tokenizer_path))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    # Gemma 4's special tokens at Gemma 4's own ids (<bos> 2, <eos> 1, <|turn> 105, <turn|> 106, ...)
    assert ids == SPECIAL_TOKEN_IDS
    assert (ids["<bos>"], ids["<eos>"], ids["<|turn>"], ids["<turn|>"]) == (2, 1, 105, 106)
    assert (ids["<|channel>"], ids["<channel|>"], ids["<|think|>"]) == (100, 101, 98)
    cfg = tiny_checkpoint.text_config
    assert ids["<bos>"] == cfg["bos_token_id"] and ids["<pad>"] == cfg["pad_token_id"]
    assert cfg["eos_token_id"] == [ids["<eos>"], ids["<turn|>"]]
    assert tok.get_vocab_size() == cfg["vocab_size"] == max(tok.get_vocab().values()) + 1
    encoded = tok.encode("The capital of France is Paris.")
    assert encoded.ids[0] == ids["<bos>"] and len(encoded.ids) > 3
    assert tok.decode(encoded.ids) == "The capital of France is Paris."


def _copy(ckpt, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(ckpt.path, dst)
    return dst


def test_truncated_safetensors_is_a_named_actionable_error(tmp_path, tiny_checkpoint):
    path = _copy(tiny_checkpoint, tmp_path)
    weights = path / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size - 4096)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, model_id="local")
    assert "model.safetensors" in str(err.value) and "truncated" in str(err.value)
    assert "download it again" in err.value.hint


def test_not_gemma4_missing_tokenizer_and_missing_shard(tmp_path, tiny_checkpoint):
    path = _copy(tiny_checkpoint, tmp_path)
    config = json.loads((path / "config.json").read_text())

    (path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="'llama' model, not Gemma 4"):
        load_checkpoint(path, model_id="local")
    (path / "config.json").write_text(json.dumps(config))

    (path / "tokenizer.json").rename(path / "tokenizer.moved")
    with pytest.raises(CheckpointError, match="tokenizer.json is missing"):
        load_checkpoint(path, model_id="local")
    (path / "tokenizer.moved").rename(path / "tokenizer.json")

    (path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"model.embed_tokens.weight": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors is listed .* but missing"):
        load_checkpoint(path, model_id="local")


def test_unknown_source_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="no checkpoint folder 'no-such-thing'.* not a Hugging Face id either"):
        resolve_checkpoint("no-such-thing")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("google/gemma-4-E4B-it-qat-q4_0-unquantized")
    assert "nor in the Hugging Face cache" in str(err.value) and "HF_HUB_OFFLINE" in err.value.hint


def test_registry_checks_configs():
    e4b = get_model("E4B")
    assert e4b is MODELS["e4b"] and e4b.kv_slots == 24 and e4b.has_ple
    good = {"num_hidden_layers": 42, "hidden_size": 2560, "num_attention_heads": 8, "num_key_value_heads": 2,
            "head_dim": 256, "global_head_dim": 512, "vocab_size": 262144, "intermediate_size": 10240,
            "hidden_size_per_layer_input": 256, "num_kv_shared_layers": 18, "final_logit_softcapping": 30.0}
    assert check_against_config(e4b, good) == []
    with pytest.raises(RegistryError, match="num_kv_shared_layers: registry 18, config.json 20"):
        verify_checkpoint_config(e4b, {**good, "num_kv_shared_layers": 20})
    with pytest.raises(RegistryError, match="known models"):
        get_model("gemma-5")


def test_build_records_manifest_skips_and_redoes_damaged_outputs(tmp_path):
    # The checkpoint step is what this test inspects: the rest of the build is the session's tiny_build's.
    options = BuildOptions(model="tiny")
    ctx, reports = run_build(options, tmp_path / "b", only={"checkpoint"})
    assert [r.status for r in reports] == ["done"]
    manifest = json.loads((tmp_path / "b" / "build.json").read_text())
    record = manifest["steps"]["checkpoint"]
    assert record["status"] == "done" and "checkpoint/model.safetensors" in record["outputs"]
    assert record["tools"]["transformers"].startswith("5.")

    _, again = run_build(options, tmp_path / "b", only={"checkpoint"})
    assert again[0].status == SKIPPED

    # A damaged output (same size, different bytes) is noticed and the step runs again.
    sidecar = tmp_path / "b" / "checkpoint.json"
    text = sidecar.read_text()
    sidecar.write_text(text.replace("tiny", "tinx", 1))
    _, third = run_build(options, tmp_path / "b", only={"checkpoint"})
    assert third[0].status == "done"
    assert json.loads(sidecar.read_text())["model_id"] == "tiny"


def test_failed_step_is_recorded_and_stops_the_build(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "llama"}))
    _, reports = run_build(BuildOptions(model=str(bad)), tmp_path / "b")
    assert reports[-1].status == FAILED and "not Gemma 4" in reports[-1].message
    manifest = json.loads((tmp_path / "b" / "build.json").read_text())
    assert manifest["steps"]["checkpoint"]["status"] == FAILED


def test_cli_build_bad_arch_models_and_doctor(tmp_path):
    result = runner.invoke(app, ["build", "--arch", "h99", "--model", "tiny", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "valid --arch values" in result.output and "h18p" in result.output

    result = runner.invoke(app, ["build", "--model", "tiny", "--quant", "int3", "--out", str(tmp_path / "b")])
    assert result.exit_code != 0 and "int3" in result.output

    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    assert {m["key"] for m in json.loads(result.stdout)} == {"e2b", "e4b", "12b", "31b", "tiny"}

    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0
    assert "coreai-core" in result.output and "usbmuxd" in result.output
