"""Find, download and validate a Gemma 4 checkpoint: the built-in tiny model, a local folder, or an HF id."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError
from .registry import ModelSpec, find_model, verify_checkpoint_config
from .tiny import TINY_AUDIO_ID, TINY_ID, TINY_VISION_ID, ensure_tiny_checkpoint

# gemma4_text: a text-only decoder; gemma4: E2B/E4B with their vision/audio encoders;
# gemma4_unified: the 12B as it ships (encoder-free: embed_vision/embed_audio beside the decoder).
GEMMA4_MODEL_TYPES = {"gemma4", "gemma4_text", "gemma4_unified"}
MULTIMODAL_MODEL_TYPES = {"gemma4", "gemma4_unified"}
# What a request may ask of a checkpoint beyond text; see `require_inputs`.
INPUT_KINDS = ("text", "image", "audio")
# Files a conversion needs; the vision/audio towers of the multimodal release are not fetched.
DOWNLOAD_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "preprocessor_config.json",  # the image processor's patch size and soft-token budget (--vision)
    "processor_config.json",
]
TOKENIZER_FILE = "tokenizer.json"


class UnsupportedInput(CheckpointError):
    """A request asks for an input kind (image, audio) that gemmaios does not build for this checkpoint."""

    def __init__(self, message: str, *, kind: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.kind = kind


class PreQuantizedCheckpoint(CheckpointError):
    """The checkpoint's weights are already quantized (config `quantization_config`)."""


def check_not_prequantized(config: dict, path: Path | str) -> None:
    """Refuse a checkpoint whose config declares a quantization method (PreQuantizedCheckpoint).

    `quant_method: "gemma"` marks Google's mobile mixed-bit QAT checkpoints (wNa8o8: int weights
    *and* int8 activations and outputs). Their accuracy depends on that int8 activation path,
    which Core AI's GPU graph does not run (it computes in fp16): others measured about half the
    GSM8K accuracy lost with fp16 activations. Until that path is modelled and gated, gemmaios
    converts only unquantized (bf16/fp32) checkpoints and quantizes them itself (--quant/--recipe).
    """
    configs = [config] + [config[k] for k in ("text_config",) if isinstance(config.get(k), dict)]
    for cfg in configs:
        qc = cfg.get("quantization_config")
        if not isinstance(qc, dict):
            continue
        method = str(qc.get("quant_method") or "unknown")
        if method == "gemma":
            raise PreQuantizedCheckpoint(
                f"{path} is a pre-quantized Gemma checkpoint (quantization_config.quant_method \"gemma\": mixed-bit "
                "weights trained with int8 activations, wNa8o8); Core AI runs activations in fp16, which others "
                "measured to lose about half its GSM8K accuracy, and gemmaios does not model its int8 activation path",
                hint="convert the unquantized checkpoint (e.g. google/gemma-4-E4B-it) and choose the weights' "
                     "storage with --quant or --recipe (`gemmaios recipes`)")
        raise PreQuantizedCheckpoint(
            f"{path} is already quantized (quantization_config.quant_method {method!r}); gemmaios quantizes "
            "from unquantized weights and cannot read this storage",
            hint="convert the unquantized checkpoint and choose the storage with --quant or --recipe")


@dataclass
class Checkpoint:
    """A validated checkpoint folder and the facts later steps need."""

    path: Path
    model_id: str
    revision: str | None
    config: dict
    text_config: dict
    weight_files: list[Path]
    # Prefix of the text decoder's tensors: "model." (text-only) or "model.language_model." (multimodal).
    weight_prefix: str
    spec: ModelSpec | None = None
    tensor_index: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type"))

    @property
    def is_tiny(self) -> bool:
        return self.model_id == TINY_ID

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    def tensor_file(self, name: str) -> Path:
        """The safetensors file holding tensor `name` (full name, prefix included)."""
        try:
            return self.tensor_index[name]
        except KeyError:
            raise CheckpointError(
                f"tensor {name!r} is not in the checkpoint at {self.path}",
                hint="the checkpoint is incomplete or not a Gemma 4 text model; re-download it",
            ) from None

    def has_tensor(self, name: str) -> bool:
        return name in self.tensor_index

    def fingerprint(self) -> str:
        """Cheap identity: config bytes plus each weight file's name, size and header.

        Hashing the header (which holds every tensor's dtype, shape and offsets) catches a
        changed checkpoint without reading gigabytes of weights on every build.
        """
        digest = hashlib.sha256()
        digest.update((self.path / "config.json").read_bytes())
        for path in self.weight_files:
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_size).encode())
            digest.update(_safetensors_header(path))
        if self.tokenizer_path.exists():
            digest.update(self.tokenizer_path.read_bytes())
        return digest.hexdigest()

    def chat_template(self) -> tuple[str | None, str]:
        """(template, source): the checkpoint's own chat template (`chat_template.jinja`, or
        `chat_template` in tokenizer_config.json), source "checkpoint"; for a Gemma 4 checkpoint
        that ships none, Gemma 4's framing as gemmaios writes it (`gemmaios.tiny.CHAT_TEMPLATE`),
        source CHAT_TEMPLATE_FALLBACK; otherwise (None, "none")."""
        return checkpoint_chat_template(self.path, self.model_type)

    def describe(self) -> dict:
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "path": str(self.path),
            "model_type": self.config.get("model_type"),
            "registry_key": self.spec.key if self.spec else None,
            "weight_files": [p.name for p in self.weight_files],
            "weight_prefix": self.weight_prefix,
        }


