"""The audio asset's module: Conformer audio tower + `embed_audio` projector, static shapes.

Graph contract (one `main` function):

  inputs   input_features [1, F, 128] fp16 (F = the frames of the longest clip, padding rows 0),
           input_features_mask [1, F] int32 (1: a real frame)
  output   audio_embeds [T, hidden] fp16, T = F after the two stride-2 convolutions: the first
           num_soft_tokens rows are the clip's soft tokens in HF's order (the rest are padding
           rows the splice never references)

The math is transformers' Gemma4AudioModel + Gemma4MultimodalEmbedder with static shapes: the
chunked local attention (blocks of `attention_chunk_size` keys looking `attention_context_left
- 1` back) is one [T, T] attention under a band-and-padding mask, and its relative-position
term is a gather from the per-distance scores whose index table is read off HF's own
`_rel_shift` when the module is built. Valid rows equal HF's: a real frame never attends a
padding frame, and the depthwise convolution is causal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MASKED = -1.0e9


def _rms(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    xf = x.float()
    out = xf * torch.pow(xf.pow(2).mean(-1, keepdim=True) + eps, -0.5)
    if weight is not None:
        out = out * weight.float()
    return out.to(x.dtype)


def relative_index_table(attention) -> torch.Tensor:
    """[chunk, context] → the relative-position row HF's blocked attention adds at (query offset,
    context slot); -1 where it adds padding. Read off HF's own `_rel_shift`."""
    chunk, rows = attention.chunk_size, attention.context_size // 2 + 1
    probe = (torch.arange(rows, dtype=torch.float32) + 1).expand(1, 1, 1, chunk, rows).contiguous()
    return attention._rel_shift(probe)[0, 0, 0].round().long() - 1


