"""Run a built bundle on this machine through Core AI's own runtime, the way the app does.

`BundleRunner` loads a bundle folder (metadata.json + the `.aimodel`) with
`coreai.authoring.AIModelAsset.load(p).executable()` and feeds its `main` function one token
per call, exactly as the app's pipelined engine does with `COREAI_CHUNK_THRESHOLD=1`: the
inputs by name (`input_ids [1,1]`, `position_ids [1,P]`, then the per-layer embedding input),
the `keyCache`/`valueCache` states sized for the run and updated in place by the runtime.
The per-layer embedding input comes from the build's PLE tables: `provider` bundles get the
app's gather (`fp16(i8[v] * scale[v] * sqrt(D))`, `gemmaios.tables.PleTables.gather`), `tbl`
bundles get the int8 table and its scales as static inputs.

Where it runs: on Linux, coreai-core compiles the asset into a temporary `.aimodelx` and runs
it on its CPU runtime, whose f16 matmuls accumulate in f16 (noisier than torch fp16; it is
not the iPhone GPU, but it is Apple's own executor of our exact file). On macOS the same calls
load the asset with the system runtime. A full-size bundle is far too slow on a CPU
(E4B int4: ~7 minutes per token on 2 cores, see benchmarks/hostrun_e4b_synthetic.py), so the
runner is a correctness tool for small models; `estimate_step_seconds` says so up front.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import GemmaiosError
from .pipeline import sha256_file

HOST_PLATFORM = "host-runtime"
# Above this many weight bytes a CPU decode step takes minutes, not milliseconds.
LARGE_BUNDLE_BYTES = 512 << 20
# Measured: tiny bundles ~0.05-0.09 s per step; synthetic E4B int4 ~420 s per step on 2 cores.
CPU_SECONDS_PER_GB = 420 / 3.95

Progress = Callable[[int], Any]


class HostRunError(GemmaiosError):
    """A bundle cannot be run on this machine (missing files, tables, or an op the runtime cannot execute)."""


class BundleGateFailed(GemmaiosError):
    """The saved bundle, run by Core AI's runtime, does not reproduce the fp32 oracle."""

    def __init__(self, message: str, *, prompt: str | None = None, position: int | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.prompt, self.position = prompt, position


# ----------------------------------------------------------------------------- bundle facts


@dataclass
class BundleInfo:
    """What the runner needs from a bundle folder's metadata.json."""

    dir: Path
    name: str
    aimodel: Path
    metadata: dict
    metadata_sha256: str

    @property
    def facts(self) -> dict:
        return self.metadata.get("gemmaios") or {}

    @property
    def ple(self) -> str | None:
        names = {i["name"] for i in self.facts.get("inputs", [])}
        if "ple_tokens" in names:
            return "provider"
        if "ple_table" in names:
            return "tbl"
        return None

    @property
    def vocab_size(self) -> int:
        return int(self.metadata["language"]["vocab_size"])

    @property
    def max_context(self) -> int:
        return int(self.metadata["language"]["max_context_length"])

    @property
    def prefill_functions(self) -> dict[int, str]:
        """{chunk size C: function name} of the bundle's `prefill` role (empty: main only)."""
        names = (self.metadata["language"].get("function_map") or {}).get("prefill") or []
        chunks = (self.facts.get("prefill") or {}).get("functions") or {}
        found = {}
        for name in names:
            if name not in chunks:
                raise HostRunError(f"{self.dir / 'metadata.json'}: function_map names prefill function {name!r} "
                                   "but gemmaios.prefill.functions does not describe it",
                                   hint="the bundle was not written by this gemmaios; convert it again")
            found[int(chunks[name]["chunk"])] = name
        return dict(sorted(found.items(), reverse=True))

    def spec(self, kind: str, name: str) -> dict:
        for item in self.facts.get(kind, []):
            if item["name"] == name:
                return item
        raise HostRunError(f"{self.dir / 'metadata.json'} lists no {kind[:-1]} {name!r}",
                           hint="the bundle was not written by this gemmaios; convert it again")

    def header(self) -> dict:
        """The transcript header's `bundle` object."""
        return {"name": self.name, "metadata_sha256": self.metadata_sha256, "quant": self.facts.get("quant"),
                "ple": self.ple or "none"}

    @classmethod
    def load(cls, bundle_dir: Path) -> BundleInfo:
        bundle_dir = Path(bundle_dir)
        if bundle_dir.is_file():
            raise HostRunError(f"{bundle_dir} is a file, not a bundle folder",
                               hint="pass a folder from `<build>/bundle/` (it holds metadata.json and the .aimodel)")
        if not bundle_dir.is_dir():
            raise HostRunError(f"bundle folder {bundle_dir} does not exist",
                               hint="pass a folder from `<build>/bundle/`, or run `gemmaios convert` first")
        # After an AOT compile metadata.json points at the .aimodelc (iPhone); metadata.mac.json
        # keeps the .aimodel that a Mac or this runner loads.
        meta_path = next((p for p in (bundle_dir / "metadata.mac.json", bundle_dir / "metadata.json") if p.is_file()), None)
        if meta_path is None:
            raise HostRunError(f"{bundle_dir} has no metadata.json", hint="it is not a LanguageBundle; convert again")
        try:
            metadata = json.loads(meta_path.read_text())
            main = metadata["assets"]["main"]
            metadata["language"]["vocab_size"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise HostRunError(f"{meta_path} is not a valid bundle metadata file ({exc!r})",
                               hint="convert the bundle again") from exc
        aimodel = bundle_dir / main
        if aimodel.suffix != ".aimodel":
            aimodel = bundle_dir / f"{metadata.get('name', bundle_dir.name)}.aimodel"
        if not aimodel.exists():
            raise HostRunError(f"{bundle_dir} has no {aimodel.name}",
                               hint="the .aimodel is needed to run on this machine; convert the bundle again")
        return cls(bundle_dir, str(metadata.get("name") or bundle_dir.name), aimodel, metadata,
                   sha256_file(bundle_dir / "metadata.json"))


def find_bundle(build_dir: Path) -> Path:
    """The bundle folder of a build (`<build>/bundle/<name>/`)."""
    root = Path(build_dir) / "bundle"
    found = sorted(p for p in root.glob("*") if p.is_dir() and (p / "metadata.json").is_file()) if root.is_dir() else []
    if not found:
        raise HostRunError(f"{build_dir} holds no bundle (looked in {root})",
                           hint=f"run `gemmaios convert --out {build_dir}` (or `gemmaios build`) first")
    if len(found) > 1:
        raise HostRunError(f"{build_dir} holds several bundles: {', '.join(p.name for p in found)}",
                           hint="pass --bundle with the one to run")
    return found[0]


def asset_weight_bytes(bundle: BundleInfo) -> int:
    path = bundle.aimodel
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def estimate_step_seconds(bundle: BundleInfo) -> float:
    """A rough CPU decode-step time for this bundle on this machine class (for the up-front warning)."""
    return asset_weight_bytes(bundle) / 1e9 * CPU_SECONDS_PER_GB


# ----------------------------------------------------------------------------- the runner


@dataclass
class HostGeneration:
    prompt_ids: list[int]
    generated_ids: list[int]
    prefill_seconds: float
    decode_seconds: float
    ttft_seconds: float
    decode_token_seconds: list[float] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)  # per generated token, float32 [V] (keep_logits)

    @property
    def decode_tokens(self) -> int:
        return max(len(self.generated_ids) - 1, 0)


class BundleRunner:
    """Core AI's runtime over one bundle; `generate` / `forced` walk it token by token.

    Use as a context manager (or call `close()`): the runtime holds the compiled model.
    `tables_dir`: the build's `tables/` folder, needed by bundles with per-layer embeddings.
    """

    def __init__(self, bundle_dir: Path, tables_dir: Path | None = None) -> None:
        self.bundle = BundleInfo.load(bundle_dir)
        self._loop = asyncio.new_event_loop()
        self._context = None
        self._function = None
        self._prefill: dict[int, Any] = {}  # chunk size -> loaded prefill_C function, largest first
        self._tables = None
        self._static: dict[str, Any] = {}
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
        from .tables import PleTables, TablesError

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
        if self.bundle.ple == "tbl":
            self._static = {"ple_table": NDArray(np.ascontiguousarray(self._tables.i8)),
                            "ple_scale": NDArray(np.ascontiguousarray(self._tables.scale, dtype=np.float32))}
        self.load_seconds = time.perf_counter() - started

    def close(self) -> None:
        if self._context is not None:
            self._loop.run_until_complete(self._context.__aexit__(None, None, None))
            self._context = None
        self._function = None
        self._prefill = {}
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> BundleRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one walk --------------------------------------------------------------------

    def _new_states(self, capacity: int) -> dict:
        from coreai.runtime import NDArray

        shape = list(self._state_shape)
        shape[3] = capacity
        return {"keyCache": NDArray(np.zeros(shape, np.float16)), "valueCache": NDArray(np.zeros(shape, np.float16))}

    def _step(self, token: int, length: int, states: dict) -> np.ndarray:
        from coreai.runtime import NDArray

        if not 0 <= token < self.bundle.vocab_size:
            raise HostRunError(f"token id {token} is outside the bundle's vocabulary 0..{self.bundle.vocab_size - 1}",
                               hint="token ids must come from the bundle's tokenizer")
        inputs = {"input_ids": NDArray(np.array([[token]], np.int32)),
                  "position_ids": NDArray(np.arange(length, dtype=np.int32)[None, :])}
        if self.bundle.ple == "provider":
            inputs["ple_tokens"] = NDArray(self._tables.gather(token))
        inputs.update(self._static)
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
        bad = [t for t in tokens if not 0 <= t < self.bundle.vocab_size]
        if bad:
            raise HostRunError(f"token id {bad[0]} is outside the bundle's vocabulary 0..{self.bundle.vocab_size - 1}",
                               hint="token ids must come from the bundle's tokenizer")
        inputs = {"input_ids": NDArray(np.array([list(tokens)], np.int32)),
                  "position_ids": NDArray(np.arange(length, dtype=np.int32)[None, :])}
        if self.bundle.ple == "provider":
            inputs["ple_tokens"] = NDArray(self._tables.gather(list(tokens)))
        inputs.update(self._static)
        try:
            out = self._loop.run_until_complete(self._prefill[rows](inputs=inputs, state=states))
        except Exception as exc:
            raise HostRunError(f"Core AI's runtime failed on {self.bundle.name}'s prefill_{rows} at positions "
                               f"{length - rows}..{length - 1}: {exc}", hint=_runtime_hint(exc)) from exc
        return np.asarray(out["logits"].numpy(), dtype=np.float32).reshape(-1)

    def prefill(self, prompt_ids: Sequence[int], states: dict, *, chunked: bool = True,
                sizes: Sequence[int] | None = None, last_in_main: bool = True) -> tuple[np.ndarray, list[int]]:
        """Feed the prompt into `states`; return the last position's logits and the calls' sizes.

        `chunked`: full chunks through the prefill functions (largest first, as many as fit),
        the rest through `main` one token per call, as the patched engine routes them (patch
        0004: the prompt's last token always goes through `main`, whose step samples the first
        new token; `last_in_main=False` also lets a chunk end the prompt, to check the chunk's
        own logits). False (or a bundle without prefill functions): `main` only. `sizes`: use
        only these of the bundle's chunk sizes.
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
                logits = self._step(int(prompt_ids[pos]), pos + 1, states)
            else:
                logits = self._chunk([int(t) for t in prompt_ids[pos : pos + rows]], pos + rows, states)
            calls.append(rows)
            pos += rows
        return logits, calls

    def prefill_snapshot(self, prompt_ids: Sequence[int], capacity: int, *, chunked: bool,
                         sizes: Sequence[int] | None = None, last_in_main: bool = True) -> dict:
        """The prompt's last logits and both KV caches after a prefill walk (for bit-identity checks)."""
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
    ) -> HostGeneration:
        """Greedy decode: the prompt one token per call, then up to `max_new_tokens` new tokens.

        `chunked`: the prompt's full chunks go through the bundle's prefill functions (see `prefill`).
        `stop_ids`: stop after generating one of these (empty: exactly N tokens, as the oracle).
        Timing as the app records it: prefill = first call to the first logits, decode = from the
        first generated token to the last.
        """
        prompt_ids = [int(t) for t in prompt_ids]
        if not prompt_ids:
            raise HostRunError("empty prompt", hint="give at least one token (the BOS)")
        if max_new_tokens < 1:
            raise HostRunError(f"max_new_tokens must be at least 1, got {max_new_tokens}", hint="ask for 1 or more tokens")
        states = self._new_states(self._capacity(len(prompt_ids) + max_new_tokens))
        started = time.perf_counter()
        logits, _ = self.prefill(prompt_ids, states, chunked=chunked)
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
            if len(generated) == max_new_tokens or token in stop_ids:
                break
            logits = self._step(token, len(prompt_ids) + len(generated), states)
            now = time.perf_counter()
            token_seconds.append(now - last)
            last = now
        return HostGeneration(prompt_ids, generated, prefill_seconds=first - started, decode_seconds=last - first,
                              ttft_seconds=first - started, decode_token_seconds=token_seconds, logits=kept)

    def forced(self, prompt_ids: Sequence[int], continuation: Sequence[int]) -> np.ndarray:
        """Teacher forcing: logits [len(continuation), V] predicting each continuation token."""
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


