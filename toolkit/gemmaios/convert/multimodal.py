"""The 12B's multimodal functions beside `main` in one asset (gemma4_unified, `--vision` / `--audio`).

  prefill_multimodal  input_ids [1,S] int32, mm_embeds [1,S,hidden] fp16, mm_mask [1,S] bool,
                      position_ids [1,P] int32, mask_sliding / mask_global [1,1,S,P] bool
                      + keyCache / valueCache → logits [1,1,V]   (S, P dynamic; the decoder's weights)
  embed_vision        pixel_values [1,N,patch_dim] fp16, image_position_ids [1,N,2] int32 → embeds [1,N,hidden]
  embed_audio         input_features [1,T,samples_per_token] fp16 → embeds [1,T,hidden]

Traced from the same decode module as `main` (the converter stores each weight once; the asset
gate checks the Int4/Float16 counts against one copy); the embedders stay fp16 (the decoder's
linears int4 per block of 32). Inputs, masks and splice: gemmaios.unified_inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import Checkpoint
from ..contract import PREFILL_MULTIMODAL_FUNCTION
from ..decode_model import MULTIMODAL_PREFILL_INPUTS, Gemma4Decode, MultimodalPrefillGraph
from ..unified_embedders import (
    AUDIO_FUNCTION,
    AUDIO_INPUTS,
    EMBEDS_OUTPUT,
    VISION_FUNCTION,
    VISION_INPUTS,
    AudioEmbedder,
    VisionEmbedder,
)
from ..unified_inputs import UnifiedSpec

PREFILL_MULTIMODAL = PREFILL_MULTIMODAL_FUNCTION
TRACE_ROWS, TRACE_POSITIONS, TRACE_ITEMS = 12, 14, 8  # trace sizes (every one dynamic in the asset)


@dataclass
class FunctionExport:
    """One entry point of the asset: the module, its trace inputs and dynamic shapes, its names."""

    name: str
    module: nn.Module
    inputs: dict
    shapes: dict
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_names: tuple[str, ...] = ()


def multimodal_functions(model: Gemma4Decode, checkpoint: Checkpoint, spec: UnifiedSpec, max_context: int,
                         vision: bool, audio: bool) -> list[FunctionExport]:
    """`prefill_multimodal`, then `embed_vision` and/or `embed_audio` (fp16 embedders read from the checkpoint)."""
    from torch.export import Dim

    hidden = model.spec.hidden_size
    rows = Dim("rows", min=2, max=max_context - 2)
    positions = Dim("positions", min=3, max=max_context - 1)
    cache_len = Dim("cache_len", min=4, max=max_context)
    key, value = model.new_cache(TRACE_POSITIONS + 4)
    s, p = TRACE_ROWS, TRACE_POSITIONS
    functions = [FunctionExport(
        PREFILL_MULTIMODAL, MultimodalPrefillGraph(model),
        inputs=dict(input_ids=torch.zeros((1, s), dtype=torch.int32),
                    mm_embeds=torch.zeros((1, s, hidden), dtype=torch.float16),
                    mm_mask=torch.zeros((1, s), dtype=torch.bool),
                    position_ids=torch.arange(p, dtype=torch.int32).unsqueeze(0),
                    mask_sliding=torch.ones((1, 1, s, p), dtype=torch.bool),
                    mask_global=torch.ones((1, 1, s, p), dtype=torch.bool), keyCache=key, valueCache=value),
        shapes=dict(input_ids={1: rows}, mm_embeds={1: rows}, mm_mask={1: rows}, position_ids={1: positions},
                    mask_sliding={2: rows, 3: positions}, mask_global={2: rows, 3: positions},
                    keyCache={3: cache_len}, valueCache={3: cache_len}),
        input_names=MULTIMODAL_PREFILL_INPUTS, output_names=model.output_names(), state_names=model.state_names())]
    if vision:
        patches = Dim("patches", min=1, max=max(spec.max_soft_tokens, 1120))
        functions.append(FunctionExport(
            VISION_FUNCTION, VisionEmbedder(checkpoint, torch.float16).eval(),
            inputs=dict(pixel_values=torch.zeros((1, TRACE_ITEMS, spec.patch_dim), dtype=torch.float16),
                        image_position_ids=torch.zeros((1, TRACE_ITEMS, 2), dtype=torch.int32)),
            shapes=dict(pixel_values={1: patches}, image_position_ids={1: patches}),
            input_names=VISION_INPUTS, output_names=(EMBEDS_OUTPUT,)))
    if audio:
        frames = Dim("frames", min=1, max=max_context)
        functions.append(FunctionExport(
            AUDIO_FUNCTION, AudioEmbedder(checkpoint, torch.float16).eval(),
            inputs=dict(input_features=torch.zeros((1, TRACE_ITEMS, spec.audio_samples_per_token), dtype=torch.float16)),
            shapes=dict(input_features={1: frames}), input_names=AUDIO_INPUTS, output_names=(EMBEDS_OUTPUT,)))
    return functions


def embedder_float16_elements(functions: list[FunctionExport]) -> int:
    """The embedders' fp16 elements (stored once each, beside the decoder's)."""
    return sum(t.numel() for f in functions if f.name != PREFILL_MULTIMODAL
               for t in list(f.module.parameters()) + list(f.module.buffers()) if t.dtype == torch.float16)


def multimodal_metadata(spec: UnifiedSpec, io: dict) -> dict:
    """metadata.json `gemmaios.multimodal`: the constants and the functions' I/O as the asset declares them."""
    return {
        **spec.metadata(),
        "functions": io,
        "masks": "bool, True = attend, [1,1,S,P]; they replace the built-in causal/sliding masks: global = causal OR "
                 "same image/video block, sliding = (causal AND k > q - sliding_window) OR same block "
                 "(HF Gemma4UnifiedModel.forward; gemmaios.unified_inputs.attention_masks)",
        "splice": "mm_embeds rows where mm_mask is set replace the scaled token embedding (unscaled, as HF scatters)",
        "embedders_dtype": "float16",
    }
