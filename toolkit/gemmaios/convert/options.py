"""Conversion options, their validation and the named errors."""

from __future__ import annotations

from collections.abc import Callable

from .. import kernels
from ..bundlename import model_key  # noqa: F401  (re-exported: convert.model_key)
from ..checkpoint import Checkpoint, require_inputs
from ..errors import GemmaiosError
from ..quantize import BLOCK, QUANTS

PLE_MODES = ("provider", "tbl")
TARGETS = ("ios", "mac")
# Cache length the graph is traced with; the exported seq dims are dynamic up to max_context.
TRACE_CACHE_LEN = 64
TRACE_POSITIONS = 8
# Each Gemma 4 HF parity gate holds HF's fp32 model plus ours; skip above this share of free RAM.
GATE_MEMORY_SHARE = 0.6

Progress = Callable[[str, int, int], None]


class ConvertError(GemmaiosError):
    """The checkpoint cannot be converted with the requested options."""


class AssetGateFailed(GemmaiosError):
    """The saved .aimodel does not have the expected functions, I/O, states or storage."""


class PrefillChunkError(ConvertError):
    """--prefill-chunk names a chunk size or ladder this conversion cannot build."""


class TargetNotSupported(ConvertError):
    """The checkpoint cannot run on the requested --target (e.g. 12B/31B on iPhone)."""


class KernelGateFailed(AssetGateFailed):
    """The saved .aimodel does not run the flash-decode kernel on exactly the full layers."""


DEFAULT_MAX_CONTEXT = 4096


def resolve_max_context(checkpoint: Checkpoint, requested: int | None) -> int:
    """The context length to build for: the request, else 4096 capped at what the model supports."""
    if requested is not None:
        return requested
    return min(DEFAULT_MAX_CONTEXT, int(checkpoint.text_config.get("max_position_embeddings") or DEFAULT_MAX_CONTEXT))


def resolve_flash_decode(checkpoint: Checkpoint, target: str, kernel: str | None = None) -> str | None:
    """The flash-decode kernel variant this conversion uses on the full layers, or None (stock SDPA).

    Mac targets of models whose full-layer decode query overflows the stock SDPA (12B, 31B) get
    the kernel (default g8); other Mac targets keep the stock graph. iPhone targets of those
    models are refused.
    """
    if target not in TARGETS:
        raise ConvertError(f"unknown --target {target!r}", hint="choose ios (iPhone, default) or mac")
    if kernel is not None and kernel not in kernels.KERNEL_SPECS and kernel != STOCK_KERNEL:
        raise ConvertError(
            f"unknown --kernel {kernel!r}",
            hint=f"choose one of {', '.join(sorted(kernels.KERNEL_SPECS))}, or {STOCK_KERNEL} (no kernel)",
        )
    needed = kernels.needs_flash_decode(checkpoint.text_config)
    if needed and target == "ios":
        cfg = checkpoint.text_config
        raise TargetNotSupported(
            f"{checkpoint.model_id} cannot target iPhone: its full layers' decode query "
            f"({cfg['num_attention_heads']} heads x 512) crashes the stock SDPA at the first token, "
            "and a 12B/31B model exceeds the iPhone memory budget",
            hint="convert it for the Mac with --target mac (full layers then run gemmaios' flash-decode kernel)",
        )
    if kernel is not None and target != "mac":
        raise ConvertError("--kernel only applies to --target mac", hint="drop --kernel, or add --target mac")
    if kernel == STOCK_KERNEL:
        return None
    if not needed:
        return None
    return kernel or kernels.DEFAULT_VARIANT


# `--kernel stock`: a Mac build without the flash-decode kernel (the stock graph Core AI's Linux
# runtime can run: the gated tiny multimodal build; the 12B's decode query overflows it on a Mac).
STOCK_KERNEL = "stock"


def check_unified_multimodal(checkpoint: Checkpoint, vision: bool, audio: bool, target: str) -> None:
    """--vision / --audio on gemma4_unified (the 12B as it ships): its multi-function Mac asset."""
    if checkpoint.model_type != "gemma4_unified":
        return  # E2B/E4B: check_audio
    if target != "mac":
        raise ConvertError("--vision / --audio on gemma4_unified (the 12B) build the Mac bundle",
                           hint="add --target mac")
    missing = [k for k, on in (("vision_config", vision), ("audio_config", audio)) if on and not checkpoint.config.get(k)]
    if missing:
        raise ConvertError(f"{checkpoint.model_id} has no {missing[0]} in config.json",
                           hint="drop the flag for the modality it lacks")


# Chunk sizes a `prefill_C` function may have: static shapes the phone's GPU compiles once.
PREFILL_CHUNK_SIZES = (8, 16)


