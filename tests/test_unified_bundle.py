"""The 12B's four-function Mac bundle (issue 29) at toy size, under Core AI's own runtime.

One asset: `main`, `prefill_multimodal`, `embed_vision`, `embed_audio`, the weights stored once,
the decoder int4 per block of 32, the embedders fp16, the seed's constants in metadata.json. The
runtime runs each function: the embedders against the eager fp32 modules, `prefill_multimodal` on a
text prompt bit-identical to `main`'s token-by-token walk, and on a mixed prompt (an image block
straddling the sliding window, an audio clip) closer to HF's mask rule than to a causal-only one.

With random weights (no trained tiny unified model in the package) its greedy tokens under the
runtime's f16 arithmetic are not stable (0/5 argmaxes agree with eager fp32 even on text prompts of
70 tokens), so the 8/8 token-exact gates skip, saying so. With the trained one
(gemmaios/data/tiny-unified, `python -m gemmaios.unified.tinymodel --device cuda`) the bundle is
built by the pipeline with every gate on, and the eight image/audio/mixed prompts must be token-exact
against HF's Gemma4Unified in fp32. The build uses `--kernel stock`: the Mac flash-decode kernel
cannot run under the Linux runtime.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gemmaios.checkpoint import load_checkpoint
from gemmaios.hostrun.multimodal import MultimodalRunner
from gemmaios.tiny import TINY_UNIFIED_RETRAIN, TINY_UNIFIED_SHIPPED_DIR, tiny_unified_trained
from gemmaios.unified_embedders import AudioEmbedder, VisionEmbedder
from gemmaios.unified_inputs import UnifiedSpec, attention_masks, frame_audio, prepare_image

pytestmark = pytest.mark.full

SEED_FUNCTIONS = ["main", "prefill_multimodal", "embed_vision", "embed_audio"]


def checkpoint_of(bundle):
    return load_checkpoint(bundle.parent.parent / "12b_unified", model_id="tiny")


def test_one_asset_holds_the_seeds_four_functions_with_shared_weights(unified_mm_bundle):
    meta = json.loads((unified_mm_bundle / "metadata.json").read_text())
    facts = meta["gemmaios"]
    asset = facts["gates"]["asset"]
    assert asset["functions"] == SEED_FUNCTIONS and asset["passed"]
    assert asset["quantized_type"] == "Int4" and 0.98 < asset["ratio"] < 1.02  # one copy of the int4 decoder
    shared = asset["weights_shared"]
    assert shared["stored_float16_elements"] <= 1.02 * shared["expected_float16_elements"] + 1024
    assert meta["language"]["function_map"] == {"main": ["main"], **{f: [f] for f in SEED_FUNCTIONS[1:]}}
    mm = facts["multimodal"]
    config = json.loads((unified_mm_bundle.parent.parent / "12b_unified" / "config.json").read_text())
    assert (mm["image_token_id"], mm["audio_token_id"], mm["video_token_id"], mm["boi_token_id"], mm["eoi_token_id"]) == (
        config["image_token_id"], config["audio_token_id"], config["video_token_id"], config["boi_token_id"],
        config["eoi_token_id"])
    assert mm["embedders_dtype"] == "float16" and mm["patch_dim"] == 432 and mm["audio_samples_per_token"] == 16
    io = {name: {i["name"]: (i["dtype"], i["shape"]) for i in mm["functions"][name]["inputs"]} for name in mm["functions"]}
    assert io["prefill_multimodal"] == {
        "input_ids": ("Int32", [1, None]), "mm_embeds": ("Float16", [1, None, 64]), "mm_mask": ("Bool", [1, None]),
        "position_ids": ("Int32", [1, None]), "mask_sliding": ("Bool", [1, 1, None, None]),
        "mask_global": ("Bool", [1, 1, None, None])}
    assert [s["name"] for s in mm["functions"]["prefill_multimodal"]["states"]] == ["keyCache", "valueCache"]
    assert io["embed_vision"] == {"pixel_values": ("Float16", [1, None, 432]), "image_position_ids": ("Int32", [1, None, 2])}
    assert io["embed_audio"] == {"input_features": ("Float16", [1, None, 16])}
    for name in ("embed_vision", "embed_audio"):
        assert mm["functions"][name]["outputs"] == [{"name": "embeds", "dtype": "Float16", "shape": [1, None, 64]}]
    print(f"\nbundle {unified_mm_bundle.name}: asset {asset['asset_bytes']} bytes, Int4 {asset['stored_bytes']} bytes, "
          f"Float16 {shared['stored_float16_elements']} elements")


@pytest.fixture(scope="module")
def runner(unified_mm_bundle):
    with MultimodalRunner(unified_mm_bundle) as r:
        yield r


@pytest.fixture(scope="module")
def spec(unified_mm_bundle):
    return UnifiedSpec.from_config(checkpoint_of(unified_mm_bundle).config, {"image_processor": {"max_soft_tokens": 70}})


def test_the_embedders_run_under_core_ai_as_in_eager_fp32(runner, spec, unified_mm_bundle):
    checkpoint = checkpoint_of(unified_mm_bundle)
    image = prepare_image(np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8), spec)
    frames = frame_audio(np.random.default_rng(2).uniform(-1, 1, 300), spec)
    with torch.no_grad():
        want_v = VisionEmbedder(checkpoint, torch.float32)(torch.from_numpy(image.pixel_values)[None],
                                                            torch.from_numpy(image.position_ids)[None].int())[0].numpy()
        want_a = AudioEmbedder(checkpoint, torch.float32)(torch.from_numpy(frames)[None])[0].numpy()
    got_v, got_a = runner.embed_image(image), runner.embed_clip(frames)
    assert got_v.shape == (image.num_soft_tokens, 64) and got_a.shape == (len(frames), 64)
    assert np.abs(got_v - want_v).max() < 0.02 and np.abs(got_a - want_a).max() < 0.02
    assert np.abs(want_v).max() > 0.5  # real rows


def test_prefill_multimodal_on_text_is_bit_identical_to_mains_walk(runner, spec):
    ids = [2] + np.random.default_rng(0).integers(10, 300, 23).tolist()  # longer than the window of 8
    continuation = [17, 140, 8, 350]
    via_prefill = np.stack(runner.generate_multimodal(spec, ids, forced=continuation).logits)
    via_main = runner.forced(ids, continuation)
    assert np.array_equal(via_prefill, via_main)
    assert via_main.std() > 0.3


def test_a_mixed_prompt_runs_under_core_ai_with_hfs_masks(runner, spec, unified_mm_bundle):
    """Image (its block longer than the window) + audio: the runtime's logits follow HF's mask rule — nearer
    the eager module with the bidirectional block than the same module with causal-only masks."""
    import test_unified_multimodal as eager

    checkpoint = checkpoint_of(unified_mm_bundle)
    ids, images, clips = eager.build_prompt(spec, ["audio", "image"], seed=5)
    assert images[0].num_soft_tokens > spec.sliding_window
    continuation = [17, 140, 8]
    got = np.stack(runner.generate_multimodal(spec, ids, images, clips, forced=continuation).logits)
    right = eager.our_logits(checkpoint, spec, ids, images, clips, continuation, quant="int4").numpy()
    causal = eager.our_logits(checkpoint, spec, ids, images, clips, continuation, quant="int4",
                              masks=lambda types, w: attention_masks(np.zeros_like(types), w)).numpy()
    err_right, err_causal = np.abs(got - right).max(), np.abs(got - causal).max()
    print(f"\nruntime vs eager int4: HF masks {err_right:.3f}, causal-only masks {err_causal:.3f}")
    assert err_right < 2.5  # the random-weight model's f16 noise under the runtime (text main: 1.46 at 71 tokens)
    assert err_right < err_causal


def test_gemmaios_run_takes_a_picture_and_a_clip(unified_mm_bundle, tmp_path):
    """`gemmaios run --bundle <12B mm> --image x.png --audio y.wav --raw`: the CLI's prompt is the markers' expansion
    and its greedy tokens are the runner's on the same inputs."""
    import wave

    from PIL import Image
    from typer.testing import CliRunner

    from gemmaios.cli import app
    from gemmaios.hostrun.bundleinfo import BundleInfo
    from gemmaios.hostrun.hostbench import BundleTokenizer
    from gemmaios.unified_inputs import encode_prompt, load_wav

    picture = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "pic.png")
    with wave.open(str(tmp_path / "clip.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.sin(np.arange(100) / 5) * 8000).astype(np.int16).tobytes())
    bundle_spec = UnifiedSpec.from_bundle(json.loads((unified_mm_bundle / "metadata.json").read_text())["gemmaios"]["multimodal"])
    result = CliRunner().invoke(app, ["run", "--bundle", str(unified_mm_bundle), "--prompt", "the sea", "--raw",
                                      "--image", str(tmp_path / "pic.png"), "--audio", str(tmp_path / "clip.wav"),
                                      "-n", "3", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    image = prepare_image(picture, bundle_spec)
    frames = frame_audio(load_wav(tmp_path / "clip.wav", bundle_spec), bundle_spec)
    assert len(frames) == 7  # 100 samples in 16-sample frames
    tok = BundleTokenizer(BundleInfo.load(unified_mm_bundle))
    ids = encode_prompt((tok.tokenizer.bos_token or "") + "<image>\n<audio>\nthe sea",
                        lambda t: tok.tokenizer(t, add_special_tokens=False)["input_ids"], bundle_spec,
                        [image.num_soft_tokens], [len(frames)])
    assert record["prompt_tokens"] == len(ids)
    with MultimodalRunner(unified_mm_bundle) as again:
        want = again.generate_multimodal(bundle_spec, ids, [image], [frames], 3).generated_ids
    assert record["generated_ids"] == want and 1 <= record["new_tokens"] == len(want) <= 3


def test_the_multimodal_gate_checks_the_functions_under_core_ai(unified_mm_bundle):
    """The convert step's gate (gemmaios.unified.gate) on the shared bundle: embedders vs eager fp32,
    prefill_multimodal vs main bit for bit; its prompts are not run on random weights, saying why (trained:
    the build ran them, test_the_build_records_the_multimodal_gate reads its record, so none are run again)."""
    from gemmaios.unified.gate import multimodal_gate

    trained = tiny_unified_trained()
    report = multimodal_gate(unified_mm_bundle, checkpoint_of(unified_mm_bundle), **({"prompts": ()} if trained else {}))
    assert set(report["embedder_errors"]) == {"embed_vision", "embed_audio"}
    assert max(report["embedder_errors"].values()) < report["feature_error_bound"]
    assert report["prefill_vs_main"] == 0.0 and report["total"] == 0
    if not trained:
        assert "random" in report["prompts_not_run"] and TINY_UNIFIED_RETRAIN in report["summary"]
    print("\n" + report["summary"])


def test_the_multimodal_gate_names_what_failed(unified_mm_bundle):
    from gemmaios.unified.gate import MultimodalGateFailed, multimodal_gate

    with pytest.raises(MultimodalGateFailed) as err:  # a bound no f16 runtime meets
        multimodal_gate(unified_mm_bundle, checkpoint_of(unified_mm_bundle), feature_error_bound=1e-9)
    assert "embed_vision differs from eager fp32" in str(err.value) and "convert again" in err.value.hint


needs_trained = pytest.mark.skipif(
    not tiny_unified_trained(),
    reason=f"the trained tiny unified model is not in {TINY_UNIFIED_SHIPPED_DIR} (random weights make f16 argmaxes "
           f"noise); train it with `{TINY_UNIFIED_RETRAIN} --out {TINY_UNIFIED_SHIPPED_DIR}`")


@pytest.fixture(scope="module")
def hf_unified(unified_mm_bundle):
    from transformers import Gemma4UnifiedForConditionalGeneration

    return Gemma4UnifiedForConditionalGeneration.from_pretrained(
        checkpoint_of(unified_mm_bundle).path, dtype=torch.float32, attn_implementation="eager").eval()


def gate_prompt_ids():
    from gemmaios.unified.tinymodel import GATE_PROMPTS

    return [p.name for p in GATE_PROMPTS]


def gate_record(bundle) -> dict:
    """The build's multimodal gate record (build.json: convert details, gates.multimodal_run)."""
    manifest = json.loads((bundle.parent.parent / "build.json").read_text())
    return manifest["steps"]["convert"]["details"]["gates"]["multimodal_run"]


@needs_trained
@pytest.mark.parametrize("index", range(8), ids=gate_prompt_ids())
def test_gate_prompt_is_token_exact_under_core_ai(spec, hf_unified, unified_mm_bundle, index):
    """The tokens the build's gate got from the int4 bundle under Core AI's runtime (embedders →
    prefill_multimodal → main, greedy to the stop token) are HF fp32's greedy path: HF's argmax at every
    step, checked here by one teacher-forced HF forward, independently of the gate's own verdict."""
    from transformers import AutoTokenizer

    from gemmaios.unified.tinymodel import GATE_PROMPTS, gate_inputs, hf_path_check

    prompt = GATE_PROMPTS[index]
    run = {v["prompt"]: v for v in gate_record(unified_mm_bundle)["prompts"]}[prompt.name]
    tok = AutoTokenizer.from_pretrained(str(checkpoint_of(unified_mm_bundle).path))
    inputs = gate_inputs(prompt, spec, lambda t: tok(t, add_special_tokens=False)["input_ids"])
    assert run["tokens"] == len(inputs.ids)  # the prompt the gate ran is this one
    check = hf_path_check(hf_unified, spec, inputs, list(run["got"]))
    print(f"\n{prompt.name}: {tok.decode(run['got'])!r} (HF min margin {min(check.margins):.3f})")
    assert check.divergence is None and run["verdict"] == "exact", (check.divergence, check.hf_tokens, run["got"])
    assert run["got"][-1] in spec.stop_token_ids  # a whole answer, closed by the stop token


@needs_trained
def test_the_build_records_the_multimodal_gate(unified_mm_bundle):
    """The shared bundle came through the pipeline: build.json's convert record carries the gate."""
    manifest = json.loads((unified_mm_bundle.parent.parent / "build.json").read_text())
    gate = manifest["steps"]["convert"]["details"]["gates"]["multimodal_run"]
    assert gate["status"] == "passed" and (gate["exact"], gate["total"]) == (8, 8)
    assert "8/8 image/audio/mixed prompts exact" in manifest["steps"]["convert"]["message"]
    meta = json.loads((unified_mm_bundle / "metadata.json").read_text())
    assert meta["gemmaios"]["gates"]["multimodal_run"]["summary"] == gate["summary"]


@needs_trained
def test_the_trained_model_answers_the_gate_prompts(unified_mm_bundle):
    """The gate's exact runs are HF's greedy answers: the trained model says what each picture and tone is."""
    from transformers import AutoTokenizer

    from gemmaios.unified.tinymodel import GATE_PROMPTS

    runs = {v["prompt"]: v for v in gate_record(unified_mm_bundle)["prompts"]}
    tok = AutoTokenizer.from_pretrained(str(checkpoint_of(unified_mm_bundle).path))
    answers = {p.name: (tok.decode(runs[p.name]["got"], skip_special_tokens=True).strip(), p.answer())
               for p in GATE_PROMPTS}
    assert all(got == want for got, want in answers.values()), answers
