"""Image → model inputs, as Hugging Face's Gemma 4 processor does it, and the id-space splice.

`preprocess` runs transformers' own `Gemma4ImageProcessorPil` (the PIL backend; the
torchvision one needs a package this toolkit does not install): aspect-ratio preserving
resize to the largest size whose sides are multiples of pooling x patch and whose patch count
fits `max_soft_tokens * pooling^2`, rescale to [0,1], patchify, pad the grid to that budget
with zero patches at position (-1,-1). `expand_prompt` puts `boi + image x n + eoi` where the
prompt says `<image>` (transformers' `Gemma4Processor.replace_image_token`). `splice_ids`
rewrites the k-th image soft token to id `V + k`: the decode graph takes rows of ids >= V from
its `image_embeds` input, and the PLE provider gives them the pad token's row (`contract`).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import contract
from ..errors import GemmaiosError


class VisionError(GemmaiosError):
    """An image, image prompt or vision bundle cannot be used."""


@dataclass(frozen=True)
class ImageSpec:
    """The facts image preprocessing and the splice depend on (read from the checkpoint's config)."""

    patch_size: int
    pooling_kernel_size: int
    max_soft_tokens: int  # the soft-token budget: rows of the vision asset's output and of image_embeds
    image_token_id: int
    boi_token_id: int
    eoi_token_id: int
    vocab_size: int  # V: spliced ids are V..V+max_soft_tokens-1
    pad_token_id: int

    @property
    def max_patches(self) -> int:
        return self.max_soft_tokens * self.pooling_kernel_size**2

    @property
    def patch_dim(self) -> int:
        return 3 * self.patch_size**2

    @classmethod
    def from_config(cls, config: dict, processor: dict | None = None) -> ImageSpec:
        """From config.json and the image processor's settings (preprocessor_config.json or the
        `image_processor` block of processor_config.json; HF's defaults where absent)."""
        vision = config.get("vision_config")
        if not vision:
            raise VisionError("this checkpoint has no vision tower (config.json has no vision_config)",
                              hint="image input needs a multimodal Gemma 4 checkpoint (E2B/E4B, gemma4)")
        processor = dict(processor or {})
        processor = processor.get("image_processor", processor)
        text = config["text_config"]
        return cls(
            patch_size=int(processor.get("patch_size") or vision.get("patch_size", 16)),
            pooling_kernel_size=int(processor.get("pooling_kernel_size") or vision.get("pooling_kernel_size", 3)),
            max_soft_tokens=int(processor.get("max_soft_tokens") or 280),
            image_token_id=int(config["image_token_id"]),
            boi_token_id=int(config["boi_token_id"]),
            eoi_token_id=int(config["eoi_token_id"]),
            vocab_size=int(text["vocab_size"]),
            pad_token_id=int(text.get("pad_token_id") or 0),
        )

    @classmethod
    def from_checkpoint(cls, path) -> ImageSpec:
        import json
        from pathlib import Path

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        processor = {}
        for name in ("preprocessor_config.json", "processor_config.json"):
            if (path / name).is_file():
                processor = json.loads((path / name).read_text())
                break
        return cls.from_config(config, processor)

    @classmethod
    def from_bundle(cls, facts: dict) -> ImageSpec:
        """From a bundle's metadata.json `gemmaios.vision` (what the app reads too)."""
        return cls(**{k: int(facts[k]) for k in cls.__dataclass_fields__})

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"max_patches": self.max_patches,
                                                                            "patch_dim": self.patch_dim}


@dataclass
class PreparedImage:
    """One image as the vision asset takes it: the padded patch grid and its positions."""

    pixel_values: np.ndarray  # float32 [max_patches, 3*p*p], in [0,1]; padding rows 0
    pixel_position_ids: np.ndarray  # int32 [max_patches, 2] (x, y); padding rows (-1, -1)
    num_soft_tokens: int  # pooled rows that are real (the first ones of the asset's output)
    resized: tuple[int, int]  # (height, width) after the aspect-preserving resize


