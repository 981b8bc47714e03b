"""Issue 31: mixed-bit recipes — the format, Core AI's storage of each width read back from a saved
asset, the AWQ fold, sensitivity, the pre-quantized refusal, and (full) the tiny model's 2/4/8 bundle."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gemmaios.checkpoint import PreQuantizedCheckpoint, load_checkpoint
from gemmaios.quantize import STORED_BITS, quantize_groups
from gemmaios.recipe import RecipeError, TensorQuant, load_recipe, packaged_recipes, parse_recipe

# ---- the format ---------------------------------------------------------------------------------

def test_the_31b_recipe_is_the_seeds_plan_in_core_ai_storage():
    r = load_recipe("gemma4-31b-q2-mixed")
    want = {"layers.7.mlp.gate_proj": ("aff2g64", "UInt2"), "layers.7.mlp.up_proj": ("aff2g64", "UInt2"),
            "layers.7.mlp.down_proj": ("aff3g64", "UInt4"),  # 3-bit levels in a 4-bit container
            "layers.7.self_attn.q_proj": ("aff4g64+awq", "UInt4"), "layers.7.self_attn.k_proj": ("aff4g64+awq", "UInt4"),
            "layers.7.self_attn.v_proj": ("aff4g64+awq", "UInt4"), "layers.7.self_attn.o_proj": ("fp16", "Float16"),
            "lm_head": ("aff4g64", "UInt4"), "embed_tokens": ("aff4g64", "UInt4")}
    assert {n: (r.for_tensor(n).label, r.for_tensor(n).storage) for n in want} == want
    assert set(packaged_recipes()) >= {"gemma4-31b-q2-mixed", "iphone-mixed", "tiny-mixed-248"}
    for name in packaged_recipes():
        recipe = load_recipe(name)
        assert recipe.floors.get("kl") and recipe.floors.get("top1"), name  # every packaged recipe has floors
        assert parse_recipe(recipe.as_dict()).fingerprint() == recipe.fingerprint()  # as_dict round-trips


def test_the_31b_plan_reads_about_the_seeds_18_gb_a_token_and_the_iphone_plan_less_than_int4():
    """Arithmetic on Core AI's storage at the registry's full-size dimensions (benchmarks/recipe_bytes.py):
    the seed's plan with its kept o_proj and 3-bit-in-4-bit down_proj lands near the seed's own 18 GB."""
    from gemmaios.recipe import recipe_estimate, registry_linear_shapes
    from gemmaios.registry import MODELS
    from gemmaios.roofline import estimate_weight_bytes

    spec = MODELS["31b"]
    est = recipe_estimate(load_recipe("gemma4-31b-q2-mixed"), registry_linear_shapes(spec), spec.vocab_size,
                          spec.hidden_size)
    assert 16.2e9 <= est["bytes_per_token"] <= 19.8e9  # the seed: ~18 GB (MLX packs 3 bits; Core AI stores 4)
    assert est["by_label"]["fp16"]["tensors"] == 60 and est["by_label"]["aff2g64"]["tensors"] == 120
    assert est["asset_weight_bytes"] == est["bytes_per_token"] - spec.hidden_size * 2 + spec.vocab_size * spec.hidden_size * 2
    e4b = MODELS["e4b"]
    mixed = recipe_estimate(load_recipe("iphone-mixed"), registry_linear_shapes(e4b), e4b.vocab_size, e4b.hidden_size)
    assert mixed["bytes_per_token"] < 0.9 * estimate_weight_bytes(e4b, "int4").total_bytes


@pytest.mark.parametrize(("data", "says"), [
    ({"name": "x", "default": {"bits": 5}}, "bits 5 is not one of 2, 3, 4, 8 or kept"),
    ({"name": "x", "default": {"group": 48}}, "group 48 is not a power of two"),
    ({"name": "x", "default": {"mode": "asym"}}, "mode 'asym' is not symmetric or affine"),
    ({"name": "x", "tensors": [{"bits": 4}]}, "tensors[0] has no `match` pattern"),
    ({"name": "x", "tensors": [{"match": "lm_head", "bitz": 4}]}, "unknown key(s) bitz"),
    ({"name": "x", "floors": {"ppl": 3}}, "unknown floor(s) ppl"),
    ({"description": "no name"}, "a recipe needs a `name`"),
])
def test_a_bad_recipe_is_a_named_error_that_says_what_is_wrong(data, says):
    with pytest.raises(RecipeError) as caught:
        parse_recipe(data, "my.yaml")
    assert says in str(caught.value) and caught.value.hint


def test_a_recipe_that_does_not_fit_the_checkpoint_names_the_tensor(tiny_checkpoint, tmp_path):
    from gemmaios.recipe import checkpoint_linear_shapes

    shapes = checkpoint_linear_shapes(tiny_checkpoint)
    with pytest.raises(RecipeError, match=r"layers\.0\.per_layer_projection has 8 input columns"):
        parse_recipe({"name": "g32", "default": {"bits": 4, "group": 32}}).plan(shapes)
    with pytest.raises(RecipeError, match=r"o_proj asks for AWQ scaling, but its input does not come from a norm"):
        parse_recipe({"name": "a", "tensors": [{"match": "layers.*.self_attn.o_proj", "awq": True},
                                               {"match": "layers.*.per_layer_projection", "bits": "kept"}]}).plan(shapes)
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndefault: {bits: 8}\n")
    assert load_recipe(path).for_tensor("layers.0.mlp.up_proj").label == "sym8g32"
    with pytest.raises(RecipeError, match="no packaged recipe named 'nope'"):
        load_recipe("nope")


# ---- the quantizer's grids ----------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("mode", ["symmetric", "affine"])
def test_grids_stay_in_range_and_round_to_the_nearest_level(bits, mode):
    torch.manual_seed(bits)
    w = torch.randn(16, 128) * torch.linspace(0.1, 3, 128)
    qw = quantize_groups(w, bits, 64, mode)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if mode == "symmetric" else (0, (1 << bits) - 1)
    assert int(qw.q.min()) >= lo and int(qw.q.max()) <= hi
    assert int(qw.q.min()) == lo or mode == "symmetric"  # affine: each group's minimum is a level
    err = (qw.dequantize() - w).abs()
    half_step = qw.scale.float().repeat_interleave(64, dim=1) / 2
    assert bool((err <= half_step * 1.01 + 1e-3).all())  # nearest level (fp16 scale rounding aside)
    assert qw.storage_bytes() == 16 * 128 * STORED_BITS[bits] // 8 + 16 * 2 * (2 if mode == "symmetric" else 4)


# ---- what Core AI stores, read back from a saved asset ------------------------------------------

def test_each_width_packs_to_its_core_ai_type_and_reads_back_equal(tmp_path):
    """2/3/4/8 bits × symmetric/affine through coreai-torch into a saved .aimodel: the stored types
    (3 → 4-bit container), levels, scales and offsets decoded from the file equal the quantizer's,
    and Core AI's runtime computes the module's output."""
    import coreai.runtime as rt
    import coreai_torch
    from coreai.authoring.asset import AIModelAsset

    from gemmaios.assetread import stored_weights
    from gemmaios.decode_model import Linear

    torch.manual_seed(0)
    specs = [TensorQuant(b, 32 if b < 4 else 64, m) for b in (2, 3, 4, 8) for m in ("symmetric", "affine")]

    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lins = torch.nn.ModuleList(Linear(torch.randn(16, 128) * 0.05, tq, torch.float16) for tq in specs)

        def forward(self, x):
            return torch.stack([lin(x) for lin in self.lins]).sum(0)

    module = Stack().eval()
    x = torch.randn(1, 128, dtype=torch.float16)

    def export_fn(m):
        return torch.export.export(m, (x,)).run_decompositions(coreai_torch.get_decomp_table())

    conv = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    conv.add_pytorch_module(module, export_fn=export_fn, input_names=("x",), output_names=("y",),
                            entrypoint_name="main")
    asset = tmp_path / "widths.aimodel"
    conv.to_coreai().save_asset(asset, rt.AIModelAssetMetadata())

    stored = stored_weights(asset)
    expected_types = {(2, "symmetric"): "Int2", (2, "affine"): "UInt2", (3, "symmetric"): "Int4",
                      (3, "affine"): "UInt4", (4, "symmetric"): "Int4", (4, "affine"): "UInt4",
                      (8, "symmetric"): "Int8", (8, "affine"): "UInt8"}
    for tq, lin in zip(specs, module.lins, strict=True):
        qw = lin.quantized_weight()
        match = [s for s in stored if np.array_equal(s.levels, qw.q.numpy().astype(np.int16))
                 and np.array_equal(s.scale, qw.scale.numpy())]
        assert len(match) == 1, tq.label
        s = match[0]
        assert s.storage == expected_types[tq.bits, tq.mode] == tq.storage, tq.label
        assert s.packed_bytes == 16 * 128 * STORED_BITS[tq.bits] // 8
        offset = np.zeros_like(s.scale) if qw.offset is None else qw.offset.numpy()
        assert np.array_equal(s.minval, offset) and not s.zero_point.any()
        assert np.allclose(s.dequantize(), qw.dequantize().numpy(), atol=2e-3)
    # The asset's own summary agrees: one 16x128 level tensor per type (two for Int4/UInt4: 3 and 4 bits),
    # plus at most the merged zero-point constants of the scale shapes (16 x 128/group each).
    summary = dict(AIModelAsset.load(asset).summary().storage_types)
    for kind, tensors in {"Int2": 1, "UInt2": 1, "Int4": 2, "UInt4": 2, "Int8": 1, "UInt8": 1}.items():
        assert tensors * 2048 <= summary[kind] <= tensors * 2048 + 2 * 16 * 4, (kind, summary)
    assert "Int3" not in summary and "UInt3" not in summary

    async def run():
        async with AIModelAsset.load(asset).executable() as model:
            out = await model.load_function("main")(inputs={"x": rt.NDArray(x.numpy())})
            return out["y"].numpy()

    got = asyncio.new_event_loop().run_until_complete(run())
    with torch.no_grad():
        want = module.float()(x.float()).numpy()
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max()


# ---- calibration and the AWQ fold ---------------------------------------------------------------

def test_the_awq_fold_is_exact_in_fp32_and_moves_real_scales(tiny_checkpoint):
    import dataclasses

    from gemmaios import parity
    from gemmaios.calibrate import awq_scales, calibrate
    from gemmaios.decode_model import Gemma4Decode

    plain = Gemma4Decode(tiny_checkpoint, quant="fp16", dtype=torch.float32).eval()
    calibration = calibrate(tiny_checkpoint, model=plain)
    assert calibration.tokens > 200 and calibration.prompt_set["name"] == "builtin"
    recipe = dataclasses.replace(load_recipe("iphone-mixed"), awq_alpha=0.5)  # q/k/v and gate/up ask for AWQ
    scales = awq_scales(recipe, calibration, tiny_checkpoint)
    assert len(scales) == 2 * tiny_checkpoint.text_config["num_hidden_layers"]  # input_ + pre_feedforward_layernorm
    assert min(float(s.max() / s.min()) for s in scales.values()) > 1.05  # not the identity
    folded = Gemma4Decode(tiny_checkpoint, quant="fp16", dtype=torch.float32, awq=scales).eval()
    assert not torch.equal(folded.layers[2].input_layernorm.weight, plain.layers[2].input_layernorm.weight)
    assert not torch.equal(folded.layers[2].gate_proj.weight, plain.layers[2].gate_proj.weight)
    table = parity.PleRows(tiny_checkpoint, plain.spec, exact=True)
    for prompt in parity.encode_prompts(tiny_checkpoint)[:2]:
        tokens, want = parity.decode_steps(plain, prompt, 6, table)
        got_tokens, got = parity.decode_steps(folded, prompt, 6, table)
        assert got_tokens == tokens
        assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


# ---- sensitivity ---------------------------------------------------------------------------------

def _fragile_copy(checkpoint, out: Path) -> Path:
    """The checkpoint with layers.3.mlp.down_proj made fragile and the model's function unchanged:
    one input column of down_proj in each group of 32 × 1000 and the matching output rows of up_proj
    / 1000 (gelu(gate)·up is linear in up), so every group quantizes to its outlier alone."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(checkpoint.path, out)
    [shard] = checkpoint.weight_files
    weights = load_file(str(shard))
    prefix = checkpoint.weight_prefix + "layers.3.mlp."
    down, up = weights[prefix + "down_proj.weight"].clone(), weights[prefix + "up_proj.weight"].clone()
    for column in range(5, down.shape[1], 32):
        down[:, column] *= 1000.0
        up[column, :] /= 1000.0
    weights[prefix + "down_proj.weight"], weights[prefix + "up_proj.weight"] = down, up
    save_file(weights, str(out / shard.name), metadata={"format": "pt"})
    return out


