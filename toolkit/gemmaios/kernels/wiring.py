"""Torch / Core AI wiring: registration with coreai_torch.TorchMetalKernel and the torch-callable
full_attention_sdpa hook.
"""

from __future__ import annotations

from functools import cache

from .source import check_kernel_source, load_metal_source, parse_metal_source
from .spec import (
    DEFAULT_VARIANT,
    KERNEL_SPECS,
    MAX_HEAD_DIM,
    SIMD_WIDTH,
    KernelInputError,
    KernelSourceError,
    kernel_spec,
)


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

    spec = kernel_spec(variant)
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
    generated_kernel = parse_metal_source(source.helpers.join(HELPER_MARKERS) + generated, source.path)
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


HELPER_MARKERS = ("// gemmaios:helpers:begin\n", "// gemmaios:helpers:end\n")


def generated_kernel_source(variant: str = DEFAULT_VARIANT) -> str:
    """The complete Metal source Core AI embeds in a converted program for this variant."""
    spec = kernel_spec(variant)
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

    spec = kernel_spec(kernel)
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
