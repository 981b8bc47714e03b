"""The 12B's encoder-free embedders (`gemma4_unified`): `embed_vision` and `embed_audio` as graph modules.

Read from the checkpoint's safetensors (`model.vision_embedder.*`, `model.embed_vision.*`,
`model.embed_audio.*`) and kept at higher precision than the int4 decoder, as the shipped bundle
keeps them (fp16 in the asset; fp32 for the parity gates).

  embed_vision  pixel_values [1,P,patch_dim], image_position_ids [1,P,2] int32 (x, y; padding -1)
                → embeds [1,P,hidden]: LayerNorm → Dense → LayerNorm → + pos_x[x] + pos_y[y]
                (zero for padding rows) → LayerNorm → RMSNorm (no scale) → Linear
  embed_audio   input_features [1,T,samples_per_token] → embeds [1,T,hidden]: RMSNorm (no scale) → Linear

The math of transformers' Gemma4UnifiedVisionEmbedder / Gemma4UnifiedMultimodalEmbedder, written
with ops that lower (index_select for the factorized position table).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import contract
from .checkpoint import Checkpoint

# the functions' names and I/O: the contract's (the app binds the same names)
VISION_FUNCTION, AUDIO_FUNCTION = contract.EMBED_VISION_FUNCTION, contract.EMBED_AUDIO_FUNCTION
VISION_INPUTS = contract.EMBED_VISION_INPUTS
AUDIO_INPUTS = contract.EMBED_AUDIO_INPUTS
EMBEDS_OUTPUT = contract.EMBEDS_OUTPUT
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which HF's embedder uses


def _tensor(checkpoint: Checkpoint, name: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(checkpoint.tensor_file(name)), framework="pt") as handle:
        return handle.get_tensor(name)


def _rms_no_scale(x: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.pow(xf.pow(2).mean(-1, keepdim=True) + eps, -0.5)).to(x.dtype)


class _Projection(nn.Module):
    """RMSNorm without scale → Linear (no bias): the multimodal embedder both modalities end in."""

    def __init__(self, weight: torch.Tensor, eps: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(weight.to(dtype), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(_rms_no_scale(x, self.eps), self.weight)


class VisionEmbedder(nn.Module):
    def __init__(self, checkpoint: Checkpoint, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        config = checkpoint.config
        eps = float((config.get("vision_config") or {}).get("rms_norm_eps", 1e-6))
        self.dtype = dtype

        def param(suffix: str) -> nn.Parameter:
            return nn.Parameter(_tensor(checkpoint, "model.vision_embedder." + suffix).to(dtype), requires_grad=False)

        self.ln1_w, self.ln1_b = param("patch_ln1.weight"), param("patch_ln1.bias")
        self.dense_w, self.dense_b = param("patch_dense.weight"), param("patch_dense.bias")
        self.ln2_w, self.ln2_b = param("patch_ln2.weight"), param("patch_ln2.bias")
        pos = _tensor(checkpoint, "model.vision_embedder.pos_embedding").to(dtype)  # [S, 2, D]
        self.pos_x = nn.Parameter(pos[:, 0].contiguous(), requires_grad=False)
        self.pos_y = nn.Parameter(pos[:, 1].contiguous(), requires_grad=False)
        self.pos_w, self.pos_b = param("pos_norm.weight"), param("pos_norm.bias")
        self.project = _Projection(_tensor(checkpoint, "model.embed_vision.embedding_projection.weight"), eps, dtype)

    def forward(self, pixel_values: torch.Tensor, image_position_ids: torch.Tensor) -> torch.Tensor:
        x = pixel_values.to(self.dtype)
        x = F.layer_norm(x, (x.shape[-1],), self.ln1_w, self.ln1_b, LAYER_NORM_EPS)
        x = F.linear(x, self.dense_w, self.dense_b)
        x = F.layer_norm(x, (x.shape[-1],), self.ln2_w, self.ln2_b, LAYER_NORM_EPS)
        rows = image_position_ids.shape[1]
        pos = image_position_ids.reshape(rows, 2).to(torch.int32)
        clamped = torch.clamp(pos, min=0)
        ex = torch.index_select(self.pos_x, 0, clamped[:, 0])
        ey = torch.index_select(self.pos_y, 0, clamped[:, 1])
        # each axis counts only where its coordinate is real (padding rows are (-1, -1))
        emb = torch.where(pos[:, 0:1] != -1, ex, torch.zeros_like(ex)) + torch.where(pos[:, 1:2] != -1, ey,
                                                                                    torch.zeros_like(ey))
        x = x + emb.reshape(1, rows, -1)
        x = F.layer_norm(x, (x.shape[-1],), self.pos_w, self.pos_b, LAYER_NORM_EPS)
        return self.project(x)


class AudioEmbedder(nn.Module):
    def __init__(self, checkpoint: Checkpoint, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        eps = float((checkpoint.config.get("audio_config") or {}).get("rms_norm_eps", 1e-6))
        self.dtype = dtype
        self.project = _Projection(_tensor(checkpoint, "model.embed_audio.embedding_projection.weight"), eps, dtype)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.project(input_features.to(self.dtype))
