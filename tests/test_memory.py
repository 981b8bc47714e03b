"""Entitled-memory arithmetic with a vision asset, on real E2B/E4B figures (gemmaios.memory)."""

from __future__ import annotations

import pytest

from gemmaios.archs import get_arch
from gemmaios.memory import (
    ExtraAsset,
    MemoryEstimate,
    entitled_memory,
    image_embeds_bytes,
    kv_cache_bytes,
    kv_cache_bytes_for,
    tree_bytes,
    vision_encoder_activation_bytes,
)
from gemmaios.registry import MODELS

# Published sizes of the int4 decode graphs (pipelined engine): E4B seed 002 (3.7 GB),
# E2B mlboydaisuke/gemma-4-E2B-CoreAI gpu-pipelined int4lin (2.0 GB).
GRAPH_BYTES = {"e2b": 2_000_000_000, "e4b": 3_700_000_000}
SOFT_TOKENS = 280  # Gemma 4's default image soft-token budget (E2B/E4B)
CONTEXT = 4096


def vision_facts(text_hidden: int) -> tuple[int, int]:
    """(fp16 weight bytes, activation bytes at the 280-token grid) of the E2B/E4B vision tower +
    3x3 pooling + projector, counted from transformers' own classes (16 layers, h768, 12 heads)."""
    import torch
    from transformers.models.gemma4 import modeling_gemma4 as m
    from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig, Gemma4VisionConfig

    with torch.device("meta"):
        vc = Gemma4VisionConfig()
        params = sum(p.numel() for p in m.Gemma4VisionModel(vc).parameters())
        params += sum(p.numel() for p in m.Gemma4MultimodalEmbedder(vc, Gemma4TextConfig(hidden_size=text_hidden)).parameters())
    patches = SOFT_TOKENS * vc.pooling_kernel_size**2  # 2520 patches of 16x16 before the 3x3 pool
    activations = vision_encoder_activation_bytes(
        patches, vc.hidden_size, vc.intermediate_size, vc.num_attention_heads,
        patch_dim=3 * vc.patch_size**2, out_tokens=SOFT_TOKENS, out_hidden=text_hidden)
    return params * 2, activations


def iphone_estimate(key: str, *, tbl: bool = False, vision: bool = True):
    spec = MODELS[key]
    kv = kv_cache_bytes(spec.kv_slots, spec.num_key_value_heads, max(spec.head_dim, spec.global_head_dim), CONTEXT)
    tables = spec.vocab_size * (spec.num_hidden_layers * spec.hidden_size_per_layer_input + 4) if tbl else 0
    extra, buffers = None, {}
    if vision:
        weights, activations = vision_facts(spec.hidden_size)
        extra = ExtraAsset("vision encoder", weights, activations)
        buffers["image_embeds"] = image_embeds_bytes(SOFT_TOKENS, spec.hidden_size)
    return entitled_memory(get_arch("h18p"), decoder_bytes=GRAPH_BYTES[key], table_bytes=tables, kv_bytes=kv,
                           buffers=buffers, extra=extra)


def test_kv_and_image_embeds_figures():
    # E2B: 15 KV-owning layers, 1 KV head, padded to the 512 global head dim; E4B: 24 layers, 2 heads
    assert kv_cache_bytes(15, 1, 512, CONTEXT) == 2 * 15 * 1 * 4096 * 512 * 2 == 125_829_120
    assert kv_cache_bytes(24, 2, 512, CONTEXT) == 402_653_184
    assert image_embeds_bytes(280, 1536) == 860_160 and image_embeds_bytes(280, 2560) == 1_433_600


def test_kv_bytes_follow_the_decode_spec(tiny_checkpoint):
    from gemmaios.decode_model import DecodeSpec

    spec = DecodeSpec.from_text_config(tiny_checkpoint.text_config)
    # tiny E4B-shaped: 8 cache-owning layers, unified pair padded to 2 heads x 32 dims
    assert spec.cache_shape(64) == (8, 1, 2, 64, 32)
    assert kv_cache_bytes_for(spec, 64) == 2 * 8 * 2 * 64 * 32 * 2


