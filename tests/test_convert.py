"""Conversion of the tiny Gemma 4 model: parity with transformers, quantized storage, both PLE modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from devicebuild import copy_build

from gemmaios import parity
from gemmaios.convert import ConvertError, ConvertStep, convert_checkpoint
from gemmaios.decode_model import DecodeSpec, Gemma4Decode, rope_inv_freq
from gemmaios.pipeline import BuildOptions, fingerprint
from gemmaios.report import bundle_facts_from_dir
from gemmaios.steps import BUNDLE_STEPS, run_build


@pytest.fixture(scope="module")
def references(tiny_checkpoint):
    return parity.hf_reference(tiny_checkpoint, parity.encode_prompts(tiny_checkpoint))


@pytest.fixture(scope="module")
def fp32_model(tiny_checkpoint):
    return Gemma4Decode(tiny_checkpoint, quant="fp16", dtype=torch.float32).eval()


def test_spec_resolves_tiny_structure(tiny_checkpoint):
    spec = DecodeSpec.from_text_config(tiny_checkpoint.text_config)
    assert [lay.index for lay in spec.layers if lay.layer_type == "full_attention"] == [5, 11]
    assert [lay.index for lay in spec.kv_layers] == list(range(8))
    # KV-shared layers 8..11 read the last non-shared layer of their type: 7 (sliding), 5 (full),
    # as transformers' kv_sharing_modes says.
    assert [lay.kv_slot for lay in spec.layers[8:]] == [7, 7, 7, 5]
    assert spec.cache_shape(7) == (8, 1, 2, 7, 32)  # sliding dim 16 padded to the global 32


def test_proportional_rope_matches_transformers(tiny_checkpoint):
    from transformers import Gemma4TextConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = Gemma4TextConfig.from_dict(tiny_checkpoint.text_config)
    theirs, _ = ROPE_INIT_FUNCTIONS["proportional"](cfg, None, layer_type="full_attention")
    ours = rope_inv_freq(cfg.rope_parameters["full_attention"], 32)
    assert torch.equal(torch.tensor(ours), theirs)
    assert sum(f > 0 for f in ours) == 4  # 0.25 * 32 / 2 pairs rotate, the rest stay put


def test_fp32_greedy_parity_on_every_prompt(fp32_model, references, tiny_checkpoint):
    ple = parity.PleRows(tiny_checkpoint, fp32_model.spec, exact=True)
    report = parity.greedy_parity_gate(fp32_model, references, ple)
    assert report.passed
    assert report.token_matches == len(parity.GATE_PROMPTS) * parity.GATE_STEPS == 128
    assert report.max_abs_logit_error <= parity.FP32_LOGIT_TOLERANCE
    # The prompts are long enough that the sliding window (8) is crossed during the gate.
    assert all(len(r.prompt_ids) + parity.GATE_STEPS > 2 * 8 for r in references)


def test_broken_weight_fails_gate_at_first_diverging_position(tiny_checkpoint, references):
    model = Gemma4Decode(tiny_checkpoint, quant="fp16", dtype=torch.float32).eval()
    with torch.no_grad():
        model.layers[6].down_proj.weight.mul_(-3.0)
    ple = parity.PleRows(tiny_checkpoint, model.spec, exact=True)
    with pytest.raises(parity.ParityGateFailed) as info:
        parity.greedy_parity_gate(model, references, ple)
    err = info.value
    tokens, _ = parity.decode_steps(model, references[err.prompt].prompt_ids, parity.GATE_STEPS, ple)
    first = next(i for i, (a, b) in enumerate(zip(tokens, references[err.prompt].tokens, strict=True)) if a != b)
    assert err.position == first
    assert f"position {first}" in str(err)
    assert all(r.tokens == parity.decode_steps(model, r.prompt_ids, parity.GATE_STEPS, ple)[0]
               for r in references[: err.prompt])


def test_quantized_gate_reports_and_catches_damage(tiny_checkpoint, references):
    """The trained tiny model is held to top-1 floors; a damaged weight matrix falls below them."""
    model = Gemma4Decode(tiny_checkpoint, quant="int8", dtype=torch.float32).eval()
    table = parity.PleRows(tiny_checkpoint, model.spec, exact=False)
    report = parity.quantized_parity_gate(model, references, "int8", table, trained_tiny=True)
    assert report.passed and report.top1_agreement >= parity.TRAINED_TINY_MIN_TOP1["int8"]
    assert report.bound == f"top1_agreement >= {parity.TRAINED_TINY_MIN_TOP1['int8']}"
    with torch.no_grad():
        model.layers[3].down_proj.levels.mul_(-1)
    with pytest.raises(parity.ParityGateFailed) as info:
        parity.quantized_parity_gate(model, references, "int8", table, trained_tiny=True)
    assert info.value.position is not None
    with torch.no_grad():
        model.layers[3].down_proj.levels.mul_(-1)  # undo; now damage only the untied int8 head
        model.lm_head.levels.mul_(-1)
    with pytest.raises(parity.ParityGateFailed, match="top-1"):
        parity.quantized_parity_gate(model, references, "int8", table, trained_tiny=True)


def test_quantized_gate_runs_the_untied_quantized_head(tiny_checkpoint, references):
    """int4 weights get an untied int4 lm_head (the gather keeps the exact table); gate 2 runs it."""
    model = Gemma4Decode(tiny_checkpoint, quant="int4", dtype=torch.float32).eval()
    exact = torch.from_numpy(contract_embed(tiny_checkpoint))
    assert model.head_quant == "int4" and model.lm_head.quantized and model.lm_head.shape == (384, 64)
    assert torch.equal(model.embed, exact)  # the gather table is not quantized
    head = model.lm_head.dense_weight()
    assert not torch.equal(head, exact) and torch.allclose(head, exact, atol=float(exact.abs().max()) / 7)
    table = parity.PleRows(tiny_checkpoint, model.spec, exact=False)
    report = parity.quantized_parity_gate(model, references, "int4", table, trained_tiny=True)
    assert report.passed and report.top1_agreement >= parity.TRAINED_TINY_MIN_TOP1["int4"]
    # (the int8 gate test above shows a damaged head fails gate 2)
    tied = Gemma4Decode(tiny_checkpoint, quant="int4", head_quant="fp16", dtype=torch.float32)
    assert tied.lm_head is None and tied.head_quant == "fp16"


def contract_embed(checkpoint) -> np.ndarray:
    from safetensors.numpy import load_file

    name = "model.embed_tokens.weight"
    return load_file(str(checkpoint.tensor_file(name)))[name].astype(np.float32)


def contract_table(checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """The tables contract, independently: per-row absmax/127 int8 of embed_tokens_per_layer."""
    from safetensors.numpy import load_file

    rows = load_file(str(checkpoint.tensor_file("model.embed_tokens_per_layer.weight")))[
        "model.embed_tokens_per_layer.weight"
    ].astype(np.float32)
    scale = np.abs(rows).max(axis=1) / 127
    table = np.round(rows / np.where(scale == 0, 1, scale)[:, None]).astype(np.int8)
    return table, scale.astype(np.float32)


def test_tbl_gather_in_graph_equals_provider_input(tiny_checkpoint):
    provider = Gemma4Decode(tiny_checkpoint, quant="int4", dtype=torch.float32, ple="provider").eval()
    tbl = Gemma4Decode(tiny_checkpoint, quant="int4", dtype=torch.float32, ple="tbl").eval()
    table, scale = contract_table(tiny_checkpoint)
    rows = parity.PleRows(tiny_checkpoint, provider.spec, exact=False)
    kp, vp = provider.new_cache(8)
    kt, vt = tbl.new_cache(8)
    with torch.no_grad():
        for pos, token in enumerate([2, 50, 300, 7, 120]):
            ids = torch.tensor([[token]], dtype=torch.int32)
            positions = torch.arange(pos + 1, dtype=torch.int32).unsqueeze(0)
            a = provider(ids, positions, rows(token), kp, vp)
            b = tbl(ids, positions, torch.from_numpy(table), torch.from_numpy(scale), kt, vt)
            assert torch.allclose(a, b, atol=1e-5), pos


def test_rejects_bad_options(tiny_checkpoint, tmp_path):
    with pytest.raises(ConvertError, match="--quant"):
        convert_checkpoint(tiny_checkpoint, tmp_path, quant="int3")
    with pytest.raises(ConvertError, match="--max-context"):
        convert_checkpoint(tiny_checkpoint, tmp_path, max_context=1 << 30)
    with pytest.raises(ConvertError, match="--head-quant"):
        convert_checkpoint(tiny_checkpoint, tmp_path, head_quant="int2")


def test_build_writes_gated_int4_bundle(tiny_build, tmp_path):
    """The build's convert step: gates run, int4 storage in the asset, LanguageBundle metadata (the
    session's `gemmaios build --model tiny`, read from a copy)."""
    assert [tiny_build.statuses[s] for s in ("checkpoint", "tables", "oracle", "convert")] == ["done"] * 4
    options = BuildOptions(model="tiny", quant="int4", ple="provider")
    build = copy_build(tiny_build.path, tmp_path / "build")
    ctx, _ = run_build(options, build, only={"checkpoint"})
    details = json.loads((ctx.build_dir / "build.json").read_text())["steps"]["convert"]["details"]
    assert details["name"] == "gemma4_tiny_decode_int4"
    assert details["bundle_dir"] == "bundle/gemma4_tiny_decode_int4"
    assert details["aimodel"] == "bundle/gemma4_tiny_decode_int4/gemma4_tiny_decode_int4.aimodel"
    # no --max-context: min(4096, the model's max_position_embeddings)
    assert (details["quant"], details["ple"], details["max_context"]) == ("int4", "provider", 4096)
    assert details["head_quant"] == "int4"  # the default follows --quant
    gates = details["gates"]
    assert gates["fp32_greedy"]["token_matches"] == 128 and gates["fp32_greedy"]["passed"]
    assert gates["quantized"]["passed"] and gates["quantized"]["head_quant"] == "int4"
    # The trained tiny model is held to its top-1 floor, not the random-weight logit-error bound.
    assert gates["quantized"]["bound"] == f"top1_agreement >= {parity.TRAINED_TINY_MIN_TOP1['int4']}"
    assert gates["quantized"]["top1_agreement"] >= parity.TRAINED_TINY_MIN_TOP1["int4"]
    asset = gates["asset"]
    assert asset["quantized_type"] == "Int4" and 0.98 <= asset["ratio"] <= 1.02
    assert "Int8" not in asset["storage_types"]
    # The expected int4 count holds the untied head (vocab × hidden) on top of the linears.
    linears_only = Gemma4Decode(ctx.checkpoint, quant="int4", head_quant="fp16")
    assert asset["expected_elements"] == sum(n * k for n, k in (m.shape for _, m in linears_only.linears()
                                                                  if m.quantized)) + 384 * 64
    assert [i["name"] for i in details["inputs"]] == ["input_ids", "position_ids", "ple_tokens"]
    assert details["inputs"][0]["shape"] == [1, 1] and details["inputs"][1]["shape"] == [1, None]
    assert details["inputs"][2] == {"name": "ple_tokens", "dtype": "Float16", "shape": [1, 1, 12, 8]}
    assert [(s["name"], s["shape"]) for s in details["states"]] == [
        ("keyCache", [8, 1, 2, None, 32]),
        ("valueCache", [8, 1, 2, None, 32]),
    ]
    bundle = ctx.build_dir / details["bundle_dir"]
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["kind"] == "llm" and meta["metadata_version"] == "0.2"
    assert meta["assets"]["main"] == "gemma4_tiny_decode_int4.aimodel"
    assert meta["language"]["vocab_size"] == 384 and meta["language"]["max_context_length"] == 4096  # min(4096, 8192)
    assert meta["language"]["function_map"] == {"main": ["main"]}
    assert meta["gemmaios"]["quant"] == "int4" and meta["gemmaios"]["ple"] == "provider"
    assert meta["gemmaios"]["head_quant"] == "int4"
    assert meta["gemmaios"]["head"] == {
        "tied": False, "shape": [384, 64], "embedding_dtype": "float16", "embedding_bytes": 384 * 64 * 2,
        "scheme": "linear symmetric absmax, per block of 32 input columns (untied copy)",
        "head_bytes": 384 * 64 // 2 + 384 * 2 * 2,
    }
    assert (bundle / "tokenizer" / "tokenizer.json").is_file()
    # The summary read back independently shows int4 weights.
    from coreai.authoring.asset import AIModelAsset

    storage = dict(AIModelAsset.load(ctx.build_dir / details["aimodel"]).summary().storage_types)
    assert storage["Int4"] >= asset["expected_elements"]
    # The report streams the untied head, not the fp16 embedding table it also stores.
    facts = bundle_facts_from_dir(bundle)
    asset_size = sum(p.stat().st_size for p in (ctx.build_dir / details["aimodel"]).rglob("*") if p.is_file())
    assert facts.weight_bytes == asset_size - (384 * 64 * 2 - 64 * 2)
    # Unchanged inputs: the second build skips the step; --head-quant is part of the fingerprint.
    _, again = run_build(options, build, only=BUNDLE_STEPS)
    assert [r.status for r in again] == ["skipped"] * 4
    step = ConvertStep()
    default = fingerprint(step.inputs(ctx))
    assert fingerprint(step.inputs(ctx)) == default == ctx.step_fingerprint("convert")
    ctx.options.head_quant = "int4"  # explicit, same as the default
    assert fingerprint(step.inputs(ctx)) == default
    ctx.options.head_quant = "fp16"
    assert step.inputs(ctx)["head_quant"] == "fp16" and fingerprint(step.inputs(ctx)) != default


