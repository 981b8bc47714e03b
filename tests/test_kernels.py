"""Flash-decode SDPA: the numpy model against naive attention, the Metal source's structure, the
torch/Core AI wiring, and parity with transformers' Gemma 4 full-layer attention.

Metal cannot compile on Linux: the kernel's GPU run is checked on a Mac. Here the source's entry
names, parameters, buffer indices and constants are checked against what gemmaios registers, and
the source itself runs on a CPU stand-in of Metal's execution model (tests/msl_host, needs g++).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gemmaios import kernels as K
from gemmaios.registry import MODELS
from gemmaios.tiny import build_tiny_model, tiny_12b_text_config_kwargs, tiny_31b_text_config_kwargs

VARIANTS = ("simple", "g8")


def _inputs(rng, n_heads, n_kv_heads, kv_len, head_dim, q_scale=1.0, v_scale=1.0):
    """fp16 q/k/v like Gemma 4's: RMS-normed q and k (unit-RMS rows times a norm gain), any v."""

    def rms_rows(shape, gain):
        x = rng.standard_normal(shape)
        return x / np.sqrt((x**2).mean(axis=-1, keepdims=True)) * gain

    q = rms_rows((n_heads, head_dim), q_scale).astype(np.float16)
    k = rms_rows((n_kv_heads, kv_len, head_dim), 1.0).astype(np.float16)
    v = (rng.standard_normal((n_kv_heads, kv_len, head_dim)) * v_scale).astype(np.float16)
    return q, k, v


