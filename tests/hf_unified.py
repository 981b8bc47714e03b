"""HF's Gemma4Unified image processor for the tests that check ours against it.

transformers' `Gemma4UnifiedImageProcessor` is torchvision-only (no PIL backend). The PyPI
torchvision wheel is built against CUDA torch: its compiled ops do not load beside the CPU torch
the toolkit pins, and its `_meta_registrations` then fails on import. The image transforms HF
calls (pil_to_tensor, resize) are pure Python over torch ops, so torchvision is imported with that
one module stood in for; nothing the tests call reaches the compiled ops.

`image_module()` is HF's module or None (no torchvision installed: `pip install --no-deps
torchvision==0.28.0`, the release paired with torch 2.13).
"""

from __future__ import annotations

import importlib
import sys
import types


def import_torchvision():
    try:
        return importlib.import_module("torchvision")
    except RuntimeError:  # its meta registrations need the compiled ops
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        return importlib.import_module("torchvision")
    except ImportError:
        return None


def image_module():
    """transformers.models.gemma4_unified.image_processing_gemma4_unified, or None without torchvision."""
    if import_torchvision() is None:
        return None
    return importlib.import_module("transformers.models.gemma4_unified.image_processing_gemma4_unified")