CHAT_TEMPLATE_FALLBACK = "gemmaios-gemma4"  # the source named when a Gemma 4 checkpoint ships no chat template


def checkpoint_chat_template(path: Path, model_type: str) -> tuple[str | None, str]:
    """See Checkpoint.chat_template."""
    jinja = Path(path) / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(), "checkpoint"
    try:
        config = json.loads((Path(path) / "tokenizer_config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        config = {}
    own = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(own, str) and own.strip():
        return own, "checkpoint"
    if str(model_type).startswith("gemma4"):
        from .tiny import CHAT_TEMPLATE

        return CHAT_TEMPLATE, CHAT_TEMPLATE_FALLBACK
    return None, "none"


def _safetensors_header(path: Path) -> bytes:
    with open(path, "rb") as fh:
        raw_len = fh.read(8)
        if len(raw_len) < 8:
            return b""
        return fh.read(int.from_bytes(raw_len, "little"))


def resolve_checkpoint(source: str, *, tiny_dir: Path | None = None, revision: str | None = None) -> Checkpoint:
    """Turn a built-in model (`tiny`, `tiny-vision`, `tiny-audio`), a local folder or a Hugging Face id into a
    validated Checkpoint."""
    if source == TINY_ID:
        return load_checkpoint(ensure_tiny_checkpoint(tiny_dir), model_id=TINY_ID)
    from .vision.tinymodel import ensure_tiny_vision_checkpoint

    if source == TINY_VISION_ID:  # the tiny multimodal model (image input), see gemmaios.vision
        return load_checkpoint(ensure_tiny_vision_checkpoint(), model_id=TINY_VISION_ID)
    if source == TINY_AUDIO_ID:  # the tiny model that hears (audio input), see gemmaios.audio
        from .audio.tinymodel import ensure_tiny_audio_checkpoint

        return load_checkpoint(ensure_tiny_audio_checkpoint(), model_id=TINY_AUDIO_ID)
    check_model_source(source)
    local = Path(source).expanduser()
    if local.is_dir():
        return load_checkpoint(local, model_id=str(local.resolve()))
    path, resolved_revision = download_checkpoint(source, revision=revision)
    return load_checkpoint(path, model_id=source, revision=resolved_revision)


def check_model_source(source: str) -> None:
    """Refuse, before any download or build folder, a --model that is neither built in, a folder nor a hub id.

    A mistyped local path is the common case, so the message says first that the folder does
    not exist and then, separately, why the text cannot be a hub id either.
    """
    if source in (TINY_ID, TINY_VISION_ID, TINY_AUDIO_ID):
        return
    if not source.strip():
        raise CheckpointError("--model is empty", hint="pass a checkpoint folder, a Hugging Face id or `tiny`")
    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise CheckpointError(f"{local} is a file, not a checkpoint folder", hint="pass the folder that holds config.json")
        return
    problem = hub_id_problem(source)
    if problem:
        raise CheckpointError(
            f"there is no checkpoint folder {str(local)!r} (no such file or folder), "
            f"and {source!r} is not a Hugging Face id either: {problem}",
            hint="check the folder's path, or pass a hub id such as google/gemma-4-E4B-it "
                 "(`gemmaios models` lists the known ones), or `tiny`",
        )


def hub_id_problem(text: str) -> str | None:
    """Why `text` cannot be a Hugging Face model id (owner/name), or None when it can."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if text.count("/") != 1:
        return "a hub id is owner/name, with exactly one '/'"
    try:
        validate_repo_id(text)
    except HFValidationError:
        return ("owner and name may use only letters, digits, '-', '_' and '.', must not start or end with '-' "
                "or '.', and are at most 96 characters")
    return None


def download_checkpoint(hf_id: str, revision: str | None = None) -> tuple[Path, str | None]:
    """snapshot_download the text-decoder files; honours HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(hf_id, revision=revision, allow_patterns=DOWNLOAD_PATTERNS))
    except LocalEntryNotFoundError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise CheckpointError(
            f"{hf_id} is neither a local folder nor in the Hugging Face cache, and cannot be downloaded "
            f"({exc.__class__.__name__})",
            hint=(
                "unset HF_HUB_OFFLINE, or download it on a connected machine with "
                f"`huggingface-cli download {hf_id}` and copy the HF cache"
                if offline
                else "check the network, or pass a local checkpoint folder"
            ),
        ) from exc
    except HfHubHTTPError as exc:
        raise CheckpointError(
            f"downloading {hf_id} failed: {exc}",
            hint="Gemma is gated: accept its terms on huggingface.co and run `huggingface-cli login`",
        ) from exc
    revision_used = path.name if path.parent.name == "snapshots" else revision
    return path, revision_used


def load_checkpoint(path: Path, *, model_id: str, revision: str | None = None) -> Checkpoint:
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path} is missing", hint="a Hugging Face checkpoint folder holds config.json")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc})", hint="re-download the checkpoint") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} holds a JSON {type(config).__name__}, not the model's config object",
                              hint="re-download the checkpoint")

    model_type = config.get("model_type")
    if model_type not in GEMMA4_MODEL_TYPES:
        raise CheckpointError(
            f"{path} holds a {model_type!r} model, not Gemma 4 (model_type gemma4 or gemma4_text)",
            hint="gemmaios converts Gemma 4 checkpoints only; see `gemmaios models`",
        )
    check_not_prequantized(config, path)
    text_config = config.get("text_config", config) if model_type == "gemma4" else config
    if model_type == "gemma4_unified":
        text_config = unified_text_config(config, path)

    weight_files, tensor_index = _weight_files(path)
    prefix = _text_prefix(tensor_index)
    if not (path / TOKENIZER_FILE).is_file():
        raise CheckpointError(
            f"{path / TOKENIZER_FILE} is missing",
            hint="the bundle ships the tokenizer; re-download the checkpoint with its tokenizer files",
        )

    spec = find_model(model_id) if model_id != TINY_ID else None
    if spec is not None:
        verify_checkpoint_config(spec, text_config)
    return Checkpoint(
        path=path,
        model_id=model_id,
        revision=revision,
        config=config,
        text_config=text_config,
        weight_files=weight_files,
        weight_prefix=prefix,
        spec=spec,
        tensor_index=tensor_index,
    )


