"""Image input for E2B/E4B: the tiny multimodal model built with --vision, run under Core AI's runtime.

The tiny multimodal model (`tiny-vision`: the trained tiny E4B decoder plus a tiny vision tower,
fine-tuned to describe the project's own pictures) has real top-1 margins on its image prompts,
so its bundle is held to token-exact agreement with HF's fp32 Gemma4ForConditionalGeneration.
One build per session (oracle with image prompts, tables, convert with the image gate).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gemmaios import contract, hostrun
from gemmaios.checkpoint import UnsupportedInput, resolve_checkpoint
from gemmaios.pipeline import BuildOptions
from gemmaios.vision import BUILTIN_IMAGES, ImageSpec, VisionError, expand_prompt, preprocess, splice_ids
from gemmaios.vision.oracle import IMAGE_ORACLE_DIR, load_image_record


@pytest.fixture(scope="session")
def vision_checkpoint():
    return resolve_checkpoint("tiny-vision")


@pytest.fixture(scope="session")
def hf_vision_model(vision_checkpoint):
    from transformers import Gemma4ForConditionalGeneration

    return Gemma4ForConditionalGeneration.from_pretrained(str(vision_checkpoint.path), dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def hf_tokenizer(vision_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(vision_checkpoint.path))


# ---- preprocessing and the splice ------------------------------------------------------------

def test_expansion_and_splice_follow_hf(vision_checkpoint, hf_tokenizer):
    spec = ImageSpec.from_checkpoint(vision_checkpoint.path)
    assert (spec.max_soft_tokens, spec.patch_size, spec.pooling_kernel_size) == (70, 8, 3)
    grids = set()
    for case in BUILTIN_IMAGES:
        prepared = preprocess(case.pixels(), spec)
        h, w = prepared.resized
        src_w, src_h = case.size
        assert h % 24 == 0 and w % 24 == 0 and (h // 8) * (w // 8) <= spec.max_patches
        assert abs(w / h - src_w / src_h) / (src_w / src_h) < 0.25  # the aspect ratio survives the resize
        real = (h // 8) * (w // 8)
        assert prepared.num_soft_tokens == real // 9
        assert (prepared.pixel_position_ids[real:] == -1).all() and (prepared.pixel_values[real:] == 0).all()
        assert prepared.pixel_position_ids[:real].min() == 0
        grids.add((h, w))
        ids = expand_prompt("<bos>x <image> y", spec, hf_tokenizer, prepared.num_soft_tokens)
        start = ids.index(spec.boi_token_id)
        n = prepared.num_soft_tokens
        assert ids[start + 1 : start + 1 + n] == [spec.image_token_id] * n and ids[start + 1 + n] == spec.eoi_token_id
        spliced = splice_ids(ids, spec)
        assert spliced[start + 1 : start + 1 + n] == list(range(spec.vocab_size, spec.vocab_size + n))
        assert [t for t in spliced if t < spec.vocab_size] == [t for t in ids if t != spec.image_token_id]
    assert len(grids) >= 4  # several aspect ratios, several grids
    with pytest.raises(VisionError, match="exactly once"):
        expand_prompt("no picture here", spec, hf_tokenizer, 4)
    with pytest.raises(VisionError, match="more than 70"):
        splice_ids([spec.image_token_id] * 71, spec)


def test_ple_rule_is_the_pad_row(tmp_path, vision_checkpoint):
    from gemmaios.tables import PleTables, TablesError, write_tables

    write_tables(vision_checkpoint, tmp_path)
    tables = PleTables(tmp_path)
    vocab = tables.vocab
    assert contract.ple_row(vocab + 3, vocab, 0) == 0 and contract.ple_row(17, vocab, 0) == 17
    got = tables.gather([17, vocab, vocab + 5], spliced_row=0)
    want = tables.gather([17, 0, 0])
    np.testing.assert_array_equal(got, want)
    with pytest.raises(TablesError, match="out of range"):
        tables.gather([vocab])  # text-only callers still refuse ids >= V


def test_vision_encoder_matches_hf(vision_checkpoint, hf_vision_model):
    from gemmaios.vision.encoder import VisionEncoder, hf_image_features, load_vision_modules

    spec = ImageSpec.from_checkpoint(vision_checkpoint.path)
    tower, embedder = load_vision_modules(vision_checkpoint)
    encoder = VisionEncoder(tower, embedder, spec.max_soft_tokens, dtype=torch.float32).eval()
    for case in BUILTIN_IMAGES[:3]:  # square, wide, tall
        prepared = preprocess(case.pixels(), spec)
        want = hf_image_features(hf_vision_model, prepared.pixel_values, prepared.pixel_position_ids)
        with torch.no_grad():
            got = encoder(torch.from_numpy(prepared.pixel_values)[None], torch.from_numpy(prepared.pixel_position_ids)[None])
        assert got.shape == (spec.max_soft_tokens, 64)
        assert torch.max(torch.abs(got[: prepared.num_soft_tokens] - want)) < 1e-5


def test_decode_module_splice_matches_hf(vision_checkpoint, hf_vision_model, hf_tokenizer):
    """Our S=1 decode module, fed token by token with image_embeds, against HF's logits (fp32)."""
    from gemmaios.decode_model import Gemma4Decode
    from gemmaios.vision.encoder import hf_image_features

    spec = ImageSpec.from_checkpoint(vision_checkpoint.path)
    case = BUILTIN_IMAGES[1]
    prepared = preprocess(case.pixels(), spec)
    ids = expand_prompt("<bos><|turn>user\n<image>\nDescribe the image.<turn|>\n<|turn>model\n",
                        spec, hf_tokenizer, prepared.num_soft_tokens)
    with torch.no_grad():
        hf = hf_vision_model(input_ids=torch.tensor([ids]), pixel_values=torch.from_numpy(prepared.pixel_values)[None],
                             image_position_ids=torch.from_numpy(prepared.pixel_position_ids).long()[None]).logits[0]
    features = hf_image_features(hf_vision_model, prepared.pixel_values, prepared.pixel_position_ids)
    embeds = torch.zeros(spec.max_soft_tokens, features.shape[1])
    embeds[: features.shape[0]] = features
    model = Gemma4Decode(vision_checkpoint, quant="fp16", dtype=torch.float32, image_tokens=spec.max_soft_tokens).eval()
    assert model.input_names() == ("input_ids", "position_ids", "ple_tokens", contract.IMAGE_EMBEDS_INPUT)
    # exact fp32 PLE rows (HF's scaled per-layer table; spliced ids take the pad row, as HF does), so the
    # splice itself is measured: the int8 tables' gather is tests/test_vision.py::test_ple_rule_is_the_pad_row's
    per_layer = hf_vision_model.model.language_model.embed_tokens_per_layer
    layers, dim = model.spec.num_layers, model.spec.ple_dim
    spliced = splice_ids(ids, spec)
    key, value = model.new_cache(len(ids))
    worst = 0.0
    with torch.no_grad():
        for i, token in enumerate(spliced):
            row = token if token < spec.vocab_size else spec.pad_token_id
            ple = per_layer(torch.tensor([[row]])).reshape(1, 1, layers, dim).float()
            logits = model(torch.tensor([[token]], dtype=torch.int32), torch.arange(i + 1, dtype=torch.int32)[None],
                           ple, embeds, key, value)[0, 0]
            worst = max(worst, float(torch.max(torch.abs(logits - hf[i]))))
            top = torch.topk(hf[i], 2).values
            if float(top[0] - top[1]) > 0.1:  # the oracle's near-tie rule
                assert int(logits.argmax()) == int(hf[i].argmax()), f"position {i}"
    assert len(ids) > 8 * 8  # the walk crosses the sliding window (8) many times
    assert worst < 1e-3, worst  # fp32 throughout: only summation order differs