def _check_within_bound(q, k, v, variant):
    out = K.flash_decode_model(q, k, v, variant)
    assert out.dtype == np.float16 and out.shape == q.shape
    ref = K.naive_sdpa(q, k, v)
    bound = K.error_bound(q, k, v, variant)
    err = np.abs(out.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert (err <= bound).all(), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"
    return err, bound


# 12B full layer: 16 query heads on 1 global KV head; 31B: 32 on 4. Short caches (fewer keys
# than splits, uneven blocks), 4k and 32k; peaked (q gain 1: scores ~ N(0, 512)) and flat softmax.
NAMED_SHAPES = [
    pytest.param(16, 1, 1, 512, 1.0, id="12b-T1"),
    pytest.param(16, 1, 7, 512, 1.0, id="12b-T7"),
    pytest.param(16, 1, 9, 512, 0.2, id="12b-T9"),
    pytest.param(32, 4, 333, 512, 0.2, id="31b-T333"),
    pytest.param(16, 1, 4096, 512, 0.1, id="12b-T4k"),
    pytest.param(32, 4, 4096, 512, 1.0, id="31b-T4k"),
    pytest.param(16, 1, 32768, 512, 0.05, id="12b-T32k"),
]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_heads,n_kv_heads,kv_len,head_dim,q_scale", NAMED_SHAPES)
def test_model_matches_naive_sdpa_within_bound(variant, n_heads, n_kv_heads, kv_len, head_dim, q_scale):
    rng = np.random.default_rng([n_heads, kv_len, int(q_scale * 100)])
    q, k, v = _inputs(rng, n_heads, n_kv_heads, kv_len, head_dim, q_scale)
    err, bound = _check_within_bound(q, k, v, variant)
    # The bound is a real constraint, not a wide net: at most 2% of the values' size here.
    assert bound.max() < 0.02 * np.abs(v).max()


def test_model_matches_naive_sdpa_on_random_shapes():
    rng = np.random.default_rng(7)
    for _ in range(12):
        head_dim = int(rng.choice([32, 64, 128, 256, 512]))
        n_kv_heads = int(rng.integers(1, 5))
        n_heads = n_kv_heads * int(rng.integers(1, 9))
        kv_len = int(rng.integers(1, 600))
        q_scale = float(rng.choice([0.05, 0.3, 1.0, 2.0]))
        v_scale = float(rng.choice([1e-3, 1.0, 300.0]))
        q, k, v = _inputs(rng, n_heads, n_kv_heads, kv_len, head_dim, q_scale, v_scale)
        for variant in VARIANTS:
            _check_within_bound(q, k, v, variant)


def test_model_handles_tiny_outputs_in_the_fp16_subnormal_range():
    q, k, v = _inputs(np.random.default_rng(3), 16, 1, 50, 512, 0.3, v_scale=1e-6)
    for variant in VARIANTS:
        err, _ = _check_within_bound(q, k, v, variant)
        assert err.max() < 2**-24


def test_bundle_suffix_names_the_kernel_like_the_shipped_bundles():
    assert (K.bundle_suffix(None), K.bundle_suffix("simple"), K.bundle_suffix("g8")) == (
        "",
        "_msdpa",
        "_msdpa_g8",
    )


def test_split_blocks_cover_every_key_once_in_contiguous_blocks():
    for kv_len in (1, 5, 8, 9, 63, 64, 65, 4096, 32767):
        blocks = K.split_blocks(kv_len, K.G8_SPLITS)
        covered = [j for b, e in blocks for j in range(b, e)]
        assert covered == list(range(kv_len))
        assert all(e - b <= -(-kv_len // K.G8_SPLITS) for b, e in blocks)
    assert K.split_blocks(3, 8)[3:] == [(3, 3)] * 5  # short caches leave trailing splits empty


def test_a_merge_that_skips_the_max_rescale_breaks_the_bound():
    """The check has teeth: merging the splits without exp(m_g - max m) is caught."""
    rng = np.random.default_rng(11)
    q, k, v = _inputs(rng, 16, 1, 64, 512, 1.0)
    state = K.scan_splits(q, k, v, K.G8_SPLITS)
    wrong = (state.acc.sum(axis=0) / state.l.sum(axis=0)[:, None]).astype(np.float16)
    assert (np.abs(wrong - K.naive_sdpa(q, k, v)) > K.error_bound(q, k, v, "g8")).any()
    assert (np.abs(K.merge_splits(state) - K.naive_sdpa(q, k, v)) <= K.error_bound(q, k, v, "g8")).all()


def test_g8_bound_is_tighter_than_simple_at_long_context():
    q, k, v = _inputs(np.random.default_rng(5), 16, 1, 4096, 512, 0.1)
    assert K.error_bound(q, k, v, "g8").max() < K.error_bound(q, k, v, "simple").max()


def test_model_rejects_shapes_the_kernel_cannot_run():
    q, k, v = _inputs(np.random.default_rng(1), 16, 1, 4, 512)
    with pytest.raises(K.KernelInputError, match="head dim"):
        K.flash_decode_model(q[:, :500], k[..., :500], v[..., :500])
    with pytest.raises(K.KernelInputError, match="split evenly"):
        K.flash_decode_model(q[:15], np.concatenate([k, k]), np.concatenate([v, v]))
    with pytest.raises(K.KernelInputError, match="empty"):
        K.flash_decode_model(q, k[:, :0], v[:, :0])
    with pytest.raises(K.KernelInputError, match="variant"):
        K.flash_decode_model(q, k, v, "g16")


# ---------------------------------------------------------------------------------------------
# The Metal source against the registration.
# ---------------------------------------------------------------------------------------------


def test_metal_source_entries_and_parameters_match_the_registration():
    source = K.load_metal_source()
    assert set(source.kernels) == {spec.entry for spec in K.KERNEL_SPECS.values()}
    for spec in K.KERNEL_SPECS.values():
        kernel = K.check_kernel_source(source, spec)
        buffers = [p for p in kernel.params if p.attr.startswith("buffer(")]
        assert [p.name for p in buffers] == list(spec.input_names + spec.result_names)
        assert [p.attr for p in buffers] == [f"buffer({i})" for i in range(len(buffers))]
        assert {p.name for p in kernel.params} - {p.name for p in buffers} == {
            n for n, _, _ in spec.metal_params
        }
        # Every tensor and thread attribute the body uses is a declared parameter.
        used = set(re.findall(r"\b(q|k|v|out|tid|tgid)\b", kernel.body))
        assert used == {p.name for p in kernel.params}


def test_metal_constants_match_the_numpy_model():
    helpers = K.load_metal_source().helpers
    consts = dict(re.findall(r"constexpr constant \w+ (FD_\w+) = ([^;]+);", helpers))
    assert int(consts["FD_SIMD_WIDTH"]) == K.SIMD_WIDTH
    assert int(consts["FD_MAX_HEAD_DIM"]) == K.MAX_HEAD_DIM
    assert int(consts["FD_G8_SPLITS"]) == K.G8_SPLITS == K.KERNEL_SPECS["g8"].splits
    assert np.float32(consts["FD_NEG_BIG"].rstrip("f")) == K.NEG_BIG
    # g8's threadgroup staging (per-split outputs, maxima, sums) fits Apple GPUs' 32 KB.
    assert (K.G8_SPLITS * K.MAX_HEAD_DIM + 2 * K.G8_SPLITS) * 4 <= 32 * 1024
    for spec in K.KERNEL_SPECS.values():
        grid, group = spec.dispatch(32)
        assert group == (K.SIMD_WIDTH, spec.splits, 1) and np.prod(group) <= 1024
        assert grid[1] == spec.splits * 32  # one threadgroup per query head


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda s: s.replace("gemmaios_flash_decode_sdpa_g8(", "flash_decode_g8("), "no \\[\\[kernel\\]\\]"),
        (lambda s: s.replace("v [[buffer(2)]]", "v [[buffer(3)]]", 1), "do not match"),
        (
            lambda s: s.replace(
                "uint2 tgid [[threadgroup_position_in_grid]]", "uint tgid [[thread_index_in_simdgroup]]", 1
            ),
            "do not match",
        ),
        (lambda s: s.replace("// gemmaios:helpers:end\n", ""), "helpers"),
    ],
)
def test_a_source_that_drifts_from_the_registration_is_rejected(mutate, message):
    text = K.KERNEL_SOURCE.read_text()
    with pytest.raises(K.KernelSourceError, match=message):
        source = K.parse_metal_source(mutate(text))
        for spec in K.KERNEL_SPECS.values():
            K.check_kernel_source(source, spec)