def test_sensitivity_ranks_a_deliberately_fragile_tensor_first_and_plans_a_budget(tiny_checkpoint, tmp_path):
    from gemmaios.recipe import load_recipe as load
    from gemmaios.sensitivity import parse_candidates, plan_recipe, propose_plan, tensor_sensitivity

    fragile = load_checkpoint(_fragile_copy(tiny_checkpoint, tmp_path / "fragile"), model_id="tiny")
    prompts = tmp_path / "two.yaml"
    prompts.write_text("name: two\nprompts:\n  - What is the capital of France?\n  - Count from one to ten.\n")
    # every weight of the model, streamed layer by layer
    report = tensor_sensitivity(fragile, parse_candidates("4,8", 32, "symmetric"), prompts_file=prompts)
    assert len(report.kl) == 90  # all but the 12 per_layer_projection (8 input columns: no group of 32)
    ranking = report.ranking()
    assert ranking[0][0] == "layers.3.mlp.down_proj", ranking[:3]
    assert ranking[0][1] > 3 * ranking[1][1]
    assert all(report.kl[n]["sym8g32"] < report.kl[n]["sym4g32"] for n in report.kl)  # 8 bits beat 4 everywhere
    weights = sum(o * i for o, i in report.shapes.values())
    plan, spent = propose_plan(report, int(5 * weights / 8))  # room to widen a few tensors beyond 4.5 bits
    assert spent <= 5 * weights / 8
    assert plan["layers.3.mlp.down_proj"].bits in (8, None)  # the budget goes to the fragile tensor first
    assert sum(tq.bits == 4 for tq in plan.values()) >= len(plan) // 2  # and not to every tensor
    recipe_file = tmp_path / "plan.yaml"
    import yaml

    recipe_file.write_text(yaml.safe_dump(plan_recipe(plan, "plan", "test")))
    assert load(recipe_file).for_tensor("layers.3.mlp.down_proj").label == plan["layers.3.mlp.down_proj"].label


