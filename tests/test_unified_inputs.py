"""Client-side inputs of the 12B as it ships (issue 29): each step equals HF's, element for element.

Images against transformers' Gemma4UnifiedImageProcessor (torchvision: see hf_unified), audio
against Gemma4UnifiedAudioFeatureExtractor, placeholders and mm_token_type_ids against
Gemma4UnifiedProcessor's own methods, and the two boolean masks against the masks HF's
Gemma4UnifiedModel.forward hands its text model (captured from a real forward of the tiny model).
"""

from __future__ import annotations

import types

import hf_unified
import numpy as np
import pytest
import torch

from gemmaios.tiny import tiny_unified_config_kwargs
from gemmaios.unified_inputs import (
    AUDIO_TYPE,
    IMAGE_TYPE,
    VIDEO_TYPE,
    MultimodalInputError,
    UnifiedSpec,
    aspect_preserving_size,
    attention_masks,
    expand_placeholders,
    frame_audio,
    graph_input_ids,
    mm_token_type_ids,
    prepare_image,
    scatter_embeddings,
)


def tiny_config() -> dict:
    from transformers import Gemma4UnifiedConfig

    return Gemma4UnifiedConfig(**tiny_unified_config_kwargs()).to_dict()


def spec_12b() -> UnifiedSpec:
    """The shipped 12B's facts: HF's Gemma4UnifiedConfig defaults are the 12B's ids; 16-px patches, 640-sample frames."""
    from transformers import Gemma4UnifiedConfig

    config = tiny_config()
    defaults = Gemma4UnifiedConfig().to_dict()
    config.update({k: v for k, v in defaults.items() if k.endswith(("token_id", "token_index"))})
    config["vision_config"]["patch_size"] = 16
    config["audio_config"]["audio_embed_dim"] = 640
    config["text_config"].update(sliding_window=1024, hidden_size=3840, eos_token_id=[1, 106])
    return UnifiedSpec.from_config(config)


TINY = UnifiedSpec.from_config(tiny_config())
SPEC_12B = spec_12b()


def test_the_specs_carry_the_seeds_constants():
    s = SPEC_12B
    assert (s.image_token_id, s.audio_token_id, s.video_token_id, s.boi_token_id, s.eoi_token_id) == (
        258880, 258881, 258884, 255999, 258882)
    assert s.stop_token_ids == (1, 106) and s.patch_dim == 6912 and s.side == 48
    assert s.audio_samples_per_token == 640 and s.sliding_window == 1024
    assert (TINY.side, TINY.patch_dim, TINY.audio_samples_per_token, TINY.sliding_window) == (12, 432, 16, 8)
    assert max(TINY.metadata()[k] for k in TINY.metadata() if k.endswith("token_id")) < TINY.vocab_size
    assert SPEC_12B.metadata()["image_token_id"] == 258880


# ---- images ---------------------------------------------------------------------------------------

SIZES = [(480, 640), (640, 480), (1080, 1920), (48, 48), (1, 1), (37, 5000), (5000, 37), (224, 224), (333, 777),
         (96, 2000), (3024, 4032), (50, 70)]


def test_the_resize_target_equals_hfs():
    from transformers.models.gemma4_unified.processing_gemma4_unified import get_aspect_ratio_preserving_size

    for spec in (SPEC_12B, TINY):
        for h, w in SIZES:
            try:
                want = get_aspect_ratio_preserving_size(h, w, spec.patch_size, spec.max_patches, spec.pooling_kernel_size)
            except ValueError:
                with pytest.raises(MultimodalInputError):
                    aspect_preserving_size(h, w, spec)
                continue
            assert aspect_preserving_size(h, w, spec) == want, (h, w)


def hf_image_processor(spec: UnifiedSpec):
    module = hf_unified.image_module()
    if module is None:
        pytest.skip("transformers' Gemma4UnifiedImageProcessor needs torchvision, kept out of the dev extras: PyPI's "
                    "wheel breaks `import transformers` beside the CPU torch and changes the processor HF picks for E2B/E4B "
                    "(tests/hf_unified.py)")
    return module.Gemma4UnifiedImageProcessor(patch_size=spec.patch_size, max_soft_tokens=spec.max_soft_tokens,
                                              pooling_kernel_size=spec.pooling_kernel_size)


def picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth + noise: the bicubic taps see real structure, not just white noise
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) * 7) % 256], -1)
    return np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("spec", [SPEC_12B, TINY], ids=["12b", "tiny"])