def image_processor(spec: ImageSpec):
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    return Gemma4ImageProcessorPil(patch_size=spec.patch_size, max_soft_tokens=spec.max_soft_tokens,
                                   pooling_kernel_size=spec.pooling_kernel_size)


def preprocess(pixels: np.ndarray, spec: ImageSpec, processor=None) -> PreparedImage:
    """uint8 [H, W, 3] RGB → the padded patch grid (transformers' Gemma 4 image processor)."""
    from PIL import Image
    from transformers.models.gemma4.image_processing_pil_gemma4 import get_aspect_ratio_preserving_size

    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise VisionError(f"an image must be uint8 [H, W, 3] RGB, got {pixels.dtype} {list(pixels.shape)}",
                          hint="load it with PIL and convert('RGB')")
    try:
        size = get_aspect_ratio_preserving_size(pixels.shape[0], pixels.shape[1], spec.patch_size, spec.max_patches,
                                                spec.pooling_kernel_size)
    except ValueError as exc:
        raise VisionError(f"an image of {pixels.shape[1]}x{pixels.shape[0]} cannot be resized into the "
                          f"{spec.max_soft_tokens}-token budget: {exc}", hint="use a less extreme aspect ratio") from exc
    out = (processor or image_processor(spec))(images=[Image.fromarray(pixels, "RGB")], return_tensors="np")
    return PreparedImage(np.asarray(out["pixel_values"][0], np.float32),
                         np.asarray(out["image_position_ids"][0], np.int32),
                         int(out["num_soft_tokens_per_image"][0]), (int(size[0]), int(size[1])))


IMAGE_PLACEHOLDER = "<image>"  # where a prompt text puts the picture (replaced by the expansion)


def expansion_text(spec: ImageSpec, tokenizer, num_soft_tokens: int) -> str:
    """`boi + image x n + eoi` as transformers' Gemma4Processor.replace_image_token writes it."""
    from transformers.models.gemma4.processing_gemma4 import Gemma4Processor

    names = types.SimpleNamespace(boi_token=tokenizer.convert_ids_to_tokens(spec.boi_token_id),
                                  image_token=tokenizer.convert_ids_to_tokens(spec.image_token_id),
                                  eoi_token=tokenizer.convert_ids_to_tokens(spec.eoi_token_id))
    return Gemma4Processor.replace_image_token(names, {"num_soft_tokens_per_image": [num_soft_tokens]}, 0)


def expand_prompt(text: str, spec: ImageSpec, tokenizer, num_soft_tokens: int) -> list[int]:
    """Token ids of a rendered prompt whose one `<image>` becomes `boi + image x n + eoi` (HF ids)."""
    if text.count(IMAGE_PLACEHOLDER) != 1:
        raise VisionError(f"an image prompt must contain {IMAGE_PLACEHOLDER!r} exactly once",
                          hint=f"put {IMAGE_PLACEHOLDER} where the picture goes")
    text = text.replace(IMAGE_PLACEHOLDER, expansion_text(spec, tokenizer, num_soft_tokens))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def load_image(path) -> np.ndarray:
    """An image file (PNG, JPEG, ...) as uint8 [H, W, 3] RGB."""
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise VisionError(f"cannot read the image {path} ({exc})", hint="pass a PNG or JPEG file") from exc


def splice_ids(ids: Sequence[int], spec: ImageSpec) -> list[int]:
    """HF ids → graph ids: the k-th image soft token becomes V + k (k < the soft-token budget)."""
    out, count = contract.splice_soft_tokens(ids, spec.image_token_id, spec.vocab_size)
    if count > spec.max_soft_tokens:
        raise VisionError(f"the prompt has more than {spec.max_soft_tokens} image soft tokens",
                          hint="one image per prompt, expanded with its own num_soft_tokens")
    return out
