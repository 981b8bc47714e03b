"""The stand-in's BenchImages.swift + ImageInputConfig: the ids (and picture) the engine runs for a bench prompt.

As the app: a prompt without the compiled-in `promptImageField` runs its own ids. One with it
names a payload-relative safetensors file whose `benchImageTensor` tensor (uint8 [H, W, 3]) is
the picture; the bundle's metadata.json `gemmaios.<visionMetadataKey>` gives the marker ids,
V, the patch grid and budget (ImageInputConfig.from(metadata:)); the picture is preprocessed by
HF's processor rules (`gemmaios.vision.preprocess`, what GemmaiosCore's ImageInput.swift
reproduces), the placeholder goes after <bos> unless the prompt has one (`withPlaceholder`),
expands to boi + n image tokens + eoi and the k-th image token becomes V + k (ImagePrompt).
The vision asset then runs inside BundleRunner (`image=`), and `prefill_tokens` is the length
of the ids returned here. Failures read as the app's errors (SafeTensorsError,
VisionEncoderError, ImageInputError).

Audio prompts (issue 28) likewise, as BenchImages.swift's BenchAudio + AudioInputConfig: a prompt
with the compiled-in `promptAudioField` names a safetensors file whose `benchAudioTensor` tensor
(float32 [N], 16 kHz) is the clip; metadata.json `gemmaios.<audioMetadataKey>` gives the markers,
V and the static clip length (AudioInputConfig.from(metadata:)); the features are HF's extractor
padded to that length (`gemmaios.audio.prepare`, what GemmaiosCore's LogMel.swift reproduces), the
placeholder goes after <bos> unless the prompt has one, expands to boa + n audio tokens + eoa and
the k-th becomes V + k (AudioPrompt). The audio asset runs inside BundleRunner (`image=` takes the
prepared clip). Failures read as AudioEncoderError / AudioPromptError.
"""

from __future__ import annotations

import json
from pathlib import Path


class BenchImageFailed(Exception):
    """What the app throws for an image prompt it cannot run (the bench then fails: no footer)."""


def image_field(app) -> str | None:
    return app.contract.get("promptImageField")  # an app before bench image prompts reads none


def audio_field(app) -> str | None:
    return app.contract.get("promptAudioField")  # an app before bench audio prompts reads none


def media_field(app, prompt: dict) -> str | None:
    """The prompt's picture or clip field (as the app records it in the transcript), or None."""
    return next((f for f in (image_field(app), audio_field(app)) if f and prompt.get(f) is not None), None)


