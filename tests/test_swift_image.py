"""The app's image preprocessing (GemmaiosCore ImageInput.swift, issue 17) against Hugging Face's
Gemma 4 processor: images the project makes itself (deterministic numpy, several aspect ratios and
budgets) go through transformers' `Gemma4Processor` in fp32; its pixel_values, pixel_position_ids
and expanded input_ids (plus the raw RGB, the prompt and the contract's id splice) are written as
safetensors, and `swift test --filter ImageInputTests` compares the Swift output with them: pixel
values within ImageTolerance (measured error printed), positions and ids exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SWIFT_RESULTS
from safetensors.numpy import save_file
from test_swift import CORE, run, swift_cache

from gemmaios import contract as c

# (name, height, width, budget): landscape upscale, portrait, 4:1 tall, very wide (HF's zero-side
# branch), square downscale, a large photo-sized downscale, and a smaller budget
CASES = [
    ("landscape", 100, 150, 280),
    ("portrait", 480, 360, 280),
    ("tall", 1000, 250, 280),
    ("thin", 10, 3000, 280),
    ("square", 300, 300, 280),
    ("photo", 1200, 1600, 280),
    ("small-budget", 333, 517, 70),
]

# The tokenizer HF's processor expands placeholders with; the ids are Gemma 4's (config defaults)
IMAGE_TOKEN_ID, BOI_TOKEN_ID, EOI_TOKEN_ID, VOCAB_SIZE = 258_880, 255_999, 258_882, 262_144


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """Gradients, hard edges (where bicubic overshoots and clips), and noise: uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / max(width - 1, 1)
    g = 255 * (0.5 + 0.5 * np.sin(2 * np.pi * y / max(height / 3, 1)))
    b = np.where(((x // max(width // 7, 1)) + (y // max(height // 5, 1))) % 2 == 0, 255.0, 0.0)
    image = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def hf_processor(max_soft_tokens: int):
    """transformers' Gemma4Processor with its PIL image processor and a word-level tokenizer
    holding Gemma 4's marker ids (the real tokenizer cannot be downloaded here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil
    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "describe": 10, "this": 11, "picture": 12, "please": 13,
             "<|image>": BOI_TOKEN_ID, "<|image|>": IMAGE_TOKEN_ID, "<image|>": EOI_TOKEN_ID,
             "<|audio>": 256_000, "<|audio|>": 258_881, "<audio|>": 258_883, "<|video|>": 258_884}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>",
                              "audio_token": "<|audio|>", "boa_token": "<|audio>", "eoa_token": "<audio|>"})

    class _Processor(Gemma4Processor):
        # Gemma4VideoProcessor needs torchvision (not installed); images never touch it
        def check_argument_for_proper_class(self, name, arg):
            return None if name == "video_processor" and arg is None else super().check_argument_for_proper_class(name, arg)

    return _Processor(feature_extractor=Gemma4AudioFeatureExtractor(),
                      image_processor=Gemma4ImageProcessorPil(max_soft_tokens=max_soft_tokens),
                      tokenizer=tokenizer, video_processor=None, image_seq_length=max_soft_tokens)


@pytest.fixture(scope="module")
def hf_vectors(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image-vectors")
    cases = []
    for seed, (name, height, width, budget) in enumerate(CASES):
        image = synthetic_image(height, width, seed)
        out = hf_processor(budget)(text=["<bos> describe this <|image|> please"], images=[[image]], return_tensors="np")
        prompt = [2, 10, 11, IMAGE_TOKEN_ID, 13]
        input_ids = out["input_ids"][0].astype(np.int64)
        tensors = {
            "image": image,
            "pixel_values": out["pixel_values"].astype(np.float32),
            "pixel_position_ids": out["image_position_ids"].astype(np.int64),
            "input_ids": input_ids[None],
            "prompt_ids": np.array(prompt, dtype=np.int64),
            "engine_ids": np.array(c.rewrite_image_token_ids(input_ids.tolist(), IMAGE_TOKEN_ID, VOCAB_SIZE),
                                   dtype=np.int64),
        }
        save_file(tensors, str(folder / f"{name}.safetensors"))
        cases.append({"name": name, "file": f"{name}.safetensors", "max_soft_tokens": budget,
                      "image_token_id": IMAGE_TOKEN_ID, "boi_token_id": BOI_TOKEN_ID, "eoi_token_id": EOI_TOKEN_ID,
                      "vocab_size": VOCAB_SIZE, "soft_tokens": int((input_ids == IMAGE_TOKEN_ID).sum())})
    (folder / "cases.json").write_text(json.dumps({"cases": cases}, indent=1))
    return folder, cases


def test_hf_vectors_use_the_contracts_grid(hf_vectors):
    """What the Swift side takes from the contract is what HF's processor did."""
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    hf = Gemma4ImageProcessorPil()
    assert (hf.patch_size, hf.pooling_kernel_size, hf.max_soft_tokens) == (
        c.IMAGE_PATCH_SIZE, c.IMAGE_POOLING_KERNEL, c.IMAGE_MAX_SOFT_TOKENS)
    assert hf.rescale_factor == 1 / c.IMAGE_RESCALE_DIVISOR and not hf.do_normalize
    folder, cases = hf_vectors
    from safetensors.numpy import load_file

    for case in cases:
        t = load_file(str(folder / case["file"]))
        grid = c.image_max_patches(case["max_soft_tokens"])
        assert t["pixel_values"].shape == (1, grid, c.IMAGE_PATCH_SIZE ** 2 * c.IMAGE_CHANNELS)
        real = int((t["pixel_position_ids"][0, :, 0] >= 0).sum())
        assert real == case["soft_tokens"] * c.IMAGE_POOLING_KERNEL ** 2 <= grid
        assert (t["pixel_position_ids"][0, real:] == c.IMAGE_PAD_POSITION).all()
        # the splice: image soft tokens become V.., nothing else moves
        engine, ids = t["engine_ids"], t["input_ids"][0]
        assert (engine[ids == IMAGE_TOKEN_ID] == VOCAB_SIZE + np.arange(case["soft_tokens"])).all()
        assert (engine[ids != IMAGE_TOKEN_ID] == ids[ids != IMAGE_TOKEN_ID]).all()


def test_swift_preprocessing_matches_hf(swift_toolchain, hf_vectors):
    folder, cases = hf_vectors
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", swift_cache("GemmaiosCore"),
                  "--filter", "ImageInputTests"], env={"GEMMAIOS_IMAGE_VECTORS": str(folder)})
    assert "Test Case 'ImageInputTests.testMatchesHuggingFacesProcessor' passed" in output, output[-4000:]
    assert re.search(r"Executed \d+ tests, with 0 failures", output)
    line = re.search(r"gemmaios-image-vectors: (\d+) images, (\d+) pixel values, max abs error (\S+), (\d+) differ, "
                     r"tolerance (\S+)", output)
    assert line, output[-3000:]
    assert int(line.group(1)) == len(cases)
    assert float(line.group(3)) <= float(line.group(5))
    SWIFT_RESULTS.append(f"Swift image preprocessing vs HF Gemma4Processor: {line.group(1)} images, {line.group(2)} "
                         f"pixel values, max abs error {line.group(3)} ({line.group(4)} differ; tolerance "
                         f"{line.group(5)}); positions and ids exact")


def test_swift_pad_row_for_spliced_ids_equals_numpy(tmp_path, tiny_checkpoint, swift_toolchain):
    """The app's PLE gather maps ids >= V to the pad row: byte-equal to numpy's gather of the pad id."""
    from test_swift import vectors

    from gemmaios.tables import gather, write_tables

    write_tables(tiny_checkpoint, tmp_path / "tables")
    sidecar = json.loads((tmp_path / "tables" / "embed_per_layer.json").read_text())
    vocab, layers, dim = sidecar["shape"][0], sidecar["num_layers"], sidecar["dim"]
    scratch = swift_cache("GemmaiosCore")
    run([swift_toolchain.swift, "build", "--package-path", CORE, "--scratch-path", scratch])
    bin_dir = run([swift_toolchain.swift, "build", "--package-path", CORE, "--scratch-path", scratch,
                   "--show-bin-path"]).strip().splitlines()[-1]
    ids = [vocab, vocab + 1, vocab + c.IMAGE_MAX_SOFT_TOKENS - 1, 5]
    out = tmp_path / "rows.f16"
    vectors(Path(bin_dir), "gather", tmp_path / "tables", vocab, layers, dim, out, *ids)
    pad = c.PLE_PAD_TOKEN_ID
    assert out.read_bytes() == gather(tmp_path / "tables", [pad, pad, pad, 5]).tobytes()
