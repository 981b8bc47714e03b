"""Verification against Hugging Face's get_per_layer_inputs on sampled and special ids, within the int8 error
bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .layout import TablesMismatch
from .reader import PleTables, load_tables
from .source import table_tensor_name

DEFAULT_SAMPLE = 32


@dataclass
class VerifyReport:
    ids: list[int]
    max_abs_error: float
    max_bound_ratio: float  # max over elements of |gather - hf| / bound; ≤ 1 passes
    reference: str

    @property
    def ok(self) -> bool:
        return self.max_bound_ratio <= 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "max_abs_error": self.max_abs_error,
                "max_bound_ratio": self.max_bound_ratio, "reference": self.reference, "ok": self.ok}


def sample_ids(vocab: int, *, special: Iterable[int | None] = (), count: int = DEFAULT_SAMPLE, seed: int = 0) -> list[int]:
    """First, last and the given special ids, then distinct random ids up to `count` (deterministic)."""
    chosen: list[int] = []
    for v in (0, vocab - 1, *special):
        if v is not None and 0 <= int(v) < vocab and int(v) not in chosen:
            chosen.append(int(v))
    rng = np.random.default_rng(seed)
    for v in rng.permutation(vocab):
        if len(chosen) >= count:
            break
        if int(v) not in chosen:
            chosen.append(int(v))
    return chosen


def _special_ids(text_config: dict) -> list[int]:
    ids: list[int] = []
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = text_config.get(key)
        ids.extend(value if isinstance(value, list) else [value] if value is not None else [])
    return ids


def hf_per_layer_inputs(checkpoint, ids: list[int]):
    """HF's `Gemma4TextModel.get_per_layer_inputs` for `ids`, as f32 numpy [T, L, D].

    The text model is built on the meta device from the checkpoint's config (no weights
    allocated) and its `embed_tokens_per_layer` is replaced by HF's own
    Gemma4TextScaledWordEmbedding holding only the requested rows, read with safetensors in
    the checkpoint's dtype; HF's method then does the lookup, scale and reshape. This keeps
    verification cheap for the 5.6 GB E4B table and exercises HF's code, not ours.
    """
    import torch
    from safetensors import safe_open
    from transformers.models.gemma4.configuration_gemma4 import Gemma4TextConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4TextModel, Gemma4TextScaledWordEmbedding

    name = table_tensor_name(checkpoint)
    text_config = {k: v for k, v in checkpoint.text_config.items() if k not in ("architectures",)}
    config = Gemma4TextConfig(**text_config)
    with torch.device("meta"):
        model = Gemma4TextModel(config)
    with safe_open(checkpoint.tensor_file(name), "pt") as handle:
        table = handle.get_slice(name)
        rows = torch.cat([table[v:v + 1] for v in ids])
    module = Gemma4TextScaledWordEmbedding(len(ids), rows.shape[1], None,
                                           embed_scale=config.hidden_size_per_layer_input**0.5)
    module.to(rows.dtype)  # as from_pretrained in the checkpoint's dtype (buffer included)
    with torch.no_grad():
        module.weight.copy_(rows)
        model.embed_tokens_per_layer = module
        out = model.get_per_layer_inputs(torch.arange(len(ids))[None, :])
    return out[0].float().numpy()


def error_bound(tables: PleTables, ids: list[int], reference: np.ndarray) -> np.ndarray:
    """Per-element bound on |gather - hf| (see the sidecar's `error_bound`)."""
    half_step = (np.asarray(tables.scale[ids], np.float64) * math.sqrt(tables.dim) / 2)[:, None, None]
    return (1 + 2**-10) * (half_step + 2**-11 * np.abs(reference.astype(np.float64))) + 2**-24


def compare_to_reference(tables: PleTables, ids: list[int], reference: np.ndarray, label: str) -> VerifyReport:
    gathered = tables.gather(ids)[0].astype(np.float64)
    if not np.all(np.isfinite(gathered)):
        raise TablesMismatch("the gathered rows overflow fp16", hint="the table values exceed fp16 range")
    error = np.abs(gathered - reference.astype(np.float64))
    ratio = error / error_bound(tables, ids, reference)
    return VerifyReport(ids=list(ids), max_abs_error=float(error.max(initial=0.0)),
                        max_bound_ratio=float(ratio.max(initial=0.0)), reference=label)


def verify_tables(checkpoint, out_dir: Path, ids: list[int] | None = None, *, count: int = DEFAULT_SAMPLE) -> VerifyReport:
    """Gather `ids` (default: first, last, pad/bos/eos and a random sample) and compare with HF.

    Raises TablesMismatch when any element is outside the int8 + fp16 error bound.
    """
    tables = load_tables(out_dir)
    if ids is None:
        ids = sample_ids(tables.vocab, special=_special_ids(checkpoint.text_config), count=count)
    report = compare_to_reference(tables, ids, hf_per_layer_inputs(checkpoint, ids),
                                  "transformers Gemma4TextModel.get_per_layer_inputs")
    if not report.ok:
        raise TablesMismatch(
            f"gathered per-layer inputs differ from HF by up to {report.max_abs_error:.3g} "
            f"({report.max_bound_ratio:.2f}× the int8 bound) over ids {ids[:8]}...",
            hint="the table files or their sidecar do not belong to this checkpoint; rerun with --force",
        )
    return report
