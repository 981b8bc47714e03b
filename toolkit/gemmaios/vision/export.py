"""The vision asset: VisionEncoder → torch.export (static shapes) → coreai-torch → `<bundle>.vision.aimodel`."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import contract
from ..memory import vision_encoder_activation_bytes
from .encoder import VisionEncoder, load_vision_modules
from .preprocess import ImageSpec, VisionError


def vision_asset_name(bundle_name: str) -> str:
    return f"{bundle_name}.vision.aimodel"


def export_vision_asset(checkpoint, spec: ImageSpec, out: Path, dtype: torch.dtype = torch.float16) -> dict:
    """Write the vision asset to `out` and return its facts for metadata.json `gemmaios.vision`."""
    from ..convert.assets import export_static_asset

    started = time.time()
    tower, embedder = load_vision_modules(checkpoint)
    if tower.config.patch_size != spec.patch_size or tower.config.pooling_kernel_size != spec.pooling_kernel_size:
        raise VisionError(f"the image processor's patch {spec.patch_size} / pooling {spec.pooling_kernel_size} differ "
                          f"from the vision tower's ({tower.config.patch_size} / {tower.config.pooling_kernel_size})",
                          hint="the checkpoint's preprocessor_config.json does not belong to it")
    module = VisionEncoder(tower, embedder, spec.max_soft_tokens, dtype=dtype).eval()
    # the encoder's peak activations at its static grid, for the iPhone memory arithmetic (payload)
    activation_bytes = vision_encoder_activation_bytes(
        module.max_patches, module.hidden, int(tower.config.intermediate_size), module.heads, module.patch_dim,
        spec.max_soft_tokens, module.text_hidden)
    del tower, embedder
    inputs = module.example_inputs()
    names_in = (contract.VISION_PIXELS_INPUT, contract.VISION_POSITIONS_INPUT)

    class Graph(torch.nn.Module):
        def __init__(self, encoder: VisionEncoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, pixel_values, pixel_position_ids):
            return self.encoder(pixel_values, pixel_position_ids)

    out = Path(out)
    io_in, io_out = export_static_asset(Graph(module), inputs, names_in, (contract.VISION_OUTPUT,), out)
    want_in = [[1, spec.max_patches, spec.patch_dim], [1, spec.max_patches, 2]]
    if [i["name"] for i in io_in] != list(names_in) or [i["shape"] for i in io_in] != want_in:
        raise VisionError(f"{out.name}: inputs {io_in}, expected {list(names_in)} with shapes {want_in}",
                          hint="report this: the vision asset's static grid did not survive conversion")
    if [o["name"] for o in io_out] != [contract.VISION_OUTPUT] or io_out[0]["shape"] != [spec.max_soft_tokens, module.text_hidden]:
        raise VisionError(f"{out.name}: outputs {io_out}, expected {contract.VISION_OUTPUT} "
                          f"[{spec.max_soft_tokens}, {module.text_hidden}]", hint="report this")
    return {
        contract.VISION_ASSET_FIELD: out.name,
        "inputs": io_in,
        "outputs": io_out,
        "dtype": str(dtype).removeprefix("torch."),
        **spec.as_dict(),
        contract.SPLICED_PLE_ROW_KEY: spec.pad_token_id,
        "hidden_size": module.text_hidden,
        "activation_bytes": activation_bytes,
        "image_embeds_input": contract.IMAGE_EMBEDS_INPUT,
        "splice": "the k-th image soft token of the expanded prompt becomes id vocab_size + k; ids >= vocab_size take "
                  "row id - vocab_size of image_embeds and the PLE row of pad_token_id",
        "expansion": "boi_token_id, image_token_id x num_soft_tokens, eoi_token_id (one image per prompt)",
        "preprocessing": "aspect-preserving bicubic resize to sides multiple of patch_size*pooling_kernel_size within "
                         "max_patches, rescale 1/255, patchify (row-major patches, (py, px, c) inside), pad to "
                         "max_patches with zero patches at (-1, -1)",
        "seconds": round(time.time() - started, 2),
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else out.stat().st_size,
    }
