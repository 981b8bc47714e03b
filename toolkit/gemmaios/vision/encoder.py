"""The vision asset's module: vision tower + 3x3 pooling + `embed_vision` projector, static shapes.

Graph contract (one `main` function):

  inputs   pixel_values [1, P, 3*p*p] fp16 (P = max_soft_tokens * k^2, the padded patch grid,
           values in [0,1] as the processor rescales them), pixel_position_ids [1, P, 2] int32
           ((x, y) per patch, (-1, -1) for padding)
  output   image_embeds [N, hidden] fp16, N = max_soft_tokens: the first num_soft_tokens rows
           are the image's soft tokens in HF's order (the rest are padding rows the splice never
           references)

The math is transformers' Gemma4VisionModel + Gemma4MultimodalEmbedder, written with static
shapes: padding keys are masked additively instead of stripped, and the k x k average pool is
a one-hot matmul whose pooled row index is computed from the positions as HF does
(`x//k + (max_x//k) * (y//k)`), in float arithmetic (exact for these small integers). The
pooled features are scaled and standardized in fp32, as HF does to stay inside fp16's range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _rms(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    xf = x.float()
    out = xf * torch.pow(xf.pow(2).mean(-1, keepdim=True) + eps, -0.5)
    if weight is not None:
        out = out * weight.float()
    return out.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class VisionEncoder(nn.Module):
    """Built from HF's vision tower and `embed_vision` (`load_vision_modules`, or a loaded
    `Gemma4ForConditionalGeneration`'s `model.vision_tower` / `model.embed_vision`)."""

    def __init__(self, tower, embedder, max_soft_tokens: int, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        cfg = tower.config
        self.dtype, self.k = dtype, cfg.pooling_kernel_size
        self.max_soft_tokens = max_soft_tokens
        self.max_patches = max_soft_tokens * self.k**2
        self.patch_dim = 3 * cfg.patch_size**2
        self.hidden = cfg.hidden_size
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.kv_heads = cfg.num_key_value_heads
        self.eps, self.proj_eps = cfg.rms_norm_eps, embedder.eps
        self.text_hidden = embedder.text_hidden_size
        if getattr(cfg, "use_clipped_linears", False):
            raise NotImplementedError("clipped linears in the vision tower are not supported yet")

        def param(t: torch.Tensor, dt: torch.dtype = dtype) -> nn.Parameter:
            return nn.Parameter(t.detach().to(dt).clone(), requires_grad=False)

        pe = tower.patch_embedder
        self.input_proj = param(pe.input_proj.weight)
        self.pos_x = param(pe.position_embedding_table[0])
        self.pos_y = param(pe.position_embedding_table[1])
        self.register_buffer("inv_freq", tower.encoder.rotary_emb.inv_freq.detach().float().clone())
        self.layers = nn.ModuleList()
        for layer in tower.encoder.layers:
            m = nn.Module()
            a = layer.self_attn
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                setattr(m, name, param(getattr(a, name).linear.weight))
            m.q_norm, m.k_norm = param(a.q_norm.weight, torch.float32), param(a.k_norm.weight, torch.float32)
            for name in ("gate_proj", "up_proj", "down_proj"):
                setattr(m, name, param(getattr(layer.mlp, name).linear.weight))
            for name in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                         "post_feedforward_layernorm"):
                setattr(m, name, param(getattr(layer, name).weight, torch.float32))
            self.layers.append(m)
        self.standardize = bool(cfg.standardize)
        if self.standardize:
            self.register_buffer("std_bias", tower.std_bias.detach().float().clone())
            self.register_buffer("std_scale", tower.std_scale.detach().float().clone())
        self.projection = param(embedder.embedding_projection.weight)

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float().unsqueeze(-1) * self.inv_freq  # [1,P,2,d/4]
        f0, f1 = freqs[:, :, 0], freqs[:, :, 1]
        emb = torch.cat([f0, f0, f1, f1], dim=-1).unsqueeze(2)  # [1,P,1,d]
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    def _apply_rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        parts = []
        for lo in (0, half):
            xs, c, s = x[..., lo : lo + half], cos[..., lo : lo + half], sin[..., lo : lo + half]
            parts.append(xs * c + _rotate_half(xs) * s)
        return torch.cat(parts, dim=-1)

    def _attention(self, m, h, cos, sin, key_bias):
        p, d = h.shape[1], self.head_dim
        q = F.linear(h, m.q_proj).view(1, p, self.heads, d)
        k = F.linear(h, m.k_proj).view(1, p, self.kv_heads, d)
        v = F.linear(h, m.v_proj).view(1, p, self.kv_heads, d)
        q = self._apply_rope(_rms(q, m.q_norm, self.eps), cos, sin).transpose(1, 2)
        k = self._apply_rope(_rms(k, m.k_norm, self.eps), cos, sin).transpose(1, 2)
        v = _rms(v, None, self.eps).transpose(1, 2)
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)).float() + key_bias  # scaling 1 (Gemma 4)
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(1, p, self.heads * d)
        return F.linear(out, m.o_proj)

    def forward(self, pixel_values: torch.Tensor, pixel_position_ids: torch.Tensor) -> torch.Tensor:
        positions = pixel_position_ids
        padding = (positions[..., 0] < 0) & (positions[..., 1] < 0)  # [1,P]
        clamped = torch.clamp(positions, min=0)
        x = (2.0 * (pixel_values.float() - 0.5)).to(self.dtype)
        h = F.linear(x, self.input_proj)
        pos = torch.index_select(self.pos_x, 0, clamped[0, :, 0]) + torch.index_select(self.pos_y, 0, clamped[0, :, 1])
        h = h + torch.where(padding.unsqueeze(-1), torch.zeros_like(pos), pos)  # [1,P,H]
        key_bias = torch.where(padding, torch.full_like(padding, -1e9, dtype=torch.float32),
                               torch.zeros_like(padding, dtype=torch.float32)).reshape(1, 1, 1, -1)
        cos, sin = self._rope(positions)
        for m in self.layers:
            attn = self._attention(m, _rms(h, m.input_layernorm, self.eps), cos, sin, key_bias)
            h = h + _rms(attn, m.post_attention_layernorm, self.eps)
            z = _rms(h, m.pre_feedforward_layernorm, self.eps)
            z = F.linear(F.gelu(F.linear(z, m.gate_proj), approximate="tanh") * F.linear(z, m.up_proj), m.down_proj)
            h = h + _rms(z, m.post_feedforward_layernorm, self.eps)
        # Pool k x k patches: row index x//k + (max_x//k) * (y//k), padding patches zeroed.
        h = torch.where(padding.unsqueeze(-1), torch.zeros_like(h), h)
        cf = clamped.float()
        k = float(self.k)
        per_row = torch.floor((cf[0, :, 0].max() + 1.0) / k)
        index = torch.floor(cf[0, :, 0] / k) + per_row * torch.floor(cf[0, :, 1] / k)  # [P]
        slots = torch.arange(self.max_soft_tokens, dtype=torch.float32)
        weights = (index.unsqueeze(1) == slots.unsqueeze(0)).float() / (k * k)  # [P,N]
        pooled = torch.matmul(weights.transpose(0, 1), h[0].float()) * (self.hidden**0.5)  # [N,H] fp32
        if self.standardize:
            pooled = (pooled - self.std_bias) * self.std_scale
        pooled = pooled.to(self.dtype)
        normed = _rms(pooled, None, self.proj_eps)
        return F.linear(normed, self.projection)  # [N, text hidden]

    def example_inputs(self) -> dict:
        return {"pixel_values": torch.zeros((1, self.max_patches, self.patch_dim), dtype=self.dtype),
                "pixel_position_ids": torch.full((1, self.max_patches, 2), -1, dtype=torch.int32)}


def load_vision_modules(checkpoint):
    """(vision tower, embed_vision) of a multimodal checkpoint in fp32, read tensor by tensor
    (the text decoder is never loaded)."""
    from transformers.models.gemma4.modeling_gemma4 import Gemma4VisionModel

    from ..encoder_weights import load_encoder_modules
    from .preprocess import VisionError

    return load_encoder_modules(
        checkpoint, "vision", Gemma4VisionModel, VisionError, ignore_missing=("inv_freq",),
        no_tower_hint="image input needs a multimodal E2B/E4B checkpoint",
        mismatch_hint="the checkpoint is incomplete or not a Gemma 4 E2B/E4B multimodal checkpoint")


def hf_image_features(hf_model, pixel_values, pixel_position_ids) -> torch.Tensor:
    """HF's own image features for one prepared image: [num_soft_tokens, hidden] fp32."""
    with torch.no_grad():
        out = hf_model.model.get_image_features(torch.as_tensor(pixel_values)[None].float(),
                                                torch.as_tensor(pixel_position_ids)[None].long(), return_dict=True)
    return torch.cat(out.pooler_output, dim=0)
