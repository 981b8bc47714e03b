"""Client-side inputs of the 12B as it ships (`gemma4_unified`): pictures, clips and prompts → tensors.

What a caller of the multimodal bundle (`embed_vision`, `embed_audio`, `prefill_multimodal`) must
compute itself, as Hugging Face's Gemma4UnifiedProcessor and Gemma4UnifiedModel do it:

- images: aspect-preserving resize to sides that are multiples of pooling x patch (48 on the 12B)
  within the soft-token budget (bicubic with antialias on the uint8 picture, as torchvision does
  on CPU), rescale to [0, 1], then one row per 3x3 group of 16-px patches: the 48x48x3 block in
  (row, column, channel) order = 6,912 values, with its (x, y) position on the merged grid;
  padding rows (zeros, position (-1, -1)) up to the budget when asked;
- audio: raw 16 kHz samples cut into frames of `audio_samples_per_token` (640) samples, the last
  one zero-padded; one soft token per frame;
- placeholders: each image token in a prompt becomes `BOI + image x n + EOI`, each audio token
  `BOA + audio x n + EOA`; `mm_token_type_ids` marks image 1, video 2, audio 3;
- the two boolean attention masks (True = attend) the bundle's `prefill_multimodal` takes. They
  replace the engine's built-in causal/sliding behaviour, so they carry everything, exactly as
  HF's Gemma4UnifiedModel.forward builds them (masking_utils with `block_sequence_ids`):
  global layers: causal OR same image/video block; sliding layers: (causal AND kv > q - window)
  OR same image/video block. A block is a maximal run of image (1) or video (2) tokens; audio
  stays causal. (HF's static-cache `generate` path builds them differently — global layers
  causal only, the window applied after the block overlay — the dynamic-cache forward is the
  one mirrored here and gated.)

numpy + torch only (torch for the one resize); the tests check each step against HF's own
functions and masks element for element.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .contract import AUDIO_MARKER, IMAGE_MARKER  # where a prompt's text puts a picture / a clip
from .errors import GemmaiosError

TEXT_TYPE, IMAGE_TYPE, VIDEO_TYPE, AUDIO_TYPE = 0, 1, 2, 3  # mm_token_type_ids, as HF's processors write them
BIDIRECTIONAL_TYPES = (IMAGE_TYPE, VIDEO_TYPE)  # attend both ways inside their block
SUPPORTED_SOFT_TOKENS = (70, 140, 280, 560, 1120)  # image budgets HF's processor accepts
PAD_POSITION = -1


class MultimodalInputError(GemmaiosError):
    """A picture, clip or multimodal prompt cannot be turned into the bundle's inputs."""