def test_tbl_with_vision_is_refused(vision_checkpoint, tmp_path):
    from gemmaios.convert import ConvertError
    from gemmaios.convert.converter import convert_checkpoint

    with pytest.raises(ConvertError, match="provider PLE mode only"):
        convert_checkpoint(vision_checkpoint, tmp_path, "int4", "tbl", 256, gates=False, vision=True)
    tiny = resolve_checkpoint("tiny")
    with pytest.raises(UnsupportedInput, match="has no vision encoder"):
        convert_checkpoint(tiny, tmp_path, "int4", "provider", 256, gates=False, vision=True)


# ---- the bundle under Core AI's runtime ----------------------------------------------------

@pytest.mark.full
def test_image_prompts_run_token_exact_under_core_ai(vision_build):
    out = vision_build
    details = json.loads((out / "build.json").read_text())["steps"]["convert"]["details"]
    report = details["gates"]["image_run"]
    assert report["total"] == len(BUILTIN_IMAGES) == 8
    for verdict in report["verdicts"]:
        assert verdict["verdict"] in ("exact", "near-tie"), verdict
    assert report["exact"] == 8, report["summary"]  # the shared int4 bundle (shared_builds.vision_bundle_build)
    # real decisions: the shipped weights' oracle margins are median 11.4, min 2.15 (docs/images.md)
    assert report["oracle_median_margin"] > 1.0 and report["oracle_min_margin"] > 0.5
    assert report["contexts"][0] > 2 * 8  # every image prompt crosses the sliding window
    assert report["max_feature_error"] <= report["feature_error_bound"]
    vision = details["vision"]
    bundle = out / details["bundle_dir"]
    assert (bundle / vision[contract.VISION_ASSET_FIELD]).exists()
    assert vision["max_soft_tokens"] == 70 and vision["max_patches"] == 630
    assert [i["name"] for i in details["inputs"]][-1] == contract.IMAGE_EMBEDS_INPUT
    from gemmaios.payload import vision_memory_bytes

    extra = vision_memory_bytes(bundle)
    assert extra["image_embeds"] == 70 * 64 * 2 and extra["vision_asset"] > 50_000
    # the text prompts still pass on the same bundle (image_embeds bound to zeros)
    assert details["gates"]["bundle_run"]["exact"] >= 7
    # the oracle's saved tensors: what the Swift preprocessing test reads
    record = load_image_record(out / IMAGE_ORACLE_DIR, BUILTIN_IMAGES[0].name)
    assert record.prepared.pixel_values.shape == (630, 192)
    # a model that has learned: the oracle (fp32 HF) names each picture's colour, shape and frame,
    # and none of the 8 was trained on (the training pictures are jittered copies)
    from transformers import AutoTokenizer

    from gemmaios.oracle import load_oracle
    from gemmaios.vision.oracle import IMAGE_ORACLE_FILE

    tok = AutoTokenizer.from_pretrained(str(bundle / "tokenizer"))
    answers = {p.id: tok.decode(p.generated_ids, skip_special_tokens=True)
               for p in load_oracle(out / IMAGE_ORACLE_DIR / IMAGE_ORACLE_FILE).prompts}
    for case in BUILTIN_IMAGES:
        assert answers[case.name] and case.answer().startswith(answers[case.name].strip()), (case.name, answers[case.name])
    assert (out / IMAGE_ORACLE_DIR / f"{BUILTIN_IMAGES[0].name}.png").is_file()