# ---- refusing a pre-quantized checkpoint ----------------------------------------------------------

def test_a_gemma_quantized_checkpoint_is_refused_with_the_reason(tiny_checkpoint, tmp_path):
    folder = tmp_path / "qat"
    shutil.copytree(tiny_checkpoint.path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gemma", "weight_bits": 4, "activation_bits": 8}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PreQuantizedCheckpoint) as caught:
        load_checkpoint(folder, model_id="tiny")
    text = str(caught.value)
    assert 'quant_method "gemma"' in text and "int8 activation" in text and "fp16" in text
    assert "--recipe" in caught.value.hint


# ---- the tiny model's 2/4/8 recipe, end to end (full) --------------------------------------------

@pytest.mark.full
def test_the_tiny_mixed_recipe_converts_reads_back_and_runs_within_its_floors(tiny_mixed_build):
    from gemmaios.assetread import stored_weights
    from gemmaios.checkpoint import resolve_checkpoint
    from gemmaios.decode_model import Gemma4Decode
    from gemmaios.report.bundlefacts import bundle_facts_from_dir

    manifest = json.loads((tiny_mixed_build / "build.json").read_text())
    assert manifest["options"]["recipe"] == "tiny-mixed-248"
    convert = manifest["steps"]["convert"]
    assert convert["inputs"]["recipe"]["name"] == "tiny-mixed-248"
    details = convert["details"]
    recipe = load_recipe("tiny-mixed-248")
    gates = details["gates"]
    for gate in (gates["quantized"], gates["bundle_run"]):  # the module vs HF fp32, the runtime vs fp32
        assert gate["kl_mean"] <= recipe.floors["kl"] and gate["top1"] >= recipe.floors["top1"], gate
        assert gate["kl_mean"] > 0  # a real measurement of a changed model, not an echo of fp32
    assert gates["bundle_run"]["max_logit_error"] <= gates["bundle_run"]["logit_error_bound"]
    by_storage = gates["asset"]["levels_read_back"]["by_storage"]
    assert {k: v["bits_in_recipe"] for k, v in by_storage.items()} == {"UInt2": [2], "UInt4": [4], "Int8": [8],
                                                                      "Int4": [4]}
    # independently of the gate: the stored levels equal a fresh quantizer run's
    bundle = tiny_mixed_build / details["bundle_dir"]
    stored = stored_weights(tiny_mixed_build / details["aimodel"])
    model = Gemma4Decode(resolve_checkpoint(str(tiny_mixed_build / "checkpoint")), dtype=torch.float32, recipe=recipe)
    ours = {n: lin.quantized_weight() for n, lin in model.checkpoint_linears() if lin.quantized}
    assert len(ours) == len(stored) == gates["asset"]["levels_read_back"]["tensors"]
    for name in ("layers.4.mlp.gate_proj", "layers.4.self_attn.q_proj", "layers.4.mlp.down_proj", "lm_head"):
        q = ours[name].q.numpy().astype(np.int16)
        assert sum(np.array_equal(s.levels, q) for s in stored) == 1, name
    meta = json.loads((bundle / "metadata.json").read_text())["gemmaios"]
    assert meta["recipe"]["tensors"]["layers.4.self_attn.o_proj"] == "fp16"
    assert meta["weight_bytes"] == meta["recipe"]["bytes_per_token"] == details["recipe"]["bytes_per_token"]
    assert bundle_facts_from_dir(bundle).weight_bytes == meta["recipe"]["bytes_per_token"]  # the roofline's bytes


# ---- the CLI and the build folder ----------------------------------------------------------------

def test_cli_lists_recipes_and_names_a_bad_one_before_making_a_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gemmaios.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["recipes", "--json"])
    assert listed.exit_code == 0
    assert {r["name"] for r in json.loads(listed.output)} == set(packaged_recipes())
    monkeypatch.chdir(tmp_path)
    bad = runner.invoke(app, ["build", "--model", "tiny", "--recipe", "nope"])
    assert bad.exit_code == 2 and "no packaged recipe named 'nope'" in " ".join(bad.output.split())
    assert not (tmp_path / "build").exists()
    widths = runner.invoke(app, ["sensitivity", "--model", "tiny", "--bits", "5"])
    assert widths.exit_code == 2 and "each width must be 2, 3, 4 or 8" in " ".join(widths.output.split())


