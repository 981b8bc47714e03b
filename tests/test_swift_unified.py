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


# ---- the app's calls (UnifiedRequest.swift) against the Python oracle's on the eight gate prompts ---------

def fold(expanded: list[int], spec) -> list[int]:
    """HF's expanded ids → one placeholder per item (the prompt the app starts from)."""
    out, j = [], 0
    while j < len(expanded):
        t = expanded[j]
        if t in (spec.boi_token_id, spec.boa_token_id):
            soft, n = expanded[j + 1], 0
            while expanded[j + 1 + n] == soft:
                n += 1
            out.append(soft)
            j += n + 2
        else:
            out.append(t)
            j += 1
    return out


@pytest.fixture(scope="module")
def gate_request_vectors(tmp_path_factory):
    """For each gate prompt (gemmaios.unified.tinymodel.GATE_PROMPTS, on the tiny unified model's spec and
    tokenizer): the rendered text with its markers and each text piece's ids, the pictures (uint8) and clips
    (16 kHz samples) as the app gets them, and what the oracle (gemmaios.hostrun.multimodal, which
    `gemmaios run` and the build's gate run under Core AI's runtime) gives each function: embed_vision's and
    embed_audio's inputs, prefill_multimodal's inputs (mm_embeds scattered from stand-in embedder rows, as
    the runner scatters the embedders' real ones), and main's first decode step. The metadata block is the
    converter's (`multimodal_metadata`)."""
    from gemmaios import contract as c
    from gemmaios.convert.multimodal import multimodal_metadata
    from gemmaios.hostrun.multimodal import audio_inputs, prefill_inputs, vision_inputs
    from gemmaios.tiny import tiny_unified_config
    from gemmaios.tinycorpus import chat_prompt
    from gemmaios.unified.tinymodel import (
        GATE_PROMPTS,
        QUESTIONS,
        gate_inputs,
        spec_of,
        text_tokenizer,
        tokenize_with,
    )
    from gemmaios.unified_inputs import mm_token_type_ids, multimodal_mask, scatter_embeddings

    root = tmp_path_factory.mktemp("unified-requests")
    spec = spec_of(tiny_unified_config())
    tokenize = tokenize_with(text_tokenizer())
    io = {name: {"inputs": [], "outputs": []} for name in
          (c.PREFILL_MULTIMODAL_FUNCTION, c.EMBED_VISION_FUNCTION, c.EMBED_AUDIO_FUNCTION)}
    (root / c.BUNDLE_METADATA_FILE).write_text(json.dumps({"gemmaios": {c.MULTIMODAL_METADATA_KEY: multimodal_metadata(spec, io)}}))
    rng = np.random.default_rng(29)
    cases = []
    for i, prompt in enumerate(GATE_PROMPTS):
        prepared = gate_inputs(prompt, spec, tokenize)
        text = chat_prompt(QUESTIONS[prompt.layout])
        pieces = {piece: [int(t) for t in tokenize(piece)]
                  for piece in re.split(f"({re.escape(c.IMAGE_MARKER)}|{re.escape(c.AUDIO_MARKER)})", text)
                  if piece and piece not in (c.IMAGE_MARKER, c.AUDIO_MARKER)}
        tensors = {"prompt": np.array(fold(prepared.ids, spec), np.int32),
                   "expanded": np.array(prepared.ids, np.int32)}
        # the items in prompt order, as MultimodalRunner.embeds_for calls the embedders
        order = prompt.layout.split("+")
        rows = []
        for k, kind in enumerate(order):
            if kind == "image":
                image = prepared.images[0]
                tensors[f"picture{k}"] = prompt.image.pixels()
                want = vision_inputs(image)
                tensors[f"{k}.{c.EMBED_PIXELS_INPUT}"] = image.pixel_values[: image.num_soft_tokens].astype(np.float32)
                tensors[f"{k}.{c.EMBED_POSITIONS_INPUT}"] = want[c.EMBED_POSITIONS_INPUT][0]
                n = image.num_soft_tokens
            else:
                frames = prepared.clips[0]
                tensors[f"clip{k}"] = np.asarray(prompt.tone.samples(spec.audio_samples_per_token, spec.sampling_rate),
                                                 np.float32)
                tensors[f"{k}.{c.EMBED_FRAMES_INPUT}"] = np.asarray(frames, np.float32)
                assert audio_inputs(frames)[c.EMBED_FRAMES_INPUT].shape == (1, *frames.shape)
                n = len(frames)
            rows.append(rng.standard_normal((n, spec.hidden_size)).astype(np.float32))
            tensors[f"{k}.embeds"] = rows[-1]
        types = mm_token_type_ids(prepared.ids, spec)
        mm = scatter_embeddings(multimodal_mask(types), rows, spec.hidden_size)
        want = prefill_inputs(spec, prepared.ids, mm)
        tensors[c.MM_EMBEDS_INPUT] = mm
        for name in (c.INPUT_IDS_INPUT, c.POSITION_IDS_INPUT):
            tensors[name] = want[name].reshape(-1).astype(np.int32)
        for name in (c.MM_MASK_INPUT, c.MASK_SLIDING_INPUT, c.MASK_GLOBAL_INPUT):
            tensors[name] = want[name].reshape(-1).astype(np.int32)
        tensors["decode_positions"] = np.arange(len(prepared.ids) + 1, dtype=np.int32)  # _step's for token 1
        save_file(tensors, str(root / f"gate{i}.safetensors"))
        cases.append({"name": prompt.name, "file": f"gate{i}.safetensors", "text": text, "pieces": pieces,
                      "items": order, "stop_token_ids": list(spec.stop_token_ids)})
    (root / "requests.json").write_text(json.dumps({"prompts": cases}, indent=1))
    return root, len(cases)


def test_swift_unified_requests_match_the_oracle(swift_toolchain, gate_request_vectors):
    folder, n = gate_request_vectors
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", swift_cache("GemmaiosCore"),
                  "--filter", "UnifiedRequestTests"], env={"GEMMAIOS_UNIFIED_REQUESTS": str(folder)})
    assert "Test Case 'UnifiedRequestTests.testMatchesTheOracle' passed" in output, output[-4000:]
    assert re.search(r"Executed \d+ tests, with 0 failures", output)
    line = re.search(r"gemmaios-unified-requests: (\d+) prompts \((\d+) pictures, (\d+) clips\), (\d+) prefill rows, "
                     r"pixel max abs error (\S+)", output)
    assert line, output[-3000:]
    assert int(line.group(1)) == n == 8 and int(line.group(2)) == 5 and int(line.group(3)) == 5
    SWIFT_RESULTS.append(f"Swift 12B app calls vs the oracle's (gemmaios.hostrun.multimodal) on the {n} gate prompts: "
                         f"prompt ids from the rendered text, embed_vision/embed_audio inputs (pixels max abs error "
                         f"{line.group(5)}), prefill_multimodal's ids, mm_embeds, mm_mask, positions and both masks "
                         f"({line.group(4)} rows) exact, main's first step")