@pytest.mark.full
def test_fp16_bundle_keeps_the_tied_head(tiny_checkpoint, tiny_bundle_builds):
    from coreai.authoring.asset import AIModelAsset

    build = tiny_bundle_builds("fp16", "provider")  # the session's gated fp16 build
    details = json.loads((build / "build.json").read_text())["steps"]["convert"]["details"]
    bundle_dir, aimodel = build / details["bundle_dir"], build / details["aimodel"]
    assert details["head_quant"] == "fp16"
    meta = json.loads((bundle_dir / "metadata.json").read_text())["gemmaios"]
    assert meta["head_quant"] == "fp16" and meta["head"]["tied"] and "head_bytes" not in meta["head"]
    storage = dict(AIModelAsset.load(aimodel).summary().storage_types)
    assert "Int4" not in storage and "Int8" not in storage
    # One [V, H] table serves gather and head: fp16 storage holds it once, not twice.
    model = Gemma4Decode(tiny_checkpoint, quant="fp16")
    fp16_once = sum(t.numel() for t in [*model.parameters(), *model.buffers()] if t.dtype == torch.float16)
    assert abs(storage["Float16"] - fp16_once) < 384 * 64 / 2
    assert bundle_facts_from_dir(bundle_dir).weight_bytes == sum(
        p.stat().st_size for p in aimodel.rglob("*") if p.is_file())


