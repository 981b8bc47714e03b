"""The Core AI LanguageBundle around the converted .aimodel: metadata.json and tokenizer/.

Field names follow what Apple's Swift `LanguageBundle` decodes (metadata schema 0.2:
`kind`, `name`, `assets.main`, `language.{tokenizer, vocab_size, max_context_length,
embedded_tokenizer, function_map}`); our own facts live under `gemmaios`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import __version__
from .files import write_json_atomic

METADATA_VERSION = "0.2"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


def copy_tokenizer(checkpoint_dir: Path, dest: Path, chat_template: str | None = None) -> list[Path]:
    """The checkpoint's tokenizer files into the bundle's tokenizer/; `chat_template` (the template a
    Gemma 4 checkpoint without one gets) is written as chat_template.jinja when given."""
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        src = checkpoint_dir / name
        if src.is_file():
            shutil.copyfile(src, dest / name)
            copied.append(dest / name)
    if chat_template is not None:
        (dest / "chat_template.jinja").write_text(chat_template)
        copied.append(dest / "chat_template.jinja")
    return copied


def write_metadata(
    bundle_dir: Path,
    *,
    name: str,
    aimodel: str,
    tokenizer: str,
    vocab_size: int,
    max_context: int,
    gemmaios: dict,
    prefill_functions: list[str] | tuple[str, ...] = (),
    roles: dict[str, list[str]] | None = None,
) -> Path:
    """`prefill_functions`: the asset's `prefill_C` functions, listed under the `prefill` role of
    `function_map` (upstream's FunctionMap decodes any role to a list of names; the stock engine
    reads only `main`). `roles`: further roles, each its functions (the 12B's `prefill_multimodal`,
    `embed_vision`, `embed_audio`)."""
    function_map = {"main": ["main"]}
    if prefill_functions:
        function_map["prefill"] = list(prefill_functions)
    for role, names in (roles or {}).items():
        function_map[role] = list(names)
    metadata = {
        "metadata_version": METADATA_VERSION,
        "kind": "llm",
        "name": name,
        "assets": {"main": aimodel},
        "language": {
            "tokenizer": tokenizer,
            "vocab_size": vocab_size,
            "max_context_length": max_context,
            "embedded_tokenizer": True,
            "function_map": function_map,
        },
        "source": {"model_definition": "torch", "hf_model_id": tokenizer},
        "compression": None if gemmaios.get("quant") == "fp16" else gemmaios.get("quant"),
        "gemmaios": {"toolkit_version": __version__, **gemmaios},
    }
    path = bundle_dir / "metadata.json"
    write_json_atomic(path, metadata)
    return path