@pytest.mark.full
def test_wrong_picture_or_missing_image_fails(vision_build):
    """The gate can fail: another picture's embeddings change the answer; spliced ids need an image."""
    from gemmaios.oracle import load_oracle
    from gemmaios.vision.oracle import IMAGE_ORACLE_FILE

    out = vision_build
    oracle = load_oracle(out / IMAGE_ORACLE_DIR / IMAGE_ORACLE_FILE)
    bundle = hostrun.find_bundle(out)
    first, other = oracle.prompts[0], oracle.prompts[1]
    with hostrun.BundleRunner(bundle, out / "tables") as runner:
        wrong = runner.encode_image(load_image_record(out / IMAGE_ORACLE_DIR, other.id).prepared)
        wrong.num_soft_tokens = max(wrong.num_soft_tokens, load_image_record(out / IMAGE_ORACLE_DIR, first.id).prepared.num_soft_tokens)
        gen = runner.generate(first.prompt_ids, 12, image=wrong)
        assert gen.generated_ids != first.generated_ids[:12]
        with pytest.raises(hostrun.HostRunError, match="no image was given"):
            runner.generate(first.prompt_ids, 2)


def test_cli_flag_reaches_the_build_options(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gemmaios import cli

    ran: list[BuildOptions] = []
    monkeypatch.setattr(cli, "_run", lambda options, *args, **kwargs: ran.append(options))  # the steps themselves: not here
    for command in ("build", "convert"):
        result = CliRunner().invoke(cli.app, [command, "--model", "tiny-vision", "--vision", "--out",
                                              str(tmp_path / command)])
        assert result.exit_code == 0, result.output
    assert [o.vision for o in ran] == [True, True] and {o.model for o in ran} == {"tiny-vision"}


@pytest.mark.full
def test_cli_run_answers_about_a_picture(vision_build):
    """`gemmaios run --image` answers what the oracle answers for the same picture."""
    from typer.testing import CliRunner

    from gemmaios.cli import app
    from gemmaios.oracle import load_oracle
    from gemmaios.vision.oracle import IMAGE_ORACLE_FILE

    out = vision_build
    oracle = load_oracle(out / IMAGE_ORACLE_DIR / IMAGE_ORACLE_FILE)
    case = BUILTIN_IMAGES[1]
    png = out / IMAGE_ORACLE_DIR / f"{case.name}.png"
    result = CliRunner().invoke(app, ["run", "--out", str(out), "--image", str(png), "-n", "6",
                                      "--prompt", "Describe the image.\n<image>"])
    assert result.exit_code == 0, result.output
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hostrun.find_bundle(out) / "tokenizer"))
    expected = tok.decode(oracle.prompts[1].generated_ids[:6], skip_special_tokens=True)
    assert expected.strip() and expected.strip() in result.output
    text_only = CliRunner().invoke(app, ["run", "--out", str(out), "--image", str(png), "-n", "2", "--prompt", "hi"])
    assert text_only.exit_code == 0, text_only.output  # no <image>: the picture goes first


def test_parity_reference_loads_the_multimodal_text_decoder(vision_checkpoint):
    """The parity gates' HF reference of a multimodal (gemma4) checkpoint runs its trained text decoder
    (it used to load Gemma4ForCausalLM without the language_model key mapping: random weights)."""
    from gemmaios.oracle import ReferenceModel
    from gemmaios.parity import hf_reference
    from gemmaios.tinycorpus import chat_prompt

    ref = ReferenceModel.load(vision_checkpoint)
    ids = list(ref.tokenizer(chat_prompt("What is the capital of France?"), add_special_tokens=False)["input_ids"])
    want, _ = ref.greedy(ids, 16)  # "The capital of France is Paris" takes 13 tokens of the tiny vocabulary
    run = hf_reference(vision_checkpoint, [ids], steps=16)[0]
    assert run.tokens == want
    assert "Paris" in ref.tokenizer.decode(want)
