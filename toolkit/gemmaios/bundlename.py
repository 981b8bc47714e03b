"""A converted bundle's name (docs/contracts.md), derived in one place.

A leaf module (it imports nothing from gemmaios), so the convert step, the app step and the report
can all ask it without joining each other's imports.
"""

from __future__ import annotations

from pathlib import Path


def model_key(checkpoint) -> str:
    """The <key> of a bundle name: `tiny`, the registry key (e4b, ...), else the checkpoint folder's name;
    `_qat` for a QAT checkpoint."""
    if checkpoint.is_tiny:
        return "tiny"
    base = checkpoint.spec.key if checkpoint.spec else Path(checkpoint.model_id.rstrip("/")).name.lower()
    base = "".join(c if c.isalnum() else "_" for c in base).strip("_")
    return base + ("_qat" if "qat" in checkpoint.model_id.lower() and "qat" not in base else "")


def bundle_name(model_key: str, quant: str, ple: str, kernel_suffix: str = "", vision: bool = False,
                multimodal: bool = False, audio: bool = False) -> str:
    """`gemma4_<key>_decode_<quant>`, `_tbl` for table-as-input bundles, the flash-decode kernel's suffix
    (kernels.bundle_suffix) and `-vision` for image input (docs/contracts.md), `-audio` for E2B/E4B's
    audio asset, `-mm` for the 12B's
    multi-function multimodal asset (gemma4_unified). The one derivation: the convert step names the
    bundle with it, the app step falls back on it."""
    return (f"{BUNDLE_PREFIX}{model_key}{DECODE_MARK}{quant}" + ("_tbl" if ple == "tbl" else "") + kernel_suffix
            + ("-vision" if vision else "") + ("-audio" if audio else "") + ("-mm" if multimodal else ""))


BUNDLE_PREFIX, DECODE_MARK, QAT_SUFFIX = "gemma4_", "_decode_", "_qat"


def model_key_of(name: str) -> str | None:
    """The registry key a bundle name was made from (`model_key`'s result, `_qat` dropped), or None for a
    name `bundle_name` did not make. The quant is not read back from the name: runs record it
    (the transcript header's bundle.quant)."""
    if not name.startswith(BUNDLE_PREFIX) or DECODE_MARK not in name:
        return None
    key = name[len(BUNDLE_PREFIX):name.index(DECODE_MARK)]
    return key.removesuffix(QAT_SUFFIX) or None