def _weight_files(path: Path) -> tuple[list[Path], dict[str, Path]]:
    from safetensors import SafetensorError, safe_open

    index_path = path / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"{index_path} is not a valid safetensors index (a JSON object with a `weight_map`; {exc!r})",
                hint="the download was interrupted or the file was edited: delete it and download it again",
            ) from exc
    else:
        names = sorted(p.name for p in path.glob("*.safetensors"))
    if not names:
        raise CheckpointError(
            f"no *.safetensors weights in {path}",
            hint="download the safetensors files (gemmaios does not read .bin / GGUF weights)",
        )
    files, tensor_index = [], {}
    for name in names:
        file = path / name
        if not file.is_file():
            raise CheckpointError(
                f"weight file {file} is listed in model.safetensors.index.json but missing",
                hint="the download was interrupted; run the build again to resume it, or re-download",
            )
        try:
            with safe_open(file, "np") as handle:
                keys = list(handle.keys())
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(
                f"weight file {file} is truncated or corrupt ({exc})",
                hint=f"delete {file.name} and download it again (`huggingface-cli download` resumes)",
            ) from exc
        files.append(file)
        tensor_index.update(dict.fromkeys(keys, file))
    return files, tensor_index


def _text_prefix(tensor_index: dict[str, Path]) -> str:
    for prefix in ("model.language_model.", "model."):
        if f"{prefix}embed_tokens.weight" in tensor_index:
            return prefix
    raise CheckpointError(
        "no text embedding (model.embed_tokens.weight or model.language_model.embed_tokens.weight) in the weights",
        hint="this is not a Gemma 4 text checkpoint, or its safetensors are incomplete",
    )


