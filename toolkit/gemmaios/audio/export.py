"""The audio asset: AudioEncoder → torch.export (static shapes) → coreai-torch → `<bundle>.audio.aimodel`."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import contract
from ..memory import audio_encoder_activation_bytes
from .clipset import AudioError
from .encoder import AudioEncoder, load_audio_modules
from .preprocess import AudioSpec


def audio_asset_name(bundle_name: str) -> str:
    return f"{bundle_name}.audio.aimodel"


def export_audio_asset(checkpoint, spec: AudioSpec, out: Path, dtype: torch.dtype = torch.float16) -> dict:
    """Write the audio asset to `out` and return its facts for metadata.json `gemmaios.audio`."""
    from ..convert.assets import export_static_asset

    started = time.time()
    tower, embedder = load_audio_modules(checkpoint)
    module = AudioEncoder(tower, embedder, spec.max_frames, dtype=dtype).eval()
    # the encoder's peak activations at its static frame count, for the iPhone memory arithmetic (payload)
    activation_bytes = audio_encoder_activation_bytes(
        spec.max_frames, module.max_soft_tokens, module.hidden, module.heads,
        tuple(tower.config.subsampling_conv_channels), module.text_hidden, spec.feature_size)
    del tower, embedder
    if module.max_soft_tokens != spec.max_soft_tokens:
        raise AudioError(f"the audio tower makes {module.max_soft_tokens} soft tokens of {spec.max_frames} frames, the "
                         f"processor's arithmetic {spec.max_soft_tokens}", hint="report this")
    names_in = (contract.AUDIO_FEATURES_INPUT, contract.AUDIO_MASK_INPUT)

    class Graph(torch.nn.Module):
        def __init__(self, encoder: AudioEncoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_features, input_features_mask):
            return self.encoder(input_features, input_features_mask)

    out = Path(out)
    io_in, io_out = export_static_asset(Graph(module), module.example_inputs(), names_in, (contract.AUDIO_OUTPUT,), out)
    want_in = [[1, spec.max_frames, spec.feature_size], [1, spec.max_frames]]
    if [i["name"] for i in io_in] != list(names_in) or [i["shape"] for i in io_in] != want_in:
        raise AudioError(f"{out.name}: inputs {io_in}, expected {list(names_in)} with shapes {want_in}",
                         hint="report this: the audio asset's static frame count did not survive conversion")
    if [o["name"] for o in io_out] != [contract.AUDIO_OUTPUT] or io_out[0]["shape"] != [spec.max_soft_tokens,
                                                                                          module.text_hidden]:
        raise AudioError(f"{out.name}: outputs {io_out}, expected {contract.AUDIO_OUTPUT} "
                         f"[{spec.max_soft_tokens}, {module.text_hidden}]", hint="report this")
    return {
        contract.AUDIO_ASSET_FIELD: out.name,
        "inputs": io_in,
        "outputs": io_out,
        "dtype": str(dtype).removeprefix("torch."),
        **spec.as_dict(),
        "max_seconds": spec.max_seconds,
        "hidden_size": module.text_hidden,
        "activation_bytes": activation_bytes,
        "expansion": "boa_token_id, audio_token_id x num_soft_tokens, eoa_token_id (one clip per prompt)",
        "preprocessing": "transformers' Gemma4AudioFeatureExtractor (16 kHz mono, 20 ms frames every 10 ms, 128 HTK "
                         "mel bins to 8 kHz, log(mel + 1e-3)) padded to max_samples; mask 1 for frames that end inside "
                         "the clip; num_soft_tokens = the mask after two [::2] subsamplings, summed",
        "seconds": round(time.time() - started, 2),
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else out.stat().st_size,
    }


def audio_asset_facts(facts: dict, embeds_rows: int) -> dict:
    """The asset's facts plus the splice's (metadata.json gemmaios.audio)."""
    return {**facts, contract.SPLICED_PLE_ROW_KEY: facts["pad_token_id"], "embeds_rows": int(embeds_rows),
            "embeds_input": contract.AUDIO_EMBEDS_INPUT,
            "splice": "the k-th audio soft token of the expanded prompt becomes id vocab_size + k; ids >= vocab_size "
                      "take row id - vocab_size of the soft-token input (bound with this asset's output) and the "
                      "PLE row of pad_token_id"}


def run_audio_asset(path: Path, input_features, input_features_mask):
    """The audio asset under Core AI's runtime on one prepared clip: audio_embeds fp16 [T, hidden]."""
    import asyncio

    import numpy as np
    from coreai.authoring.asset import AIModelAsset
    from coreai.runtime import NDArray

    async def go():
        async with AIModelAsset.load(Path(path)).executable() as model:
            fn = model.load_function("main")
            inputs = {contract.AUDIO_FEATURES_INPUT: NDArray(np.ascontiguousarray(np.asarray(input_features, np.float16)[None])),
                      contract.AUDIO_MASK_INPUT: NDArray(np.ascontiguousarray(np.asarray(input_features_mask, np.int32)[None]))}
            out = await fn(inputs=inputs)
            return np.asarray(out[contract.AUDIO_OUTPUT].numpy(), np.float16)

    return asyncio.run(go())
