"""BundleRunner: Core AI's runtime over one bundle, one token per call (and full chunks through prefill_C)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundleinfo import BundleInfo
from .errors import HostRunError


@dataclass
class HostGeneration:
    prompt_ids: list[int]
    generated_ids: list[int]
    prefill_seconds: float
    decode_seconds: float
    ttft_seconds: float
    decode_token_seconds: list[float] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)  # per generated token, float32 [V] (keep_logits)
    kv_capacity: int = 0  # positions of the KV states this walk bound (prompt + max_new_tokens here)

    @property
    def decode_tokens(self) -> int:
        return max(len(self.generated_ids) - 1, 0)


@dataclass
class EncodedImage:
    """The vision asset's output for one image: image_embeds fp16 [N, hidden], the first
    `num_soft_tokens` rows real (the rest are the padded grid's and never referenced)."""

    embeds: np.ndarray
    num_soft_tokens: int
    seconds: float = 0.0


@dataclass
class EncodedAudio(EncodedImage):
    """The audio asset's output for one clip: audio_embeds fp16 [T, hidden], the first
    `num_soft_tokens` rows real; bound as main's soft-token rows like an image's."""


class BundleRunner:
    """Core AI's runtime over one bundle; `generate` / `forced` walk it token by token.

    Use as a context manager (or call `close()`): the runtime holds the compiled model.
    `tables_dir`: the build's `tables/` folder, needed by bundles with per-layer embeddings.

    Images (bundles with a vision asset, metadata `gemmaios.vision`): pass `image=` to
    `generate` / `forced` / `prefill_snapshot` — a `gemmaios.vision.PreparedImage` (the padded
    patch grid; the runner runs the vision asset) or the `EncodedImage` that `encode_image`
    returned for it. `prompt_ids` are the expanded prompt's ids, either as HF writes
    them (image_token_id x n) or already spliced (V + k): the runner splices them. Without
    `image=`, `image_embeds` is bound to zeros and spliced ids are refused.
    """

    def __init__(self, bundle_dir: Path, tables_dir: Path | None = None) -> None:
        self.bundle = BundleInfo.load(bundle_dir)
        self._loop = asyncio.new_event_loop()
        self._context = None
        self._function = None
        self._prefill: dict[int, Any] = {}  # chunk size -> loaded prefill_C function, largest first
        self._tables = None
        self._static: dict[str, Any] = {}
        self._vision_function = None
        self._audio_function = None
        self.audio = self.bundle.audio
        self._image: dict[str, Any] = {}  # this walk's image_embeds input (bundles with a vision asset)
        self._image_rows = 0  # spliced ids V..V+rows-1 are valid in this walk
        self.vision = self.bundle.vision
        self.load_seconds = 0.0
        ple = self.bundle.ple
        if ple is not None:
            self._open_tables(tables_dir, ple)
        state = self.bundle.spec("states", "keyCache")["shape"]
        self._state_shape = [int(d) if d is not None else 0 for d in state]  # the sequence dim is sized per run
        try:
            self._load()
        except Exception:
            self.close()
            raise

    def _open_tables(self, tables_dir: Path | None, ple: str) -> None:
        from ..tables.layout import TablesError
        from ..tables.reader import PleTables

        if tables_dir is None or not Path(tables_dir).is_dir():
            raise HostRunError(f"{self.bundle.name} takes per-layer embeddings ({ple}) and no PLE tables were given"
                               + (f" ({tables_dir} does not exist)" if tables_dir else ""),
                               hint="pass the build's tables/ folder (`gemmaios tables` writes it)")
        try:
            self._tables = PleTables(Path(tables_dir))
        except TablesError as exc:
            raise HostRunError(f"the PLE tables in {tables_dir} cannot be used: {exc.args[0]}", hint=exc.hint) from exc
        want = self.bundle.spec("inputs", "ple_tokens" if ple == "provider" else "ple_table")["shape"]
        have = [1, 1, self._tables.num_layers, self._tables.dim] if ple == "provider" else list(self._tables.i8.shape)
        if want != have:
            raise HostRunError(f"the PLE tables in {tables_dir} have shape {have}, {self.bundle.name} takes {want}",
                               hint="the tables belong to another checkpoint; run `gemmaios tables` for this one")

    def _load(self) -> None:
        from coreai.authoring.asset import AIModelAsset
        from coreai.runtime import NDArray

        started = time.perf_counter()
        asset = AIModelAsset.load(self.bundle.aimodel)
        self._context = asset.executable()
        try:
            model = self._loop.run_until_complete(self._context.__aenter__())
        except Exception as exc:
            self._context = None
            raise HostRunError(f"Core AI's runtime could not load {self.bundle.aimodel.name}: {exc}",
                               hint=_runtime_hint(exc)) from exc
        self._model = model  # the loaded asset: further functions load from it (hostrun.multimodal)
        if "main" not in model.function_names:
            raise HostRunError(f"{self.bundle.aimodel.name} has no `main` function ({model.function_names})",
                               hint="convert the bundle again")
        try:
            self._function = model.load_function("main")
        except Exception as exc:
            raise HostRunError(f"Core AI's runtime could not prepare `main` of {self.bundle.aimodel.name}: {exc}",
                               hint=_runtime_hint(exc)) from exc
        for chunk, name in self.bundle.prefill_functions.items():
            if name not in model.function_names:
                raise HostRunError(f"{self.bundle.aimodel.name} has no `{name}` function ({model.function_names}) "
                                   "although metadata.json lists it", hint="convert the bundle again")
            try:
                self._prefill[chunk] = model.load_function(name)
            except Exception as exc:
                raise HostRunError(f"Core AI's runtime could not prepare `{name}` of {self.bundle.aimodel.name}: "
                                   f"{exc}", hint=_runtime_hint(exc)) from exc
        if self.vision:
            self._load_vision()
        if self.audio:
            self._load_audio()
        if self.bundle.ple == "tbl":
            self._static = {"ple_table": NDArray(np.ascontiguousarray(self._tables.i8)),
                            "ple_scale": NDArray(np.ascontiguousarray(self._tables.scale, dtype=np.float32))}
        self.load_seconds = time.perf_counter() - started

    def _load_vision(self) -> None:
        from coreai.authoring.asset import AIModelAsset

        path = self.bundle.vision_asset
        if path is None or not path.exists():
            raise HostRunError(f"{self.bundle.name} lists a vision asset but {path} is missing",
                               hint="convert the bundle again with --vision")
        self._vision_context = AIModelAsset.load(path).executable()
        try:
            model = self._loop.run_until_complete(self._vision_context.__aenter__())
            self._vision_function = model.load_function("main")
        except Exception as exc:
            self._vision_context = None
            raise HostRunError(f"Core AI's runtime could not load the vision asset {path.name}: {exc}",
                               hint=_runtime_hint(exc)) from exc

    def _load_audio(self) -> None:
        from coreai.authoring.asset import AIModelAsset

        path = self.bundle.audio_asset
        if path is None or not path.exists():
            raise HostRunError(f"{self.bundle.name} lists an audio asset but {path} is missing",
                               hint="convert the bundle again with --audio")
        self._audio_context = AIModelAsset.load(path).executable()
        try:
            model = self._loop.run_until_complete(self._audio_context.__aenter__())
            self._audio_function = model.load_function("main")
        except Exception as exc:
            self._audio_context = None
            raise HostRunError(f"Core AI's runtime could not load the audio asset {path.name}: {exc}",
                               hint=_runtime_hint(exc)) from exc

    def close(self) -> None:
        if getattr(self, "_audio_context", None) is not None:
            self._loop.run_until_complete(self._audio_context.__aexit__(None, None, None))
            self._audio_context = None
        self._audio_function = None
        if getattr(self, "_vision_context", None) is not None:
            self._loop.run_until_complete(self._vision_context.__aexit__(None, None, None))
            self._vision_context = None
        self._vision_function = None
        if self._context is not None:
            self._loop.run_until_complete(self._context.__aexit__(None, None, None))
            self._context = None
        self._function = None
        self._model = None
        self._prefill = {}
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> BundleRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- images ----------------------------------------------------------------------

    def _vision_facts(self) -> dict:
        if not self.vision:
            raise HostRunError(f"{self.bundle.name} takes no images (it has no vision asset)",
                               hint="convert an E2B/E4B multimodal checkpoint with --vision")
        return self.vision

    def encode_image(self, image) -> EncodedImage:
        """The vision asset on one prepared image (gemmaios.vision.PreparedImage)."""
        from coreai.runtime import NDArray

        from .. import contract

        facts = self._vision_facts()
        want = (int(facts["max_patches"]), int(facts["patch_dim"]))
        pixels = np.asarray(image.pixel_values, np.float16)
        positions = np.asarray(image.pixel_position_ids, np.int32)
        if pixels.shape != want or positions.shape != (want[0], 2):
            raise HostRunError(f"the image's patch grid is {list(pixels.shape)} / positions {list(positions.shape)}, "
                               f"the vision asset takes {list(want)} / [{want[0]}, 2]",
                               hint="prepare the image with gemmaios.vision.preprocess and this bundle's ImageSpec")
        inputs = {contract.VISION_PIXELS_INPUT: NDArray(np.ascontiguousarray(pixels[None])),
                  contract.VISION_POSITIONS_INPUT: NDArray(np.ascontiguousarray(positions[None]))}
        started = time.perf_counter()
        try:
            out = self._loop.run_until_complete(self._vision_function(inputs=inputs))
        except Exception as exc:
            raise HostRunError(f"Core AI's runtime failed on {self.bundle.name}'s vision asset: {exc}",
                               hint=_runtime_hint(exc)) from exc
        return EncodedImage(np.asarray(out[contract.VISION_OUTPUT].numpy(), np.float16), int(image.num_soft_tokens),
                            time.perf_counter() - started)

    def encode_audio(self, clip) -> EncodedAudio:
        """The audio asset on one prepared clip (gemmaios.audio.PreparedAudio)."""
        from coreai.runtime import NDArray

        from .. import contract

        if not self.audio:
            raise HostRunError(f"{self.bundle.name} takes no audio (it has no audio asset)",
                               hint="convert an E2B/E4B checkpoint that has an audio tower with --audio")
        facts = self.audio
        want = (int(facts["max_frames"]), int(facts["feature_size"]))
        features = np.asarray(clip.input_features, np.float16)
        mask = np.asarray(clip.input_features_mask, np.int32)
        if features.shape != want or mask.shape != (want[0],):
            raise HostRunError(f"the clip's features are {list(features.shape)} / mask {list(mask.shape)}, the audio "
                               f"asset takes {list(want)} / [{want[0]}]",
                               hint="prepare the clip with gemmaios.audio.prepare and this bundle's AudioSpec")
        inputs = {contract.AUDIO_FEATURES_INPUT: NDArray(np.ascontiguousarray(features[None])),
                  contract.AUDIO_MASK_INPUT: NDArray(np.ascontiguousarray(mask[None]))}
        started = time.perf_counter()
        try:
            out = self._loop.run_until_complete(self._audio_function(inputs=inputs))
        except Exception as exc:
            raise HostRunError(f"Core AI's runtime failed on {self.bundle.name}'s audio asset: {exc}",
                               hint=_runtime_hint(exc)) from exc
        return EncodedAudio(np.asarray(out[contract.AUDIO_OUTPUT].numpy(), np.float16), int(clip.num_soft_tokens),
                            time.perf_counter() - started)

    def _bind_image(self, prompt_ids: Sequence[int], image) -> list[int]:
        """Set this walk's soft-token input (image_embeds); return the prompt with the soft tokens
        spliced (V + k). `image`: a picture (PreparedImage / EncodedImage) or a clip (PreparedAudio /
        EncodedAudio): both take the same id space and rows (contract.AUDIO_EMBEDS_INPUT)."""
        from coreai.runtime import NDArray

        from .. import contract

        ids = [int(t) for t in prompt_ids]
        is_audio = isinstance(image, EncodedAudio) or hasattr(image, "input_features")
        if is_audio and not self.audio:
            self.encode_audio(image)  # raises: no audio asset
        if not self.vision and not self.audio:
            if image is not None:
                self._vision_facts()
            return ids
        facts = self.audio if (is_audio or not self.vision) else self.vision
        rows = int(facts.get("embeds_rows") or facts["max_soft_tokens"])
        hidden = int(facts["hidden_size"])
        vocab = self.bundle.vocab_size
        image_id = int(facts["audio_token_id"] if facts is self.audio else facts["image_token_id"])
        spliced, k = [], 0
        for t in ids:
            if t == image_id:
                t, k = vocab + k, k + 1
            spliced.append(t)
        used = max((t - vocab + 1 for t in spliced if t >= vocab), default=0)
        if image is None:
            embeds = np.zeros((rows, hidden), np.float16)
            if used:
                raise HostRunError(f"the prompt holds {used} image soft tokens but no image was given",
                                   hint="pass image= (a PreparedImage or its image_embeds)")
            self._image_rows = 0
        else:
            if is_audio:
                encoded = image if isinstance(image, EncodedAudio) else self.encode_audio(image)
            else:
                encoded = image if isinstance(image, EncodedImage) else self.encode_image(image)
            embeds, real = np.asarray(encoded.embeds, np.float16), encoded.num_soft_tokens
            if embeds.ndim == 2 and embeds.shape[0] < rows:  # the other encoder's budget is larger: zero rows
                embeds = np.concatenate([embeds, np.zeros((rows - embeds.shape[0], embeds.shape[1]), np.float16)])
            if embeds.shape != (rows, hidden):
                raise HostRunError(f"image_embeds has shape {list(embeds.shape)}, {self.bundle.name} takes [{rows}, {hidden}]",
                                   hint="compute it with this bundle's vision asset (encode_image)")
            if used > real:
                raise HostRunError(f"the prompt holds {used} image soft tokens but the image has {real}",
                                   hint="expand the prompt with the image's own num_soft_tokens")
            self._image_rows = real
        self._image = {contract.IMAGE_EMBEDS_INPUT: NDArray(np.ascontiguousarray(embeds))}
        return spliced

    def _ple(self, tokens: int | list[int]) -> np.ndarray:
        facts = self.vision or self.audio
        spliced_row = int(facts["pad_token_id"]) if facts else None
        return self._tables.gather(tokens, spliced_row=spliced_row)

    def _check_tokens(self, tokens: Sequence[int]) -> None:
        vocab = self.bundle.vocab_size
        limit = vocab + self._image_rows
        bad = [t for t in tokens if not 0 <= t < limit]
        if bad:
            what = f"0..{vocab - 1}" + (f" (and image ids {vocab}..{limit - 1})" if self._image_rows else "")
            raise HostRunError(f"token id {bad[0]} is outside the bundle's vocabulary {what}",
                               hint="token ids must come from the bundle's tokenizer")

    # -- one walk --------------------------------------------------------------------

    def _new_states(self, capacity: int) -> dict:
        from coreai.runtime import NDArray

        shape = list(self._state_shape)
        shape[3] = capacity
        return {"keyCache": NDArray(np.zeros(shape, np.float16)), "valueCache": NDArray(np.zeros(shape, np.float16))}

    def _step(self, token: int, length: int, states: dict) -> np.ndarray:
        from coreai.runtime import NDArray

        self._check_tokens([token])
        inputs = {"input_ids": NDArray(np.array([[token]], np.int32)),
                  "position_ids": NDArray(np.arange(length, dtype=np.int32)[None, :])}
        if self.bundle.ple == "provider":
            inputs["ple_tokens"] = NDArray(self._ple(token))
        inputs.update(self._static)
        inputs.update(self._image)
        try:
            out = self._loop.run_until_complete(self._function(inputs=inputs, state=states))
        except Exception as exc:
            raise HostRunError(f"Core AI's runtime failed on {self.bundle.name} at position {length - 1}: {exc}",
                               hint=_runtime_hint(exc)) from exc
        return np.asarray(out["logits"].numpy(), dtype=np.float32).reshape(-1)

    @property
    def prefill_chunks(self) -> list[int]:
        """The bundle's prefill chunk sizes, largest first (empty: `main` only)."""
        return list(self._prefill)

    def _chunk(self, tokens: Sequence[int], length: int, states: dict) -> np.ndarray:
        """One `prefill_C` call: C tokens at positions length-C..length-1; the last row's logits."""
        from coreai.runtime import NDArray

        rows = len(tokens)
        self._check_tokens(tokens)
        inputs = {"input_ids": NDArray(np.array([list(tokens)], np.int32)),
                  "position_ids": NDArray(np.arange(length, dtype=np.int32)[None, :])}
        if self.bundle.ple == "provider":
            inputs["ple_tokens"] = NDArray(self._ple(list(tokens)))
        inputs.update(self._static)
        inputs.update(self._image)
        try:
            out = self._loop.run_until_complete(self._prefill[rows](inputs=inputs, state=states))
        except Exception as exc:
            raise HostRunError(f"Core AI's runtime failed on {self.bundle.name}'s prefill_{rows} at positions "
                               f"{length - rows}..{length - 1}: {exc}", hint=_runtime_hint(exc)) from exc
        return np.asarray(out["logits"].numpy(), dtype=np.float32).reshape(-1)

    def prefill(self, prompt_ids: Sequence[int], states: dict, *, chunked: bool = True,
                sizes: Sequence[int] | None = None, last_in_main: bool = True,
                start: int = 0) -> tuple[np.ndarray, list[int]]:
        """Feed the prompt into `states`; return the last position's logits and the calls' sizes.

        `chunked`: full chunks through the prefill functions (largest first, as many as fit),
        the rest through `main` one token per call, as the patched engine routes them (patch
        0004: the prompt's last token always goes through `main`, whose step samples the first
        new token; `last_in_main=False` also lets a chunk end the prompt, to check the chunk's
        own logits). False (or a bundle without prefill functions): `main` only. `sizes`: use
        only these of the bundle's chunk sizes. `start`: the cache already holds that many
        positions (a chat's earlier turns); the prompt goes on from there.
        """
        reserve = 1 if last_in_main else 0
        usable = [c for c in self._prefill if chunked and (sizes is None or c in sizes)]
        if sizes is not None and set(sizes) - set(self._prefill):
            raise HostRunError(f"{self.bundle.name} has no prefill function for chunk size(s) "
                               f"{sorted(set(sizes) - set(self._prefill))} (it has {self.prefill_chunks})",
                               hint="pick sizes from the bundle's gemmaios.prefill.chunks")
        logits, calls, pos = None, [], 0
        total = len(prompt_ids)
        while pos < total:
            rows = next((c for c in usable if total - pos - reserve >= c), 1)
            if rows == 1:
                logits = self._step(int(prompt_ids[pos]), start + pos + 1, states)
            else:
                logits = self._chunk([int(t) for t in prompt_ids[pos : pos + rows]], start + pos + rows, states)
            calls.append(rows)
            pos += rows
        return logits, calls

    def new_states(self, capacity: int) -> dict:
        """Empty KV caches for `capacity` positions (at most the bundle's context)."""
        return self._new_states(self._capacity(capacity))

    def grow_states(self, states: dict, capacity: int) -> dict:
        """Larger caches holding what `states` hold (their first positions), as the engine grows its KV."""
        from coreai.runtime import NDArray

        grown = self.new_states(capacity)
        for name in ("keyCache", "valueCache"):
            old = np.array(states[name].numpy())
            new = np.array(grown[name].numpy())
            new[:, :, :, : old.shape[3]] = old
            grown[name] = NDArray(np.ascontiguousarray(new))
        return grown

    def step(self, token: int, length: int, states: dict) -> np.ndarray:
        """One `main` call: `token` at position length-1; its logits."""
        return self._step(int(token), length, states)

    def prefill_snapshot(self, prompt_ids: Sequence[int], capacity: int, *, chunked: bool,
                         sizes: Sequence[int] | None = None, last_in_main: bool = True, image=None) -> dict:
        """The prompt's last logits and both KV caches after a prefill walk (for bit-identity checks)."""
        prompt_ids = self._bind_image(prompt_ids, image)
        states = self._new_states(self._capacity(capacity))
        logits, calls = self.prefill([int(t) for t in prompt_ids], states, chunked=chunked, sizes=sizes,
                                     last_in_main=last_in_main)
        return {"logits": logits, "keyCache": np.array(states["keyCache"].numpy()),
                "valueCache": np.array(states["valueCache"].numpy()), "calls": calls}

    def _capacity(self, needed: int) -> int:
        if needed > self.bundle.max_context:
            raise HostRunError(f"{needed} tokens exceed the bundle's context of {self.bundle.max_context}",
                               hint="use a shorter prompt or fewer new tokens, or convert with a larger --max-context")
        return needed

    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        *,
        stop_ids: Sequence[int] = (),
        keep_logits: bool = False,
        on_token: Callable[[int], Any] | None = None,
        chunked: bool = False,
        sizes: Sequence[int] | None = None,
        image=None,
        should_stop: Callable[[], bool] | None = None,
    ) -> HostGeneration:
        """Greedy decode: the prompt one token per call, then up to `max_new_tokens` new tokens.

        `should_stop`: asked after each token (after `on_token`); True ends the generation there, with
        the tokens so far (`gemmaios run` on Ctrl-C: never interrupted inside the native runtime).
        `chunked`: the prompt's full chunks go through the bundle's prefill functions (see `prefill`);
        `sizes`: only these chunk sizes (the app's engine loads one function, the largest).
        `stop_ids`: stop after generating one of these (empty: exactly N tokens, as the oracle).
        Timing as the app records it: prefill = first call to the first logits, decode = from the
        first generated token to the last. `image`: see the class docstring (the vision asset's
        time counts into prefill, as the app's first token waits for it).
        """
        started_image = time.perf_counter()
        prompt_ids = self._bind_image(prompt_ids, image)
        image_seconds = time.perf_counter() - started_image
        if not prompt_ids:
            raise HostRunError("empty prompt", hint="give at least one token (the BOS)")
        if max_new_tokens < 1:
            raise HostRunError(f"max_new_tokens must be at least 1, got {max_new_tokens}", hint="ask for 1 or more tokens")
        capacity = self._capacity(len(prompt_ids) + max_new_tokens)
        states = self._new_states(capacity)
        started = time.perf_counter()
        logits, _ = self.prefill(prompt_ids, states, chunked=chunked, sizes=sizes if chunked else None)
        first = time.perf_counter()
        generated, kept, token_seconds = [], [], []
        last = first
        while True:
            token = int(np.argmax(logits))
            generated.append(token)
            if keep_logits:
                kept.append(logits)
            if on_token:
                on_token(token)
            if len(generated) == max_new_tokens or token in stop_ids or (should_stop and should_stop()):
                break
            logits = self._step(token, len(prompt_ids) + len(generated), states)
            now = time.perf_counter()
            token_seconds.append(now - last)
            last = now
        return HostGeneration(prompt_ids, generated, prefill_seconds=first - started + image_seconds,
                              decode_seconds=last - first, ttft_seconds=first - started + image_seconds,
                              decode_token_seconds=token_seconds, logits=kept, kv_capacity=capacity)

    def forced(self, prompt_ids: Sequence[int], continuation: Sequence[int], *, image=None) -> np.ndarray:
        """Teacher forcing: logits [len(continuation), V] predicting each continuation token."""
        prompt_ids = self._bind_image(prompt_ids, image)
        sequence = [int(t) for t in prompt_ids] + [int(t) for t in continuation]
        states = self._new_states(self._capacity(len(sequence)))
        rows = []
        for i, token in enumerate(sequence[:-1] if continuation else sequence):
            logits = self._step(token, i + 1, states)
            if i + 1 >= len(prompt_ids):
                rows.append(logits)
        return np.stack(rows[: len(continuation)]) if continuation else np.empty((0, self.bundle.vocab_size), np.float32)


def _runtime_hint(exc: BaseException) -> str:
    text = str(exc).lower()
    if "kernel" in text or "metal" in text:
        return ("this bundle calls a Metal kernel, which Core AI's CPU runtime on Linux cannot execute; "
                "run it on a Mac (macOS 27) to check it")
    return "check that coreai-core matches the one that converted the bundle (`gemmaios doctor`), or convert again"