# ----------------------------------------------------------------------------- transcripts


def host_device() -> dict:
    """The transcript's `device` object for a host run (no phone: arch is unset)."""
    return {"product_type": platform.machine(), "name": socket.gethostname(), "os_version": platform.platform(),
            "arch": None, "udid": "", "runtime": "coreai-core " + _coreai_version()}


def _coreai_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("coreai-core")
    except metadata.PackageNotFoundError:
        return "unknown"


def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def transcript_records(
    runner: BundleRunner,
    prompts: Sequence[tuple[str, list[int]]],
    *,
    prompt_set: dict,
    max_new_tokens: int,
    trials: int,
    run_id: str,
    progress: Progress | None = None,
) -> list[dict]:
    """Run every prompt `trials` times and return the transcript records (header … footer)."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    records: list[dict] = [{
        "type": "header", "schema": _schema(), "run_id": run_id, "started_at": started.isoformat(timespec="seconds"),
        "device": host_device(), "bundle": runner.bundle.header(),
        "app": {"version": __version__, "toolkit_version": __version__},
        "prompt_set": prompt_set, "trials": trials, "max_new_tokens": max_new_tokens,
        "platform": HOST_PLATFORM, "decode": {"stop_at_eos": False},
    }, {"type": "load", "seconds": round(runner.load_seconds, 4), "cold": True}]
    for trial in range(trials):
        for index, (prompt_id, ids) in enumerate(prompts):
            gen = runner.generate(ids, max_new_tokens)
            rss = _rss_bytes()
            records.append({"type": "memory", "t": round(time.perf_counter() - t0, 3), "phys_footprint_bytes": rss})
            records.append({
                "type": "prompt", "trial": trial, "index": index, "prompt_id": prompt_id,
                "prompt_ids": gen.prompt_ids, "generated_ids": gen.generated_ids,
                "prefill_tokens": len(gen.prompt_ids), "prefill_seconds": round(gen.prefill_seconds, 6),
                "ttft_seconds": round(gen.ttft_seconds, 6), "decode_tokens": gen.decode_tokens,
                "decode_seconds": round(gen.decode_seconds, 6),
                "decode_token_seconds": [round(s, 6) for s in gen.decode_token_seconds],
                "peak_phys_footprint_bytes": rss, "seconds_since_launch": round(time.perf_counter() - t0, 3),
            })
            if progress:
                progress(1)
    records.append({"type": "footer", "completed": True,
                    "ended_at": datetime.now(UTC).isoformat(timespec="seconds")})
    return records


def _schema() -> str:
    from .transcript import SCHEMA

    return SCHEMA


def run_id_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


# ----------------------------------------------------------------------------- the bundle gate


@dataclass
class BundleGateReport:
    """Per prompt: the runtime's verdict against the oracle, and its logit error vs the torch module."""

    summary: str
    exact: int
    total: int
    verdicts: list[dict]
    max_logit_error: float | None
    logit_error_bound: float
    oracle_median_margin: float
    seconds: float
    runtime: str = ""
    status: str = "passed"

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# The CPU runtime computes in f16 with f16 accumulation; logits are softcapped (|l| <= 30) and
# stored in f16 (ulp 2^-5 near 30). Measured on the trained tiny model's fp16/int8/int4 bundles
# against the same weights in eager fp32: see tests/test_hostrun.py and the README.
LOGIT_ERROR_BOUND = 0.25