def unified_text_config(config: dict, path: Path | str = "the checkpoint") -> dict:
    """The text decoder's config of a `gemma4_unified` checkpoint, as the rest of gemmaios reads it.

    transformers' Gemma4UnifiedTextConfig is Gemma4TextConfig without the per-layer-embedding
    and mixture-of-experts fields; everything downstream (decode module, gates, tables) reads a
    Gemma4TextConfig dict, whose defaults would silently turn per-layer embeddings ON
    (hidden_size_per_layer_input=256). So they are set to "none" here. The decoder itself is the
    dense Gemma 4 one, weights under `model.language_model.`; `use_bidirectional_attention="vision"`
    only changes the mask inside image blocks, so the text path is plain causal and loads. With
    "all", every token would attend both ways: no token-by-token engine can run that, so it is refused.
    """
    text = config.get("text_config")
    if not isinstance(text, dict):
        raise CheckpointError(
            f"{path}/config.json is a gemma4_unified config without a `text_config` object",
            hint="re-download the checkpoint; its config.json is incomplete",
        )
    if text.get("use_bidirectional_attention") == "all":
        raise UnsupportedInput(
            f"{path} is a gemma4_unified model whose text attends bidirectionally (use_bidirectional_attention='all'); "
            "the decode engine generates one token at a time and needs causal attention",
            kind="text",
            hint="convert a causal Gemma 4 checkpoint (the released 12B uses 'vision': causal text, bidirectional image blocks)",
        )
    mapped = {k: v for k, v in text.items() if k not in ("model_type", "architectures")}
    mapped.update(
        model_type="gemma4_text",
        hidden_size_per_layer_input=0,
        vocab_size_per_layer_input=text.get("vocab_size"),
        enable_moe_block=False,
    )
    return mapped


def supported_inputs(checkpoint: Checkpoint) -> tuple[str, ...]:
    """The input kinds gemmaios builds for this checkpoint: text always; images for the
    encoder-based multimodal release (E2B/E4B, model_type gemma4) when its vision tower is present;
    images and audio for gemma4_unified (the 12B) when its embedders are configured; on the
    encoder-based release (E2B/E4B, model_type gemma4) images when its vision tower is present
    and audio when its Conformer audio tower is."""
    if checkpoint.model_type == "gemma4":  # E2B/E4B: the vision asset, the audio asset (issue 28)
        return ("text",) + tuple(kind for kind, key in (("image", "vision_config"), ("audio", "audio_config"))
                                 if isinstance(checkpoint.config.get(key), dict))
    if checkpoint.model_type == "gemma4_unified":  # the 12B's multi-function Mac bundle (convert.multimodal)
        return ("text",) + tuple(kind for kind, key in (("image", "vision_config"), ("audio", "audio_config"))
                                 if isinstance(checkpoint.config.get(key), dict))
    return ("text",)


def require_inputs(checkpoint: Checkpoint, kinds: tuple[str, ...] | list[str]) -> None:
    """Refuse, with a named UnsupportedInput, a request for an input kind out of scope for `checkpoint`.

    Called only where a request asks for more than text (an image or audio prompt, an image
    asset in the build): loading and converting the text path never raises this.
    E2B/E4B take audio through their Conformer audio tower's asset (gemmaios.audio). The
    12B as it ships (`gemma4_unified`) takes images and audio through its multi-function Mac bundle
    (`prefill_multimodal`, `embed_vision`, `embed_audio`: gemmaios.convert.multimodal).
    """
    for kind in kinds:
        if kind not in INPUT_KINDS:
            raise UnsupportedInput(f"unknown input kind {kind!r}", kind=kind, hint=f"known: {', '.join(INPUT_KINDS)}")
        if kind in supported_inputs(checkpoint):
            continue
        if checkpoint.model_type == "gemma4_unified":
            raise UnsupportedInput(
                f"{checkpoint.model_id} (gemma4_unified) has no {'vision' if kind == 'image' else 'audio'}_config in "
                f"config.json, so it cannot take {kind} input",
                kind=kind,
                hint="use the released checkpoint's config.json (google/gemma-4-12B-it has both embedders)",
            )
        if kind == "audio":
            raise UnsupportedInput(
                f"{checkpoint.model_id} has no audio tower (model_type {checkpoint.model_type}, no audio_config in "
                "config.json), so it cannot take audio",
                kind="audio",
                hint="use a release with an audio encoder (model_type gemma4 with audio_config, e.g. "
                     "google/gemma-4-E4B-it), or send text prompts",
            )
        raise UnsupportedInput(
            f"{checkpoint.model_id} has no vision encoder (model_type {checkpoint.model_type}), so it cannot take images",
            kind="image",
            hint="use the multimodal release (model_type gemma4, e.g. google/gemma-4-E4B-it) for image prompts",
        )
