"""The 12B's multimodal functions on the tiny gemma4_unified model against HF's Gemma4Unified, in fp32.

`embed_vision`, `embed_audio` (gemmaios.unified_embedders) against HF's get_image_features /
get_audio_features; `prefill_multimodal` (Gemma4Decode.forward_multimodal, with the client-side
inputs of gemmaios.unified_inputs) and then `main` one token at a time against HF's full forward
over prompt + continuation, on image, audio and mixed prompts (every tiny image block is longer
than the tiny's sliding window of 8, so each straddles it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gemmaios.checkpoint import load_checkpoint
from gemmaios.decode_model import Gemma4Decode
from gemmaios.parity import FP32_LOGIT_TOLERANCE
from gemmaios.tiny import TINY_UNIFIED, generate_tiny_checkpoint
from gemmaios.unified_embedders import AudioEmbedder, VisionEmbedder
from gemmaios.unified_inputs import (
    UnifiedSpec,
    attention_masks,
    expand_placeholders,
    frame_audio,
    graph_input_ids,
    mm_token_type_ids,
    multimodal_mask,
    prepare_image,
    scatter_embeddings,
)

PROCESSOR = {"image_processor": {"max_soft_tokens": 70}}  # the smallest budget HF accepts: 60-70 tiny soft tokens


@pytest.fixture(scope="module")
def unified(tmp_path_factory):
    path = generate_tiny_checkpoint(tmp_path_factory.mktemp("unified-mm") / "12b_unified", TINY_UNIFIED)
    return load_checkpoint(path, model_id="tiny")


@pytest.fixture(scope="module")
def hf(unified):
    from transformers import Gemma4UnifiedForConditionalGeneration

    return Gemma4UnifiedForConditionalGeneration.from_pretrained(unified.path, dtype=torch.float32,
                                                                 attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def spec(unified):
    return UnifiedSpec.from_config(unified.config, PROCESSOR)


def picture(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_embedders_match_hf(unified, hf, spec):
    image = prepare_image(picture(30, 50, 1), spec, pad=True)
    pixels = torch.from_numpy(image.pixel_values)[None]
    positions = torch.from_numpy(image.position_ids)[None]
    vision = VisionEmbedder(unified, dtype=torch.float32).eval()
    audio = AudioEmbedder(unified, dtype=torch.float32).eval()
    frames = torch.from_numpy(frame_audio(np.random.default_rng(2).uniform(-1, 1, 300), spec))[None]
    with torch.no_grad():
        want_v = hf.model.embed_vision(pixels, positions).pooler_output
        got_v = vision(pixels, positions.to(torch.int32))
        want_a = hf.model.get_audio_features(frames, torch.ones(frames.shape[:2], dtype=torch.bool)).pooler_output
        got_a = audio(frames)
    assert got_v.shape == (1, spec.max_soft_tokens, spec.hidden_size)
    assert (got_v - want_v).abs().max() < 1e-5
    assert got_a.shape == (1, frames.shape[1], spec.hidden_size) and (got_a - want_a).abs().max() < 1e-5
    assert want_v[0, : image.num_soft_tokens].std() > 0.1  # real rows, not zeros


def build_prompt(spec, layout, seed):
    """(HF ids, images, clips) of a prompt: text ids, then one placeholder per item, expanded."""
    rng = np.random.default_rng(seed)
    ids, images, clips = [2], [], []
    for kind in layout:
        ids += rng.integers(10, 300, 3).tolist()
        if kind == "image":
            images.append(prepare_image(picture(int(rng.integers(20, 60)), int(rng.integers(20, 60)), seed), spec, pad=True))
            ids.append(spec.image_token_id)
        else:
            clips.append(frame_audio(rng.uniform(-1, 1, int(rng.integers(40, 200))), spec))
            ids.append(spec.audio_token_id)
    ids += rng.integers(10, 300, 2).tolist()
    ids = expand_placeholders(ids, spec, [im.num_soft_tokens for im in images], [len(c) for c in clips])
    return ids, images, clips


def hf_logits(hf, spec, ids, images, clips, continuation):
    full = ids + continuation
    kwargs = {"input_ids": torch.tensor([full]),
              "mm_token_type_ids": torch.from_numpy(mm_token_type_ids(full, spec))[None]}
    if images:
        kwargs["pixel_values"] = torch.from_numpy(np.stack([im.pixel_values for im in images]))
        kwargs["image_position_ids"] = torch.from_numpy(np.stack([im.position_ids for im in images]))
    if clips:
        longest = max(len(c) for c in clips)
        kwargs["input_features"] = torch.from_numpy(np.stack([np.pad(c, ((0, longest - len(c)), (0, 0))) for c in clips]))
        kwargs["input_features_mask"] = torch.tensor([[i < len(c) for i in range(longest)] for c in clips])
    with torch.no_grad():
        return hf(**kwargs).logits[0, len(ids) - 1 : -1].float()


def our_logits(unified, spec, ids, images, clips, continuation, quant="fp16", masks=attention_masks):
    """Client-side inputs → embedders → prefill_multimodal → main per continuation token (eager fp32,
    the decoder's weights at `quant`; `masks(types, window)`: the mask builder, HF's rule by default)."""
    vision = VisionEmbedder(unified, dtype=torch.float32).eval()
    audio = AudioEmbedder(unified, dtype=torch.float32).eval()
    decode = Gemma4Decode(unified, quant=quant, dtype=torch.float32).eval()
    types = mm_token_type_ids(ids, spec)
    with torch.no_grad():
        rows = []  # in prompt order: images and clips interleave as their placeholders do
        order = [t for t in types[np.r_[True, types[1:] != types[:-1]]] if t]
        it_i, it_a = iter(images), iter(clips)
        for t in order:
            if t == 1:
                im = next(it_i)
                out = vision(torch.from_numpy(im.pixel_values)[None], torch.from_numpy(im.position_ids)[None].int())
                rows.append(out[0, : im.num_soft_tokens].numpy())
            else:
                rows.append(audio(torch.from_numpy(next(it_a))[None])[0].numpy())
        mask = multimodal_mask(types)
        mm = torch.from_numpy(scatter_embeddings(mask, rows, spec.hidden_size))[None]
        s = len(ids)
        sliding, global_ = masks(types, spec.sliding_window)
        key, value = decode.new_cache(s + len(continuation) + 1)
        logits = [decode.forward_multimodal(
            torch.from_numpy(graph_input_ids(ids, spec))[None], mm, torch.from_numpy(mask)[None],
            torch.arange(s, dtype=torch.int32)[None], torch.from_numpy(sliding)[None, None],
            torch.from_numpy(global_)[None, None], key, value)[0, -1]]
        for i, tok in enumerate(continuation[:-1]):
            logits.append(decode(torch.tensor([[tok]], dtype=torch.int32), torch.arange(s + i + 1, dtype=torch.int32)[None],
                                 key, value)[0, -1])
    return torch.stack(logits).float()


PROMPTS = {"image": ["image"], "audio": ["audio"], "mixed": ["audio", "image", "audio"], "two images": ["image", "image"]}


@pytest.mark.parametrize("name", list(PROMPTS), ids=list(PROMPTS))
def test_prefill_multimodal_then_main_match_hf(unified, hf, spec, name):
    ids, images, clips = build_prompt(spec, PROMPTS[name], seed=len(name))
    continuation = [17, 140, 8, 350, 77]
    want = hf_logits(hf, spec, ids, images, clips, continuation)
    got = our_logits(unified, spec, ids, images, clips, continuation)
    err = (got - want).abs().max().item()
    assert err < FP32_LOGIT_TOLERANCE, err
    assert want.std() > 0.3
    if images:
        assert max(im.num_soft_tokens for im in images) > spec.sliding_window  # the block straddles the window
