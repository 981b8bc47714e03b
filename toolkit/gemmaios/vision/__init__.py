"""Image input for Gemma 4 E2B/E4B: preprocessing, the vision asset, the id-space splice, the image oracle.

How an image reaches the decoder (the route the community E2B vision release took on iPhone):

1. `preprocess`: transformers' Gemma 4 image processor — aspect-preserving resize into the
   soft-token budget, rescale, patchify, pad the grid to a static `max_patches` with (-1, -1).
2. The vision asset (`export.export_vision_asset`, module `encoder.VisionEncoder`): vision tower
   + k x k pooling + `embed_vision` projector on the static grid → `image_embeds [N, hidden]`.
3. `expand_prompt` / `splice_ids`: the prompt's `<image>` becomes `boi + image x n + eoi`, and
   image soft token k becomes id V + k. `main`'s static `image_embeds` input holds the rows
   those ids read; the PLE provider gives them the pad token's row (`contract.ple_row`).
4. The decode walks the prompt token by token as for text (`hostrun.BundleRunner.generate(...,
   image=...)`), so sliding-window caches and the pipelined engine are unchanged.

Modules: `images` (the project's own pictures), `preprocess`, `encoder`, `export`, `oracle`
(HF fp32 on the built-in pictures, with the preprocessed tensors saved), `gate` (Core AI's
runtime against it), `tinymodel` (the tiny multimodal model, trained and shipped).
"""

from .images import BUILTIN_IMAGES, ImageCase
from .preprocess import (
           IMAGE_PLACEHOLDER,
           ImageSpec,
           PreparedImage,
           VisionError,
           expand_prompt,
           preprocess,
           splice_ids,
)

__all__ = ["BUILTIN_IMAGES", "IMAGE_PLACEHOLDER", "ImageCase", "ImageSpec", "PreparedImage", "VisionError",
           "expand_prompt", "preprocess", "splice_ids"]