def test_registration_mismatch_is_rejected():
    spec = replace(K.KERNEL_SPECS["simple"], input_names=("query", "k", "v"))
    with pytest.raises(K.KernelSourceError, match="query"):
        K.check_kernel_source(K.load_metal_source(), spec)


@pytest.mark.parametrize("variant", VARIANTS)
def test_generated_kernel_source_is_the_committed_kernel(variant):
    spec = K.KERNEL_SPECS[variant]
    generated = K.generated_kernel_source(variant)
    source = K.load_metal_source()
    assert source.helpers in generated
    regenerated = K.parse_metal_source(source.helpers.join(K.HELPER_MARKERS) + generated).kernels[spec.entry]
    assert regenerated.params == source.kernels[spec.entry].params
    assert regenerated.body.strip() == source.kernels[spec.entry].body.strip()


# ---------------------------------------------------------------------------------------------
# The Metal source, run: tests/msl_host stands in for <metal_stdlib> so the kernels compile as C++23
# and run on the CPU, one std::thread per GPU thread (simd_sum and threadgroup_barrier as barriers).
# This is not the Metal compiler or the GPU; it checks the source's indexing, GQA mapping, key
# blocks, merge and barriers against the numpy model.
# ---------------------------------------------------------------------------------------------

MSL_HOST = Path(__file__).parent / "msl_host"


def _build_host_kernel(source: Path, out: Path, werror: bool = True) -> Path:
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ not installed (scripts/system-deps.sh installs it)")
    flags = ["-std=c++23", "-O1", "-ffp-contract=off", "-pthread", "-Wall", "-Wno-attributes"]
    flags += ["-Werror"] if werror else []
    defines = [f'-DFLASH_DECODE_SOURCE="{source}"', "-I", str(MSL_HOST)]
    subprocess.run(
        [compiler, *flags, *defines, str(MSL_HOST / "run_kernel.cpp"), "-o", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    return _build_host_kernel(K.KERNEL_SOURCE, tmp_path_factory.mktemp("msl") / "run_kernel")


def _run_host_kernel(binary, variant, q, k, v, tmp_path):
    inputs, output = tmp_path / "in.f16", tmp_path / "out.f16"
    np.concatenate([q.ravel(), k.ravel(), v.ravel()]).tofile(inputs)
    n_kv, kv_len, head_dim = k.shape
    args = [variant, q.shape[0], n_kv, kv_len, head_dim, inputs, output]
    subprocess.run([str(binary), *map(str, args)], check=True, capture_output=True, timeout=120)
    return np.fromfile(output, np.float16).reshape(q.shape)


def _fp16_ulps_apart(a, b):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ulp = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float64)
    return np.abs(a64 - b64) / ulp


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "n_heads,n_kv_heads,kv_len,head_dim",
    [
        (16, 1, 1, 512),
        (16, 1, 5, 512),
        (16, 1, 100, 512),
        (32, 4, 37, 512),
        (4, 1, 1024, 512),
        (8, 2, 64, 128),
    ],
)
def test_metal_source_runs_like_the_model(
    host_kernel, tmp_path, variant, n_heads, n_kv_heads, kv_len, head_dim
):
    q, k, v = _inputs(np.random.default_rng(kv_len), n_heads, n_kv_heads, kv_len, head_dim, 0.3)
    out = _run_host_kernel(host_kernel, variant, q, k, v, tmp_path)
    model = K.flash_decode_model(q, k, v, variant)
    # Same operations in the same order; only the exp implementation (libm vs numpy) may differ.
    assert _fp16_ulps_apart(out, model).max() <= 1
    assert (np.abs(out - K.naive_sdpa(q, k, v)) <= K.error_bound(q, k, v, variant)).all()


