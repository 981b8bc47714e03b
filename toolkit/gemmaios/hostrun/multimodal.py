"""The 12B's multimodal bundle (gemma4_unified) under Core AI's runtime: embedders, prefill_multimodal, then main.

`MultimodalRunner` is a BundleRunner that also loads `prefill_multimodal`, `embed_vision` and
`embed_audio` from the same asset (metadata `gemmaios.multimodal`). A prompt is given as HF writes
it (placeholders already expanded: BOI + image x n + EOI, BOA + audio x n + EOA) with its prepared
pictures and framed clips in prompt order; the client-side inputs come from gemmaios.unified_inputs:
the embedders' rows scattered where mm_mask is set, the soft tokens' ids replaced by the pad id, the
two boolean masks. The whole prompt is one `prefill_multimodal` call (its bidirectional blocks need
all their rows in one call); new tokens then go through `main`, one per call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import contract
from ..unified_embedders import AUDIO_FUNCTION, EMBEDS_OUTPUT, VISION_FUNCTION
from ..unified_inputs import (
    AUDIO_TYPE,
    IMAGE_TYPE,
    VIDEO_TYPE,
    MultimodalInputError,
    PreparedImage,
    UnifiedSpec,
    attention_masks,
    graph_input_ids,
    mm_token_type_ids,
    multimodal_mask,
    scatter_embeddings,
)
from .errors import HostRunError
from .runner import BundleRunner

PREFILL_MULTIMODAL = contract.PREFILL_MULTIMODAL_FUNCTION


def vision_inputs(image: PreparedImage) -> dict:
    """`embed_vision`'s inputs for one picture: its real rows only (fp16 pixels, int32 positions)."""
    n = image.num_soft_tokens
    return {contract.EMBED_PIXELS_INPUT: image.pixel_values[None, :n].astype(np.float16),
            contract.EMBED_POSITIONS_INPUT: image.position_ids[None, :n].astype(np.int32)}


def audio_inputs(frames: np.ndarray) -> dict:
    """`embed_audio`'s inputs for one clip's frames [T, samples_per_token]."""
    return {contract.EMBED_FRAMES_INPUT: np.asarray(frames, np.float16)[None]}


def prefill_inputs(spec: UnifiedSpec, ids: Sequence[int], mm_embeds: np.ndarray) -> dict:
    """`prefill_multimodal`'s inputs for a whole expanded prompt at positions 0..S-1 (the app builds the same:
    GemmaiosCore's UnifiedRequest, checked against these by tests/test_swift_unified.py)."""
    ids = [int(t) for t in ids]
    s = len(ids)
    types = mm_token_type_ids(ids, spec)
    sliding, global_ = attention_masks(types, spec.sliding_window)
    return {contract.INPUT_IDS_INPUT: graph_input_ids(ids, spec)[None],
            contract.MM_EMBEDS_INPUT: np.asarray(mm_embeds).astype(np.float16)[None],
            contract.MM_MASK_INPUT: multimodal_mask(types)[None],
            contract.POSITION_IDS_INPUT: np.arange(s, dtype=np.int32)[None],
            contract.MASK_SLIDING_INPUT: sliding[None, None], contract.MASK_GLOBAL_INPUT: global_[None, None]}


@dataclass
class MultimodalGeneration:
    prompt_ids: list[int]
    generated_ids: list[int]
    logits: list[np.ndarray]  # per generated token, float32 [V]
    embed_seconds: float
    prefill_seconds: float
    decode_seconds: float


