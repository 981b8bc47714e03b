"""The image oracle: HF's processor and Gemma4ForConditionalGeneration in fp32 on the built-in pictures.

Written to a folder (`oracle/images/` in a build):

  oracle.json             schema gemmaios.oracle/1; one prompt per picture, prompt_ids = the
                          expanded prompt as HF tokenizes it (image_token_id x num_soft_tokens)
  <name>.png              the source picture (vision.images draws it)
  <name>.safetensors      what HF's processor made of it, for the Swift preprocessing test and
                          the runtime gate:
                            pixel_values        float32 [max_patches, 3*p*p]  (padding rows 0)
                            pixel_position_ids  int32   [max_patches, 2]      ((x, y); padding -1)
                            input_ids           int32   [T]  expanded prompt, HF ids
                            spliced_input_ids   int32   [T]  the same with image soft token k -> V + k
                            num_soft_tokens     int32   [1]
                            image_features      float32 [num_soft_tokens, hidden]  HF's image features
                          metadata: image (the PNG's name), resized_height, resized_width, prompt
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..buildlayout import IMAGE_ORACLE_DIR  # noqa: F401  (re-exported)
from .images import BUILTIN_IMAGES, ImageCase
from .preprocess import ImageSpec, PreparedImage, expand_prompt, image_processor, preprocess, splice_ids

IMAGE_ORACLE_FILE = "oracle.json"
QUESTION = "Describe the image.\n<image>"  # as the tiny model is trained (vision.tinymodel.QUESTION)


@dataclass
class ImageRecord:
    """One oracle picture's saved tensors."""

    name: str
    prepared: PreparedImage
    input_ids: list[int]
    spliced_input_ids: list[int]
    image_features: np.ndarray


def run_image_oracle(checkpoint_dir: Path, out_dir: Path, cases: tuple[ImageCase, ...] = BUILTIN_IMAGES,
                     max_new_tokens: int = 32, top_k: int = 5, question: str = QUESTION, progress=None):
    """Greedy fp32 generations for each picture (written to `out_dir`); returns the Oracle."""
    import torch

    from ..oracle.encoders import EncoderReference, single_thread
    from .encoder import hf_image_features

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref = EncoderReference(checkpoint_dir)
    spec = ImageSpec.from_checkpoint(checkpoint_dir)
    proc = image_processor(spec)
    records = []
    with single_thread():
        for case in cases:
            pixels = case.pixels()
            png = out_dir / f"{case.name}.png"
            png.write_bytes(case.png())
            prepared = preprocess(pixels, spec, proc)
            text = ref.chat_text(question)
            ids = expand_prompt(text, spec, ref.tokenizer, prepared.num_soft_tokens)
            features = hf_image_features(ref.model, prepared.pixel_values, prepared.pixel_position_ids).numpy()
            generated, steps = ref.greedy({"input_ids": torch.tensor([ids]),
                                           "pixel_values": torch.from_numpy(prepared.pixel_values)[None],
                                           "image_position_ids": torch.from_numpy(prepared.pixel_position_ids).long()[None]},
                                          max_new_tokens, top_k)
            records.append(ref.record(
                out_dir / f"{case.name}.safetensors", case.name, text, ids, splice_ids(ids, spec),
                prepared.num_soft_tokens, generated, steps,
                {"pixel_values": prepared.pixel_values.astype(np.float32),
                 "pixel_position_ids": prepared.pixel_position_ids.astype(np.int32),
                 "image_features": features.astype(np.float32)},
                {"image": png.name, "resized_height": str(prepared.resized[0]), "resized_width": str(prepared.resized[1])}))
            if progress:
                progress(1)
    oracle = ref.oracle(records, {"name": "builtin-images", "images": [c.name for c in cases],
                                  "image_spec": spec.as_dict()}, max_new_tokens, top_k)
    oracle.save(out_dir / IMAGE_ORACLE_FILE)
    return oracle


def load_image_record(oracle_dir: Path, name: str) -> ImageRecord:
    from safetensors.numpy import load_file

    from .preprocess import VisionError

    path = Path(oracle_dir) / f"{name}.safetensors"
    if not path.is_file():
        raise VisionError(f"the image oracle has no {path.name} in {oracle_dir}",
                          hint="run the image oracle again (gemmaios.vision.oracle.run_image_oracle)")
    t = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata() or {}
    prepared = PreparedImage(t["pixel_values"], t["pixel_position_ids"], int(t["num_soft_tokens"][0]),
                             (int(meta.get("resized_height", 0)), int(meta.get("resized_width", 0))))
    return ImageRecord(name, prepared, t["input_ids"].tolist(), t["spliced_input_ids"].tolist(), t["image_features"])


def image_oracle_summary(oracle_dir: Path) -> dict:
    data = json.loads((Path(oracle_dir) / IMAGE_ORACLE_FILE).read_text())
    return {"prompts": len(data["prompts"]), "images": data["prompt_set"]["images"]}
