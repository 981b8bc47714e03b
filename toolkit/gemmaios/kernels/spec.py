"""The kernels as registered: variants, entry names, tensors, thread attributes, dispatch; and the kernels'
named errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GemmaiosError

SIMD_WIDTH = 32
MAX_HEAD_DIM = 512
G8_SPLITS = 8


class KernelSourceError(GemmaiosError):
    """The Metal source is missing, or does not match what gemmaios registers with the converter."""


class KernelInputError(GemmaiosError):
    """Tensors handed to the flash-decode kernel have shapes or dtypes it does not support."""


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


def kernel_spec(variant: str) -> KernelSpec:
    try:
        return KERNEL_SPECS[variant]
    except KeyError:
        raise KernelInputError(
            f"unknown flash-decode kernel variant {variant!r}", hint=f"use one of {sorted(KERNEL_SPECS)}"
        ) from None