@pytest.mark.full
def test_tbl_bundle_exports_table_inputs(tiny_checkpoint, tmp_path):
    """Built for --target mac: an E4B-shaped model does not need the flash-decode kernel, so the Mac
    bundle is the stock graph (same name, no kernel op)."""
    from gemmaios.kernels import asset_attention_summary

    result = convert_checkpoint(tiny_checkpoint, tmp_path, "int8", "tbl", 128, gates=False, target="mac")
    assert result.name == "gemma4_tiny_decode_int8_tbl"
    assert result.kernel is None and "flash_decode" not in result.gates
    assert asset_attention_summary(result.aimodel).kernels == []
    assert [(i["name"], i["dtype"], i["shape"]) for i in result.inputs[2:]] == [
        ("ple_table", "Int8", [384, 96]),
        ("ple_scale", "Float32", [384]),
    ]
    assert result.gates["asset"]["quantized_type"] == "Int8"
    meta = json.loads(result.metadata.read_text())
    assert meta["gemmaios"]["ple_table"]["shape"] == [384, 96]
    assert meta["gemmaios"]["gates"]["parity"] == "skipped: disabled"
    assert (meta["gemmaios"]["target"], meta["gemmaios"]["flash_decode"]) == ("mac", None)


def test_k_eq_v_and_padded_heads_match_transformers(tiny_checkpoint, tmp_path):
    """12B/31B-style full layers: values are the raw key projection, fewer KV heads (padded in the cache)."""
    import shutil

    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    from gemmaios.checkpoint import load_checkpoint
    from gemmaios.tiny import tiny_text_config_kwargs

    torch.manual_seed(7)
    config = Gemma4TextConfig(**{**tiny_text_config_kwargs(), "attention_k_eq_v": True, "num_global_key_value_heads": 1})
    Gemma4ForCausalLM(config).eval().save_pretrained(tmp_path / "kev", safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tiny_checkpoint.path / name, tmp_path / "kev" / name)
    ckpt = load_checkpoint(tmp_path / "kev", model_id="kev")
    spec = DecodeSpec.from_text_config(ckpt.text_config)
    full = spec.layers[5]
    assert full.k_eq_v and full.kv_heads == 1 and spec.cache_heads == 2
    assert not ckpt.has_tensor("model.layers.5.self_attn.v_proj.weight")
    refs = parity.hf_reference(ckpt, parity.encode_prompts(ckpt, parity.GATE_PROMPTS[:2]), steps=16)
    model = Gemma4Decode(ckpt, quant="fp16", dtype=torch.float32).eval()
    report = parity.greedy_parity_gate(model, refs, parity.PleRows(ckpt, spec, exact=True))
    assert report.passed and report.token_matches == 32
