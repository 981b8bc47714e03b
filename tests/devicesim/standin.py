"""The simulated iPhone's app: a stand-in process that follows the Swift app's contract.

The simulator starts it (`python -m devicesim.standin`) when DVT process control launches an
installed app; its pid is the launched app's pid. Like the real app it knows only what the
binary compiles in, which here is the Swift source the .app carries as its executable (see
`devicesim.appbuild`): the rendered `AppConfig.swift` (bundle name, bundle location, PLE
mode and shape, quant, arch, versions, EOS ids) and the generated `Contract.swift` (payload
folder and file names, launch names, decode rule, schemas). It never imports
`gemmaios.contract`: a fact renamed in Python only is then read from the old place here,
exactly as on a phone.

Bench mode, as `ios_template/Sources/BenchRunner.swift`: open
`Documents/<runsFolder>/<run_id><suffix>`; read the prompt set from the payload root
(`<App>.app/<payloadFolder>` when bundled, `Documents/<payloadFolder>` for documents); header;
memory sampler (the process's own resident size, every `memory_interval` s); load the bundle
from `<payload>/<bundlesFolder>/<bundleName>` with its PLE tables (size-checked as the app's
PLE loader does) through Core AI's runtime (`gemmaios.hostrun.BundleRunner`); one warm-up
token; per trial and prompt one greedy generation under the contract's decode rule (an image
prompt through `benchimages`, as BenchImages.swift: picture, vision asset, expanded ids, and
`prefill_tokens` = the expanded length); sampler stopped; footer last. A failure writes no footer
but the failure record (the reason, the prompt it was on) last, an error line on stderr (the app's
NSLog), and the app stays on screen, as the real one does.

Bench protocol (issue 16), as BenchRunner + GemmaiosCore's BenchProtocol.swift: each launch
opens with a `launch` record (kind cold/warm, thermal state and battery at its start) and
closes with a `launch_end` record; a later launch of a multi-launch run appends to the
transcript launch 0 started and only the last writes the footer; a cold launch runs one
trial and records its first prompt's time to first token from process start; sustained
mode decodes the prompt set over and over for the launch's duration, writing a `sample`
record (tok/s) per interval; thermal transitions are `thermal` records.

The simulator passes what iOS would provide (device facts, thermal state — a state, or a
schedule `[[seconds since launch, state], ...]` —, battery level and state and how fast it
drains, seconds since unlock, the memory limit) and its fault injection (crash / jetsam / exit / hang at a record)
in `--facts`; the launch environment and arguments are the app's own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from gemmaios.contract import kv_alt_max_context, kv_bound_capacity

from .benchimages import engine_input, media_field
from .benchprotocol import DeviceState, ThermalTracker, process_age, sustained_phase
from .compiledapp import CompiledApp


class AppFailed(Exception):
    """What the real app shows as `failed: ...` (and logs with NSLog)."""


class LaunchSettings:
    """GemmaiosCore's LaunchSettings: arguments first, then the environment; names from Contract."""

    def __init__(self, app: CompiledApp, arguments: list[str], environment: dict[str, str]) -> None:
        true_values = [str(v) for v in app.c("trueValues")]

        def flag(key: str) -> bool:
            return app.c(f"{key}Argument") in arguments or environment.get(app.c(f"{key}Env"), "").lower() in true_values

        def value(key: str) -> str | None:
            arg = app.c(f"{key}Argument")
            if arg in arguments and arguments.index(arg) + 1 < len(arguments):
                return arguments[arguments.index(arg) + 1]
            return environment.get(app.c(f"{key}Env"))

        self.bench = flag("bench")
        self.clear_spec_cache = flag("clearSpecCache")
        # older apps (before issue 18) compile no such names: both switches then stay off
        self.prefill_off = "prefillOffArgument" in app.contract and flag("prefillOff")
        self.ab_prefill = "abPrefillArgument" in app.contract and flag("abPrefill")
        # issue 27: the KV cache started at 384 (the #124 candidate), or alternating with 256 (older apps: 256)
        self.kv_384 = "kv384Argument" in app.contract and flag("kv384")
        self.ab_kv = "abKVArgument" in app.contract and flag("abKV")
        self.trials = int(app.config.get("defaultTrials", 1))
        text = value("trials")
        if text and text.isdigit() and int(text) > 0:
            self.trials = int(text)
        self.run_id = value("runId")
        self.udid = value("udid") or ""

        def count(key: str, minimum: int) -> int | None:
            if f"{key}Argument" not in app.contract:
                return None  # an app before the bench protocol (issue 16)
            text = value(key)
            try:
                number = int(text) if text is not None else None
            except ValueError:
                return None
            return number if number is not None and number >= minimum else None

        self.cold_launch = "coldLaunchArgument" in app.contract and flag("coldLaunch")
        if self.cold_launch:
            self.trials = 1
        self.launches = count("launches", 1) or 1
        self.launch_index = min(count("launchIndex", 0) or 0, self.launches - 1)
        self.first_trial = count("firstTrial", 0) or 0
        self.duration = count("duration", 0) or 0
        self.sample_interval = count("sampleInterval", 1) or int(app.contract.get("sustainedSampleInterval", 10))

    @property
    def launch_kind(self) -> str:
        return "cold" if self.cold_launch else "warm"

    @property
    def appends(self) -> bool:
        return self.launch_index > 0

    @property
    def writes_footer(self) -> bool:
        return self.launch_index == self.launches - 1

    @property
    def trial_numbers(self) -> range:
        return range(self.first_trial, self.first_trial + self.trials)

    @property
    def usable_run_id(self) -> str | None:
        rid = self.run_id
        return rid if rid and "/" not in rid and rid not in (".", "..") else None