def test_cli_sensitivity_plans_a_budget_and_writes_a_recipe_that_loads(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gemmaios.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sensitivity", "--model", "tiny", "--bits", "4,8", "--group", "32",
                                      "--mode", "symmetric", "--only", "layers.0.mlp.*", "--budget-bits", "6",
                                      "--write-recipe", "plan.yaml", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    plan = report["plan"]
    assert set(plan["tensors"]) == {f"layers.0.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")}
    assert 4 < plan["bits_per_weight"] <= 6  # 4-bit levels plus fp16 scales per 32, some tensors promoted to 8
    recipe = load_recipe(str(tmp_path / "plan.yaml"))
    assert recipe.name == "plan" and plan["recipe"] == "plan.yaml"


def test_the_folder_remembers_its_recipe_and_refuses_another(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gemmaios.buildfolder import default_build_dir, stored_options
    from gemmaios.cli import app
    from gemmaios.pipeline import MANIFEST_SCHEMA, BuildOptions

    folder = tmp_path / "build" / "tiny-h18p-tiny-mixed-248-provider"
    assert default_build_dir(BuildOptions(model="tiny", recipe="tiny-mixed-248")).name == folder.name
    folder.mkdir(parents=True)
    recorded = {"model": "tiny", "arch": "h18p", "quant": "int4", "ple": "provider", "recipe": "tiny-mixed-248",
                "extra": {}}
    (folder / "build.json").write_text(json.dumps({"schema": MANIFEST_SCHEMA, "steps": {}, "options": recorded}))
    assert stored_options(folder).recipe == "tiny-mixed-248"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["convert", "--recipe", "iphone-mixed"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "was built with --recipe tiny-mixed-248; this command asks for --recipe iphone-mixed" in output


@pytest.mark.full
def test_the_31b_seed_plan_converts_for_the_mac_on_the_31b_shaped_tiny(tiny_dense_dirs, tmp_path):
    """The seed's plan (AWQ q/k/v, 2-bit gate/up, 3-bit down, kept o_proj) on the 31B's structure (k_eq_v full
    layers, the flash-decode kernel): the kernel gate passes and 3-bit levels are read back from UInt4 containers.
    Random weights: the KL floors are not judged here (gates off); the full-size figures are arithmetic
    (test_the_31b_plan_reads_about_the_seeds_18_gb_a_token...)."""
    from gemmaios.convert import convert_checkpoint

    checkpoint = load_checkpoint(tiny_dense_dirs["31b"], model_id="tiny")
    result = convert_checkpoint(checkpoint, tmp_path, "int4", "provider", 64, gates=False, target="mac",
                                recipe=load_recipe("gemma4-31b-q2-mixed"))
    assert result.name.endswith("_decode_mixed_gemma4_31b_q2_mixed_msdpa_g8")
    assert result.gates["flash_decode"]["passed"]
    stored = result.gates["asset"]["levels_read_back"]["by_storage"]
    assert stored["UInt4"]["bits_in_recipe"] == [3, 4] and stored["UInt2"]["bits_in_recipe"] == [2]
    assert set(stored) == {"UInt2", "UInt4"}  # o_proj kept in fp16, nothing symmetric
    assert result.recipe["awq"]["norms"] == checkpoint.text_config["num_hidden_layers"]  # one input_layernorm each
    assert result.recipe["tensors"]["layers.0.self_attn.o_proj"] == "fp16"


def test_head_quant_and_a_recipe_are_one_choice_too_many(tiny_checkpoint, tmp_path):
    from gemmaios.convert import ConvertError, convert_checkpoint

    with pytest.raises(ConvertError, match="--head-quant cannot be combined with --recipe") as caught:
        convert_checkpoint(tiny_checkpoint, tmp_path, "int4", head_quant="int8", recipe=load_recipe("tiny-mixed-248"))
    assert "lm_head" in caught.value.hint
    assert not list(tmp_path.iterdir())  # refused before any work