def audio_spec(app, bundle_dir: Path):
    """AudioInputConfig.from(metadata:): None for a bundle that takes no audio."""
    from gemmaios.audio import AudioSpec

    try:
        root = json.loads((bundle_dir / app.c("bundleMetadataFile")).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    audio = (root.get("gemmaios") or {}).get(app.c("audioMetadataKey"))
    if not isinstance(audio, dict):
        return None
    for key in (*AudioSpec.__dataclass_fields__, "max_frames", "embeds_rows", app.c("audioAssetField")):
        if key not in audio:
            raise BenchImageFailed(f"the bundle's {app.c('bundleMetadataFile')} has gemmaios."
                                   f"{app.c('audioMetadataKey')} without {key}; convert the bundle again with this toolkit")
    return AudioSpec.from_bundle(audio), int(audio["embeds_rows"])


def read_clip(app, path: Path):
    """SafeTensorsFile(url:).floats(benchAudioTensor): float32 [N]."""
    import numpy as np
    from safetensors import SafetensorError, safe_open

    name, key = path.name, app.c("benchAudioTensor")
    if not path.is_file():
        raise BenchImageFailed(f"The file “{name}” couldn’t be opened because there is no such file.")
    try:
        with safe_open(str(path), framework="np") as fh:
            if key not in fh.keys():  # noqa: SIM118 - safe_open has no __contains__
                raise BenchImageFailed(f"{name} has no tensor {key}; re-run `gemmaios build` and re-deploy")
            samples = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise BenchImageFailed(f"{name} is not a safetensors file ({exc}); re-run `gemmaios build` and re-deploy") from exc
    if samples.dtype != np.float32 or samples.ndim != 1:
        raise BenchImageFailed(f"{name}: tensor {key} is {samples.dtype} {list(samples.shape)}, expected F32 [N]")
    return samples


def clip_input(app, root: Path, bundle_dir: Path, bundle_name: str, prompt: dict, clip: str):
    """BenchAudio.engineIds: (the ids the engine runs, the prepared clip)."""
    ids = [int(t) for t in prompt["prompt_ids"]]
    found = audio_spec(app, bundle_dir)
    if found is None:
        raise BenchImageFailed(f"this bundle has no audio asset (prompt {prompt['id']} has a clip, {bundle_name} "
                               "takes no audio)")
    if ".." in str(clip).split("/"):
        raise BenchImageFailed(f"this bundle has no audio asset (prompt {prompt['id']} names a clip outside the "
                               f"payload: {clip})")
    spec, rows = found
    samples = read_clip(app, root / str(clip))
    if len(samples) > spec.max_samples:
        raise BenchImageFailed(f"the clip lasts {len(samples) / spec.sampling_rate:.2f} s; this model's audio asset "
                               f"takes at most {spec.max_seconds:g} s")
    from gemmaios.audio import AudioError, prepare

    try:
        prepared = prepare(samples, spec)
    except AudioError as exc:
        raise BenchImageFailed(str(exc)) from exc
    audio_id = spec.audio_token_id
    if audio_id not in ids:  # withPlaceholder: after the first token (<bos>)
        ids.insert(min(1, len(ids)), audio_id)
    if ids.count(audio_id) != 1:
        raise BenchImageFailed(f"the prompt has {ids.count(audio_id)} audio placeholders; put exactly one where the "
                               "clip goes")
    out: list[int] = []
    for t in ids:  # AudioPrompt.expand, then rewrite: the k-th audio token → V + k
        if t == audio_id:
            out += [spec.boa_token_id, *range(spec.vocab_size, spec.vocab_size + prepared.num_soft_tokens),
                    spec.eoa_token_id]
        else:
            out.append(t)
    if prepared.num_soft_tokens > min(spec.max_soft_tokens, rows):
        raise BenchImageFailed(f"the clip needs {prepared.num_soft_tokens} soft tokens, the model's "
                               f"{app.c('audioEmbedsInput')} holds {min(spec.max_soft_tokens, rows)}; send a shorter clip")
    return out, prepared


def vision_config(app, bundle_dir: Path) -> dict | None:
    """ImageInputConfig.from(metadata:): None for a text-only bundle."""
    try:
        root = json.loads((bundle_dir / app.c("bundleMetadataFile")).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    vision = (root.get("gemmaios") or {}).get(app.c("visionMetadataKey"))
    if not isinstance(vision, dict):
        return None
    language = root.get("language") or {}
    needed = ["image_token_id", "boi_token_id", "eoi_token_id", app.c("splicedPleRowKey"), app.c("visionAssetField")]
    for key in needed:
        if key not in vision:
            raise BenchImageFailed(f"the bundle's {app.c('bundleMetadataFile')} has gemmaios."
                                   f"{app.c('visionMetadataKey')} without {key}; convert the bundle again with this toolkit")
    vocab = vision.get("vocab_size", language.get("vocab_size"))
    if vocab is None:
        raise BenchImageFailed("the bundle's metadata has no vocab_size")
    return {"patch_size": int(vision.get("patch_size", app.c("imagePatchSize"))),
            "pooling_kernel_size": int(vision.get("pooling_kernel_size", app.c("imagePoolingKernel"))),
            "max_soft_tokens": int(vision.get("max_soft_tokens", app.c("imageMaxSoftTokens"))),
            "image_token_id": int(vision["image_token_id"]), "boi_token_id": int(vision["boi_token_id"]),
            "eoi_token_id": int(vision["eoi_token_id"]), "vocab_size": int(vocab),
            "pad_token_id": int(vision[app.c("splicedPleRowKey")])}


def read_picture(app, path: Path):
    """SafeTensorsFile(url:).rgbImage(): the `benchImageTensor` tensor, uint8 [H, W, 3]."""
    import numpy as np
    from safetensors import SafetensorError, safe_open

    name, key = path.name, app.c("benchImageTensor")
    if not path.is_file():
        raise BenchImageFailed(f"The file “{name}” couldn’t be opened because there is no such file.")
    try:
        with safe_open(str(path), framework="np") as fh:
            if key not in fh.keys():  # noqa: SIM118 - safe_open has no __contains__
                raise BenchImageFailed(f"{name} has no tensor {key}; re-run `gemmaios build` and re-deploy")
            pixels = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise BenchImageFailed(f"{name} is not a safetensors file ({exc}); re-run `gemmaios build` and re-deploy") from exc
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != app.c("imageChannels"):
        raise BenchImageFailed(f"{name}: tensor {key} is {pixels.dtype} {list(pixels.shape)}, expected U8 [H, W, 3]")
    return pixels


def engine_input(app, root: Path, bundle_dir: Path, bundle_name: str, prompt: dict) -> tuple[list[int], object | None]:
    """BenchImages.engineIds: (the ids the engine runs, the prepared picture or clip, or None)."""
    ids = [int(t) for t in prompt["prompt_ids"]]
    field = image_field(app)
    image = prompt.get(field) if field else None
    clip = prompt.get(audio_field(app)) if audio_field(app) else None
    if image is not None and clip is not None:
        raise BenchImageFailed(f"the prompt set is invalid: prompt {prompt['id']} names a picture and a clip; "
                               "a prompt holds one or the other")
    if clip is not None:
        return clip_input(app, root, bundle_dir, bundle_name, prompt, clip)
    if image is None:
        return ids, None
    config = vision_config(app, bundle_dir)
    if config is None:
        raise BenchImageFailed(f"this bundle has no usable vision asset (prompt {prompt['id']} has an image, "
                               f"{bundle_name} is text-only)")
    if ".." in str(image).split("/"):
        raise BenchImageFailed(f"this bundle has no usable vision asset (prompt {prompt['id']} names an image "
                               f"outside the payload: {image})")
    pixels = read_picture(app, root / str(image))
    from gemmaios.vision import ImageSpec, VisionError, preprocess

    spec = ImageSpec(**config)
    try:
        prepared = preprocess(pixels, spec)
    except VisionError as exc:
        raise BenchImageFailed(str(exc)) from exc
    image_id = spec.image_token_id
    if image_id not in ids:  # withPlaceholder: after the first token (<bos>)
        ids.insert(min(1, len(ids)), image_id)
    if ids.count(image_id) != 1:
        raise BenchImageFailed(f"the prompt has {ids.count(image_id)} image placeholder(s) for 1 image(s); "
                               "put exactly one placeholder where each image goes")
    expanded: list[int] = []
    for t in ids:
        expanded += [spec.boi_token_id, *[image_id] * prepared.num_soft_tokens, spec.eoi_token_id] \
            if t == image_id else [t]
    out, k = [], 0
    for t in expanded:  # ImagePrompt.rewrite: the k-th image token → V + k
        if t == image_id:
            t, k = spec.vocab_size + k, k + 1
        out.append(t)
    if k > spec.max_soft_tokens:
        raise BenchImageFailed(f"the prompt's images need {k} soft tokens, the model's {app.c('imageEmbedsInput')} "
                               f"holds {spec.max_soft_tokens}; send fewer images per prompt")
    return out, prepared