def bundle_gate(
    bundle_dir: Path,
    oracle,
    tables_dir: Path | None,
    *,
    reference: Callable[[list[int], list[int]], np.ndarray] | None = None,
    near_tie_margin: float | None = None,
    logit_error_bound: float = LOGIT_ERROR_BOUND,
    progress: Progress | None = None,
) -> BundleGateReport:
    """Run the saved bundle through Core AI's runtime on every oracle prompt and judge it.

    Each prompt is decoded greedily for the oracle's N tokens and scored with the oracle's rule
    (exact, or a flip at a near-tie). `reference(prompt_ids, tokens)`: the torch module's
    teacher-forced logits along the same tokens, for the logit-error figure. Raises
    BundleGateFailed at the first clear divergence or when the logit error exceeds the bound.
    """
    from .oracle import DEFAULT_NEAR_TIE_MARGIN, Generation, score_against_oracle

    margin_rule = DEFAULT_NEAR_TIE_MARGIN if near_tie_margin is None else near_tie_margin
    started = time.perf_counter()
    generations: list[Generation] = []
    errors: list[float] = []
    with BundleRunner(bundle_dir, tables_dir) as runner:
        name = runner.bundle.name
        for index, prompt in enumerate(oracle.prompts):
            gen = runner.generate(prompt.prompt_ids, oracle.max_new_tokens, keep_logits=reference is not None)
            generations.append(Generation(tuple(prompt.prompt_ids), tuple(gen.generated_ids), index=index,
                                          prompt_id=prompt.id, where=f"bundle run, prompt {prompt.id}"))
            if reference is not None:
                ref = reference(prompt.prompt_ids, gen.generated_ids)
                errors.append(float(np.max(np.abs(np.stack(gen.logits) - ref))))
            if progress:
                progress(1)
    score = score_against_oracle(generations, oracle, near_tie_margin=margin_rule)
    margins = [m for p in oracle.prompts for m in p.margins if math.isfinite(m)]
    verdicts = [{"prompt": s.prompt_id, "verdict": s.verdict, "divergence": s.divergence, "margin": s.margin,
                 "expected": s.expected, "got": s.got, "logit_error": errors[i] if errors else None}
                for i, s in enumerate(score.prompts)]
    worst = max(errors) if errors else None
    summary = f"{score.exact}/{score.total} exact vs fp32 oracle under Core AI's runtime ({oracle.max_new_tokens} tokens)"
    if score.near_ties:
        summary += f", {len(score.near_ties)} near-tie flip(s)"
    if worst is not None:
        summary += f"; max |Δlogit| vs torch {worst:.3g}"
    report = BundleGateReport(summary=summary, exact=score.exact, total=score.total, verdicts=verdicts,
                              max_logit_error=worst, logit_error_bound=logit_error_bound,
                              oracle_median_margin=float(np.median(margins)) if margins else float("nan"),
                              seconds=round(time.perf_counter() - started, 2),
                              runtime=f"coreai-core {_coreai_version()} ({platform.system()} "
                                      f"{'system runtime' if platform.system() == 'Darwin' else 'CPU runtime, f16 accumulation'})")
    if score.failures:
        first = score.failures[0]
        detail = (f"prompt {first.prompt_id!r} diverged at generated token {first.divergence}: oracle {first.expected}, "
                  f"bundle {first.got}, oracle margin {first.margin:.3g}" if first.divergence is not None
                  else f"prompt {first.prompt_id!r}: {first.verdict} ({first.note})")
        raise BundleGateFailed(f"{name}: {detail} — {summary}", prompt=first.prompt_id,
                               position=first.divergence,
                               hint="the bundle computes something other than the checkpoint: a conversion bug, "
                                    "wrong PLE tables, or damaged weights; see gemmaios.decode_model")
    if worst is not None and worst > logit_error_bound:
        at = int(np.argmax(errors))
        raise BundleGateFailed(f"{name}: logits under Core AI's runtime differ from the torch module "
                               f"by {worst:.3g} on prompt {oracle.prompts[at].id!r} (bound {logit_error_bound}) — {summary}",
                               prompt=oracle.prompts[at].id, position=None,
                               hint="the saved graph does not compute what the module does; convert again and report it")
    return report