def test_image_rows_and_positions_equal_hfs_processor(spec):
    """Resize, rescale, 16-px patchify, 3x3 merge, positions, padding: HF's processor end to end."""
    from PIL import Image

    processor = hf_image_processor(spec)
    for i, (h, w) in enumerate([(480, 640), (333, 777), (1080, 1920), (96, 2000), (48, 48), (2000, 60)]):
        pixels = picture(h, w, i)
        want = processor(images=[Image.fromarray(pixels, "RGB")], return_tensors="pt")
        ours = prepare_image(pixels, spec, pad=True)
        n = int(want["num_soft_tokens_per_image"][0])
        assert ours.num_soft_tokens == n
        assert ours.pixel_values.shape == tuple(want["pixel_values"][0].shape) == (spec.max_soft_tokens, spec.patch_dim)
        assert np.array_equal(ours.pixel_values, want["pixel_values"][0].numpy()), (h, w)
        assert np.array_equal(ours.position_ids, want["image_position_ids"][0].numpy()), (h, w)
        unpadded = prepare_image(pixels, spec)
        assert np.array_equal(unpadded.pixel_values, ours.pixel_values[:n]) and unpadded.position_ids.shape == (n, 2)
        assert ours.position_ids[:n].max(0).tolist() == [ours.resized[1] // spec.side - 1, ours.resized[0] // spec.side - 1]


def test_image_inputs_are_refused_by_name():
    with pytest.raises(MultimodalInputError, match="uint8"):
        prepare_image(np.zeros((10, 10), np.uint8), TINY)
    with pytest.raises(MultimodalInputError, match="uint8"):
        prepare_image(np.zeros((10, 10, 3), np.float32), TINY)


# ---- audio ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("samples", [1, 639, 640, 641, 16000, 12345])
def test_audio_frames_equal_hfs_feature_extractor(samples):
    from transformers.models.gemma4_unified.feature_extraction_gemma4_unified import (
        Gemma4UnifiedAudioFeatureExtractor,
    )

    wave = np.random.default_rng(samples).uniform(-1, 1, samples).astype(np.float32)
    want = Gemma4UnifiedAudioFeatureExtractor()(wave, return_tensors="np")
    ours = frame_audio(wave, SPEC_12B)
    assert ours.shape == want["input_features"][0].shape == (-(-samples // 640), 640)
    assert np.array_equal(ours, want["input_features"][0])
    assert int(want["input_features_mask"][0].sum()) == ours.shape[0]  # one soft token per frame


# ---- placeholders, types, masks -------------------------------------------------------------------

def hf_processor_names(spec: UnifiedSpec):
    """The attributes Gemma4UnifiedProcessor's methods read, named as a tokenizer would spell the ids."""
    return types.SimpleNamespace(
        boi_token=f"<{spec.boi_token_id}>", eoi_token=f"<{spec.eoi_token_id}>", image_token=f"<{spec.image_token_id}>",
        boa_token=f"<{spec.boa_token_id}>", eoa_token=f"<{spec.eoa_token_id}>", audio_token=f"<{spec.audio_token_id}>",
        image_token_ids=[spec.image_token_id], video_token_ids=[spec.video_token_id],
        audio_token_ids=[spec.audio_token_id])


def as_ids(text: str) -> list[int]:
    import re

    return [int(t) for t in re.findall(r"<(\d+)>", text)]


def test_placeholder_expansion_and_types_equal_hfs_processor():
    from transformers import Gemma4UnifiedProcessor

    spec, names = SPEC_12B, hf_processor_names(SPEC_12B)
    prompt = "<2><10><258880><20><258881><21><258880><22>"
    text = prompt
    for idx in range(2):
        text = text.replace(names.image_token,
                            Gemma4UnifiedProcessor.replace_image_token(names, {"num_soft_tokens_per_image": [5, 3]}, idx)
                            .replace(names.image_token, "<IMG>"), 1)
    text = text.replace(names.audio_token, Gemma4UnifiedProcessor.replace_audio_token(
        names, {"input_features_mask": [np.ones(4, bool)]}, 0).replace(names.audio_token, "<AUD>"), 1)
    want = as_ids(text.replace("<IMG>", names.image_token).replace("<AUD>", names.audio_token))
    ours = expand_placeholders(as_ids(prompt), spec, image_tokens=[5, 3], audio_tokens=[4])
    assert ours == want and len(ours) == 8 + 2 * 2 + 5 + 3 + 2 + 4 - 3
    want_types = Gemma4UnifiedProcessor.create_mm_token_type_ids(names, [want])[0]
    assert mm_token_type_ids(ours, spec).tolist() == want_types
    assert set(want_types) == {0, IMAGE_TYPE, AUDIO_TYPE}
    ids = graph_input_ids(ours, spec)
    soft = (spec.image_token_id, spec.audio_token_id, spec.video_token_id)
    assert not np.isin(ids, soft).any() and (ids == spec.pad_token_id).sum() == 5 + 3 + 4
    with pytest.raises(MultimodalInputError, match="placeholders"):
        expand_placeholders(as_ids(prompt), spec, image_tokens=[5])


def hf_masks(ids: list[int], types: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The masks HF's Gemma4UnifiedModel.forward gives its text model, captured from a forward of the tiny model."""
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration

    config = Gemma4UnifiedConfig(**tiny_unified_config_kwargs())
    config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    model = Gemma4UnifiedForConditionalGeneration(config).eval()
    seen = {}

    def grab(module, args, kwargs):
        seen.update(kwargs["attention_mask"])

    handle = model.model.language_model.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(input_ids=torch.tensor([ids]), mm_token_type_ids=torch.tensor([types]))
    handle.remove()
    # eager masks are additive: 0 = attend
    return (seen["sliding_attention"][0, 0] == 0).numpy(), (seen["full_attention"][0, 0] == 0).numpy()


def prompt_of(layout: list[tuple[str, int]]) -> list[int]:
    ids, s = [], TINY
    for kind, n in layout:
        if kind == "text":
            ids += [2 + (len(ids) * 7) % 300 for _ in range(n)]
        elif kind == "image":
            ids += [s.boi_token_id, *[s.image_token_id] * n, s.eoi_token_id]
        elif kind == "video":
            ids += [s.boi_token_id, *[s.video_token_id] * n, s.eoi_token_id]
        else:
            ids += [s.boa_token_id, *[s.audio_token_id] * n, s.eoa_token_id]
    return ids


LAYOUTS = {
    "text only": [("text", 14)],
    "image inside the window": [("text", 2), ("image", 4), ("text", 3)],
    "image straddling the window": [("text", 5), ("image", 13), ("text", 6)],  # 13 > the tiny window of 8
    "audio stays causal": [("text", 3), ("audio", 10), ("text", 2)],
    "mixed, adjacent blocks": [("text", 1), ("image", 9), ("video", 3), ("audio", 5), ("image", 2), ("text", 3)],
}


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
def test_masks_equal_hfs_element_for_element(layout):
    ids = prompt_of(LAYOUTS[layout])
    types = mm_token_type_ids(ids, TINY)
    want_sliding, want_global = hf_masks(ids, types.tolist())
    sliding, global_ = attention_masks(types, TINY.sliding_window)
    assert sliding.dtype == bool and sliding.shape == want_sliding.shape == (len(ids), len(ids))
    assert np.array_equal(sliding, want_sliding)
    assert np.array_equal(global_, want_global)
    if layout == "image straddling the window":
        first = ids.index(TINY.image_token_id)
        last = first + 12
        assert sliding[first, last] and sliding[last, first]  # both ways, 12 apart, past the window of 8
        assert not sliding[last + 2, first - 1]  # text after the block: still windowed
    if layout == "audio stays causal":
        a = ids.index(TINY.audio_token_id)
        assert not sliding[a, a + 1] and not global_[a, a + 1]


def test_masks_pad_to_the_cache_and_refuse_what_does_not_fit():
    types = mm_token_type_ids(prompt_of(LAYOUTS["image straddling the window"]), TINY)
    s = len(types)
    sliding, global_ = attention_masks(types, TINY.sliding_window, kv_length=s + 10)
    assert sliding.shape == (s, s + 10) and not sliding[:, s:].any() and not global_[:, s:].any()
    assert np.array_equal(global_[:, :s], attention_masks(types, TINY.sliding_window)[1])
    with pytest.raises(MultimodalInputError, match="cache"):
        attention_masks(types, TINY.sliding_window, kv_length=s - 1)


def test_embeddings_scatter_to_the_marked_rows():
    mask = np.array([0, 1, 1, 0, 1], bool)
    out = scatter_embeddings(mask, [np.ones((2, 3)), 2 * np.ones((1, 3))], 3)
    assert out[:, 0].tolist() == [0, 1, 1, 0, 2]
    with pytest.raises(MultimodalInputError, match="rows"):
        scatter_embeddings(mask, [np.ones((2, 3))], 3)
    assert VIDEO_TYPE == 2
