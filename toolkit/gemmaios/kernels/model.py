"""numpy model of the kernels' exact algorithm, the float64 reference (naive_sdpa) and the error bound
(derived in the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import DEFAULT_VARIANT, MAX_HEAD_DIM, SIMD_WIDTH, KernelInputError, kernel_spec

NEG_BIG = np.float32(-1.0e30)  # the kernels' FD_NEG_BIG: a finite "-inf" (fast math has no inf)

_U32 = 2.0**-24
_F16_REL = 2.0**-11
_F16_SUBNORMAL_ABS = 2.0**-25


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
    return merge_splits(scan_splits(q, k, v, kernel_spec(variant).splits))


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
    splits = kernel_spec(variant).splits
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
