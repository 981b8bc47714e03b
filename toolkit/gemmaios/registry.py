"""What gemmaios knows about the real Gemma 4 targets, checked against each checkpoint's config.

Facts come from the public model cards in `shared/seeds/` (E4B, 12B, 31B) and the zoo's
conversion notes (E2B); a field left `None` is not asserted and is read from config.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import RegistryError


@dataclass(frozen=True)
class ModelSpec:
    key: str
    hf_id: str
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int | None
    head_dim: int
    global_head_dim: int
    vocab_size: int
    intermediate_size: int | None
    hidden_size_per_layer_input: int  # 0: no per-layer embeddings
    num_kv_shared_layers: int
    num_global_key_value_heads: int | None = None
    attention_k_eq_v: bool | None = None
    sliding_window: int | None = None  # keys a sliding layer attends to (None: not asserted)
    final_logit_softcapping: float = 30.0
    source: str = ""

    @property
    def has_ple(self) -> bool:
        return self.hidden_size_per_layer_input > 0

    @property
    def kv_slots(self) -> int:
        """Layers that own a KV cache (the rest read a source layer's cache)."""
        return self.num_hidden_layers - self.num_kv_shared_layers

    def as_dict(self) -> dict:
        return asdict(self)


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in [
        ModelSpec(
            key="e2b",
            hf_id="google/gemma-4-E2B-it-qat-q4_0-unquantized",
            num_hidden_layers=35,
            hidden_size=1536,
            num_attention_heads=8,
            num_key_value_heads=1,
            head_dim=256,
            global_head_dim=512,
            vocab_size=262144,
            intermediate_size=None,
            hidden_size_per_layer_input=256,
            num_kv_shared_layers=20,
            source="coreai-model-zoo conversion notes (15 KV slots of 35 layers)",
        ),
        ModelSpec(
            key="e4b",
            hf_id="google/gemma-4-E4B-it-qat-q4_0-unquantized",
            num_hidden_layers=42,
            hidden_size=2560,
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=256,
            global_head_dim=512,
            vocab_size=262144,
            intermediate_size=10240,
            hidden_size_per_layer_input=256,
            num_kv_shared_layers=18,
            sliding_window=512,
            source="seed 002 (E4B Core AI model card)",
        ),
        ModelSpec(
            key="12b",
            hf_id="google/gemma-4-12B-it-qat-q4_0-unquantized",
            num_hidden_layers=48,
            hidden_size=3840,
            num_attention_heads=16,
            num_key_value_heads=None,
            head_dim=256,
            global_head_dim=512,
            vocab_size=262144,
            intermediate_size=None,
            hidden_size_per_layer_input=0,
            num_kv_shared_layers=0,
            num_global_key_value_heads=1,
            attention_k_eq_v=True,
            source="seeds 001/003 (12B Core AI model cards)",
        ),
        ModelSpec(
            key="31b",
            hf_id="google/gemma-4-31B-it-qat-q4_0-unquantized",
            num_hidden_layers=60,
            hidden_size=5376,
            num_attention_heads=32,
            num_key_value_heads=16,
            head_dim=256,
            global_head_dim=512,
            vocab_size=262144,
            intermediate_size=21504,
            hidden_size_per_layer_input=0,
            num_kv_shared_layers=0,
            num_global_key_value_heads=4,
            attention_k_eq_v=True,
            source="seeds 000/004 (31B model cards)",
        ),
    ]
}

DEFAULT_MODEL = MODELS["e4b"].hf_id


def find_model(name: str) -> ModelSpec | None:
    """Look a model up by registry key or HF id (case-insensitive); None if unknown."""
    low = name.lower()
    for spec in MODELS.values():
        if low in (spec.key, spec.hf_id.lower()):
            return spec
    return None


def get_model(name: str) -> ModelSpec:
    spec = find_model(name)
    if spec is None:
        known = ", ".join(f"{s.key} ({s.hf_id})" for s in MODELS.values())
        raise RegistryError(f"unknown model {name!r}", hint=f"known models: {known}; or pass a local folder")
    return spec


def _config_value(text_config: dict, field: str):
    if field == "global_head_dim":
        return text_config.get("global_head_dim", _per_layer_global_head_dim(text_config))
    return text_config.get(field)


def _per_layer_global_head_dim(text_config: dict):
    per_layer = text_config.get("per_layer_config") or {}
    for override in per_layer.values():
        if isinstance(override, dict) and "head_dim" in override:
            return override["head_dim"]
    return None


def check_against_config(spec: ModelSpec, text_config: dict) -> list[str]:
    """Differences between the registry and a checkpoint's text config ("field: registry X, config Y")."""
    problems = []
    for f in fields(ModelSpec):
        if f.name in ("key", "hf_id", "source"):
            continue
        expected = getattr(spec, f.name)
        if expected is None:
            continue
        actual = _config_value(text_config, f.name)
        if actual is None:
            continue
        if f.name == "hidden_size_per_layer_input" and not actual:
            actual = 0
        if actual != expected:
            problems.append(f"{f.name}: registry {expected}, config.json {actual}")
    return problems


def verify_checkpoint_config(spec: ModelSpec, text_config: dict) -> None:
    problems = check_against_config(spec, text_config)
    if problems:
        raise RegistryError(
            f"checkpoint config.json does not match the registry entry {spec.key!r} ({spec.hf_id}): "
            + "; ".join(problems),
            hint="the download may be a different model or revision; re-download it, or pass the folder "
            "as a local checkpoint so gemmaios reads its config as is",
        )