def torch_reference(checkpoint, quant: str, head_quant: str | None, flash_decode: str | None, tables_dir: Path | None):
    """The bundle's own weights in eager fp32 (gemmaios.decode_model), teacher-forced along given tokens.

    Returns `reference(prompt_ids, tokens) -> logits [len(tokens), V]`, with the per-layer inputs
    from the same tables the runtime gets: the difference is then the runtime's arithmetic alone.
    """
    import torch

    from .decode_model import Gemma4Decode, use_flash_decode
    from .parity import decode_steps

    model = Gemma4Decode(checkpoint, quant=quant, head_quant=head_quant, dtype=torch.float32).eval()
    use_flash_decode(model, flash_decode)
    ple = None
    if model.spec.ple_dim:
        from .tables import PleTables

        tables = PleTables(Path(tables_dir))
        ple = lambda token: torch.from_numpy(tables.gather(token)).float()  # noqa: E731

    def reference(prompt_ids: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        _, logits = decode_steps(model, list(prompt_ids), len(tokens), ple, forced=list(tokens))
        return logits.numpy()

    return reference


def build_bundle_check(
    checkpoint,
    oracle_path: Path,
    tables_dir: Path | None,
    *,
    quant: str,
    head_quant: str | None,
    flash_decode: str | None = None,
    progress: Progress | None = None,
) -> Callable[[Path], dict]:
    """The convert step's gate: run the staged bundle through Core AI's runtime (see bundle_gate).

    Never passes silently: a bundle too large for a CPU runtime is recorded as skipped with the
    time it would take, and a bundle whose Metal kernel the Linux runtime cannot execute as
    not run, with the runtime's reason.
    """

    def check(staged: Path) -> dict:
        from .oracle import load_oracle

        info = BundleInfo.load(staged)
        size = asset_weight_bytes(info)
        if size > LARGE_BUNDLE_BYTES:
            minutes = estimate_step_seconds(info) / 60
            return {"status": "skipped", "summary": (
                f"skipped: a {size / 1e9:.1f} GB bundle takes ~{minutes:.0f} min per token on Core AI's CPU runtime; "
                f"run it on a Mac with `gemmaios run --bundle <bundle>`")}
        oracle = load_oracle(oracle_path)
        reference = torch_reference(checkpoint, quant, head_quant, flash_decode, tables_dir)
        try:
            return bundle_gate(staged, oracle, tables_dir, reference=reference, progress=progress).as_dict()
        except HostRunError as exc:
            if flash_decode is None:
                raise
            return {"status": "not run", "summary": (
                f"not run: Core AI's {platform.system()} runtime cannot execute the {flash_decode} flash-decode "
                f"Metal kernel ({exc.args[0]}); run the bundle on a Mac to check it")}

    return check


# ----------------------------------------------------------------------------- chat and host bench


class BundleTokenizer:
    """The bundle's own tokenizer/ folder, encoding prompts the way the oracle and the app do."""

    def __init__(self, bundle: BundleInfo) -> None:
        from transformers import AutoTokenizer

        folder = bundle.dir / "tokenizer"
        if not (folder / "tokenizer.json").is_file():
            raise HostRunError(f"{bundle.dir} has no tokenizer/tokenizer.json", hint="convert the bundle again")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        eos: set[int] = set()
        gen = folder / "generation_config.json"
        if gen.is_file():
            value = json.loads(gen.read_text()).get("eos_token_id")
            eos |= {value} if isinstance(value, int) else set(value or [])
        if self.tokenizer.eos_token_id is not None:
            eos.add(int(self.tokenizer.eos_token_id))
        for special in ("<end_of_turn>", "<turn|>"):
            tid = self.tokenizer.convert_tokens_to_ids(special)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                eos.add(tid)
        self.eos_ids = sorted(eos)

    def encode(self, text: str, chat: bool = True) -> list[int]:
        from .oracle import Prompt, encode_prompt

        return encode_prompt(self.tokenizer, Prompt("prompt", text), chat, where=self.tokenizer.name_or_path)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


@dataclass
class HostBenchResult:
    run_dir: Path
    transcript: Path
    score: str | None
    passed: bool | None


def host_bench(
    build_dir: Path,
    bundle_dir: Path | None = None,
    *,
    trials: int = 1,
    max_new_tokens: int | None = None,
    progress_factory: Callable[[int], Any] | None = None,
) -> HostBenchResult:
    """Run the oracle's prompt set through the bundle on this machine; write `<build>/runs/<id>-host/`.

    The transcript has the app's format (platform `host-runtime`), so `gemmaios score` and
    `gemmaios report` read it unchanged; it is scored against the oracle here too.
    """
    from .oracle import ORACLE_FILE, load_oracle, score_against_oracle
    from .pipeline import write_json_atomic
    from .transcript import read_transcript, write_transcript

    build_dir = Path(build_dir)
    bundle_dir = Path(bundle_dir) if bundle_dir else find_bundle(build_dir)
    if trials < 1:
        raise HostRunError(f"--trials must be at least 1, got {trials}", hint="pass --trials 1 or more")
    oracle = load_oracle(build_dir / ORACLE_FILE)
    tokens = max_new_tokens or oracle.max_new_tokens
    prompts = [(p.id, p.prompt_ids) for p in oracle.prompts]
    run_id = run_id_now()
    run_dir = build_dir / "runs" / f"{run_id}-host"
    tables = build_dir / "tables"
    with BundleRunner(bundle_dir, tables if tables.is_dir() else None) as runner:
        advance = progress_factory(trials * len(prompts)) if progress_factory else None
        records = transcript_records(runner, prompts, prompt_set=oracle.prompt_set, max_new_tokens=tokens,
                                     trials=trials, run_id=run_id, progress=advance)
    # Written complete in a staging name and renamed: an interrupted bench leaves no half log.
    staging = write_transcript(run_dir / f".{run_id}.jsonl.partial", records)
    transcript = run_dir / f"{run_id}.jsonl"
    os.replace(staging, transcript)
    score = score_against_oracle(read_transcript(transcript, require_complete=True), oracle)
    write_json_atomic(run_dir / "run.json", {"status": "completed", "run_id": run_id, "platform": HOST_PLATFORM,
                                             "bundle": str(bundle_dir), "trials": trials, "transcript": transcript.name,
                                             "oracle": score.summary, "device": host_device()})
    return HostBenchResult(run_dir, transcript, score.summary, score.passed)


# ----------------------------------------------------------------------------- the chunked-prefill gate


class PrefillGateFailed(GemmaiosError):
    """The saved bundle's chunked prefill differs from its one-token walk under Core AI's runtime."""

    def __init__(self, message: str, *, prompt: str | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.prompt = prompt


def long_prefill_prompt(prompts: Sequence[Sequence[int]], chunks: Sequence[int], sliding_window: int,
                        max_context: int) -> list[int]:
    """A prompt longer than the sliding window and several chunks long, from the given ids run together.

    Length: three chunks of the largest size, one of each smaller size, and 3 tokens left for
    `main` (tiny, C=16: 51 tokens), at least the window plus a chunk; capped so it fits.
    """
    sizes = sorted(chunks, reverse=True)
    want = max(3 * sizes[0] + sum(sizes[1:]) + 3, sliding_window + sizes[0] + 3)
    want = min(want, max_context - 1)
    pool = [int(t) for ids in prompts for t in ids]
    if not pool:
        raise HostRunError("no prompt ids to build the long prefill prompt from", hint="give at least one prompt")
    return [pool[i % len(pool)] for i in range(want)]


def prefill_gate(
    bundle_dir: Path,
    prompts: Sequence[tuple[str, Sequence[int]]],
    tables_dir: Path | None,
    *,
    progress: Progress | None = None,
) -> dict:
    """Each prompt prefilled twice through Core AI's runtime: `main` only, and full chunks through
    the bundle's `prefill_C` functions; last logits and both KV caches must be bit-identical.

    A prompt longer than the sliding window and several chunks long is added to `prompts`.
    Raises PrefillGateFailed naming the prompt and the first differing tensor.
    """
    started = time.perf_counter()
    rows = []
    with BundleRunner(bundle_dir, tables_dir) as runner:
        chunks = runner.prefill_chunks
        name = runner.bundle.name
        if not chunks:
            raise HostRunError(f"{name} has no prefill functions", hint="convert with --prefill-chunk 8 or 16")
        window = int((runner.bundle.facts.get("prefill") or {}).get("sliding_window") or 0)
        long_ids = long_prefill_prompt([ids for _, ids in prompts], chunks, window, runner.bundle.max_context)
        # A prompt of exactly two largest chunks, walked with a chunk ending it: the logits compared
        # are then prefill_C's own last-row output (the engine's routing ends every prompt in main).
        exact = long_ids[: 2 * chunks[0]]
        cases = [(pid, [int(t) for t in ids]) for pid, ids in prompts] + [("long", long_ids), ("exact-chunks", exact)]
        # Each size alone, then the whole ladder as the engine routes it (one walk for a single size).
        routes = [(c,) for c in chunks] + ([tuple(chunks)] if len(chunks) > 1 else [])
        for pid, ids in cases:
            capacity = len(ids) + 1
            plain = runner.prefill_snapshot(ids, capacity, chunked=False)
            for route in routes:
                last_in_main = pid != "exact-chunks"
                chunked = runner.prefill_snapshot(ids, capacity, chunked=True, sizes=route, last_in_main=last_in_main)
                if not last_in_main and chunked["calls"][-1] == 1:
                    raise HostRunError(f"{name}: the exact-chunks walk did not end in a chunk ({chunked['calls']})",
                                       hint="a gemmaios bug: report it")
                deltas = {key: float(np.max(np.abs(plain[key].astype(np.float32) - chunked[key].astype(np.float32))))
                          for key in ("logits", "keyCache", "valueCache")}
                same_bits = {key: bool(np.array_equal(plain[key].view(np.uint8), chunked[key].view(np.uint8)))
                             for key in ("logits", "keyCache", "valueCache")}
                calls = chunked["calls"]
                rows.append({"prompt": pid, "route": "+".join(f"prefill_{c}" for c in route), "tokens": len(ids),
                             "chunk_calls": [c for c in calls if c > 1], "main_calls": calls.count(1),
                             "max_abs_delta": deltas, "bit_identical": all(same_bits.values())})
                if not all(same_bits.values()):
                    worst = max(deltas, key=deltas.get)
                    raise PrefillGateFailed(
                        f"{name}: prompt {pid!r} ({len(ids)} tokens, calls {calls}): the chunked prefill's {worst} "
                        f"differs from the main-only walk by {deltas[worst]:.3g} under Core AI's runtime",
                        prompt=pid,
                        hint="the prefill_C graph does not compute what main does row by row; see "
                             "gemmaios.decode_model.DecoderLayer.forward_chunk")
            if progress:
                progress(1)
    chunked_tokens = sum(sum(r["chunk_calls"]) for r in rows)
    windowed = [r for r in rows if r["tokens"] > window and len(r["chunk_calls"]) >= 2]
    summary = (f"{len(cases)}/{len(cases)} prompts x {len(routes)} route(s) bit-identical (logits, keyCache, "
               f"valueCache: max |Δ| = 0.0), chunked prefill ({', '.join(r['route'] for r in rows[: len(routes)])}) "
               f"vs main only, under Core AI's runtime; "
               f"{chunked_tokens} tokens went through chunks; longest {max(r['tokens'] for r in rows)} tokens "
               f"(sliding window {window})")
    short = f"{len(cases)}/{len(cases)} prompts bit-identical to main under Core AI's runtime"
    return {"status": "passed", "summary": summary, "short": short, "chunks": chunks, "walks": rows, "prompt_count": len(cases),
            "long_prompts": len({r["prompt"] for r in windowed}), "seconds": round(time.perf_counter() - started, 2),
            "runtime": f"coreai-core {_coreai_version()} ({platform.system()})"}


def build_prefill_check(
    oracle_path: Path | None,
    tables_dir: Path | None,
    *,
    prompts: Sequence[tuple[str, Sequence[int]]] | None = None,
    progress: Progress | None = None,
) -> Callable[[Path], dict]:
    """The convert step's chunked-prefill gate over the oracle's prompts (or `prompts`), see prefill_gate.

    Like the bundle-run gate, a bundle too large for a CPU runtime is recorded as skipped.
    """

    def check(staged: Path) -> dict:
        info = BundleInfo.load(staged)
        size = asset_weight_bytes(info)
        if size > LARGE_BUNDLE_BYTES:
            return {"status": "skipped", "summary": (
                f"skipped: a {size / 1e9:.1f} GB bundle takes ~{estimate_step_seconds(info) / 60:.0f} min per token on "
                "Core AI's CPU runtime; the chunked-prefill identity was proven on the tiny model")}
        cases = prompts
        if cases is None:
            from .oracle import load_oracle

            oracle = load_oracle(oracle_path)
            cases = [(p.id, p.prompt_ids) for p in oracle.prompts]
        return prefill_gate(staged, cases, tables_dir, progress=progress)

    return check