def test_vision_asset_figures_for_e2b_and_e4b():
    e2b_weights, e2b_act = vision_facts(1536)
    e4b_weights, e4b_act = vision_facts(2560)
    # 167.4M tower params + the 768→hidden projector, fp16
    assert e2b_weights == (167_364_608 + 768 * 1536) * 2 == 337_088_512
    assert e4b_weights == (167_364_608 + 768 * 2560) * 2 == 338_661_376
    # the [12, 2520, 2520] fp16 attention scores dominate: 152 MB of ~181 MB
    assert 12 * 2520 * 2520 * 2 == 152_409_600 < e4b_act < 200_000_000
    assert e2b_act < e4b_act  # only the output rows differ (hidden 1536 vs 2560)


@pytest.mark.parametrize("key,total_gb,fits", [("e2b", 2.64, True), ("e4b", 4.62, True)])
def test_decoder_plus_vision_asset_fits_the_iphone_in_provider_mode(key, total_gb, fits):
    estimate = iphone_estimate(key)
    assert estimate.total_bytes / 1e9 == pytest.approx(total_gb, abs=0.01)
    assert estimate.fits is fits and estimate.limit_bytes == 6_400_000_000
    assert list(estimate.parts) == ["graph", "owned PLE tables", "KV cache", "image_embeds",
                                    "vision encoder weights", "vision encoder activations"]
    text = estimate.describe()
    assert "vision encoder weights 0.34 GB" in text and "h18p's entitled limit 6.40 GB" in text
    assert "image_embeds 0.86 MB" in text or "image_embeds 1.43 MB" in text
    assert "before the KV cache" not in text  # the KV cache is in the sum
    tiny = MemoryEstimate("h18p", {"graph": 790_000, "audio encoder activations": 1_720_000}, 6_400_000_000)
    assert "= 2.51 MB vs h18p's" in tiny.describe()  # a tiny model's sum is not `0.00 GB`
    # without the asset, the difference is exactly its weights, activations and image_embeds
    plain = iphone_estimate(key, vision=False)
    vision = estimate.parts
    assert estimate.total_bytes - plain.total_bytes == (
        vision["vision encoder weights"] + vision["vision encoder activations"] + vision["image_embeds"])


def test_e4b_tbl_with_the_vision_asset_exceeds_the_entitled_limit():
    estimate = iphone_estimate("e4b", tbl=True)
    assert estimate.parts["owned PLE tables"] == 262_144 * (42 * 256 + 4)  # i8 table + f32 scales, 2.82 GB
    assert estimate.fits is False and estimate.headroom_bytes < -1_000_000_000  # 7.44 GB vs 6.40 GB
    assert iphone_estimate("e2b", tbl=True).fits is True  # E2B: 2.0 + 2.35 + ... = 4.99 GB


def test_unknown_limits_and_measured_assets(tmp_path):
    estimate = entitled_memory(get_arch("h17g"), decoder_bytes=10)
    assert estimate.fits is None and estimate.headroom_bytes is None
    assert "before the KV cache" in estimate.describe() and "limit unknown" in estimate.describe()
    asset = tmp_path / "vision.aimodel"
    (asset / "weights").mkdir(parents=True)
    (asset / "weights" / "w.bin").write_bytes(b"x" * 1000)
    (asset / "main.mlirb").write_bytes(b"x" * 24)
    assert tree_bytes(asset) == 1024
    extra = ExtraAsset.from_files("vision encoder", asset, activation_bytes=76)
    assert entitled_memory(get_arch("h18p"), decoder_bytes=900, extra=extra).total_bytes == 2000
    assert entitled_memory(get_arch("h18p"), decoder_bytes=900, extra=extra).as_dict()["fits"] is True


def _vision_bundle(root, decoder_bytes: int, vision_bytes: int, activation_bytes: int):
    """A bundle folder as convert --vision writes it, with sparse asset files of the given sizes."""
    import json

    from gemmaios import contract as c

    root.mkdir()
    for name, size in (("d.aimodel", decoder_bytes), ("d.vision.aimodel", vision_bytes)):
        with open(root / name, "wb") as f:
            f.truncate(size)
    facts = {c.VISION_ASSET_FIELD: "d.vision.aimodel", "max_soft_tokens": SOFT_TOKENS, "hidden_size": 2560,
             "max_patches": SOFT_TOKENS * 9, "patch_dim": 768, "activation_bytes": activation_bytes}
    (root / c.BUNDLE_METADATA_FILE).write_text(json.dumps({"assets": {"main": "d.aimodel"},
                                                            "gemmaios": {c.VISION_METADATA_KEY: facts}}))
    return root


