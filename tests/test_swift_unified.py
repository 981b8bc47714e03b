"""GemmaiosCore's 12B client-side inputs (UnifiedInput.swift, issue 29) against Hugging Face.

Python writes the vectors from HF itself: transformers' Gemma4UnifiedImageProcessor on pictures the
project makes (needs torchvision, see tests/hf_unified.py), Gemma4UnifiedAudioFeatureExtractor's
frames, Gemma4UnifiedProcessor's placeholder expansion and mm_token_type_ids, and the masks
Gemma4UnifiedModel.forward builds (captured from the tiny model); the token ids are the tiny
config's, as a bundle's metadata.json gives them to the app. `swift test --filter UnifiedInputTests`
compares.
"""

from __future__ import annotations

import json
import re

import hf_unified
import numpy as np
import pytest
import test_unified_inputs as inputs
from conftest import SWIFT_RESULTS
from safetensors.numpy import save_file
from swift_toolchain import CORE, run, swift_cache

IMAGE_CASES = [("landscape", 100, 150, 280), ("portrait", 480, 360, 280), ("thin", 10, 3000, 280),
               ("small-budget", 333, 517, 70)]


@pytest.fixture(scope="module")
def unified_vectors(tmp_path_factory):
    from PIL import Image
    from transformers import Gemma4UnifiedProcessor
    from transformers.models.gemma4_unified.feature_extraction_gemma4_unified import (
        Gemma4UnifiedAudioFeatureExtractor,
    )

    root = tmp_path_factory.mktemp("unified-vectors")
    spec = inputs.TINY
    images = []
    module = hf_unified.image_module()
    for seed, (name, h, w, budget) in enumerate(IMAGE_CASES if module is not None else []):
        picture = inputs.picture(h, w, seed)
        out = module.Gemma4UnifiedImageProcessor(max_soft_tokens=budget)(images=[Image.fromarray(picture, "RGB")],
                                                                          return_tensors="np")
        save_file({"image": picture, "pixel_values": out["pixel_values"][0].astype(np.float32),
                   "image_position_ids": out["image_position_ids"][0].astype(np.int32),
                   "num_soft_tokens": np.array(out["num_soft_tokens_per_image"], np.int32)},
                  str(root / f"{name}.safetensors"))
        images.append({"name": name, "file": f"{name}.safetensors", "max_soft_tokens": budget})
    wave = np.random.default_rng(7).uniform(-1, 1, 12345).astype(np.float32)
    feats = Gemma4UnifiedAudioFeatureExtractor()(wave, return_tensors="np")["input_features"][0]
    save_file({"waveform": wave, "input_features": feats.astype(np.float32).reshape(-1)}, str(root / "audio.safetensors"))

    names = inputs.hf_processor_names(spec)
    prompts = []
    for i, (name, layout) in enumerate(inputs.LAYOUTS.items()):
        expanded = inputs.prompt_of(layout)
        # fold each block back to one placeholder (the prompt the app starts from) and keep its count
        prompt, image_tokens, audio_tokens, j = [], [], [], 0
        while j < len(expanded):
            t = expanded[j]
            if t in (spec.boi_token_id, spec.boa_token_id):
                soft = expanded[j + 1]
                n = 0
                while expanded[j + 1 + n] == soft:
                    n += 1
                if soft == spec.video_token_id:  # no placeholder for video: keep it expanded
                    prompt += expanded[j : j + n + 2]
                else:
                    prompt.append(soft)
                    (image_tokens if soft == spec.image_token_id else audio_tokens).append(n)
                j += n + 2
            else:
                prompt.append(t)
                j += 1
        types = Gemma4UnifiedProcessor.create_mm_token_type_ids(names, [expanded])[0]
        sliding, global_ = inputs.hf_masks(expanded, types)
        save_file({"prompt": np.array(prompt, np.int32), "input_ids": np.array(expanded, np.int32),
                   "mm_token_type_ids": np.array(types, np.int32), "mask_sliding": sliding.astype(np.int32).reshape(-1),
                   "mask_global": global_.astype(np.int32).reshape(-1)}, str(root / f"prompt{i}.safetensors"))
        prompts.append({"name": name, "file": f"prompt{i}.safetensors", "image_tokens": image_tokens,
                        "audio_tokens": audio_tokens, "sliding_window": spec.sliding_window})
    meta = spec.metadata()
    tokens = {k: meta[k] for k in ("image_token_id", "video_token_id", "audio_token_id", "boi_token_id", "eoi_token_id",
                                   "boa_token_id", "eoa_token_id", "pad_token_id")}
    (root / "cases.json").write_text(json.dumps({"images": images, "prompts": prompts, "tokens": tokens,
                                                 "samples_per_token": 640}, indent=1))
    return root, len(images), len(prompts)


def test_swift_unified_inputs_match_hf(swift_toolchain, unified_vectors):
    folder, n_images, n_prompts = unified_vectors
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", swift_cache("GemmaiosCore"),
                  "--filter", "UnifiedInputTests"], env={"GEMMAIOS_UNIFIED_VECTORS": str(folder)})
    assert "Test Case 'UnifiedInputTests.testMatchesHuggingFace' passed" in output, output[-4000:]
    assert re.search(r"Executed \d+ tests, with 0 failures", output)
    line = re.search(r"gemmaios-unified-vectors: (\d+) images, (\d+) pixel values, max abs error (\S+), (\d+) differ, "
                     r"tolerance (\S+); (\d+) prompts", output)
    assert line, output[-3000:]
    assert (int(line.group(1)), int(line.group(6))) == (n_images, n_prompts) and n_prompts == len(inputs.LAYOUTS)
    SWIFT_RESULTS.append(f"Swift 12B inputs vs HF Gemma4Unified: {line.group(1)} images, {line.group(2)} pixel values, "
                         f"max abs error {line.group(3)} ({line.group(4)} differ); frames, ids, types and "
                         f"{line.group(6)} prompts' masks exact"
                         + ("" if n_images else "; images NOT compared: HF's Gemma4UnifiedImageProcessor needs "
                            "torchvision, kept out of the dev extras (tests/hf_unified.py)"))