def resolve_prefill_chunks(value: int | str | tuple | list | None) -> tuple[int, ...]:
    """`--prefill-chunk`: 0 / None / "" = off; 8, 16, or a ladder such as "16,8" → sizes, largest first."""
    if value is None:
        return ()
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        try:
            items = [int(p) for p in parts if p]
        except ValueError:
            raise PrefillChunkError(
                f"--prefill-chunk {value!r} is not a chunk size or a comma-separated ladder",
                hint=f"pass 0 (off), one of {', '.join(map(str, PREFILL_CHUNK_SIZES))}, or a ladder such as 16,8",
            ) from None
    else:
        items = [int(v) for v in value]
    if items in ([], [0]):
        return ()
    bad = [c for c in items if c not in PREFILL_CHUNK_SIZES]
    if bad:
        raise PrefillChunkError(
            f"--prefill-chunk {bad[0]} is not supported (chunk sizes: {', '.join(map(str, PREFILL_CHUNK_SIZES))}; 0 = off)",
            hint="larger chunks risk iOS's per-encode scratch-heap ceiling (apple/coreai-models#201); use 16 or 8",
        )
    if len(set(items)) != len(items):
        raise PrefillChunkError(f"--prefill-chunk {value!r} repeats a chunk size", hint="name each size once, e.g. 16,8")
    return tuple(sorted(items, reverse=True))


def resolve_head_quant(quant: str, head_quant: str | None) -> str:
    """The lm_head's storage: the request, else the weights' quant (int4/int8: an untied
    quantized copy; fp16: the head stays tied to the fp16 embedding table)."""
    return head_quant or quant


def check_prefill_chunks(prefill_chunks: tuple[int, ...], max_context: int, flash_decode: str | None) -> None:
    if not prefill_chunks:
        return
    if flash_decode is not None:
        raise PrefillChunkError(
            f"--prefill-chunk cannot be combined with the {flash_decode} flash-decode kernel build",
            hint="the kernel is a one-query decode kernel; drop --prefill-chunk for --target mac 12B/31B builds",
        )
    if max(prefill_chunks) >= max_context:
        raise PrefillChunkError(
            f"--prefill-chunk {max(prefill_chunks)} does not fit a --max-context of {max_context}: a chunk needs "
            "at least one more cache row than its size",
            hint=f"use a chunk smaller than the context, or a --max-context above {max(prefill_chunks)}",
        )


def check_vision(checkpoint: Checkpoint, ple: str, target: str) -> None:
    """--vision: a multimodal E2B/E4B checkpoint, the provider PLE mode (iPhone), no Mac kernel build."""
    # a text-only model, or the 12B's bidirectional image blocks: UnsupportedInput says which and why
    require_inputs(checkpoint, ["image"])
    if ple != "provider" and checkpoint.text_config.get("hidden_size_per_layer_input"):
        raise ConvertError(
            "--vision cannot be combined with --ple tbl: image input is built for the provider PLE mode only "
            "(an in-graph table gather plus the splice exceeded the iOS per-encode scratch heap)",
            hint="use --ple provider (the default) with --vision",
        )
    if target != "ios":
        raise ConvertError("--vision is built for --target ios (E2B/E4B on the iPhone)",
                           hint="drop --target mac, or drop --vision")


def check_audio(checkpoint: Checkpoint, ple: str, target: str) -> None:
    """--audio on E2B/E4B: a checkpoint with its Conformer audio tower, the provider PLE mode, iPhone
    (the audio asset beside the decoder; the splice is the images' id space)."""
    require_inputs(checkpoint, ["audio"])  # UnsupportedInput names a checkpoint without an audio tower
    if ple != "provider" and checkpoint.text_config.get("hidden_size_per_layer_input"):
        raise ConvertError("--audio cannot be combined with --ple tbl: audio soft tokens are spliced like image "
                           "tokens, which is built for the provider PLE mode only",
                           hint="use --ple provider (the default) with --audio")
    if target != "ios":
        raise ConvertError("--audio on E2B/E4B is built for --target ios (the iPhone)",
                           hint="drop --target mac, or drop --audio")


def check_convert_options(checkpoint: Checkpoint, quant: str, ple: str, max_context: int, head_quant: str) -> None:
    if quant not in QUANTS:
        raise ConvertError(f"unknown --quant {quant!r}", hint=f"choose one of {', '.join(QUANTS)}")
    if head_quant not in QUANTS:
        raise ConvertError(f"unknown --head-quant {head_quant!r}", hint=f"choose one of {', '.join(QUANTS)}")
    hidden = int(checkpoint.text_config.get("hidden_size") or 0)
    if head_quant != "fp16" and hidden % BLOCK:
        raise ConvertError(
            f"--head-quant {head_quant} needs hidden_size divisible by {BLOCK}, and {checkpoint.model_id} has {hidden}",
            hint="use --head-quant fp16 (the tied fp16 head)",
        )
    if ple not in PLE_MODES:
        raise ConvertError(f"unknown --ple {ple!r}", hint="choose provider or tbl")
    limit = int(checkpoint.text_config.get("max_position_embeddings") or 131072)
    if not 16 <= max_context <= limit:
        raise ConvertError(
            f"--max-context {max_context} is outside 16..{limit} (the checkpoint's max_position_embeddings)",
            hint=f"pick a context length the model supports, e.g. {min(DEFAULT_MAX_CONTEXT, limit)}",
        )
    if ple == "tbl" and not checkpoint.text_config.get("hidden_size_per_layer_input"):
        raise ConvertError(
            f"--ple tbl needs per-layer embeddings, and {checkpoint.model_id} has none",
            hint="use --ple provider (the flag has no effect on models without PLE)",
        )