class AudioEncoder(nn.Module):
    """Built from HF's audio tower and `embed_audio` (`load_audio_modules`, or a loaded
    `Gemma4ForConditionalGeneration`'s `model.audio_tower` / `model.embed_audio`)."""

    def __init__(self, tower, embedder, max_frames: int, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        cfg = tower.config
        self.dtype, self.max_frames = dtype, max_frames
        self.feature_size = 128
        frames = max_frames
        for _ in range(2):
            frames = (frames + 2 - 3) // 2 + 1
        self.max_soft_tokens = frames
        self.hidden, self.heads = cfg.hidden_size, cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.eps, self.proj_eps = cfg.rms_norm_eps, embedder.eps
        self.text_hidden = embedder.text_hidden_size
        self.cap = float(cfg.attention_logit_cap)
        self.clip = min(float(cfg.gradient_clipping), float(torch.finfo(dtype).max))
        self.residual_weight = float(cfg.residual_weight)

        def param(t: torch.Tensor, dt: torch.dtype = dtype) -> nn.Parameter:
            return nn.Parameter(t.detach().to(dt).clone(), requires_grad=False)

        sub = tower.subsample_conv_projection
        self.conv0, self.norm0 = param(sub.layer0.conv.weight), param(sub.layer0.norm.weight, torch.float32)
        self.conv1, self.norm1 = param(sub.layer1.conv.weight), param(sub.layer1.norm.weight, torch.float32)
        self.sub_eps = float(sub.layer0.norm.eps)
        self.input_proj = param(sub.input_proj_linear.weight)
        self.bounds: dict[str, tuple[float, float, float, float]] = {}
        attention0 = tower.layers[0].self_attn
        table = relative_index_table(attention0)  # [chunk, context]
        past = attention0.max_past_horizon
        # distance i - j → relative row (every query offset must agree), for the band HF allows
        window = cfg.attention_context_left - 1
        rel = {}
        for q in range(table.shape[0]):
            for c in range(table.shape[1]):
                dist = q + past - c
                if 0 <= dist < window and int(table[q, c]) >= 0:
                    if rel.setdefault(dist, int(table[q, c])) != int(table[q, c]):
                        raise ValueError("HF's relative shift is not a function of the distance")
        t = self.max_soft_tokens
        i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
        band = (i - j >= 0) & (i - j < window) & (cfg.attention_context_right == 0)
        index = torch.zeros(t, t, dtype=torch.long)
        for dist, row in rel.items():
            index[(i - j) == dist] = row
        self.register_buffer("band", band)
        self.register_buffer("rel_index", index)
        position = tower.rel_pos_enc(torch.zeros(1, 1, cfg.hidden_size))  # [1, R, hidden]
        self.layers = nn.ModuleList()
        for n, layer in enumerate(tower.layers):
            m = nn.Module()
            a = layer.self_attn
            for name in ("q_proj", "k_proj", "v_proj", "post"):
                self._linear(m, f"{n}.attn.{name}", name, getattr(a, name))
            rel_k = a.relative_k_proj(position.float())[0].view(-1, self.heads, self.head_dim)  # [R, H, d]
            m.rel_k = param(rel_k.permute(1, 2, 0), torch.float32)  # [H, d, R]
            m.q_scale = param(a.q_scale * F.softplus(a.per_dim_scale.float()), torch.float32)
            m.k_scale = float(a.k_scale)
            for ff in ("feed_forward1", "feed_forward2"):
                block = getattr(layer, ff)
                f = nn.Module()
                self._linear(f, f"{n}.{ff}.1", "w1", block.ffw_layer_1)
                self._linear(f, f"{n}.{ff}.2", "w2", block.ffw_layer_2)
                f.pre, f.post = param(block.pre_layer_norm.weight, torch.float32), param(block.post_layer_norm.weight, torch.float32)
                setattr(m, ff, f)
            lc = layer.lconv1d
            self._linear(m, f"{n}.lconv.start", "linear_start", lc.linear_start)
            self._linear(m, f"{n}.lconv.end", "linear_end", lc.linear_end)
            m.dw = param(lc.depthwise_conv1d.weight)  # [hidden, 1, K]
            m.dw_pad = int(lc.depthwise_conv1d.left_pad)
            m.lc_pre, m.lc_norm = param(lc.pre_layer_norm.weight, torch.float32), param(lc.conv_norm.weight, torch.float32)
            for name in ("norm_pre_attn", "norm_post_attn", "norm_out"):
                setattr(m, name, param(getattr(layer, name).weight, torch.float32))
            self.layers.append(m)
        self.output_proj, self.output_bias = param(tower.output_proj.weight), param(tower.output_proj.bias)
        self.projection = param(embedder.embedding_projection.weight)

    def _linear(self, holder: nn.Module, key: str, name: str, clippable) -> None:
        setattr(holder, name, nn.Parameter(clippable.linear.weight.detach().to(self.dtype).clone(), requires_grad=False))
        if getattr(clippable, "use_clipped_linears", False):
            bounds = tuple(float(getattr(clippable, b)) for b in ("input_min", "input_max", "output_min", "output_max"))
            if any(math.isfinite(b) for b in bounds):
                self.bounds[key] = bounds
        setattr(holder, f"{name}_key", key)

    def _apply(self, holder, name: str, x: torch.Tensor) -> torch.Tensor:
        bounds = self.bounds.get(getattr(holder, f"{name}_key"))
        if bounds:
            x = torch.clamp(x, bounds[0], bounds[1])
        x = F.linear(x, getattr(holder, name))
        if bounds:
            x = torch.clamp(x, bounds[2], bounds[3])
        return x

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, -self.clip, self.clip)

    def _feed_forward(self, f, h: torch.Tensor) -> torch.Tensor:
        z = _rms(self._clamp(h), f.pre, self.eps)
        z = self._apply(f, "w2", F.silu(self._apply(f, "w1", z)))
        return h + _rms(self._clamp(z), f.post, self.eps) * self.residual_weight

    def _attention(self, m, h: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        t, d = h.shape[0], self.head_dim
        q = self._apply(m, "q_proj", h).float().view(t, self.heads, d) * m.q_scale
        k = self._apply(m, "k_proj", h).float().view(t, self.heads, d) * m.k_scale
        v = self._apply(m, "v_proj", h).float().view(t, self.heads, d)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [H, T, d]
        ac = torch.matmul(q, k.transpose(-1, -2))  # [H, T, T]
        per_distance = torch.matmul(q, m.rel_k)  # [H, T, R]
        bd = torch.gather(per_distance, 2, self.rel_index.unsqueeze(0).expand(self.heads, t, t))
        scores = torch.tanh((ac + bd) / self.cap) * self.cap
        scores = torch.where(allowed, scores, torch.full_like(scores, MASKED))
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).transpose(0, 1).reshape(t, self.heads * d)
        return self._apply(m, "post", out.to(self.dtype))

    def _light_conv(self, m, h: torch.Tensor) -> torch.Tensor:
        z = self._apply(m, "linear_start", _rms(h, m.lc_pre, self.eps))
        z = F.glu(z, dim=-1)  # [T, hidden]
        z = F.conv1d(F.pad(z.transpose(0, 1).unsqueeze(0), (m.dw_pad, 0)), m.dw, groups=self.hidden)[0].transpose(0, 1)
        z = F.silu(_rms(self._clamp(z), m.lc_norm, self.eps))
        return h + self._apply(m, "linear_end", z)

    def _subsample(self, x, mask, weight, norm):
        x = x * mask[:, None, :, None].to(x.dtype)
        x = F.conv2d(x, weight, stride=2, padding=1)
        x = F.layer_norm(x.permute(0, 2, 3, 1).float(), (x.shape[1],), norm, None, self.sub_eps).to(self.dtype)
        return F.relu(x).permute(0, 3, 1, 2), mask[:, ::2]

    def forward(self, input_features: torch.Tensor, input_features_mask: torch.Tensor) -> torch.Tensor:
        mask = input_features_mask > 0  # [1, F]
        x = input_features.to(self.dtype).unsqueeze(1)  # [1, 1, F, 128]
        x, mask = self._subsample(x, mask, self.conv0, self.norm0)
        x, mask = self._subsample(x, mask, self.conv1, self.norm1)
        t = x.shape[2]
        h = F.linear(x.permute(0, 2, 3, 1).reshape(t, -1), self.input_proj)  # [T, hidden]
        allowed = (self.band & mask[0][None, :]).unsqueeze(0)  # [1, T, T]: band, real keys
        for m in self.layers:
            h = self._feed_forward(m.feed_forward1, h)
            attn = self._attention(m, _rms(self._clamp(h), m.norm_pre_attn, self.eps), allowed)
            h = h + _rms(self._clamp(attn), m.norm_post_attn, self.eps)
            h = self._light_conv(m, h)
            h = self._feed_forward(m.feed_forward2, h)
            h = _rms(self._clamp(h), m.norm_out, self.eps)
        h = F.linear(h, self.output_proj, self.output_bias)
        return F.linear(_rms(h, None, self.proj_eps), self.projection)  # [T, text hidden]

    def example_inputs(self) -> dict:
        return {"input_features": torch.zeros((1, self.max_frames, self.feature_size), dtype=self.dtype),
                "input_features_mask": torch.ones((1, self.max_frames), dtype=torch.int32)}


def load_audio_modules(checkpoint):
    """(audio tower, embed_audio) of an E2B/E4B checkpoint in fp32, read tensor by tensor (the
    text decoder is never loaded)."""
    from transformers.models.gemma4.modeling_gemma4 import Gemma4AudioModel

    from ..encoder_weights import load_encoder_modules
    from .clipset import AudioError

    return load_encoder_modules(
        checkpoint, "audio", Gemma4AudioModel, AudioError,
        no_tower_hint="audio input needs a Gemma 4 E2B/E4B checkpoint with an audio encoder",
        mismatch_hint="the checkpoint is incomplete or not a Gemma 4 E2B/E4B checkpoint with audio")


def hf_audio_features(hf_model, input_features, input_features_mask) -> torch.Tensor:
    """HF's own audio soft tokens for one prepared clip: [num_soft_tokens, hidden] fp32."""
    with torch.no_grad():
        out = hf_model.model.get_audio_features(torch.as_tensor(input_features)[None].float(),
                                                torch.as_tensor(input_features_mask)[None].bool(), return_dict=True)
    return out.pooler_output[0][out.attention_mask[0]]
