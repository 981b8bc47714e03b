"""An encoder tower and its embedder (vision, audio) of a Gemma 4 multimodal checkpoint in fp32,
read tensor by tensor from the checkpoint's safetensors (the text decoder is never loaded)."""

from __future__ import annotations

from typing import Any

from .errors import GemmaiosError


def load_encoder_modules(checkpoint: Any, kind: str, tower_class: type, error: type[GemmaiosError], *,
                         no_tower_hint: str, mismatch_hint: str, ignore_missing: tuple[str, ...] = ()):
    """(`kind` tower, embed_`kind`) of `checkpoint` (kind: "vision" or "audio"), fp32 in eval mode:
    the `model.<kind>_tower.*` and `model.embed_<kind>.*` tensors into `tower_class(config.<kind>_config)`
    and a Gemma4MultimodalEmbedder. `error` names a checkpoint without that tower or whose tensors do
    not fit the config (missing names containing one of `ignore_missing` aside)."""
    from safetensors import safe_open
    from transformers import Gemma4Config
    from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder

    config = Gemma4Config.from_dict(checkpoint.config)
    encoder_config = getattr(config, f"{kind}_config")
    if encoder_config is None:
        raise error(f"{checkpoint.model_id} has no {kind} tower", hint=no_tower_hint)
    tower = tower_class(encoder_config).float().eval()
    embedder = Gemma4MultimodalEmbedder(encoder_config, config.text_config).float().eval()
    wanted = {f"model.{kind}_tower.": tower, f"model.embed_{kind}.": embedder}
    states: dict[str, dict] = {prefix: {} for prefix in wanted}
    for name, path in checkpoint.tensor_index.items():
        for prefix in wanted:
            if name.startswith(prefix):
                with safe_open(str(path), framework="pt") as fh:
                    states[prefix][name[len(prefix):]] = fh.get_tensor(name).float()
    for prefix, module in wanted.items():
        missing, unexpected = module.load_state_dict(states[prefix], strict=False)
        missing = [m for m in missing if not any(part in m for part in ignore_missing)]
        if missing or unexpected:
            raise error(f"{checkpoint.model_id}: {prefix}* tensors do not match the {kind} config "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})", hint=mismatch_hint)
    return tower, embedder
