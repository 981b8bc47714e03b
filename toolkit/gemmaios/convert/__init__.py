"""Convert a Gemma 4 text checkpoint into a Core AI LanguageBundle for the pipelined engine.

checkpoint → our decode module (gemmaios.decode_model), weights streamed from safetensors
and quantized per block of 32 → parity gates against transformers → torch.export →
coreai_torch.TorchConverter → `.aimodel` → asset-summary gate → metadata.json + tokenizer/.

Layout: `options` (validation, named errors), `export` (torch.export → AIProgram), `gates`
(parity, asset and kernel gates), `converter` (convert_checkpoint), `step` (ConvertStep).
"""

from .converter import ConvertResult, convert_checkpoint, head_facts
from .export import (
    export_program,
    free_memory,
    large_blocks_from_mmap,
    prefill_function_name,
    reference_inputs,
    release_levels,
)
from .gates import (
    asset_gate,
    expected_float16_elements,
    expected_quantized_elements,
    gates_fit_in_memory,
    kernel_gate,
    run_parity_gates,
)
from .options import (
    DEFAULT_MAX_CONTEXT,
    GATE_MEMORY_SHARE,
    PLE_MODES,
    PREFILL_CHUNK_SIZES,
    TARGETS,
    TRACE_CACHE_LEN,
    TRACE_POSITIONS,
    AssetGateFailed,
    ConvertError,
    KernelGateFailed,
    PrefillChunkError,
    TargetNotSupported,
    model_key,
    resolve_flash_decode,
    resolve_head_quant,
    resolve_max_context,
    resolve_prefill_chunks,
)
from .step import ConvertStep

__all__ = [
    "ConvertResult",
    "ConvertStep",
    "convert_checkpoint",
    "head_facts",
    "AssetGateFailed",
    "ConvertError",
    "DEFAULT_MAX_CONTEXT",
    "GATE_MEMORY_SHARE",
    "KernelGateFailed",
    "PLE_MODES",
    "PREFILL_CHUNK_SIZES",
    "PrefillChunkError",
    "TARGETS",
    "TRACE_CACHE_LEN",
    "TRACE_POSITIONS",
    "TargetNotSupported",
    "asset_gate",
    "expected_float16_elements",
    "expected_quantized_elements",
    "export_program",
    "free_memory",
    "gates_fit_in_memory",
    "kernel_gate",
    "large_blocks_from_mmap",
    "model_key",
    "prefill_function_name",
    "reference_inputs",
    "release_levels",
    "resolve_flash_decode",
    "resolve_head_quant",
    "resolve_max_context",
    "resolve_prefill_chunks",
    "run_parity_gates",
]