# ---- the transcript -------------------------------------------------------------------------------

class Faults:
    """The simulator's fault injection: what happens instead of writing record number `at`."""

    def __init__(self, facts: dict) -> None:
        self.outcome = facts.get("outcome", "complete")
        self.at = int(facts.get("fault_at_record", 3))
        self.corrupt_line = facts.get("corrupt_line")

    def before(self, index: int) -> None:
        if index != self.at or self.outcome == "complete":
            return
        sys.stderr.flush()
        if self.outcome == "crash":
            os.abort()  # SIGABRT: ReportCrash writes an .ips
        if self.outcome == "jetsam":
            os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's memorystatus does
        if self.outcome == "exit":
            os._exit(0)
        if self.outcome == "hang":
            while True:
                time.sleep(3600)


class TranscriptWriter:
    """Line-flushed JSON records; refuses records after the footer (GemmaiosCore's writer)."""

    def __init__(self, path: Path, faults: Faults, *, append: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.faults = path, faults
        if append and not path.is_file():
            raise AppFailed(f"a later launch of a multi-launch run found no transcript to append to at {path}")
        self._fh = open(path, "a" if append else "w")  # noqa: SIM115 - open for the run
        self._lock = threading.Lock()
        self._count = 0
        self._closed_by_footer = False

    def write(self, record: dict) -> None:
        with self._lock:
            if self._closed_by_footer:
                raise AppFailed("a record after the footer")
            self.faults.before(self._count)
            line = json.dumps(record)
            if self.faults.corrupt_line == self._count:
                line = line[:-3]
            self._fh.write(line + "\n")
            self._fh.flush()
            self._count += 1
            if record.get("type") == "footer":
                self._closed_by_footer = True

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class FootprintSampler:
    """Samples this process's footprint every `interval` s into memory records; tracks the peak."""

    def __init__(self, writer: TranscriptWriter, interval: float, limit: int, clock) -> None:
        self.writer, self.interval, self.limit, self.clock = writer, interval, limit, clock
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self) -> int:
        value = _rss()
        with self._lock:
            self._peak = max(self._peak, value)
        return value

    def take_peak(self) -> int:
        self.sample()
        with self._lock:
            peak, self._peak = self._peak, 0
        return peak

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                value = self.sample()
                try:
                    self.writer.write({"type": "memory", "t": round(self.clock(), 3), "phys_footprint_bytes": value,
                                       "available_bytes": max(self.limit - value, 0)})
                except (AppFailed, ValueError):
                    return
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True, name="footprint")
        self._thread.start()

    def stop(self) -> None:
        """Returns once no memory record can follow (the footer is then last)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---- the app ----------------------------------------------------------------------------------------

def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_prompt_set(app: CompiledApp, path: Path) -> dict:
    if not path.is_file():
        raise AppFailed(f"the prompt set is missing at {path}; deploy the payload with `gemmaios deploy` "
                        "or rebuild the app")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AppFailed(f"the prompt set {path} cannot be read: {exc}") from exc
    if data.get("schema") != app.c("promptSetSchema"):
        raise AppFailed(f"the prompt set has schema {data.get('schema')}, this app reads {app.c('promptSetSchema')}")
    if int(data.get("max_new_tokens", 0)) <= 0:
        raise AppFailed(f"the prompt set is invalid: max_new_tokens is {data.get('max_new_tokens')}")
    return data


class AppPleTables:
    """The app's PLE loader (GemmaiosCore PLE.swift): the two payload files, size-checked against the
    compiled-in shape and mmapped; `gather(v)` = fp16(i8[v] * scale[v] * sqrt(D)) as [1,1,L,D]."""

    def __init__(self, app: CompiledApp, tables: Path) -> None:
        import numpy as np

        vocab, layers, dim = app.ple_shape
        paths = {}
        for name, size in ((app.c("tableI8File"), vocab * layers * dim), (app.c("tableScaleFile"), vocab * 4)):
            path = tables / name
            if not path.is_file():
                raise AppFailed(f"PLE table {path.name} not found in {tables}")
            if path.stat().st_size != size:
                raise AppFailed(f"PLE table {path} holds {path.stat().st_size} bytes, expected {size}")
            paths[name] = path
        self.num_layers, self.dim = layers, dim
        self.i8 = np.memmap(paths[app.c("tableI8File")], np.int8, "r", shape=(vocab, layers * dim))
        self.scale = np.memmap(paths[app.c("tableScaleFile")], "<f4", "r", shape=(vocab,))
        self._factor = np.float32(dim ** 0.5)

    def gather(self, tokens, *, spliced_row: int | None = None):
        """One token → [1,1,L,D]; a prefill chunk's C tokens → [1,C,L,D], one row per slot, as patch 0004
        has the app's provider fill C consecutive slots. Spliced image ids (>= V) take `spliced_row`
        (the pad token's), the contract's rule the Swift gather follows (PLEShape.tableRow)."""
        import numpy as np

        ids = [int(tokens)] if isinstance(tokens, int | np.integer) else [int(t) for t in tokens]
        if spliced_row is not None:
            from gemmaios.contract import ple_row

            ids = [ple_row(t, len(self.scale), spliced_row) for t in ids]
        rows = [np.multiply(self.i8[t], self.scale[t] * self._factor, dtype=np.float32) for t in ids]
        return np.stack(rows).astype(np.float16).reshape(1, len(ids), self.num_layers, self.dim)


def app_runner(bundle_dir: Path, tables: AppPleTables | None):
    """gemmaios.hostrun.BundleRunner (Core AI's runtime, one token per call as the pipelined engine)
    fed by the app's own PLE loader instead of the build's tables folder."""
    from gemmaios.hostrun import BundleRunner, HostRunError

    class AppBundleRunner(BundleRunner):
        def _open_tables(self, tables_dir, ple):
            if tables is None:
                raise HostRunError(f"{self.bundle.name} takes per-layer embeddings ({ple}) and the app has none")
            want = self.bundle.spec("inputs", "ple_tokens" if ple == "provider" else "ple_table")["shape"]
            have = [1, 1, tables.num_layers, tables.dim] if ple == "provider" else list(tables.i8.shape)
            if want != have:
                raise HostRunError(f"the app's PLE shape {have} does not fit {self.bundle.name} ({want})")
            self._tables = tables

    from .aot import NotRunnableHere, runnable_bundle

    try:
        return AppBundleRunner(runnable_bundle(bundle_dir), None)  # a stand-in .aimodelc runs its source graph
    except NotRunnableHere as exc:
        raise HostRunError(str(exc)) from exc


class PrefillPlan:
    """GemmaiosCore's PrefillPlan: the bundle's largest prefill_C (metadata.json's prefill role) unless
    the launch turns it off; in A/B mode even trials with it, odd trials without."""

    def __init__(self, app: CompiledApp, bundle_dir: Path, settings: LaunchSettings) -> None:
        self.function, self.chunk = None, 0
        self.off, self.alternate = settings.prefill_off, False
        role = app.contract.get("prefillRole")
        path = bundle_dir / app.c("bundleMetadataFile")
        if role is None or not path.is_file():
            return  # an app without the prefill contract, or no bundle (load_engine says so)
        try:
            metadata = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AppFailed(f"the bundle's metadata cannot be read for its prefill functions: {exc}") from exc
        names = ((metadata.get("language") or {}).get("function_map") or {}).get(role) or []
        names = [names] if isinstance(names, str) else names
        described = ((metadata.get("gemmaios") or {}).get(role) or {}).get("functions") or {}
        for name in names:
            chunk = (described.get(name) or {}).get("chunk")
            if not isinstance(chunk, int) or chunk <= 1:
                raise AppFailed(f"function_map names prefill function '{name}' but the bundle's "
                                "gemmaios.prefill.functions does not describe it; convert the bundle again")
            if chunk > self.chunk:
                self.function, self.chunk = name, chunk
        self.alternate = settings.ab_prefill and self.function is not None

    def function_for_trial(self, trial: int) -> str | None:
        if self.function is None:
            return None
        if self.alternate:
            return self.function if trial % 2 == 0 else None
        return None if self.off else self.function

    def warmup_length(self, function: str | None) -> int:
        return 1 if function is None else self.chunk + 1


def run_bench(app: CompiledApp, settings: LaunchSettings, app_dir: Path, documents: Path, facts: dict) -> None:
    launched = time.monotonic() - process_age()
    clock = lambda: time.monotonic() - launched  # noqa: E731
    faults = Faults(facts)
    run_id = settings.usable_run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    transcript = documents / app.c("runsFolder") / f"{run_id}{app.c('transcriptSuffix')}"
    try:
        writer = TranscriptWriter(transcript, faults, append=settings.appends)
    except AppFailed as exc:
        print(f"cannot write the transcript: {exc}", file=sys.stderr, flush=True)
        return
    protocol = "launchRecord" in app.contract  # apps before issue 16 write none of the protocol's records
    device = DeviceState(facts, clock)
    thermal = ThermalTracker(device.thermal_state())
    launch = settings.launch_index

    def observe_thermal() -> None:
        state = device.thermal_state()
        if thermal.observe(state) and protocol:
            writer.write({"type": app.c("thermalRecord"), "t": round(clock(), 3), "state": state, "launch": launch})
    root = (documents if app.documents_location else app_dir) / app.c("payloadFolder")
    limit = int(facts.get("memory_limit_bytes", 6_400_000_000))
    sampler = FootprintSampler(writer, float(facts.get("memory_interval", 0.5)), limit, clock)
    cfg = app.config
    current = None  # (trial, index, id) of the prompt under way: a failure names it
    try:
        prompt_set = load_prompt_set(app, root / app.c("promptSetFile"))
        max_new = int(prompt_set["max_new_tokens"])
        if not settings.appends:
            _write_header(writer, app, settings, facts, run_id, prompt_set, max_new)
        if protocol:
            writer.write({"type": app.c("launchRecord"), "index": launch, "kind": settings.launch_kind,
                          "first_trial": settings.first_trial, "trials": settings.trials,
                          "launches": settings.launches, "duration_s": settings.duration,
                          "thermal_state": thermal.start, "battery_level": device.battery_level(),
                          "battery_state": device.battery_state, "seconds_since_launch": round(clock(), 3)})
        sampler.start()
        bundle_dir = root / app.c("bundlesFolder") / cfg["bundleName"]
        plan = PrefillPlan(app, bundle_dir, settings)
        field = app.contract.get("promptPrefillFunctionField")
        kv_field = app.contract.get("promptKVCapacityField")  # apps before issue 27 record no KV binding
        bundle_context = engine_context = 0  # read once the engine has loaded the bundle (load_engine checks it)
        stop_ids = () if not app.c("benchStopsAtEOS") else tuple(app.eos_ids)
        runner = function = kv_growth = None
        sustained: dict = {}
        try:
            for trial in settings.trial_numbers:
                # A/B: a switch reloads (one engine at a time, as the app), and each load is recorded
                alt = (settings.ab_kv and trial % 2 == 1) or (settings.kv_384 and not settings.ab_kv)
                growth = app.c("kvGrowthAlternate") if alt else app.contract.get("kvGrowthDoubling")
                if runner is None or function != plan.function_for_trial(trial) or growth != kv_growth:
                    if runner is not None:
                        runner.close()
                        runner = None
                    function = plan.function_for_trial(trial)
                    runner, load_seconds, cold = load_engine(app, settings, root, documents, plan, function)
                    load = {"type": "load", "seconds": round(load_seconds, 4), "cold": cold, "launch": launch}
                    if field:
                        load[field] = function
                    if kv_field:
                        load[app.c("promptKVGrowthField")] = growth
                    writer.write(load)
                    # a new engine starts small: at 256, or at 384 capped at the largest 384·2^k in the bundle's
                    kv_growth = growth
                    kv_bound = int(app.c("kvAlternateInitialCapacity") if alt else app.contract.get("kvInitialCapacity", 256))
                    bundle_context = int(json.loads((bundle_dir / app.c("bundleMetadataFile")).read_text())
                                         ["language"]["max_context_length"])
                    engine_context = kv_alt_max_context(bundle_context) if alt else bundle_context
                sizes = [plan.chunk] if function else None
                for index, prompt in enumerate(prompt_set["prompts"]):
                    current = (trial, index, prompt["id"])
                    sampler.take_peak()
                    ids, picture = engine_input(app, root, bundle_dir, cfg["bundleName"], prompt)
                    if kv_field and len(ids) + max_new > engine_context:
                        # past the engine's context: the app leaves it out and names it in its log (BenchRunner.swift)
                        print(f"gemmaios: prompt {prompt['id']} ({len(ids)} + {max_new} tokens) is past the engine's "
                              f"context of {engine_context}: left out", file=sys.stderr, flush=True)
                        continue
                    if kv_field:  # the app's mirror of the engine's KV growth (GemmaiosCore KVCapacity)
                        kv_bound = kv_bound_capacity(len(ids) + max_new, engine_context, kv_bound)
                    requested = clock()
                    gen = runner.generate(ids, max_new, stop_ids=stop_ids, chunked=function is not None, sizes=sizes,
                                          image=picture)
                    footprint = sampler.take_peak()
                    observe_thermal()
                    record = {
                        "type": "prompt", "trial": trial, "index": index, "prompt_id": prompt["id"],
                        "prompt_ids": [int(t) for t in prompt["prompt_ids"]], "generated_ids": gen.generated_ids,
                        "prefill_tokens": len(ids), "prefill_seconds": round(gen.prefill_seconds, 6),
                        "ttft_seconds": round(gen.ttft_seconds, 6), "decode_tokens": gen.decode_tokens,
                        "decode_seconds": round(gen.decode_seconds, 6),
                        "decode_token_seconds": [round(s, 6) for s in gen.decode_token_seconds],
                        "peak_phys_footprint_bytes": footprint,
                        "os_proc_available_memory_bytes": max(limit - footprint, 0),
                        "thermal_state": thermal.current,
                        "seconds_since_launch": round(clock(), 3),
                    }
                    if field:
                        record[field] = function
                    if kv_field:
                        warned = kv_bound > int(app.c("iosKVSafeCapacity"))  # the app runs on iOS
                        record[kv_field] = kv_bound
                        record[app.c("promptKVGrowthField")] = kv_growth
                        record[app.c("promptWarningsField")] = [app.c("kvFaultWarning")] if warned else []
                    if picture is not None:  # an image / audio prompt: scored against the image / audio oracle
                        record[media_field(app, prompt)] = prompt[media_field(app, prompt)]
                    if protocol:
                        record["launch"] = launch
                        if settings.cold_launch and index == 0:
                            record["ttft_since_launch_seconds"] = round(requested + gen.ttft_seconds, 6)
                    writer.write(record)
            current = None
            if settings.duration > 0 and runner is not None:
                sizes = [plan.chunk] if function else None
                def prepare(prompt: dict):
                    return engine_input(app, root, bundle_dir, cfg["bundleName"], prompt)

                sustained = sustained_phase(app, settings, writer, runner, prompt_set, max_new, stop_ids, function, sizes,
                                            clock, thermal, observe_thermal, prepare)
        finally:
            if runner is not None:
                runner.close()
        sampler.stop()
        if protocol:
            writer.write({"type": app.c("launchEndRecord"), "index": launch, "thermal_state": thermal.current,
                          "thermal_start": thermal.start, "thermal_peak": thermal.peak,
                          "battery_level": device.battery_level(), "battery_state": device.battery_state,
                          "seconds_since_launch": round(clock(), 3), **sustained})
        if settings.writes_footer:
            footer = {"type": "footer", "completed": True, "ended_at": _timestamp(),
                      "battery_level": device.battery_level(), "battery_state": device.battery_state}
            if protocol:
                footer["thermal_state"] = thermal.current
            if facts.get("seconds_since_unlock") is not None:
                footer["seconds_since_unlock"] = facts["seconds_since_unlock"] + clock()
            writer.write(footer)
        print(f"gemmaios bench done: {transcript.name}" + ("" if settings.writes_footer else
                                                          f" (launch {launch + 1}/{settings.launches})"),
              file=sys.stderr, flush=True)
    except Exception as exc:  # the app catches everything: no footer; the reason last in the transcript, on screen
        sampler.stop()       # and in the log
        if "failureRecord" in app.contract:  # apps before it write none: the bench then waits for its timeout
            failure = {"type": app.c("failureRecord"), "reason": str(exc), "launch": launch, "t": round(clock(), 3)}
            if current is not None:
                failure.update(zip(("trial", "index", "prompt_id"), current, strict=True))
            try:
                writer.write(failure)
            except (AppFailed, ValueError):
                pass  # after the footer (the writer refuses it), as the app's `try?`
        print(f"gemmaios bench failed: {exc}", file=sys.stderr, flush=True)
    writer.close()


def _write_header(writer, app, settings, facts, run_id, prompt_set, max_new) -> None:
    cfg = app.config
    header = {
        "type": "header", "schema": app.c("transcriptSchema"), "run_id": run_id, "started_at": _timestamp(),
        "device": {"product_type": facts["product_type"], "name": facts["name"], "os_version": facts["os_version"],
                   "arch": cfg["arch"], "udid": settings.udid},
        "bundle": {"name": cfg["bundleName"], "metadata_sha256": cfg["metadataSHA256"], "quant": cfg["quant"],
                   "ple": cfg["pleMode"]},
        "app": {"version": cfg["appVersion"], "toolkit_version": cfg["toolkitVersion"]},
        "prompt_set": {"name": prompt_set["name"], "sha256": prompt_set["sha256"],
                       "count": len(prompt_set["prompts"])},
        "trials": settings.trials, "max_new_tokens": max_new, "platform": "iOS",
        "ab_prefill": settings.ab_prefill, "ab_kv": settings.ab_kv,
    }
    if "launchRecord" in app.contract:
        header.update({"launches": settings.launches, "duration_s": settings.duration,
                       "sample_interval_s": settings.sample_interval})
    writer.write(header)


def load_engine(app: CompiledApp, settings: LaunchSettings, root: Path, documents: Path,
                plan: PrefillPlan, function: str | None):
    """EngineHost.load: the bundle from the payload, its PLE tables, a warm-up of C+1 tokens with a
    prefill function (both functions specialised), one token without."""
    spec_cache = documents.parent / "Library" / "Caches" / "coreai-cache"
    if settings.clear_spec_cache and spec_cache.is_dir():
        import shutil

        shutil.rmtree(spec_cache)
    os.environ[app.c("chunkThresholdVariable")] = str(app.c("chunkThresholdValue"))
    bundle_dir = root / app.c("bundlesFolder") / app.config["bundleName"]
    if not bundle_dir.is_dir():
        raise AppFailed(f"Core AI bundle not found at {bundle_dir}; push the payload with `gemmaios deploy` "
                        "(bundle location documents) or rebuild the app (bundled)")
    if not (bundle_dir / app.c("bundleMetadataFile")).is_file():
        raise AppFailed(f"{bundle_dir} is not a LanguageBundle: no {app.c('bundleMetadataFile')}")
    if not (bundle_dir / app.c("bundleTokenizerFolder")).is_dir():  # LanguageBundle(at:) loads it
        raise AppFailed(f"{bundle_dir} has no {app.c('bundleTokenizerFolder')}/ folder")
    cold = not spec_cache.is_dir()
    started = time.perf_counter()
    tables = AppPleTables(app, root / app.c("tablesFolder")) if app.config["pleMode"] != "none" else None
    from gemmaios.hostrun import HostRunError

    try:
        runner = app_runner(bundle_dir, tables)
    except HostRunError as exc:
        raise AppFailed(f"{exc} ({exc.hint})") from exc
    warmup = [int(app.config.get("warmupTokenId", 2))] * plan.warmup_length(function)
    runner.generate(warmup, 1, chunked=function is not None, sizes=[plan.chunk] if function else None)
    spec_cache.mkdir(parents=True, exist_ok=True)
    return runner, time.perf_counter() - started, cold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devicesim.standin")
    parser.add_argument("--app", type=Path, required=True, help="the installed .app")
    parser.add_argument("--documents", type=Path, required=True, help="the app container's Documents")
    parser.add_argument("--facts", default="{}", help="what iOS provides, and the simulator's faults (JSON)")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the app's launch arguments (after --)")
    args = parser.parse_args(argv)
    facts = json.loads(args.facts)
    import plistlib

    info = plistlib.loads((args.app / "Info.plist").read_bytes())
    app = CompiledApp(args.app / info["CFBundleExecutable"])
    arguments = [a for a in args.arguments if a != "--"]
    settings = LaunchSettings(app, arguments, dict(os.environ))
    parent = os.getppid()
    if settings.bench:
        run_bench(app, settings, args.app, args.documents, facts)
    while os.getppid() == parent:  # the app stays on screen until it is killed (or the simulator is gone)
        time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