@pytest.mark.parametrize(
    "variant,broken,fixed",
    [
        ("g8", "o += split_acc[g * head_dim + d] * weight[g];", "o += split_acc[g * head_dim + d];"),
        ("simple", "const int kvh = h / (n_heads / n_kv_heads);", "const int kvh = h % n_kv_heads;"),
    ],
)
def test_host_run_catches_a_broken_kernel(tmp_path, variant, broken, fixed):
    text = K.KERNEL_SOURCE.read_text()
    assert broken in text
    mutated = tmp_path / "mutated.metal"
    mutated.write_text(text.replace(broken, fixed))
    binary = _build_host_kernel(mutated, tmp_path / "run_mutated", werror=False)  # mutants leave unused names
    q, k, v = _inputs(np.random.default_rng(2), 32, 4, 40, 512, 0.3)
    out = _run_host_kernel(binary, variant, q, k, v, tmp_path)
    assert (np.abs(out - K.naive_sdpa(q, k, v)) > K.error_bound(q, k, v, variant)).any()


# ---------------------------------------------------------------------------------------------
# Which models need it.
# ---------------------------------------------------------------------------------------------


def test_needs_flash_decode_for_12b_and_31b_only():
    assert {key: K.needs_flash_decode(spec) for key, spec in MODELS.items()} == {
        "e2b": False,
        "e4b": False,
        "12b": True,
        "31b": True,
    }


def test_needs_flash_decode_for_the_tiny_12b_and_31b_configs(tmp_path):
    from transformers import Gemma4TextConfig

    from gemmaios.tiny import tiny_text_config_kwargs

    assert not K.needs_flash_decode(Gemma4TextConfig(**tiny_text_config_kwargs()))
    for kwargs in (tiny_12b_text_config_kwargs(), tiny_31b_text_config_kwargs()):
        config = Gemma4TextConfig(**kwargs)
        assert K.needs_flash_decode(config)
        assert K.full_attention_layers(config) == [5, 11]
        # config.json form: the global head dim lives only in per_layer_config there.
        config.save_pretrained(tmp_path)
        import json

        as_json = json.loads((tmp_path / "config.json").read_text())
        assert K.needs_flash_decode(as_json) and K.full_attention_layers(as_json) == [5, 11]


@pytest.mark.parametrize("variant,kv_heads,heads", [("12b", 1, 16), ("31b", 4, 32)])
def test_tiny_dense_models_have_the_real_full_layer_structure(variant, kv_heads, heads):
    model = build_tiny_model(variant)
    config = model.config
    assert config.hidden_size_per_layer_input in (0, None) and config.num_kv_shared_layers == 0
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        if i in (5, 11):
            assert attn.head_dim == 512 and attn.v_proj is None  # attention_k_eq_v
            assert attn.k_proj.out_features == kv_heads * 512 and attn.q_proj.out_features == heads * 512
        else:
            assert attn.head_dim == 16 and attn.v_proj is not None


# ---------------------------------------------------------------------------------------------
# Torch wiring: eager, parity with transformers, export + conversion.
# ---------------------------------------------------------------------------------------------


def test_eager_hook_matches_naive_sdpa_and_accepts_both_query_layouts():
    import torch

    q, k, v = _inputs(np.random.default_rng(9), 32, 4, 70, 512, 0.3)
    qt, kt, vt = (torch.from_numpy(x) for x in (q, k, v))
    for variant in VARIANTS:
        a = K.full_attention_sdpa(qt.reshape(1, 32, 1, 512), kt[None], vt[None], kernel=variant)
        b = K.full_attention_sdpa(qt.reshape(1, 1, 32, 512), kt[None], vt[None], kernel=variant)
        assert a.shape == (1, 32, 1, 512) and a.dtype == torch.float16
        assert torch.equal(a, b)
        err = np.abs(a.reshape(32, 512).double().numpy() - K.naive_sdpa(q, k, v))
        assert (err <= K.error_bound(q, k, v, variant)).all()
    with pytest.raises(K.KernelInputError, match="decode query"):
        K.full_attention_sdpa(qt.reshape(1, 2, 16, 512), kt[None], vt[None])
    with pytest.raises(K.KernelInputError, match="k and v"):
        K.full_attention_sdpa(qt.reshape(1, 32, 1, 512), kt[None], vt[None, :, :5])