class MultimodalRunner(BundleRunner):
    def __init__(self, bundle_dir: Path) -> None:
        super().__init__(bundle_dir)
        facts = self.bundle.facts.get("multimodal")
        if not facts:
            self.close()
            raise HostRunError(f"{self.bundle.name} has no multimodal functions (no gemmaios.multimodal in metadata.json)",
                               hint="convert a gemma4_unified checkpoint with --target mac --vision --audio")
        self.facts = facts
        self.functions = {}
        for name in facts["functions"]:
            try:
                self.functions[name] = self._model.load_function(name)
            except Exception as exc:
                self.close()
                raise HostRunError(f"Core AI's runtime could not prepare `{name}` of {self.bundle.aimodel.name}: {exc}",
                                   hint="convert the bundle again") from exc

    def _call(self, name: str, inputs: dict, states: dict | None = None) -> dict:
        from coreai.runtime import NDArray

        if name not in self.functions:
            raise HostRunError(f"{self.bundle.name} has no `{name}` function ({sorted(self.functions)})",
                               hint="convert with the flag for that modality (--vision / --audio)")
        arrays = {k: NDArray(np.ascontiguousarray(v)) for k, v in inputs.items()}
        try:
            call = self.functions[name](inputs=arrays, state=states) if states is not None else \
                self.functions[name](inputs=arrays)
            return self._loop.run_until_complete(call)
        except Exception as exc:
            raise HostRunError(f"Core AI's runtime failed on {self.bundle.name}'s {name}: {exc}",
                               hint="check that coreai-core matches the one that converted the bundle") from exc

    def embed_image(self, image: PreparedImage) -> np.ndarray:
        """`embed_vision` on one picture's real rows: float32 [n, hidden]."""
        out = self._call(VISION_FUNCTION, vision_inputs(image))
        return np.asarray(out[EMBEDS_OUTPUT].numpy(), np.float32)[0]

    def embed_clip(self, frames: np.ndarray) -> np.ndarray:
        """`embed_audio` on one clip's frames [T, samples]: float32 [T, hidden]."""
        out = self._call(AUDIO_FUNCTION, audio_inputs(frames))
        return np.asarray(out[EMBEDS_OUTPUT].numpy(), np.float32)[0]

    def embeds_for(self, spec: UnifiedSpec, ids: Sequence[int], images: Sequence[PreparedImage],
                   clips: Sequence[np.ndarray]) -> np.ndarray:
        """mm_embeds [S, hidden]: each item's rows at its soft tokens, in prompt order."""
        types = mm_token_type_ids(ids, spec)
        runs = [int(t) for t in types[np.r_[True, types[1:] != types[:-1]]] if t]
        images, clips = list(images), list(clips)
        rows = []
        for kind in runs:
            if kind in (IMAGE_TYPE, VIDEO_TYPE):
                if not images:
                    raise HostRunError("the prompt has more image blocks than pictures were given",
                                       hint="one prepared picture per BOI + image x n + EOI block")
                rows.append(self.embed_image(images.pop(0)))
            elif kind == AUDIO_TYPE:
                if not clips:
                    raise HostRunError("the prompt has more audio blocks than clips were given",
                                       hint="one framed clip per BOA + audio x n + EOA block")
                rows.append(self.embed_clip(clips.pop(0)))
        try:
            return scatter_embeddings(multimodal_mask(types), rows, int(self.facts["hidden_size"]))
        except MultimodalInputError as exc:
            raise HostRunError(str(exc).split("\n")[0], hint=exc.hint) from exc

    def prefill_prompt(self, spec: UnifiedSpec, ids: Sequence[int], mm_embeds: np.ndarray, states: dict) -> np.ndarray:
        """One `prefill_multimodal` call over the whole prompt (positions 0..S-1): the last row's logits."""
        out = self._call(PREFILL_MULTIMODAL, prefill_inputs(spec, ids, mm_embeds), states)
        return np.asarray(out[contract.LOGITS_OUTPUT].numpy(), np.float32).reshape(-1)

    def generate_multimodal(self, spec: UnifiedSpec, ids: Sequence[int], images: Sequence[PreparedImage] = (),
                            clips: Sequence[np.ndarray] = (), max_new_tokens: int = 8, *,
                            forced: Sequence[int] | None = None) -> MultimodalGeneration:
        """Greedy (or teacher-forced along `forced`) after one multimodal prefill."""
        started = time.perf_counter()
        mm = self.embeds_for(spec, ids, images, clips)
        embedded = time.perf_counter()
        n = len(forced) if forced is not None else max_new_tokens
        states = self._new_states(self._capacity(len(ids) + n))
        logits = self.prefill_prompt(spec, ids, mm, states)
        prefilled = time.perf_counter()
        generated, kept = [], []
        while True:
            kept.append(logits)
            token = int(forced[len(generated)]) if forced is not None else int(np.argmax(logits))
            generated.append(token)
            if len(generated) == n or (forced is None and token in spec.stop_token_ids):
                break
            logits = self._step(token, len(ids) + len(generated), states)
        return MultimodalGeneration([int(t) for t in ids], generated, kept, embedded - started, prefilled - embedded,
                                    time.perf_counter() - prefilled)