def test_build_checks_decoder_plus_vision_encoder_against_the_iphone_limit(tmp_path):
    from gemmaios.payload import VisionExceedsMemory, check_vision_memory, vision_memory

    arch = get_arch("h18p")
    fits = _vision_bundle(tmp_path / "e4b", GRAPH_BYTES["e4b"], 339_000_000, 181_000_000)
    estimate = check_vision_memory(fits, arch)
    assert estimate.fits and estimate.parts["vision encoder weights"] == 339_000_000
    assert estimate.parts["vision encoder activations"] == 181_000_000
    assert estimate.parts["image_embeds"] == SOFT_TOKENS * 2560 * 2
    assert estimate.total_bytes == GRAPH_BYTES["e4b"] + 339_000_000 + 181_000_000 + SOFT_TOKENS * 2560 * 2 + (
        SOFT_TOKENS * 9 * 768 * 2 + SOFT_TOKENS * 9 * 2 * 4)
    too_big = _vision_bundle(tmp_path / "big", 6_000_000_000, 339_000_000, 181_000_000)
    with pytest.raises(VisionExceedsMemory, match="does not fit an iPhone") as err:
        check_vision_memory(too_big, arch)
    assert "E2B" in err.value.hint
    assert check_vision_memory(too_big, get_arch("h16s")) is None  # a Mac: no entitled-memory ceiling here
    assert vision_memory(tmp_path / "big", arch).fits is False


# ---- KV by context (issue 27): E4B at 1k, 4k, 8k, 32k -------------------------------------------------

def e4b_decode_spec():
    """E4B's decode spec from transformers' own Gemma4TextConfig built on the registry's dimensions
    (layer types, per-layer head dims and KV sharing come from HF's config logic, not from ours)."""
    from transformers import Gemma4TextConfig

    from gemmaios.decode_model import DecodeSpec

    spec = MODELS["e4b"]
    cfg = Gemma4TextConfig(
        vocab_size=spec.vocab_size, vocab_size_per_layer_input=spec.vocab_size, hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads, num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim, global_head_dim=spec.global_head_dim,
        hidden_size_per_layer_input=spec.hidden_size_per_layer_input, num_kv_shared_layers=spec.num_kv_shared_layers,
        sliding_window=spec.sliding_window)
    return DecodeSpec.from_text_config(cfg.to_dict())


def test_e4b_kv_layers_match_transformers_config():
    from gemmaios.roofline import kv_layers_of

    decode = e4b_decode_spec()
    ours = kv_layers_of(MODELS["e4b"])
    assert [(lay.kv_heads, lay.head_dim, lay.layer_type == "sliding_attention") for lay in decode.kv_layers] == [
        (lay.kv_heads, lay.head_dim, lay.sliding) for lay in ours]
    assert len(ours) == 24 and sum(not lay.sliding for lay in ours) == 4  # full attention every 6th
    assert decode.cache_shape(1024) == (24, 1, 2, 1024, 512)


def test_e4b_kv_by_context():
    from gemmaios.memory import kv_cache_bytes_for
    from gemmaios.roofline import context_rows, estimate_weight_bytes

    decode = e4b_decode_spec()
    rows = {r.context: r for r in context_rows(MODELS["e4b"], "int4")}
    assert sorted(rows) == [1024, 4096, 8192, 32768]
    weights = estimate_weight_bytes(MODELS["e4b"], "int4").total_bytes
    for ctx, r in rows.items():
        assert r.capacity == ctx  # the engine's doubling from 256 lands on these exactly
        # memory: the unified padded state the engine binds, as convert's graph declares it
        assert r.kv_state_bytes == kv_cache_bytes_for(decode, ctx)
        # read: each cache-owning layer's own K and V rows, fp16
        assert r.kv_read_bytes == sum(2 * lay.kv_heads * lay.head_dim * 2 * ctx for lay in decode.kv_layers)
        assert r.kv_read_window_bytes == sum(
            2 * lay.kv_heads * lay.head_dim * 2 * (min(ctx, 512) if lay.layer_type == "sliding_attention" else ctx)
            for lay in decode.kv_layers)
        assert r.weight_bytes == weights and r.bytes_per_token == weights + r.kv_read_bytes + r.ple_row_bytes
    # the figures the report gives (fp16 KV): 56 KiB read and 96 KiB held per position
    assert rows[1024].kv_read_bytes == 58_720_256 and rows[1024].kv_state_bytes == 100_663_296
    assert rows[32768].kv_read_bytes == 1_879_048_192 and rows[32768].kv_state_bytes == 3_221_225_472
    assert rows[4096].kv_state_bytes == kv_cache_bytes(24, 2, 512, 4096)
    # the KV share of a token's traffic grows from ~2% at 1k to ~42% at 32k
    assert rows[1024].kv_share < 0.03 and 0.4 < rows[32768].kv_share < 0.45