@pytest.mark.parametrize("variant", ["12b", "31b"])
def test_kernel_matches_transformers_full_layer_attention(variant):
    """The tiny model's full layer: HF's own attention (scaling 1.0, repeat_kv GQA) on the layer's
    q/k/v equals the kernel's model and the torch hook, within the kernel's bound."""
    import torch
    from transformers.models.gemma4.modeling_gemma4 import apply_rotary_pos_emb, eager_attention_forward

    torch.manual_seed(0)
    model = build_tiny_model(variant)
    attn = model.model.layers[5].self_attn
    assert attn.scaling == 1.0
    kv_len, head_dim = 13, attn.head_dim
    x = torch.randn(1, kv_len, model.config.hidden_size)
    cos, sin = model.model.rotary_emb(x, torch.arange(kv_len)[None], "full_attention")
    captured = {}
    attn.o_proj.register_forward_pre_hook(lambda _m, args: captured.setdefault("attn", args[0]))
    with torch.no_grad():
        attn(x, (cos, sin), attention_mask=None, shared_kv_states={})  # last token attends all keys
        # The layer's decode-step tensors, as a decode module hands them to the hook.
        q = apply_rotary_pos_emb(attn.q_norm(attn.q_proj(x).view(1, kv_len, -1, head_dim)), cos, sin, 2)
        k_raw = attn.k_proj(x).view(1, kv_len, -1, head_dim)
        k = apply_rotary_pos_emb(attn.k_norm(k_raw), cos, sin, 2).transpose(1, 2)
        v = attn.v_norm(k_raw).transpose(1, 2)  # attention_k_eq_v: values from k_proj
        hf_layer = captured["attn"][0, -1].reshape(-1, head_dim)
        exact, _ = eager_attention_forward(attn, q.transpose(1, 2), k, v, None, scaling=attn.scaling)
        assert torch.allclose(exact[0, -1], hf_layer, atol=1e-5)  # the recipe is the layer's

        q16, k16, v16 = q[:, -1:].half(), k.half(), v.half()
        hf16, _ = eager_attention_forward(
            attn, q16.transpose(1, 2).float(), k16.float(), v16.float(), None, scaling=1.0
        )
        ref = hf16[0, -1].double().numpy()
        q_np, k_np, v_np = q16.reshape(-1, head_dim).numpy(), k16[0].numpy(), v16[0].numpy()
        for kernel in VARIANTS:
            bound = K.error_bound(q_np, k_np, v_np, kernel) + 1e-6  # + HF's own fp32 rounding
            model_out = K.flash_decode_model(q_np, k_np, v_np, kernel).astype(np.float64)
            hook_out = (
                K.full_attention_sdpa(q16, k16, v16, kernel=kernel).reshape(-1, head_dim).double().numpy()
            )
            assert (np.abs(model_out - ref) <= bound).all()
            assert (np.abs(hook_out - ref) <= bound).all()


def _decode_attention_stack(variant: str, kernel: str):
    """A stand-in decode step over a tiny model's attention layers (not the real decode module):
    per layer q projection + q norm, attention over that layer's KV inputs, o projection. Full
    layers go through gemmaios.kernels.full_attention_sdpa, sliding layers through stock SDPA.
    Returns (module, KV inputs, full layer indices, config)."""
    import torch
    import torch.nn.functional as F

    hf = build_tiny_model(variant)
    full = set(K.full_attention_layers(hf.config))

    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(layer.self_attn for layer in hf.model.layers)

        def forward(self, x, *kv):
            outs = []
            for i, attn in enumerate(self.layers):
                q = attn.q_norm(attn.q_proj(x).view(1, 1, -1, attn.head_dim))  # [1, 1, H, D]
                k, v = kv[2 * i], kv[2 * i + 1]
                if i in full:
                    o = K.full_attention_sdpa(q, k, v, kernel=kernel)
                else:
                    o = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, scale=1.0, enable_gqa=True)
                outs.append(attn.o_proj(o.transpose(1, 2).reshape(1, 1, -1)))
            return torch.stack(outs)

    stack = Stack().eval().half()
    kv = []
    for i, attn in enumerate(stack.layers):
        n_kv = attn.k_proj.out_features // attn.head_dim
        length = 37 if i in full else hf.config.sliding_window
        kv += [torch.randn(1, n_kv, length, attn.head_dim, dtype=torch.float16) for _ in range(2)]
    return stack, kv, full, hf.config


