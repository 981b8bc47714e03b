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

Layout, one concern per module (every public name is re-exported here, so
`gemmaios.kernels.X` keeps working):
- `spec`: The kernels as registered: variants, entry names, tensors, thread attributes, dispatch; and the
  kernels' named errors.
- `source`: The .metal source (kernels/flash_decode_sdpa.metal): helpers + one body per [[kernel]], parsed and
  checked against the registered specs.
- `model`: numpy model of the kernels' exact algorithm, the float64 reference (naive_sdpa) and the error bound
  (derived in the package docstring).
- `configs`: Which Gemma 4 configs and layers need the flash-decode kernel (the stock SDPA's full-layer query
  limit).
- `wiring`: Torch / Core AI wiring: registration with coreai_torch.TorchMetalKernel and the torch-callable
  full_attention_sdpa hook.
- `placement`: What a converted program runs for attention, and the check that every full layer uses the
  kernel.
"""

from .configs import STOCK_SDPA_MAX_QUERY_ELEMENTS, full_attention_layers, needs_flash_decode
from .model import (
    NEG_BIG,
    SplitState,
    error_bound,
    flash_decode_model,
    merge_splits,
    model_scores,
    naive_sdpa,
    scan_splits,
    split_blocks,
)
from .placement import (
    AttentionSummary,
    KernelPlacementError,
    asset_attention_summary,
    attention_summary,
    bundle_suffix,
    check_full_layers_use_kernel,
    program_text,
)
from .source import (
    KERNEL_SOURCE,
    MetalKernel,
    MetalParam,
    MetalSource,
    check_kernel_source,
    expected_params,
    load_metal_source,
    parse_metal_source,
)
from .spec import (
    DEFAULT_VARIANT,
    G8_SPLITS,
    KERNEL_SPECS,
    MAX_HEAD_DIM,
    SIMD_WIDTH,
    KernelInputError,
    KernelSourceError,
    KernelSpec,
)
from .wiring import (
    HELPER_MARKERS,
    flash_decode_kernel,
    flash_decode_kernels,
    full_attention_sdpa,
    generated_kernel_source,
    register_flash_decode_kernels,
)

__all__ = [
    "AttentionSummary",
    "DEFAULT_VARIANT",
    "G8_SPLITS",
    "KERNEL_SOURCE",
    "KERNEL_SPECS",
    "KernelInputError",
    "KernelPlacementError",
    "KernelSourceError",
    "KernelSpec",
    "MAX_HEAD_DIM",
    "MetalKernel",
    "MetalParam",
    "MetalSource",
    "NEG_BIG",
    "SIMD_WIDTH",
    "STOCK_SDPA_MAX_QUERY_ELEMENTS",
    "SplitState",
    "HELPER_MARKERS",
    "program_text",
    "asset_attention_summary",
    "attention_summary",
    "bundle_suffix",
    "check_full_layers_use_kernel",
    "check_kernel_source",
    "error_bound",
    "expected_params",
    "flash_decode_kernel",
    "flash_decode_kernels",
    "flash_decode_model",
    "full_attention_layers",
    "full_attention_sdpa",
    "generated_kernel_source",
    "load_metal_source",
    "merge_splits",
    "model_scores",
    "naive_sdpa",
    "needs_flash_decode",
    "parse_metal_source",
    "register_flash_decode_kernels",
    "scan_splits",
    "split_blocks",
]
