"""The app's image preprocessing (GemmaiosCore ImageInput.swift, issue 17) against Hugging Face's
Gemma 4 processor: images the project makes itself (deterministic numpy, several aspect ratios and
budgets) go through transformers' `Gemma4Processor` in fp32 and are saved exactly as the image
oracle saves them (`oracle/images/<name>.safetensors` + `<name>.png`); `swift_vectors` adds the
decoded picture as `image` and `swift test --filter ImageInputTests` compares the Swift output
with them: pixel values within ImageTolerance (measured error printed), positions and ids
exactly. `swift_vectors` takes a real build's `oracle/images` folder the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SWIFT_RESULTS
from safetensors.numpy import save_file
from swift_toolchain import CORE, run, swift_cache, vectors

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


def splice(ids: list[int], image_token_id: int, vocab_size: int) -> list[int]:
    """The contract's id splice (vision block): the k-th image soft token becomes V + k."""
    out, k = [], 0
    for token in ids:
        out.append(vocab_size + k if token == image_token_id else int(token))
        k += token == image_token_id
    return out


def write_oracle_layout(folder: Path) -> Path:
    """HF's processor on the built-in cases, saved as the image oracle saves them
    (gemmaios.vision.oracle, `oracle/images/`): <name>.png + <name>.safetensors holding
    pixel_values [P, 3*p*p] f32, pixel_position_ids [P, 2] i32, input_ids / spliced_input_ids [T]
    i32, num_soft_tokens [1] i32, metadata image = the PNG's name. Returns the folder."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    budgets = {}
    for seed, (name, height, width, budget) in enumerate(CASES):
        image = synthetic_image(height, width, seed)
        Image.fromarray(image, "RGB").save(folder / f"{name}.png")
        out = hf_processor(budget)(text=["<bos> describe this <|image|> please"], images=[[image]], return_tensors="np")
        ids = out["input_ids"][0].astype(np.int32)
        save_file({"pixel_values": out["pixel_values"][0].astype(np.float32),
                   "pixel_position_ids": out["image_position_ids"][0].astype(np.int32),
                   "input_ids": ids,
                   "spliced_input_ids": np.array(splice(ids.tolist(), IMAGE_TOKEN_ID, VOCAB_SIZE), np.int32),
                   "num_soft_tokens": np.array([(ids == IMAGE_TOKEN_ID).sum()], np.int32)},
                  str(folder / f"{name}.safetensors"), metadata={"image": f"{name}.png"})
        budgets[name] = budget
    (folder / "budgets.json").write_text(json.dumps(budgets))
    return folder


def swift_vectors(oracle_images: Path, out: Path, *, image_token_id: int, boi_token_id: int, eoi_token_id: int,
                  vocab_size: int, budgets: dict[str, int] | None = None) -> list[dict]:
    """The Swift test's input from an image-oracle folder: each <name>.safetensors again with the
    source picture added as `image` (uint8 [H, W, 3], decoded from its PNG; Foundation on Linux
    decodes no PNG), plus cases.json with the marker ids and budget."""
    from PIL import Image
    from safetensors import safe_open

    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for path in sorted(oracle_images.glob("*.safetensors")):
        with safe_open(str(path), "np") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
            png = (f.metadata() or {}).get("image", f"{path.stem}.png")
        tensors["image"] = np.asarray(Image.open(oracle_images / png).convert("RGB"), np.uint8)
        save_file(tensors, str(out / path.name))
        budget = (budgets or {}).get(path.stem) or tensors["pixel_values"].shape[-2] // c.IMAGE_POOLING_KERNEL**2
        cases.append({"name": path.stem, "file": path.name, "max_soft_tokens": int(budget),
                      "image_token_id": image_token_id, "boi_token_id": boi_token_id, "eoi_token_id": eoi_token_id,
                      "vocab_size": vocab_size, "soft_tokens": int(tensors["num_soft_tokens"][0])})
    (out / "cases.json").write_text(json.dumps({"cases": cases}, indent=1))
    return cases


@pytest.fixture(scope="module")
def hf_vectors(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-vectors")
    oracle = write_oracle_layout(root / "oracle-images")
    cases = swift_vectors(oracle, root / "swift", image_token_id=IMAGE_TOKEN_ID, boi_token_id=BOI_TOKEN_ID,
                          eoi_token_id=EOI_TOKEN_ID, vocab_size=VOCAB_SIZE)
    assert [x["max_soft_tokens"] for x in cases] == [json.loads((oracle / "budgets.json").read_text())[x["name"]]
                                                     for x in cases]
    return root / "swift", cases


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
        assert t["pixel_values"].shape == (grid, c.IMAGE_PATCH_SIZE ** 2 * c.IMAGE_CHANNELS)
        real = int((t["pixel_position_ids"][:, 0] >= 0).sum())
        assert real == case["soft_tokens"] * c.IMAGE_POOLING_KERNEL ** 2 <= grid
        assert (t["pixel_position_ids"][real:] == c.IMAGE_PAD_POSITION).all()
        assert (t["pixel_values"][real:] == 0).all()
        assert t["image"].dtype == np.uint8 and t["image"].ndim == 3
        # the splice: image soft tokens become V.., nothing else moves
        spliced, ids = t["spliced_input_ids"], t["input_ids"]
        assert (spliced[ids == IMAGE_TOKEN_ID] == VOCAB_SIZE + np.arange(case["soft_tokens"])).all()
        assert (spliced[ids != IMAGE_TOKEN_ID] == ids[ids != IMAGE_TOKEN_ID]).all()


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


def test_swift_pad_row_for_spliced_ids_equals_numpy(tmp_path, tiny_checkpoint, core_build):  # noqa: F811
    """The app's PLE gather maps ids >= V to the pad row (it refused them before): byte-equal to
    numpy's gather of the rows the contract's `ple_row` names."""
    from gemmaios.tables import gather, write_tables

    write_tables(tiny_checkpoint, tmp_path / "tables")
    sidecar = json.loads((tmp_path / "tables" / "embed_per_layer.json").read_text())
    vocab, layers, dim = sidecar["shape"][0], sidecar["num_layers"], sidecar["dim"]
    ids = [vocab, vocab + 1, vocab + c.IMAGE_MAX_SOFT_TOKENS - 1, 5]
    out = tmp_path / "rows.f16"
    vectors(core_build, "gather", tmp_path / "tables", vocab, layers, dim, out, *ids)
    rows = [c.ple_row(i, vocab, pad_token_id=0) for i in ids]  # 0: PLEShape's default pad (Gemma 4's)
    assert rows == [0, 0, 0, 5]
    assert out.read_bytes() == gather(tmp_path / "tables", rows).tobytes()