@pytest.mark.full
@pytest.mark.parametrize("variant,kernel", [("12b", "g8"), ("31b", "simple")])
def test_tiny_12b_31b_attention_exports_with_the_kernel_on_exactly_the_full_layers(variant, kernel, tmp_path):
    import torch
    from coreai.authoring.asset import AIModelAsset
    from coreai_torch import TorchConverter, get_decomp_table

    stack, kv, full, config = _decode_attention_stack(variant, kernel)
    x = torch.randn(1, 1, config.hidden_size, dtype=torch.float16)
    full_len = torch.export.Dim("full_kv_len", min=1, max=4096)
    dynamic = {"x": None, "kv": tuple({2: full_len} if i // 2 in full else None for i in range(len(kv)))}
    with torch.no_grad():
        eager = stack(x, *kv)
        exported = torch.export.export(stack, (x, *kv), dynamic_shapes=dynamic).run_decompositions(
            get_decomp_table()
        )
    converter = TorchConverter()
    K.register_flash_decode_kernels(converter)
    converter.add_exported_program(
        exported, input_names=["x"] + [f"kv{i}" for i in range(len(kv))], output_names=["attn_out"]
    )
    program = converter.to_coreai()

    entry = K.KERNEL_SPECS[kernel].entry
    heads = config.num_attention_heads
    summary = K.attention_summary(program)
    assert summary.kernels == [{"entry": entry, "query_shape": [heads, 512]}] * len(full)
    assert len(summary.stock_sdpa) == config.num_hidden_layers - len(full)
    sliding_head_dim = stack.layers[0].head_dim
    assert all(s["query_shape"] == [1, heads, 1, sliding_head_dim] for s in summary.stock_sdpa)
    # The full layers' KV length stays dynamic into the kernel (the grown decode cache).
    global_kv_heads = stack.layers[min(full)].k_proj.out_features // 512
    assert f"tensor<{global_kv_heads}x?x512xf16" in str(program)

    K.check_full_layers_use_kernel(summary, config, kernel)
    other = "simple" if kernel == "g8" else "g8"
    with pytest.raises(K.KernelPlacementError, match="expected 2"):
        K.check_full_layers_use_kernel(summary, config, other)
    with pytest.raises(K.KernelPlacementError, match="stock SDPA still runs"):
        leftover = {"graph": "sdpa", "query_shape": [1, heads, 1, 512]}
        K.check_full_layers_use_kernel(
            K.AttentionSummary(summary.kernels, summary.stock_sdpa + [leftover]), config, kernel
        )

    asset = program.save_asset(tmp_path / "attn.aimodel")
    assert K.asset_attention_summary(tmp_path / "attn.aimodel").as_dict() == summary.as_dict()
    ops = dict(re.findall(r"\((\w+), (\d+)\)", str(AIModelAsset.load(asset.path).summary())))
    assert int(ops["metal4_kernel"]) == len(full)

    # Eager, the hook runs the torch reference: the stack is a working attention module.
    assert torch.isfinite(eager).all() and eager.shape == (config.num_hidden_layers, 1, 1, config.hidden_size)


def test_unknown_tiny_variant_is_a_named_error():
    from gemmaios.errors import RegistryError

    with pytest.raises(RegistryError, match="12B"):
        build_tiny_model("12B")


def test_eager_fp32_hook_is_exact_attention_without_fp16_casts():
    """The converter's fp32 parity gates run the hook eagerly in fp32: exact attention, no fp16 rounding."""
    import torch

    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for shape in ((16, 512), (1, 40, 512), (1, 40, 512)))
    q *= 0.05
    out = K.full_attention_sdpa(
        torch.from_numpy(q).reshape(1, 1, 16, 512), torch.from_numpy(k)[None], torch.from_numpy(v)[None]
    )
    assert out.dtype == torch.float32 and out.shape == (1, 16, 1, 512)
    err = np.abs(out.reshape(16, 512).double().numpy() - K.naive_sdpa(q, k, v)).max()
    assert err < 1e-5  # measured 5e-7; through the fp16 casts 9e-4
    fp16 = K.full_attention_sdpa(*(torch.from_numpy(x).half() for x in (q.reshape(1, 1, 16, 512), k[None], v[None])))
    assert np.abs(fp16.reshape(16, 512).double().numpy() - K.naive_sdpa(q, k, v)).max() > 10 * err