@dataclass(frozen=True)
class UnifiedSpec:
    """The facts the client-side preprocessing depends on (from the checkpoint's config)."""

    patch_size: int  # 16 on the 12B (4 on the tiny)
    pooling_kernel_size: int  # 3: a 3x3 group of patches is one soft token
    max_soft_tokens: int  # image budget (280 by default)
    audio_samples_per_token: int  # 640 on the 12B (the audio embedder's input width)
    sampling_rate: int  # 16 kHz
    hidden_size: int  # the decoder's width: embed_* output rows
    sliding_window: int  # 1024 on the 12B
    image_token_id: int
    video_token_id: int
    audio_token_id: int
    boi_token_id: int
    eoi_token_id: int
    boa_token_id: int
    eoa_token_id: int
    pad_token_id: int
    vocab_size: int
    stop_token_ids: tuple[int, ...]  # config eos ids: 1 and 106 (<end_of_turn>) on the 12B

    @property
    def side(self) -> int:
        """Side of one merged patch in pixels (48 on the 12B)."""
        return self.patch_size * self.pooling_kernel_size

    @property
    def patch_dim(self) -> int:
        """Values in one merged patch row: side x side x 3 (6,912 on the 12B)."""
        return self.side * self.side * 3

    @property
    def max_patches(self) -> int:
        return self.max_soft_tokens * self.pooling_kernel_size**2

    @classmethod
    def from_config(cls, config: dict, processor: dict | None = None) -> UnifiedSpec:
        """From a gemma4_unified config.json (and processor_config.json, HF's defaults where absent)."""
        if config.get("model_type") != "gemma4_unified":
            raise MultimodalInputError(f"model_type {config.get('model_type')!r} is not gemma4_unified",
                                       hint="this preprocessing is the 12B's (encoder-free) one")
        vision, audio, text = config.get("vision_config") or {}, config.get("audio_config") or {}, config["text_config"]
        processor = dict(processor or {})
        image_proc = processor.get("image_processor", processor)
        audio_proc = processor.get("feature_extractor", {})
        eos = text.get("eos_token_id", config.get("eos_token_id", 1))
        stops = tuple(int(t) for t in (eos if isinstance(eos, list) else [eos]))
        max_soft = int(image_proc.get("max_soft_tokens") or 280)
        if max_soft not in SUPPORTED_SOFT_TOKENS:
            raise MultimodalInputError(f"max_soft_tokens {max_soft} is not one HF accepts",
                                       hint=f"one of {SUPPORTED_SOFT_TOKENS}")
        return cls(
            patch_size=int(image_proc.get("patch_size") or vision.get("patch_size", 16)),
            pooling_kernel_size=int(image_proc.get("pooling_kernel_size") or vision.get("pooling_kernel_size", 3)),
            max_soft_tokens=max_soft,
            audio_samples_per_token=int(audio_proc.get("audio_samples_per_token") or audio.get("audio_embed_dim", 640)),
            sampling_rate=int(audio_proc.get("sampling_rate") or 16_000),
            hidden_size=int(text["hidden_size"]),
            sliding_window=int(text["sliding_window"]),
            image_token_id=int(config["image_token_id"]),
            video_token_id=int(config["video_token_id"]),
            audio_token_id=int(config["audio_token_id"]),
            boi_token_id=int(config["boi_token_id"]),
            eoi_token_id=int(config["eoi_token_id"]),
            boa_token_id=int(config["boa_token_id"]),
            eoa_token_id=int(config.get("eoa_token_id", config.get("eoa_token_index"))),
            pad_token_id=int(text.get("pad_token_id") or 0),
            vocab_size=int(text["vocab_size"]),
            stop_token_ids=stops,
        )

    @classmethod
    def from_checkpoint(cls, path) -> UnifiedSpec:
        """From a checkpoint folder: config.json, and processor_config.json / preprocessor_config.json if present."""
        import json
        from pathlib import Path

        path = Path(path)
        processor: dict = {}
        for name in ("processor_config.json", "preprocessor_config.json"):
            if (path / name).is_file():
                processor = json.loads((path / name).read_text())
                break
        return cls.from_config(json.loads((path / "config.json").read_text()), processor)

    @classmethod
    def from_bundle(cls, facts: dict) -> UnifiedSpec:
        """From a bundle's metadata.json `gemmaios.multimodal` (what the app reads too)."""
        return cls(patch_size=int(facts["patch_size"]), pooling_kernel_size=int(facts["pooling_kernel_size"]),
                   max_soft_tokens=int(facts["max_soft_tokens"]),
                   audio_samples_per_token=int(facts["audio_samples_per_token"]),
                   sampling_rate=int(facts["sampling_rate"]), hidden_size=int(facts["hidden_size"]),
                   sliding_window=int(facts["sliding_window"]), image_token_id=int(facts["image_token_id"]),
                   video_token_id=int(facts["video_token_id"]), audio_token_id=int(facts["audio_token_id"]),
                   boi_token_id=int(facts["boi_token_id"]), eoi_token_id=int(facts["eoi_token_id"]),
                   boa_token_id=int(facts["boa_token_id"]), eoa_token_id=int(facts["eoa_token_id"]),
                   pad_token_id=int(facts["pad_token_id"]), vocab_size=int(facts.get("vocab_size", 0)),
                   stop_token_ids=tuple(int(t) for t in facts["stop_token_ids"]))

    def metadata(self) -> dict:
        """The multimodal block of the bundle's metadata.json (`gemmaios.multimodal`)."""
        return {
            "image_token_id": self.image_token_id, "audio_token_id": self.audio_token_id,
            "video_token_id": self.video_token_id, "boi_token_id": self.boi_token_id,
            "eoi_token_id": self.eoi_token_id, "boa_token_id": self.boa_token_id, "eoa_token_id": self.eoa_token_id,
            "stop_token_ids": list(self.stop_token_ids), "pad_token_id": self.pad_token_id,
            "patch_size": self.patch_size, "pooling_kernel_size": self.pooling_kernel_size,
            "patch_dim": self.patch_dim, "max_soft_tokens": self.max_soft_tokens,
            "audio_samples_per_token": self.audio_samples_per_token, "sampling_rate": self.sampling_rate,
            "sliding_window": self.sliding_window, "hidden_size": self.hidden_size, "vocab_size": self.vocab_size,
        }


