"""Flash-decode SDPA for Gemma 4's full attention layers: the Metal kernel, its numpy model, its wiring.

Gemma 4 12B (16 query heads) and 31B (32) have head_dim 512 on their full (global) layers. The
stock SDPA's fp16 query there (16-32 KB) overflows the GPU decode scratch heap and the engine
crashes at the first token (apple/coreai-models#27). `kernels/flash_decode_sdpa.metal` replaces
that op with our own flash-decode kernel, in two variants:

* ``simple``: one SIMD-group per query head scans all T keys with a running max and sum;
* ``g8``: eight SIMD-groups per query head each scan one contiguous block of the keys, then the
  eight partial results merge in threadgroup memory (more of the GPU busy at long context).

This module holds

* :func:`flash_decode_model`: a numpy model of the kernels' exact algorithm (same key blocks,
  same per-lane dot order, same running max/sum updates, same merge, fp16/fp32 casts where the
  kernels make them), :func:`naive_sdpa` (float64 reference) and :func:`error_bound`;
* the registration with ``coreai_torch.TorchMetalKernel`` (:func:`flash_decode_kernel`), whose
  entry names and parameters are checked against the ``.metal`` source (:func:`check_kernel_source`);
* the hooks a decode module calls: :func:`full_attention_sdpa` (torch-callable; lowers to the
  kernel under conversion), :func:`needs_flash_decode` / :func:`full_attention_layers` (which
  configs and layers need it), :func:`register_flash_decode_kernels` (for the converter) and
  :func:`attention_summary` (what a converted program runs for attention).

Error bound (model vs. exact attention over the same fp16 inputs), per output element (h, d)::

    |out - ref| <= 2^-11 |ref| + 2^-25 + (1 + 2^-11) * E
    E = [2 n u A_h + (6 B + 2 G + 12) u] * V_hd

with ``u = 2^-24`` (fp32 unit roundoff), ``n = D/32 + 5`` (depth of the score sum: D/32 sequential
adds per lane, then 5 butterfly levels of ``simd_sum``), ``A_h = max_j sum_d |q_hd k_jd|`` (the
absolute dot), ``B = ceil(T/G)`` keys per split, ``G`` splits (1 simple, 8 g8) and
``V_hd = sum_j p_hj |v_jd|`` (exact softmax weights p; ``V_hd <= max_j |v_jd|``). Why, to first
order in u (all tested shapes have ``(6B + 2nA) u < 0.02``):

* a relative error ``delta_j`` on the weight of key j (the same in the running sum and the
  running output) moves the output by ``|sum_j p_j delta_j (v_j - out)| <= 2 max|delta| V_hd``;
* each score carries an absolute error of at most ``n u A_h`` (recursive summation); softmax is
  shift-invariant, so that is a relative weight error ``e^delta - 1 ~ n u A_h``: ``2 n u A_h V_hd``;
* within a split, a key's weight goes through its own ``exp`` and at most B later ``rescale``
  ``exp``s: ``2 (B + 1) u V_hd``; each output accumulator takes at most B products with
  ``rescale``, B additions and one ``e * v`` product, each rounding relative to the sum of absolute
  terms: ``(2B + 1) u V_hd``; the running sum (positive terms) takes 2B roundings, a relative
  ``2B u`` of the output: ``2B u V_hd``. Together ``(6B + 3) u V_hd``;
* the merge: one ``exp`` per split (``2 u V_hd``), the weighted sums of l and acc over G splits
  (``(G + 1) u`` each), ``1/l`` and the last multiply (``2 u``): ``(2G + 6) u V_hd``; stated with
  ``3 u`` to spare;
* the single narrowing, ``half(acc * inv_l)``, adds ``2^-11 |x|`` (round to nearest, normal range)
  or ``2^-25`` (subnormal range); ``x`` differs from ``ref`` by at most E, hence the ``(1 + 2^-11)``.

The split-KV variant has the tighter bound: its running recurrences are 8x shorter. On the GPU,
Metal's fast-math ``exp`` (a few ulp instead of numpy's float32 ``exp``), FMA contraction and the
hardware's ``simd_sum`` order change the last bits of the same steps; that scales the u-terms
above by a small factor, still well inside the fp16 output rounding for real shapes. The GPU run
itself can only be checked on a Mac (Metal does not compile on Linux); the tests run the ``.metal``
source on a CPU stand-in of Metal's execution model (``tests/msl_host``) and get the model's
output to within 1 fp16 ulp.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import GemmaiosError

SIMD_WIDTH = 32
MAX_HEAD_DIM = 512
G8_SPLITS = 8
NEG_BIG = np.float32(-1.0e30)  # the kernels' FD_NEG_BIG: a finite "-inf" (fast math has no inf)

# Largest full-layer decode query (heads x global head dim) known to run on the stock SDPA: E2B/E4B,
# 8 x 512. 12B (16 x 512) and 31B (32 x 512) crash at the first token (seeds 000/001). Only full
# layers count: the shipped 31B bundle keeps the stock SDPA on its 32 x 256 sliding layers.
STOCK_SDPA_MAX_QUERY_ELEMENTS = 8 * 512

KERNEL_SOURCE = Path(__file__).resolve().parents[2] / "kernels" / "flash_decode_sdpa.metal"

_U32 = 2.0**-24
_F16_REL = 2.0**-11
_F16_SUBNORMAL_ABS = 2.0**-25


class KernelSourceError(GemmaiosError):
    """The Metal source is missing, or does not match what gemmaios registers with the converter."""


class KernelInputError(GemmaiosError):
    """Tensors handed to the flash-decode kernel have shapes or dtypes it does not support."""


# --------------------------------------------------------------------------------------------
# The kernels as registered: entry names, tensors, thread attributes, dispatch.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelSpec:
    """What gemmaios registers for one ``[[kernel]]`` of ``flash_decode_sdpa.metal``."""

    variant: str
    entry: str  # the [[kernel]] function name; also the torch op coreai_metal_kernels::<entry>
    splits: int  # SIMD-groups per query head
    input_names: tuple[str, ...] = ("q", "k", "v")
    input_ranks: tuple[int, ...] = (2, 3, 3)  # q [H, D], k/v [Hkv, T, D]
    result_names: tuple[str, ...] = ("out",)
    result_ranks: tuple[int, ...] = (2,)  # out [H, D]
    # (name, type, attribute) of the thread-position parameters, in signature order.
    metal_params: tuple[tuple[str, str, str], ...] = (
        ("tid", "uint2", "thread_position_in_threadgroup"),
        ("tgid", "uint2", "threadgroup_position_in_grid"),
    )

    def dispatch(self, n_heads: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(threads_per_grid, threads_per_threadgroup): one threadgroup per query head."""
        return (SIMD_WIDTH, self.splits * n_heads, 1), (SIMD_WIDTH, self.splits, 1)