def test_capacity_follows_the_engine_doubling():
    from gemmaios.contract import kv_bound_capacity
    from gemmaios.roofline import context_rows

    assert [kv_bound_capacity(n, 4096) for n in (1, 256, 257, 1024, 1025, 3000, 4096, 9000)] == [
        256, 256, 512, 1024, 2048, 4096, 4096, 4096]
    assert kv_bound_capacity(10, 4096, current=2048) == 2048  # never shrinks while the engine lives
    row = context_rows(MODELS["e4b"], contexts=(1500,))[0]
    assert row.capacity == 2048 and row.kv_state_bytes == 2 * 24 * 2 * 2048 * 512 * 2


def test_build_checks_decoder_plus_audio_encoder_against_the_iphone_limit(tmp_path):
    """E2B/E4B --audio (and --vision --audio): the audio encoder's weights and activations and its inputs
    join the sum; the soft-token rows main binds are counted once, at the larger budget."""
    import json

    from gemmaios import contract as c
    from gemmaios.memory import audio_encoder_activation_bytes
    from gemmaios.payload import VisionExceedsMemory, check_vision_memory

    arch = get_arch("h18p")
    # 30 s at 16 kHz: 2999 frames, 750 soft tokens; a 12-layer width-1024 Conformer (E2B/E4B's)
    activations = audio_encoder_activation_bytes(2999, 750, 1024, 8, (128, 32), 2560)
    assert activations == (2999 * 128 + 750 * 2560 + 750 * 1024 + 128 * 1500 * 64 + 32 * 750 * 32) * 2  # subsampling peaks

    def audio_bundle(root, decoder_bytes, vision: bool):
        _vision_bundle(root, decoder_bytes, 339_000_000, 181_000_000) if vision else root.mkdir()
        with open(root / "d.audio.aimodel", "wb") as f:
            f.truncate(610_000_000)
        if not vision:
            with open(root / "d.aimodel", "wb") as f:
                f.truncate(decoder_bytes)
        meta = json.loads((root / c.BUNDLE_METADATA_FILE).read_text()) if vision else {"assets": {"main": "d.aimodel"},
                                                                                       "gemmaios": {}}
        meta["gemmaios"][c.AUDIO_METADATA_KEY] = {c.AUDIO_ASSET_FIELD: "d.audio.aimodel", "max_frames": 2999,
                                                  "feature_size": 128, "hidden_size": 2560, "max_soft_tokens": 750,
                                                  "embeds_rows": 750, "activation_bytes": activations}
        (root / c.BUNDLE_METADATA_FILE).write_text(json.dumps(meta))
        return root

    alone = check_vision_memory(audio_bundle(tmp_path / "a", GRAPH_BYTES["e4b"], False), arch)
    assert alone.fits and alone.parts["audio encoder weights"] == 610_000_000
    assert alone.parts["audio encoder activations"] == activations and "vision encoder weights" not in alone.parts
    assert alone.parts["image_embeds"] == 750 * 2560 * 2 and alone.parts["audio inputs"] == 2999 * 128 * 2 + 2999 * 4
    both = check_vision_memory(audio_bundle(tmp_path / "b", GRAPH_BYTES["e4b"], True), arch)
    assert both.parts["vision encoder weights"] == 339_000_000 and both.parts["audio encoder weights"] == 610_000_000
    assert both.parts["image_embeds"] == 750 * 2560 * 2  # one picture or one clip: the larger budget, once
    assert both.total_bytes == alone.total_bytes + 339_000_000 + 181_000_000 + SOFT_TOKENS * 9 * 768 * 2 + (
        SOFT_TOKENS * 9 * 2 * 4)
    with pytest.raises(VisionExceedsMemory, match="with its vision and audio encoders does not fit") as err:
        check_vision_memory(audio_bundle(tmp_path / "c", 6_000_000_000, True), arch)
    assert "--audio" in err.value.hint
