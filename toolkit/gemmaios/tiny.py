"""The built-in tiny model: a real Gemma 4 text checkpoint, random weights, generated locally.

It keeps every structural feature of Gemma 4 E4B at toy size (per-layer embeddings,
KV-shared trailing layers, sliding + full layers with full every 6th and last, dual head
dims, final logit softcap, tied embeddings) so every pipeline step runs here for real.
Generation is deterministic: same seed, same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import RegistryError
from .pipeline import replace_dir

TINY_ID = "tiny"
TINY_SEED = 1234
TINY_VOCAB = 384
# Bump when anything below changes: cached tiny checkpoints are regenerated on mismatch.
TINY_FORMAT = 1

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]

# A small, varied English text: enough for BPE merges that make the prompts tokenise into
# several tokens each, and deterministic because it is part of the source.
_CORPUS = """
The capital of France is Paris. The capital of Japan is Tokyo. The capital of Italy is Rome.
Water boils at one hundred degrees at sea level, and it freezes at zero degrees.
A phone runs the model on its own chip, so the answer never leaves the device.
Write a short poem about the sea. The sea is wide and the sky is blue above it.
Explain why the sky is blue: sunlight scatters from the air, and blue light scatters most.
Count from one to ten: one, two, three, four, five, six, seven, eight, nine, ten.
What is two plus two? Two plus two is four. What is three times three? It is nine.
The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.
Memory bandwidth limits how fast a language model can decode each new token.
Gemma is a family of open models. The tokenizer splits text into pieces called tokens.
Please summarise the story in one sentence. Translate hello into French: bonjour.
An iPhone has a fast GPU and a limited amount of memory for each app.
"""

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def tiny_text_config_kwargs() -> dict:
    """The tiny model's Gemma4TextConfig arguments (E4B structure at toy size)."""
    return dict(
        vocab_size=TINY_VOCAB,
        vocab_size_per_layer_input=TINY_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=12,  # full attention at layers 5 and 11 (every 6th, and last)
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        global_head_dim=32,
        hidden_size_per_layer_input=8,
        num_kv_shared_layers=4,  # layers 8..11 read the caches of layers 7 (sliding) and 5 (full)
        sliding_window=8,  # small, so 32-token tests cross the window
        max_position_embeddings=1024,
        final_logit_softcapping=30.0,
        tie_word_embeddings=True,
        attention_k_eq_v=False,
        pad_token_id=0,
        eos_token_id=[1, 6],
        bos_token_id=2,
        initializer_range=0.08,
    )


def _tiny_dense_text_config_kwargs(num_attention_heads: int, num_global_key_value_heads: int) -> dict:
    """A dense 12B/31B-structured tiny config: no PLE, no KV sharing, k_eq_v full layers, head_dim 512 there."""
    return dict(
        vocab_size=TINY_VOCAB,
        vocab_size_per_layer_input=TINY_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=12,  # full attention at layers 5 and 11 (every 6th, and last)
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads // 2,  # sliding layers
        head_dim=16,
        # The real global head dim: heads x 512 is what the flash-decode kernel exists for.
        global_head_dim=512,
        num_global_key_value_heads=num_global_key_value_heads,
        attention_k_eq_v=True,  # full layers: value = v_norm(k_proj(x)), no v_proj
        hidden_size_per_layer_input=0,
        num_kv_shared_layers=0,
        sliding_window=8,
        max_position_embeddings=1024,
        final_logit_softcapping=30.0,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=[1, 6],
        bos_token_id=2,
        initializer_range=0.08,
    )


def tiny_12b_text_config_kwargs() -> dict:
    """Gemma 4 12B's structure at toy size: 16 query heads, 1 global KV head on the full layers."""
    return _tiny_dense_text_config_kwargs(num_attention_heads=16, num_global_key_value_heads=1)


def tiny_31b_text_config_kwargs() -> dict:
    """Gemma 4 31B's structure at toy size: 32 query heads, 4 global KV heads on the full layers."""
    return _tiny_dense_text_config_kwargs(num_attention_heads=32, num_global_key_value_heads=4)


TINY_VARIANTS = {
    "e4b": tiny_text_config_kwargs,
    "12b": tiny_12b_text_config_kwargs,
    "31b": tiny_31b_text_config_kwargs,
}


def build_tiny_model(variant: str = "e4b"):
    """A tiny Gemma4ForCausalLM with deterministic random weights ("e4b" is the built-in tiny model)."""
    try:
        config_kwargs = TINY_VARIANTS[variant]()
    except KeyError:
        raise RegistryError(
            f"unknown tiny variant {variant!r}", hint=f"known: {sorted(TINY_VARIANTS)}"
        ) from None
    return _build_model(config_kwargs)


def train_tokenizer():
    """A byte-level BPE tokenizer with Gemma-style special tokens, trained on the built-in text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([line for line in _CORPUS.splitlines() if line.strip()], trainer=trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return tok


def _write_tokenizer(tok, out: Path) -> None:
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<bos>",
                "eos_token": "<eos>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "model_max_length": 1024,
                "add_bos_token": True,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
        + "\n"
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}, indent=2)
        + "\n"
    )
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE + "\n")


def _build_model(config_kwargs: dict | None = None):
    import torch
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    torch.manual_seed(TINY_SEED)
    config = Gemma4TextConfig(**(config_kwargs or tiny_text_config_kwargs()))
    model = Gemma4ForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(TINY_SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                # Norm scales near 1 with spread, so a norm bug shows up in parity.
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(config.initializer_range * torch.randn(param.shape, generator=generator))
        for i, layer in enumerate(model.model.layers):
            # Real checkpoints carry per-layer scalars != 1; make sure ours do too.
            layer.layer_scalar.fill_(0.75 + 0.05 * (i % 5))
    return model


def tiny_is_current(path: Path) -> bool:
    marker = path / "gemmaios_tiny.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("format") == TINY_FORMAT
    except json.JSONDecodeError:
        return False


def generate_tiny_checkpoint(out_dir: Path, variant: str = "e4b") -> Path:
    """Write the tiny checkpoint folder (config.json, model.safetensors, tokenizer files).

    `variant` picks the structure (see TINY_VARIANTS); "e4b" is the built-in tiny model.
    Written to a temporary sibling and renamed into place, so an interrupted run never
    leaves a half-written checkpoint behind.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out_dir.parent))
    try:
        model = build_tiny_model(variant)
        model.save_pretrained(tmp, safe_serialization=True)
        # generation_config.json carries a timestamp-free default; keep it for HF parity.
        _write_tokenizer(train_tokenizer(), tmp)
        marker = {"format": TINY_FORMAT, "seed": TINY_SEED, "note": "random weights, for tests"}
        if variant != "e4b":  # the built-in tiny model's marker (and so its bytes) stays as it was
            marker["variant"] = variant
        (tmp / "gemmaios_tiny.json").write_text(json.dumps(marker) + "\n")
        replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def default_tiny_dir() -> Path:
    base = os.environ.get("GEMMAIOS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gemmaios"
    )
    return Path(base) / f"tiny-v{TINY_FORMAT}"


def ensure_tiny_checkpoint(cache_dir: Path | None = None) -> Path:
    path = Path(cache_dir) if cache_dir else default_tiny_dir()
    if not tiny_is_current(path):
        generate_tiny_checkpoint(path)
    return path