KERNEL_SPECS: dict[str, KernelSpec] = {
    "simple": KernelSpec(variant="simple", entry="gemmaios_flash_decode_sdpa", splits=1),
    "g8": KernelSpec(variant="g8", entry="gemmaios_flash_decode_sdpa_g8", splits=G8_SPLITS),
}
DEFAULT_VARIANT = "g8"


def _spec(variant: str) -> KernelSpec:
    try:
        return KERNEL_SPECS[variant]
    except KeyError:
        raise KernelInputError(
            f"unknown flash-decode kernel variant {variant!r}", hint=f"use one of {sorted(KERNEL_SPECS)}"
        ) from None


# --------------------------------------------------------------------------------------------
# The .metal source: helpers + one body per [[kernel]].
# --------------------------------------------------------------------------------------------

_HELPERS_RE = re.compile(r"// gemmaios:helpers:begin\n(.*?)// gemmaios:helpers:end\n", re.S)
_KERNEL_RE = re.compile(r"\[\[kernel\]\]\s+void\s+(\w+)\s*\(")
_PARAM_RE = re.compile(r"^(?P<type>.+?)\s+(?P<name>\w+)\s+\[\[(?P<attr>[^\]]+)\]\]$")


@dataclass(frozen=True)
class MetalParam:
    type: str
    name: str
    attr: str  # "buffer(0)", "thread_position_in_threadgroup", ...


@dataclass(frozen=True)
class MetalKernel:
    entry: str
    params: tuple[MetalParam, ...]
    body: str


@dataclass(frozen=True)
class MetalSource:
    path: Path
    helpers: str
    kernels: dict[str, MetalKernel] = field(default_factory=dict)