# ---- images ----------------------------------------------------------------------------------------

def aspect_preserving_size(height: int, width: int, spec: UnifiedSpec) -> tuple[int, int]:
    """(height, width) after the resize: the largest sides that are multiples of `spec.side`, keep the
    aspect ratio and fit `max_patches` patches; a side that would round to 0 takes one `side` and the
    other follows the ratio (capped at the budget's longest row)."""
    side, budget_px = spec.side, spec.max_patches * spec.patch_size**2
    scale = math.sqrt(budget_px / (height * width))
    h = int(math.floor(scale * height / side)) * side
    w = int(math.floor(scale * width / side)) * side
    longest = (spec.max_patches // spec.pooling_kernel_size**2) * side
    if h == 0 and w == 0:
        raise MultimodalInputError(f"an image of {width}x{height} would resize to 0x0",
                                   hint="use a larger picture or a less extreme aspect ratio")
    if h == 0:
        h, w = side, min(int(math.floor(width / height)) * side, longest)
    elif w == 0:
        h, w = min(int(math.floor(height / width)) * side, longest), side
    if h * w > budget_px:
        raise MultimodalInputError(f"an image of {width}x{height} does not fit the {spec.max_soft_tokens}-token budget",
                                   hint="use a less extreme aspect ratio")
    return h, w


def resize_image(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] → uint8 [3, h, w]: bicubic with antialias on the uint8 picture (torchvision's
    CPU path for `resize(..., BICUBIC, antialias=True)`, which HF's unified image processor calls)."""
    import torch

    chw = torch.from_numpy(np.ascontiguousarray(np.asarray(pixels).transpose(2, 0, 1)))
    if tuple(chw.shape[-2:]) == tuple(size):
        return chw.numpy()
    out = torch.nn.functional.interpolate(chw.unsqueeze(0), size=list(size), mode="bicubic",
                                          align_corners=False, antialias=True)
    return out[0].numpy()


def merged_patches(image: np.ndarray, spec: UnifiedSpec) -> tuple[np.ndarray, np.ndarray]:
    """float [3, h, w] (sides multiples of `spec.side`) → (rows [N, side*side*3], positions [N, 2]).

    The 3x3 merge of 16-px patches is the 48-px block itself in (row, column, channel) order; rows
    go over the merged grid row by row, each with its (x, y)."""
    channels, h, w = image.shape
    s = spec.side
    if h % s or w % s:
        raise MultimodalInputError(f"image sides {h}x{w} are not multiples of {s}", hint="resize with aspect_preserving_size")
    gh, gw = h // s, w // s
    rows = image.reshape(channels, gh, s, gw, s).transpose(1, 3, 2, 4, 0).reshape(gh * gw, s * s * channels)
    ys, xs = np.divmod(np.arange(gh * gw), gw)
    return rows, np.stack([xs, ys], axis=-1).astype(np.int64)


@dataclass
class PreparedImage:
    """One picture as `embed_vision` takes it."""

    pixel_values: np.ndarray  # float32 [P, patch_dim] in [0, 1]; padding rows 0
    position_ids: np.ndarray  # int64 [P, 2] (x, y); padding rows (-1, -1)
    num_soft_tokens: int  # the real rows (the first ones)
    resized: tuple[int, int]  # (height, width) after the resize


def prepare_image(pixels: np.ndarray, spec: UnifiedSpec, pad: bool = False) -> PreparedImage:
    """uint8 [H, W, 3] RGB → merged patch rows and positions (padded to the budget when `pad`)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise MultimodalInputError(f"an image must be uint8 [H, W, 3] RGB, got {pixels.dtype} {list(pixels.shape)}",
                                   hint="load it with PIL and convert('RGB')")
    size = aspect_preserving_size(pixels.shape[0], pixels.shape[1], spec)
    image = resize_image(pixels, size).astype(np.float32) * np.float32(1 / 255)
    rows, positions = merged_patches(image, spec)
    n = rows.shape[0]
    if pad and n < spec.max_soft_tokens:
        rows = np.concatenate([rows, np.zeros((spec.max_soft_tokens - n, rows.shape[1]), rows.dtype)])
        positions = np.concatenate([positions, np.full((spec.max_soft_tokens - n, 2), PAD_POSITION, positions.dtype)])
    return PreparedImage(rows.astype(np.float32), positions, n, size)


# ---- audio -----------------------------------------------------------------------------------------

def frame_audio(waveform: np.ndarray, spec: UnifiedSpec) -> np.ndarray:
    """Raw mono samples at `spec.sampling_rate` → float32 [T, audio_samples_per_token], the tail zero-padded."""
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise MultimodalInputError("the audio clip is empty", hint="pass at least one sample")
    n = spec.audio_samples_per_token
    wave = np.pad(wave, (0, (-wave.size) % n))
    return wave.reshape(-1, n)


def load_wav(path, spec: UnifiedSpec) -> np.ndarray:
    """A PCM WAV file (8/16/32-bit) at `spec.sampling_rate` as float32 mono samples in [-1, 1] (channels averaged)."""
    import wave
    from pathlib import Path

    path = Path(path)
    try:
        with wave.open(str(path), "rb") as handle:
            rate, width, channels = handle.getframerate(), handle.getsampwidth(), handle.getnchannels()
            raw = handle.readframes(handle.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise MultimodalInputError(f"cannot read the audio file {path} ({exc})", hint="pass a PCM .wav file") from exc
    if rate != spec.sampling_rate:
        raise MultimodalInputError(f"{path} is sampled at {rate} Hz; the model takes {spec.sampling_rate} Hz",
                                   hint=f"resample it first, e.g. ffmpeg -i {path} -ar {spec.sampling_rate} -ac 1 out.wav")
    kinds = {1: (np.uint8, 128.0, 128.0), 2: (np.int16, 0.0, 32768.0), 4: (np.int32, 0.0, 2147483648.0)}
    if width not in kinds:
        raise MultimodalInputError(f"{path} has {8 * width}-bit samples", hint="use 8-, 16- or 32-bit PCM")
    dtype, offset, scale = kinds[width]
    samples = (np.frombuffer(raw, dtype=dtype).astype(np.float32) - offset) / scale
    return samples.reshape(-1, channels).mean(axis=1)




def encode_prompt(text: str, tokenize, spec: UnifiedSpec, image_tokens: Sequence[int] = (),
                  audio_tokens: Sequence[int] = ()) -> list[int]:
    """A rendered prompt whose `<image>` / `<audio>` markers stand for the items, in order → HF's expanded
    ids: the text between markers through `tokenize(str) -> ids`, each marker as its placeholder id."""
    import re

    ids: list[int] = []
    for piece in re.split(f"({re.escape(IMAGE_MARKER)}|{re.escape(AUDIO_MARKER)})", text):
        if piece == IMAGE_MARKER:
            ids.append(spec.image_token_id)
        elif piece == AUDIO_MARKER:
            ids.append(spec.audio_token_id)
        elif piece:
            ids += [int(t) for t in tokenize(piece)]
    return expand_placeholders(ids, spec, image_tokens, audio_tokens)


# ---- prompts ---------------------------------------------------------------------------------------

def expand_placeholders(ids: Sequence[int], spec: UnifiedSpec, image_tokens: Sequence[int] = (),
                        audio_tokens: Sequence[int] = ()) -> list[int]:
    """Token ids with one image/audio token per item → each becomes `BOI + image x n + EOI` /
    `BOA + audio x n + EOA` (n: that item's soft tokens, in prompt order)."""
    images, clips = list(image_tokens), list(audio_tokens)
    want_i, want_a = sum(1 for t in ids if t == spec.image_token_id), sum(1 for t in ids if t == spec.audio_token_id)
    if (want_i, want_a) != (len(images), len(clips)):
        raise MultimodalInputError(f"the prompt has {want_i} image and {want_a} audio placeholders for "
                                   f"{len(images)} images and {len(clips)} clips",
                                   hint="one placeholder token per picture or clip, in order")
    out: list[int] = []
    for t in ids:
        if t == spec.image_token_id:
            out += [spec.boi_token_id, *[spec.image_token_id] * images.pop(0), spec.eoi_token_id]
        elif t == spec.audio_token_id:
            out += [spec.boa_token_id, *[spec.audio_token_id] * clips.pop(0), spec.eoa_token_id]
        else:
            out.append(int(t))
    return out


def mm_token_type_ids(ids: Sequence[int], spec: UnifiedSpec) -> np.ndarray:
    """int64 [S]: 0 text, 1 image, 2 video, 3 audio (soft tokens only; BOI/EOI are text)."""
    arr = np.asarray(ids, dtype=np.int64)
    types = np.zeros_like(arr)
    types[arr == spec.image_token_id] = IMAGE_TYPE
    types[arr == spec.video_token_id] = VIDEO_TYPE
    types[arr == spec.audio_token_id] = AUDIO_TYPE
    return types


def multimodal_mask(types: np.ndarray) -> np.ndarray:
    """bool [S]: the rows `prefill_multimodal` takes from `mm_embeds` instead of the token embedding."""
    return np.asarray(types) != TEXT_TYPE


def graph_input_ids(ids: Sequence[int], spec: UnifiedSpec) -> np.ndarray:
    """int32 [S]: multimodal soft tokens replaced by the pad id (HF looks those rows up as pad, then
    overwrites them), so every id fits the embedding table."""
    arr = np.asarray(ids, dtype=np.int64)
    return np.where(multimodal_mask(mm_token_type_ids(arr, spec)), spec.pad_token_id, arr).astype(np.int32)


def block_ids(types: np.ndarray) -> np.ndarray:
    """int64 [S]: the index of the image/video block each token is in (maximal runs of types 1 or 2), -1 elsewhere."""
    vis = np.isin(np.asarray(types), BIDIRECTIONAL_TYPES)
    starts = vis & ~np.concatenate([[False], vis[:-1]])
    return np.where(vis, np.cumsum(starts) - 1, -1)


def attention_masks(types: np.ndarray, sliding_window: int, kv_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mask_sliding, mask_global): bool [S, kv_length] (True = attend) for a prefill of S tokens at
    positions 0..S-1; key columns past S (empty cache slots) are False.

    global = causal OR same block; sliding = (causal AND k > q - window) OR same block."""
    types = np.asarray(types)
    s = types.shape[0]
    k = s if kv_length is None else int(kv_length)
    if k < s:
        raise MultimodalInputError(f"a prefill of {s} tokens does not fit a {k}-slot cache", hint="build with a longer context")
    q = np.arange(s)[:, None]
    kv = np.arange(k)[None, :]
    blocks = np.concatenate([block_ids(types), np.full(k - s, -1)])
    same_block = (blocks[:s, None] == blocks[None, :]) & (blocks[:s, None] >= 0)
    causal = kv <= q
    global_mask = causal | same_block
    sliding_mask = (causal & (kv > q - sliding_window)) | same_block
    return sliding_mask, global_mask


def scatter_embeddings(mask: np.ndarray, features: Sequence[np.ndarray], hidden_size: int) -> np.ndarray:
    """float32 [S, hidden]: the embedders' rows (in prompt order) at the positions `mask` marks, zeros elsewhere."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.concatenate([np.asarray(f, np.float32).reshape(-1, hidden_size) for f in features]) if features else \
        np.zeros((0, hidden_size), np.float32)
    if rows.shape[0] != int(mask.sum()):
        raise MultimodalInputError(f"{rows.shape[0]} embedding rows for {int(mask.sum())} multimodal positions",
                                   hint="expand each placeholder with its item's own soft-token count")
    out = np.zeros((mask.shape[0], hidden_size), np.float32)
    out[mask] = rows
    return out
