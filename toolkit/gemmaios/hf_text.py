"""transformers' own text decoder for a checkpoint: the reference our gates and the oracle compare against.

One place decides which Hugging Face class runs a checkpoint's text path, so the parity
gates and the oracle can never disagree about it:
- `gemma4_text`: Gemma4ForCausalLM, as saved;
- `gemma4` (E2B/E4B with encoders): Gemma4ForCausalLM on `config.text_config`, weights
  `model.language_model.*` mapped onto its `model.*`;
- `gemma4_unified` (the 12B as it ships): Gemma4UnifiedForCausalLM on `config.text_config`,
  mapped the same way; the encoder-free embedders (`model.vision_embedder.*`,
  `model.embed_vision.*`, `model.embed_audio.*`) are not part of the text path and stay unread.
"""

from __future__ import annotations

from typing import Any

from .checkpoint import MULTIMODAL_MODEL_TYPES, Checkpoint

TEXT_DECODER_KEY_MAPPING = {r"^model\.language_model\.": "model."}
# Tensors of the multimodal releases that are not the text decoder: expected, and not reported
# as "UNEXPECTED" on every load (a missing decoder weight is still reported).
NOT_TEXT_DECODER = [r"^model\.(vision_tower|audio_tower|embed_vision|embed_audio|vision_embedder)\."]


def hf_text_class_name(checkpoint: Checkpoint) -> str:
    """The transformers class that runs `checkpoint`'s text decoder."""
    return "Gemma4UnifiedForCausalLM" if checkpoint.model_type == "gemma4_unified" else "Gemma4ForCausalLM"


def load_hf_text_decoder(checkpoint: Checkpoint, *, dtype: Any = None, attn_implementation: str | None = None):
    """The checkpoint's text decoder as transformers builds it (fp32 unless `dtype`), in eval mode."""
    import torch
    import transformers
    from transformers import AutoConfig

    cls = getattr(transformers, hf_text_class_name(checkpoint))
    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    config = AutoConfig.from_pretrained(checkpoint.path)
    if checkpoint.model_type in MULTIMODAL_MODEL_TYPES:
        config = config.text_config
        kwargs["key_mapping"] = TEXT_DECODER_KEY_MAPPING
        cls = type(cls.__name__, (cls,), {"_keys_to_ignore_on_load_unexpected": NOT_TEXT_DECODER})
    return cls.from_pretrained(checkpoint.path, config=config, **kwargs).eval()