def _split_top_level(text: str) -> list[str]:
    """Split a parameter list on commas outside <...>, (...) and [[...]]."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def _matching(text: str, open_at: int, opener: str, closer: str) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == opener:
            depth += 1
        elif text[i] == closer:
            depth -= 1
            if depth == 0:
                return i
    raise KernelSourceError(f"unbalanced {opener}{closer} in the Metal source", hint="fix the .metal file")


def parse_metal_source(text: str, path: Path = KERNEL_SOURCE) -> MetalSource:
    helpers = _HELPERS_RE.search(text)
    if helpers is None:
        raise KernelSourceError(
            f"{path}: no `// gemmaios:helpers:begin` ... `// gemmaios:helpers:end` block",
            hint="the helpers shared by the kernels must sit between those two marker lines",
        )
    kernels: dict[str, MetalKernel] = {}
    for match in _KERNEL_RE.finditer(text):
        open_paren = match.end() - 1
        close_paren = _matching(text, open_paren, "(", ")")
        open_brace = text.index("{", close_paren)
        close_brace = _matching(text, open_brace, "{", "}")
        params = []
        for raw in _split_top_level(text[open_paren + 1 : close_paren]):
            pm = _PARAM_RE.match(raw)
            if pm is None:
                raise KernelSourceError(f"{path}: cannot read kernel parameter {raw!r} of {match.group(1)}")
            params.append(MetalParam(pm["type"], pm["name"], pm["attr"].strip()))
        kernels[match.group(1)] = MetalKernel(
            match.group(1), tuple(params), text[open_brace + 1 : close_brace]
        )
    return MetalSource(path=path, helpers=helpers.group(1), kernels=kernels)


def load_metal_source(path: Path = KERNEL_SOURCE) -> MetalSource:
    if not path.is_file():
        raise KernelSourceError(
            f"flash-decode kernel source {path} is missing",
            hint="gemmaios runs from its source checkout (pip install -e .); restore kernels/ from git",
        )
    return parse_metal_source(path.read_text(), path)


def expected_params(spec: KernelSpec) -> tuple[MetalParam, ...]:
    """The kernel parameters Core AI generates for this registration (fp16 tensors, in order)."""
    params = []
    tensors = list(zip(spec.input_names, spec.input_ranks, strict=True)) + list(
        zip(spec.result_names, spec.result_ranks, strict=True)
    )
    for index, (name, rank) in enumerate(tensors):
        params.append(
            MetalParam(
                f"tensor<device half, metal::dextents<int, {rank}>, tensor_handle>", name, f"buffer({index})"
            )
        )
    params += [MetalParam(dtype, name, attr) for name, dtype, attr in spec.metal_params]
    return tuple(params)


def check_kernel_source(source: MetalSource, spec: KernelSpec) -> MetalKernel:
    """The source's kernel for ``spec``, after checking its entry name and parameters match."""
    kernel = source.kernels.get(spec.entry)
    if kernel is None:
        raise KernelSourceError(
            f"{source.path} has no [[kernel]] {spec.entry!r} (found: {sorted(source.kernels)})",
            hint="the entry names in kernels/flash_decode_sdpa.metal and gemmaios.kernels.KERNEL_SPECS must match",
        )
    expected = expected_params(spec)
    if kernel.params != expected:
        diff = [
            f"#{i}: source `{_fmt(a)}`, registered `{_fmt(b)}`"
            for i, (a, b) in enumerate(zip(kernel.params, expected, strict=False))
            if a != b
        ]
        if len(kernel.params) != len(expected):
            diff.append(f"source has {len(kernel.params)} parameters, registration {len(expected)}")
        raise KernelSourceError(
            f"{source.path}: parameters of {spec.entry} do not match its registration: " + "; ".join(diff),
            hint="keep the .metal signature exactly as Core AI generates it (see KernelSpec)",
        )
    return kernel


def _fmt(p: MetalParam) -> str:
    return f"{p.type} {p.name} [[{p.attr}]]"


# --------------------------------------------------------------------------------------------
# numpy model of the kernels and the reference.
# --------------------------------------------------------------------------------------------


