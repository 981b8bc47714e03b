"""Which Gemma 4 configs and layers need the flash-decode kernel (the stock SDPA's full-layer query limit)."""

from __future__ import annotations

import dataclasses
from typing import Any

# Largest full-layer decode query (heads x global head dim) known to run on the stock SDPA: E2B/E4B,
# 8 x 512. 12B (16 x 512) and 31B (32 x 512) crash at the first token (seeds 000/001). Only full
# layers count: the shipped 31B bundle keeps the stock SDPA on its 32 x 256 sliding layers.
STOCK_SDPA_MAX_QUERY_ELEMENTS = 8 * 512


def text_config_dict(config: Any) -> dict:
    """A Gemma 4 text config as a dict: from a transformers config, a config.json dict or a ModelSpec."""
    if isinstance(config, dict):
        return config.get("text_config", config)
    if hasattr(config, "get_text_config"):  # a transformers config
        return config.get_text_config().to_dict()
    if dataclasses.is_dataclass(config):  # a registry ModelSpec
        return dataclasses.asdict(config)
    return vars(config)


def full_attention_layers(config: Any) -> list[int]:
    """Indices of the full (global) attention layers of a Gemma 4 text config (object or config.json dict)."""
    cfg = text_config_dict(config)
    layer_types = cfg.get("layer_types")
    if not layer_types:
        n = int(cfg["num_hidden_layers"])
        layer_types = [
            "full_attention" if (i + 1) % 6 == 0 or i == n - 1 else "sliding_attention" for i in range(n)
        ]
    return [i for i, t in enumerate(layer_types) if t == "full_attention"]


def full_head_dim(cfg: dict) -> int:
    if cfg.get("global_head_dim"):
        return int(cfg["global_head_dim"])
    for override in (cfg.get("per_layer_config") or {}).values():
        if isinstance(override, dict) and override.get("head_dim"):
            return int(override["head_dim"])
    return int(cfg.get("head_dim") or 0)


def needs_flash_decode(config: Any) -> bool:
    """True when the full layers' decode query (heads x global head dim) is too big for the stock SDPA.

    That is 12B (16 x 512) and 31B (32 x 512), and their tiny stand-ins; not E2B/E4B (8 x 512)
    or the tiny E4B-shaped model.
    """
    cfg = text_config_dict(config)
    if not full_attention_layers(cfg):
        return False
    return int(cfg["num_attention_heads"]) * full_head_dim(cfg) > STOCK_SDPA_MAX_QUERY_ELEMENTS