def _check_shapes(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> tuple[int, int, int, int]:
    if q.ndim != 2 or k.ndim != 3 or v.shape != k.shape:
        raise KernelInputError(
            f"flash-decode wants q [H, D], k and v [Hkv, T, D]; got q {q.shape}, k {k.shape}, v {v.shape}"
        )
    n_heads, head_dim = q.shape
    n_kv_heads, kv_len, kd = k.shape
    if kd != head_dim:
        raise KernelInputError(f"q head dim {head_dim} != k head dim {kd}")
    if head_dim % SIMD_WIDTH or head_dim > MAX_HEAD_DIM:
        raise KernelInputError(
            f"head dim {head_dim} unsupported", hint=f"the kernels need a multiple of 32 up to {MAX_HEAD_DIM}"
        )
    if n_heads % n_kv_heads:
        raise KernelInputError(f"{n_heads} query heads do not split evenly over {n_kv_heads} KV heads")
    if kv_len < 1:
        raise KernelInputError("the KV cache is empty", hint="decode attends at least the current token")
    return n_heads, n_kv_heads, kv_len, head_dim


def _simd_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis (32 lanes) as a butterfly: halves added pairwise, 5 levels, fp32."""
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = x[..., :half] + x[..., half:]
    return x[..., 0]


def model_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """fp32 scores [H, T] as the kernels form them: per lane, dims lane + 32c summed in c order, then simd_sum."""
    n_heads, n_kv_heads, kv_len, head_dim = _check_shapes(q, k, k)
    group, chunks = n_heads // n_kv_heads, head_dim // SIMD_WIDTH
    qf = q.astype(np.float32).reshape(n_heads, chunks, SIMD_WIDTH)
    scores = np.empty((n_heads, kv_len), np.float32)
    for kvh in range(n_kv_heads):
        kf = k[kvh].astype(np.float32).reshape(kv_len, chunks, SIMD_WIDTH)
        heads = slice(kvh * group, (kvh + 1) * group)
        partial = np.zeros((group, kv_len, SIMD_WIDTH), np.float32)
        for c in range(chunks):
            partial += qf[heads, None, c, :] * kf[None, :, c, :]
        scores[heads] = _simd_sum(partial)
    return scores


@dataclass
class SplitState:
    """Per-split online-softmax state after the scan: m, l [G, H]; acc [G, H, D]; all fp32."""

    m: np.ndarray
    l: np.ndarray  # noqa: E741 (the kernels' name for the running sum)
    acc: np.ndarray


def split_blocks(kv_len: int, splits: int) -> list[tuple[int, int]]:
    """[begin, end) of the keys each SIMD-group scans: contiguous blocks of ceil(T / splits)."""
    block = -(-kv_len // splits)
    return [(min(kv_len, g * block), min(kv_len, min(kv_len, g * block) + block)) for g in range(splits)]


def scan_splits(q: np.ndarray, k: np.ndarray, v: np.ndarray, splits: int) -> SplitState:
    """Each split's running max, running exp-sum and running output, exactly as the kernels update them."""
    n_heads, n_kv_heads, kv_len, head_dim = _check_shapes(q, k, v)
    scores = model_scores(q, k)
    kv_of_head = np.arange(n_heads) // (n_heads // n_kv_heads)
    vf = v.astype(np.float32)
    blocks = split_blocks(kv_len, splits)
    m = np.full((splits, n_heads), NEG_BIG, np.float32)
    l = np.zeros((splits, n_heads), np.float32)  # noqa: E741
    acc = np.zeros((splits, n_heads, head_dim), np.float32)
    begins = np.array([b for b, _ in blocks])
    ends = np.array([e for _, e in blocks])
    for step in range(max(e - b for b, e in blocks)):
        j = begins + step
        active = j < ends
        jj = np.minimum(j, kv_len - 1)
        s = scores[:, jj].T  # [G, H]
        m_new = np.maximum(m, s)
        rescale = np.exp(m - m_new)
        e = np.exp(s - m_new)
        l_new = l * rescale + e
        vrow = vf[kv_of_head[None, :], jj[:, None]]  # [G, H, D]
        acc_new = acc * rescale[..., None] + e[..., None] * vrow
        m = np.where(active[:, None], m_new, m)
        l = np.where(active[:, None], l_new, l)  # noqa: E741
        acc = np.where(active[:, None, None], acc_new, acc)
    return SplitState(m=m, l=l, acc=acc)


def merge_splits(state: SplitState) -> np.ndarray:
    """The kernels' final step: fp32 merge of the splits (g8) or plain normalisation (simple), then fp16."""
    splits = state.m.shape[0]
    if splits == 1:
        inv_l = np.float32(1.0) / state.l[0]
        return (state.acc[0] * inv_l[:, None]).astype(np.float16)
    m_max = state.m[0].copy()
    for g in range(1, splits):
        m_max = np.maximum(m_max, state.m[g])
    weight = np.exp(state.m - m_max[None, :])  # [G, H]
    l_total = np.zeros_like(m_max)
    out = np.zeros_like(state.acc[0])
    for g in range(splits):
        l_total = l_total + state.l[g] * weight[g]
        out = out + state.acc[g] * weight[g][:, None]
    inv_l = np.float32(1.0) / l_total
    return (out * inv_l[:, None]).astype(np.float16)


def flash_decode_model(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, variant: str = DEFAULT_VARIANT
) -> np.ndarray:
    """What the Metal kernel computes: q [H, D], k/v [Hkv, T, D] fp16 -> out [H, D] fp16 (scale 1.0)."""
    q, k, v = (np.asarray(x, dtype=np.float16) for x in (q, k, v))
    return merge_splits(scan_splits(q, k, v, _spec(variant).splits))


def _softmax_weights(q64: np.ndarray, k64: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Exact (float64) softmax weights [Hkv, group, T] of q [Hkv, group, D] against k [Hkv, T, D]."""
    s = np.matmul(q64, k64.transpose(0, 2, 1)) * scale
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def naive_sdpa(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Reference attention in float64: softmax(scale q k^T) v per query head, block GQA; [H, D]."""
    n_heads, n_kv_heads, _, _ = _check_shapes(np.asarray(q), np.asarray(k), np.asarray(v))
    q64 = np.asarray(q, np.float64).reshape(n_kv_heads, n_heads // n_kv_heads, -1)
    p = _softmax_weights(q64, np.asarray(k, np.float64), scale)
    return np.matmul(p, np.asarray(v, np.float64)).reshape(n_heads, -1)


def error_bound(q: np.ndarray, k: np.ndarray, v: np.ndarray, variant: str = DEFAULT_VARIANT) -> np.ndarray:
    """Per-element bound [H, D] on |flash_decode_model - naive_sdpa| (see the module docstring)."""
    n_heads, n_kv_heads, kv_len, head_dim = _check_shapes(np.asarray(q), np.asarray(k), np.asarray(v))
    splits = _spec(variant).splits
    block = -(-kv_len // splits)
    depth = head_dim // SIMD_WIDTH + 5
    q64 = np.asarray(q, np.float64).reshape(n_kv_heads, n_heads // n_kv_heads, -1)
    k64, v64 = np.asarray(k, np.float64), np.asarray(v, np.float64)
    abs_dot = np.matmul(np.abs(q64), np.abs(k64).transpose(0, 2, 1)).max(axis=-1)  # A_h [Hkv, group]
    p = _softmax_weights(q64, k64)
    ref = np.matmul(p, v64)
    weighted_abs_v = np.matmul(p, np.abs(v64))  # V_hd
    e = (2 * depth * _U32 * abs_dot[..., None] + (6 * block + 2 * splits + 12) * _U32) * weighted_abs_v
    bound = _F16_REL * np.abs(ref) + _F16_SUBNORMAL_ABS + (1 + _F16_REL) * e
    return bound.reshape(n_heads, head_dim)


# --------------------------------------------------------------------------------------------
# Which configs and layers need the kernel.
# --------------------------------------------------------------------------------------------


def _text_config_dict(config: Any) -> dict:
    """A Gemma 4 text config as a dict: from a transformers config, a config.json dict or a ModelSpec."""
    if isinstance(config, dict):
        return config.get("text_config", config)
    if hasattr(config, "get_text_config"):  # a transformers config
        return config.get_text_config().to_dict()
    if dataclasses.is_dataclass(config):  # a registry ModelSpec
        return dataclasses.asdict(config)
    return vars(config)


def full_attention_layers(config: Any) -> list[int]:
    """Indices of the full (global) attention layers of a Gemma 4 text config (object or config.json dict)."""
    cfg = _text_config_dict(config)
    layer_types = cfg.get("layer_types")
    if not layer_types:
        n = int(cfg["num_hidden_layers"])
        layer_types = [
            "full_attention" if (i + 1) % 6 == 0 or i == n - 1 else "sliding_attention" for i in range(n)
        ]
    return [i for i, t in enumerate(layer_types) if t == "full_attention"]


def _full_head_dim(cfg: dict) -> int:
    if cfg.get("global_head_dim"):
        return int(cfg["global_head_dim"])
    for override in (cfg.get("per_layer_config") or {}).values():
        if isinstance(override, dict) and override.get("head_dim"):
            return int(override["head_dim"])
    return int(cfg.get("head_dim") or 0)


def needs_flash_decode(config: Any) -> bool:
    """True when the full layers' decode query (heads x global head dim) is too big for the stock SDPA.

    That is 12B (16 x 512) and 31B (32 x 512), and their tiny stand-ins; not E2B/E4B (8 x 512)
    or the tiny E4B-shaped model.
    """
    cfg = _text_config_dict(config)
    if not full_attention_layers(cfg):
        return False
    return int(cfg["num_attention_heads"]) * _full_head_dim(cfg) > STOCK_SDPA_MAX_QUERY_ELEMENTS


# --------------------------------------------------------------------------------------------
# Torch / Core AI wiring.
# --------------------------------------------------------------------------------------------


def _torch_reference(q, k, v):
    import torch

    group = q.shape[0] // k.shape[0]
    kf = k.float().repeat_interleave(group, dim=0)
    vf = v.float().repeat_interleave(group, dim=0)
    weights = torch.softmax(torch.einsum("hd,htd->ht", q.float(), kf), dim=-1)
    return torch.einsum("ht,htd->hd", weights, vf).to(q.dtype)


@cache
def flash_decode_kernel(variant: str = DEFAULT_VARIANT):
    """The ``coreai_torch.TorchMetalKernel`` for one variant (built once: it registers a torch op).

    Its body and helpers come from ``kernels/flash_decode_sdpa.metal`` after checking the entry's
    parameters against :data:`KERNEL_SPECS`. The generated Metal function is named exactly like the
    entry (Core AI would add a random suffix), so converted programs are reproducible.
    """
    import torch
    from coreai.authoring import MetalParameter
    from coreai.authoring.metal import TensorMeta
    from coreai_torch import TorchMetalKernel

    spec = _spec(variant)
    source = load_metal_source()
    metal_kernel = check_kernel_source(source, spec)

    def reference(q, k, v):
        """fp32 softmax attention (scale 1.0, block GQA): the eager/fake-tensor stand-in for the kernel."""
        return _torch_reference(q, k, v)

    # Real annotation objects: this module's `from __future__ import annotations` would leave
    # strings that TorchMetalKernel cannot resolve (torch is imported lazily here).
    reference.__annotations__ = {
        "q": torch.Tensor,
        "k": torch.Tensor,
        "v": torch.Tensor,
        "return": torch.Tensor,
    }

    kernel = TorchMetalKernel(
        spec.entry,
        input_names=list(spec.input_names),
        result_names=list(spec.result_names),
        src=metal_kernel.body,
        torch_defn=reference,
        metal_params=[MetalParameter(name, dtype, attr) for name, dtype, attr in spec.metal_params],
        helper_src=source.helpers,
    )
    metas = [
        TensorMeta(name=name, rank=rank, metal_dtype="half")
        for name, rank in zip(
            spec.input_names + spec.result_names, spec.input_ranks + spec.result_ranks, strict=True
        )
    ]
    generated = kernel.template_kernel_src(
        spec.entry, metas[: len(spec.input_names)], metas[len(spec.input_names) :]
    )
    generated_kernel = parse_metal_source(source.helpers.join(_HELPER_MARKERS) + generated, source.path)
    regenerated = generated_kernel.kernels.get(spec.entry)
    if regenerated is None or (regenerated.params, regenerated.body.strip()) != (
        metal_kernel.params,
        metal_kernel.body.strip(),
    ):
        raise KernelSourceError(
            f"Core AI's generated signature for {spec.entry} differs from {source.path}",
            hint="coreai's kernel template changed; update the .metal signature to what it now generates",
        )
    # Pin the generated name: Core AI caches one (name, source) per (rank, dtype) signature.
    kernel.kernel_cache[tuple((m.rank, m.metal_dtype) for m in metas)] = (spec.entry, generated)
    return kernel


_HELPER_MARKERS = ("// gemmaios:helpers:begin\n", "// gemmaios:helpers:end\n")


def generated_kernel_source(variant: str = DEFAULT_VARIANT) -> str:
    """The complete Metal source Core AI embeds in a converted program for this variant."""
    spec = _spec(variant)
    kernel = flash_decode_kernel(variant)
    key = tuple((rank, "half") for rank in spec.input_ranks + spec.result_ranks)
    return kernel.kernel_cache[key][1]


def flash_decode_kernels(variants: tuple[str, ...] = tuple(KERNEL_SPECS)) -> list:
    return [flash_decode_kernel(v) for v in variants]


def register_flash_decode_kernels(converter, variants: tuple[str, ...] = tuple(KERNEL_SPECS)):
    """Register the kernels' lowerings with a ``coreai_torch.TorchConverter`` (before add_exported_program)."""
    return converter.register_custom_kernels(flash_decode_kernels(variants))


def full_attention_sdpa(q, k, v, *, kernel: str = DEFAULT_VARIANT, scale: float = 1.0):
    """Decode-step attention of a full layer through the flash-decode Metal kernel.

    ``q``: the decode token's query, ``[1, H, 1, D]`` (SDPA layout) or ``[1, 1, H, D]`` (before the
    head transpose; prefer this one under conversion: a kernel must not read a transposed view).
    ``k``, ``v``: ``[1, Hkv, T, D]`` (or ``[Hkv, T, D]``) holding exactly the T valid keys; T may be
    a dynamic dimension. Query head h reads KV head ``h // (H // Hkv)``; a cache that replicates
    the layer's KV heads over more slots (``repeat_interleave``) gives the same result.
    Returns ``[1, H, 1, D]`` in q's dtype. Under ``torch.export`` this is one
    ``coreai_metal_kernels::<entry>`` op that :func:`register_flash_decode_kernels` lowers to the
    kernel; in eager mode it runs the fp32 torch reference. The kernel is fp16 and scale 1.0 (Gemma
    4); other dtypes are cast on the way in and out, another scale is applied to q first (in fp16).
    Exception: eager fp32 inputs (the converter's fp32 parity gates) get the fp32 reference on the
    fp32 tensors, without the fp16 casts, so the gate compares exact attention with transformers;
    the kernel's own fp16 error is bounded by :func:`error_bound`.
    """
    import torch

    spec = _spec(kernel)
    head_dim = q.shape[-1]
    n_heads = q.numel() // head_dim
    if (
        k.dim() not in (3, 4)
        or (k.dim() == 4 and k.shape[0] != 1)
        or v.shape != k.shape
        or k.shape[-1] != head_dim
    ):
        raise KernelInputError(
            f"full_attention_sdpa wants k and v [1, Hkv, T, {head_dim}]; got k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.dim() == 2 or (q.dim() == 4 and q.shape[0] == 1 and 1 in (q.shape[1], q.shape[2]))):
        raise KernelInputError(
            f"full_attention_sdpa wants one decode query [1, H, 1, D] or [1, 1, H, D]; got q {tuple(q.shape)}",
            hint="the flash-decode kernel serves decode steps (one token); prefill keeps the stock SDPA",
        )
    n_kv_heads = k.shape[-3]
    if head_dim % SIMD_WIDTH or head_dim > MAX_HEAD_DIM or n_heads % n_kv_heads:
        raise KernelInputError(
            f"flash-decode supports head dims that are multiples of 32 up to {MAX_HEAD_DIM} and query heads "
            f"divisible by KV heads; got {n_heads} heads x {head_dim}, {n_kv_heads} KV heads"
        )
    out_dtype = q.dtype
    q2 = q.reshape(n_heads, head_dim)
    if scale != 1.0:
        q2 = q2 * scale
    if q.dtype == torch.float32 and not torch.compiler.is_compiling():
        out = _torch_reference(
            q2, k.reshape(n_kv_heads, k.shape[-2], head_dim), v.reshape(n_kv_heads, v.shape[-2], head_dim)
        )
        return out.reshape(1, n_heads, 1, head_dim)
    q2, k3, v3 = (
        x.to(torch.float16)
        for x in (
            q2,
            k.reshape(n_kv_heads, k.shape[-2], head_dim),
            v.reshape(n_kv_heads, v.shape[-2], head_dim),
        )
    )
    grid, group = spec.dispatch(n_heads)
    out = flash_decode_kernel(kernel)(
        q2, k3, v3, threads_per_grid=grid, threads_per_thread_group=group, result_shapes=[[n_heads, head_dim]]
    )
    return out.reshape(1, n_heads, 1, head_dim).to(out_dtype)


# --------------------------------------------------------------------------------------------
# What a converted program runs for attention.
# --------------------------------------------------------------------------------------------

_METAL_OP_RE = re.compile(
    r'coreai\.metal4_kernel kernel_args\([^)]*\).*?\{kernel_name = "(?P<name>\w+)".*?\}\s*:\s*\(tensor<(?P<q>[0-9x]+)x(?P<dt>\w+?)[,>]'
)
_SDPA_GRAPH_RE = re.compile(
    r"coreai\.graph [^@]*@(?P<graph>[\w.$-]+)\(%arg0: tensor<(?P<q>[0-9x]+)x\w+>[^\n]*"
    r'composite_declaration<"scaled_dot_product_attention"'
)
_INVOKE_RE = re.compile(r"coreai\.invoke @(?P<graph>[\w.$-]+)\(")


@dataclass
class AttentionSummary:
    """Attention ops of a converted program: our kernels and the stock SDPA, with their query shapes."""

    kernels: list[dict] = field(default_factory=list)  # {"entry", "query_shape"}
    stock_sdpa: list[dict] = field(default_factory=list)  # {"graph", "query_shape"}

    def as_dict(self) -> dict:
        return {"flash_decode_kernels": self.kernels, "stock_sdpa": self.stock_sdpa}


def attention_summary(program_or_text: Any) -> AttentionSummary:
    """Find the flash-decode kernel ops and stock SDPA calls in an ``AIProgram`` (or its MLIR text)."""
    text = program_or_text if isinstance(program_or_text, str) else str(program_or_text)
    summary = AttentionSummary()
    entries = {spec.entry for spec in KERNEL_SPECS.values()}
    for op in _METAL_OP_RE.finditer(text):
        name = op["name"]
        entry = name if name in entries else re.sub(r"_[a-z]{8}$", "", name)
        if entry in entries:
            summary.kernels.append({"entry": entry, "query_shape": [int(x) for x in op["q"].split("x")]})
    sdpa_graphs = {g["graph"]: [int(x) for x in g["q"].split("x")] for g in _SDPA_GRAPH_RE.finditer(text)}
    for call in _INVOKE_RE.finditer(text):
        if call["graph"] in sdpa_graphs:
            summary.stock_sdpa.append({"graph": call["graph"], "query_shape": sdpa_graphs[call["graph"]]})
    return summary


class KernelPlacementError(GemmaiosError):
    """A converted program does not run the flash-decode kernel on exactly the full layers."""


def check_full_layers_use_kernel(
    summary: AttentionSummary, config: Any, kernel: str = DEFAULT_VARIANT
) -> None:
    """Raise unless the (single decode function) program runs ``kernel`` once per full layer and
    no stock SDPA with the full layers' head dim is left."""
    cfg = _text_config_dict(config)
    n_full = len(full_attention_layers(cfg))
    head_dim = _full_head_dim(cfg)
    expected = {"entry": _spec(kernel).entry, "query_shape": [int(cfg["num_attention_heads"]), head_dim]}
    problems = []
    if summary.kernels != [expected] * n_full:
        problems.append(f"expected {n_full} x {expected}, found {summary.kernels}")
    stock_full = [s for s in summary.stock_sdpa if s["query_shape"][-1] == head_dim]
    if stock_full:
        problems.append(f"stock SDPA still runs with head dim {head_dim}: {stock_full}")
    if problems:
        raise KernelPlacementError(
            "flash-decode kernel placement is wrong: " + "; ".join(problems),
            hint="every full layer's decode attention must call gemmaios.kernels.full_attention_sdpa, and the "
            "converter needs register_flash_decode_kernels() before add_exported_program",
        )


def bundle_suffix(kernel: str | None) -> str:
    """Bundle-name suffix of a flash-decode build, as the shipped bundles name it: _msdpa / _msdpa_g8."""
    if kernel is None:
        return ""
    return "_msdpa" + ("" if _spec(kernel).splits == 1 else f"_g{_spec(kernel).splits}")


def asset_attention_summary(aimodel: Path) -> AttentionSummary:
    """:func:`attention_summary` of a saved ``.aimodel`` (reads its program bytecode)."""
    from coreai.authoring.asset import AIProgram

    files = sorted(Path(aimodel).glob("*.mlirb"))
    if not files:
        raise KernelSourceError(
            f"{aimodel} holds no program bytecode (*.mlirb)",
            hint="pass the .aimodel folder written by convert",
        )
    return attention_summary("\n".join(_program_text(AIProgram._load_bytecode(f)) for f in files))


def _program_text(program: Any) -> str:
    """An AIProgram's MLIR text with weight constants elided: a 31B asset printed in full is tens of
    GB of hex. Falls back to ``str`` where coreai's module internals differ."""
    module = getattr(getattr(program, "_module", None), "_mlir_module", None)
    if module is None:
        return str(program)
    return module.operation.get_asm(large_elements_limit=16, large_resource_limit=64, assume_verified=True)
