"""The build folder, its manifest (build.json) and the step runner.

Each step declares its inputs (values and file hashes); the runner fingerprints them and
skips a step whose fingerprint matches the manifest and whose outputs are intact. A step
is recorded only after it finished, so an interrupted build resumes at the step it was in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import __version__, quiet
from .buildlayout import MANIFEST_NAME, TINY_CHECKPOINT_DIR
from .crash import doing
from .errors import BuildError, GemmaiosError, NeedsMacOS, StepFailed
from .files import sha256_file, write_json_atomic
from .steprecords import PendingDetails, StepDetails, details_from_json

MANIFEST_SCHEMA = 2  # steprecords' docstring tells the history
READS_SCHEMAS = (1, 2)  # schema 1 is migrated on read (steprecords.details_from_json)

DONE, SKIPPED, PENDING, FAILED, NOT_APPLICABLE = "done", "skipped", "pending", "failed", "n/a"


def fingerprint(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class OutputFile:
    sha256: str
    size: int
    mtime_ns: int


@dataclass
class StepRecord:
    status: str
    fingerprint: str
    inputs: dict[str, Any]
    outputs: dict[str, dict] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    details: StepDetails | None = None  # the step's typed record (steprecords), None where it keeps none
    message: str = ""
    started: str = ""
    seconds: float = 0.0


class Manifest:
    """build.json: one record per step, written atomically after every change."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = Path(build_dir)
        self.path = self.build_dir / MANIFEST_NAME
        self.data: dict[str, Any] = {"schema": MANIFEST_SCHEMA, "toolkit_version": __version__, "steps": {}}
        if self.path.exists():
            if not self.path.is_file():
                raise BuildError(f"{self.path} is not a file", hint="move it away; gemmaios keeps its manifest there")
            try:
                loaded = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BuildError(
                    f"{self.path} is not valid JSON ({exc})",
                    hint="delete it to rebuild every step, or restore it from a backup",
                ) from exc
            if not isinstance(loaded, dict) or not isinstance(loaded.get("steps"), dict):
                raise BuildError(
                    f"{self.path} is not a gemmaios manifest (a JSON object with `schema` and `steps`)",
                    hint="is this the right --out folder? Delete build.json to rebuild every step there",
                )
            schema = loaded.get("schema")
            if isinstance(schema, int) and not isinstance(schema, bool) and schema > MANIFEST_SCHEMA:
                raise BuildError(
                    f"{self.path} has schema {schema}, written by a newer gemmaios (this one, {__version__}, "
                    f"reads schemas {', '.join(map(str, READS_SCHEMAS))})",
                    hint="upgrade gemmaios (pip install -U gemmaios), or build into a fresh --out folder",
                )
            if schema not in READS_SCHEMAS:
                raise BuildError(
                    f"{self.path} has schema {schema!r}, this gemmaios reads schemas "
                    f"{', '.join(map(str, READS_SCHEMAS))}",
                    hint="use a fresh --out folder, or delete build.json to rebuild",
                )
            self.data = loaded
            self.data["schema"] = MANIFEST_SCHEMA  # an older schema's records are parsed as this one's

    @property
    def steps(self) -> dict[str, dict]:
        return self.data["steps"]

    def record(self, name: str, record: StepRecord) -> None:
        self.steps[name] = asdict(record)  # nested: the typed details become their JSON object
        self.data["toolkit_version"] = __version__
        self.data["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json_atomic(self.path, self.data)

    def get(self, name: str) -> StepRecord | None:
        raw = self.steps.get(name)
        if not raw:
            return None
        fix = f"rebuild its steps (gemmaios build --force --out {self.path.parent}), or build into a new folder"
        if not isinstance(raw, dict):
            raise BuildError(f"{self.path}: the {name} step's record is damaged (not an object)", hint=fix)
        try:
            record = StepRecord(**{**raw, "details": None})
        except TypeError as exc:  # a record written by hand or by another tool: named, not a crash
            raise BuildError(f"{self.path}: the {name} step's record is damaged ({exc})", hint=fix) from None
        record.details = details_from_json(name, record.status, raw.get("details"), where=str(self.path), fix=fix)
        return record

    def details(self, name: str) -> StepDetails | None:
        """The typed record of a finished (done or skipped) step; None when it has not finished."""
        record = self.get(name)
        return record.details if record is not None and record.status in (DONE, SKIPPED) else None

    def set_meta(self, key: str, value: Any) -> None:
        self.data[key] = value
        write_json_atomic(self.path, self.data)


def finished_details(build_dir: Path | None, step: str) -> StepDetails | None:
    """The typed record of a finished step in a build folder (None where the folder has no build.json or
    the step has not finished). The reader for the modules that only look: a damaged build.json is the
    BuildError Manifest names, not an empty build."""
    if build_dir is None or not (Path(build_dir) / MANIFEST_NAME).is_file():
        return None
    return Manifest(build_dir).details(step)


def recorded_options(build_dir: Path) -> dict[str, Any]:
    """The options build.json records ({} where it records none)."""
    if not (Path(build_dir) / MANIFEST_NAME).is_file():
        return {}
    return dict(Manifest(build_dir).data.get("options") or {})


@dataclass
class BuildOptions:
    model: str
    arch: str = "h18p"
    quant: str = "int4"
    head_quant: str | None = None  # lm_head storage; None: same as quant (convert.resolve_head_quant)
    ple: str = "provider"
    max_context: int | None = None  # None: min(4096, the model's max_position_embeddings)
    target: str = "ios"  # ios (iPhone) | mac
    kernel: str | None = None  # flash-decode variant for mac builds of 12B/31B (None: g8)
    vision: bool = False  # --vision: image input (vision asset + image_embeds on main; E2B/E4B, provider, ios)
    audio: bool = False  # --audio: audio input (gemma4_unified's embed_audio + prefill_multimodal, mac)
    prefill_chunk: str = "0"  # --prefill-chunk: "0" off, "8", "16" or a ladder "16,8" (convert.resolve_prefill_chunks)
    recipe: str | None = None  # --recipe: a mixed-bit recipe (packaged name or YAML path; gemmaios.recipe) over --quant
    calibration: str | None = None  # --calibration: prompts file for the recipe's AWQ scales (None: packaged chat prompts)
    mac: str | None = None
    oracle_tokens: int = 32
    prompts_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutcome:
    """What a step reports; `outputs` are paths inside the build folder."""

    status: str = DONE
    outputs: list[Path] = field(default_factory=list)
    details: StepDetails | None = None  # the step's typed record (steprecords)
    message: str = ""
    tools: dict[str, str] = field(default_factory=dict)
    # sha256 the step already computed for some outputs (multi-GB tables), so the manifest
    # does not read those files a second time.
    known_sha256: dict[Path, str] = field(default_factory=dict)


class BuildContext:
    def __init__(self, build_dir: Path, options: BuildOptions, console: Console | None = None) -> None:
        self.build_dir = Path(build_dir).resolve()
        if self.build_dir.exists() and not self.build_dir.is_dir():
            raise BuildError(f"the build folder {build_dir} is a file",
                             hint="pass --out a new folder or an earlier build's folder, or move the file away")
        try:
            self.build_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent is a file, or no permission
            raise BuildError(f"cannot create the build folder {build_dir} ({exc.strerror or exc})",
                             hint="pass --out a folder you can write to, whose parents are folders") from exc
        self.options = options
        self.console = console or Console(stderr=True)
        self.manifest = Manifest(self.build_dir)
        self._checkpoint = None

    @property
    def checkpoint(self):
        """The resolved checkpoint (resolved lazily: a fully finished build never loads it)."""
        if self._checkpoint is None:
            from .checkpoint import resolve_checkpoint

            tiny_dir = self.build_dir / TINY_CHECKPOINT_DIR if self.options.model == "tiny" else None
            self._checkpoint = resolve_checkpoint(self.options.model, tiny_dir=tiny_dir)
        return self._checkpoint

    def path(self, *parts: str) -> Path:
        return self.build_dir.joinpath(*parts)

    def step_outputs(self, step: str) -> dict[str, dict]:
        """Outputs a finished step recorded (relative path → {sha256,size,mtime_ns})."""
        record = self.manifest.get(step)
        if record is None or record.status not in (DONE, SKIPPED):
            raise StepFailed(f"step {step!r} has not finished in {self.build_dir}", hint=f"run `gemmaios {step}` first")
        return record.outputs

    def step_fingerprint(self, step: str) -> str | None:
        record = self.manifest.get(step)
        return record.fingerprint if record else None

    @contextlib.contextmanager
    def progress(self, description: str, total: float | None) -> Iterator[Any]:
        """A rich progress bar; yields a callable `advance(n=1)`."""
        columns = [TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        # no bar in a log (piped): a transient bar there leaves only a blank line
        with Progress(*columns, console=self.console, transient=True, disable=not self.console.is_terminal) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)


class Step:
    """One pipeline step. Subclasses set `name`/`title` and implement `inputs` and `run`."""

    name: str = ""
    title: str = ""

    def applicable(self, ctx: BuildContext) -> str | None:
        """None when the step applies; else the reason it does not (shown as n/a)."""
        return None

    def inputs(self, ctx: BuildContext) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, ctx: BuildContext) -> StepOutcome:
        raise NotImplementedError


@dataclass
class StepReport:
    name: str
    title: str
    status: str
    seconds: float = 0.0
    message: str = ""
    command: str = ""


def _stat_output(build_dir: Path, path: Path, known_sha256: dict[Path, str]) -> tuple[str, dict]:
    path = Path(path).resolve()
    rel = str(path.relative_to(build_dir))
    stat = path.stat()
    known = {Path(p).resolve(): sha for p, sha in known_sha256.items()}
    sha = known.get(path) or sha256_file(path)
    return rel, asdict(OutputFile(sha256=sha, size=stat.st_size, mtime_ns=stat.st_mtime_ns))


def outputs_intact(build_dir: Path, outputs: dict[str, dict]) -> bool:
    """True when every recorded output exists with its recorded content.

    Size and mtime unchanged → trusted; otherwise the file is re-hashed, so a touched but
    identical file still counts and a same-size rewrite does not slip through.
    """
    for rel, meta in outputs.items():
        full = build_dir / rel
        if not full.is_file():
            return False
        stat = full.stat()
        if stat.st_size != meta["size"]:
            return False
        if stat.st_mtime_ns != meta["mtime_ns"] and sha256_file(full) != meta["sha256"]:
            return False
    return True


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"gemmaios": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "coreai-core", "coreai-torch", "safetensors", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


class Pipeline:
    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def run(self, ctx: BuildContext, *, only: set[str] | None = None, force: set[str] = frozenset()) -> list[StepReport]:
        """Run the steps in order; `only` limits which run, `force` re-runs finished ones."""
        reports: list[StepReport] = []
        for step in self.steps:
            if only is not None and step.name not in only:
                continue
            # third-party warnings and the native runtime's output go to the build's log (quiet.py)
            with quiet.to_log(ctx.path(quiet.LOG_NAME), f"step {step.name}",
                              {2 if ctx.console.stderr else 1: [ctx.console]}):
                reports.append(self._run_step(step, ctx, force=step.name in force))
            if reports[-1].status == FAILED:
                break
        return reports

    def _run_step(self, step: Step, ctx: BuildContext, *, force: bool) -> StepReport:
        reason = step.applicable(ctx)
        if reason:
            ctx.console.print(f"[dim]· {step.name}: {reason}[/dim]")
            return StepReport(step.name, step.title, NOT_APPLICABLE, message=reason)
        try:
            with doing(f"checking the inputs of step {step.name} ({step.title})"):
                inputs = step.inputs(ctx)
        except GemmaiosError as exc:
            return self._failed(step, ctx, exc, started=time.time())
        fp = fingerprint(inputs)
        previous = ctx.manifest.get(step.name)
        if (
            not force
            and previous is not None
            and previous.status in (DONE, SKIPPED)
            and previous.fingerprint == fp
            and outputs_intact(ctx.build_dir, previous.outputs)
        ):
            ctx.console.print(f"[green]✓[/green] {step.name}: up to date")
            return StepReport(step.name, step.title, SKIPPED, message="up to date")

        ctx.console.print(f"[bold]▶ {step.name}[/bold]: {step.title}")
        started = time.time()
        try:
            with doing(f"running step {step.name} ({step.title})"):
                outcome = step.run(ctx)
        except NeedsMacOS as exc:
            seconds = time.time() - started
            ctx.manifest.record(
                step.name,
                StepRecord(status=PENDING, fingerprint=fp, inputs=inputs, message=str(exc),
                           details=PendingDetails(exc.command or ""), started=_iso(started), seconds=seconds),
            )
            # the reason only: the command to run is printed once, in the build's summary
            ctx.console.print(f"[yellow]⏸ {step.name}: {escape(str(exc).splitlines()[0])}[/yellow]")
            return StepReport(step.name, step.title, PENDING, seconds, str(exc).splitlines()[0], exc.command)
        except GemmaiosError as exc:
            return self._failed(step, ctx, exc, started, fp, inputs)

        seconds = time.time() - started
        outputs = dict(_stat_output(ctx.build_dir, p, outcome.known_sha256) for p in outcome.outputs)
        ctx.manifest.record(
            step.name,
            StepRecord(status=outcome.status, fingerprint=fp, inputs=inputs, outputs=outputs,
                       tools={**tool_versions(), **outcome.tools}, details=outcome.details,
                       message=outcome.message, started=_iso(started), seconds=round(seconds, 3)),
        )
        ctx.console.print(f"[green]✓[/green] {step.name}: {outcome.message or 'done'} ({seconds:.1f}s)")
        return StepReport(step.name, step.title, outcome.status, seconds, outcome.message)

    def _failed(self, step, ctx, exc, started, fp="", inputs=None) -> StepReport:
        seconds = time.time() - started
        ctx.manifest.record(
            step.name,
            StepRecord(status=FAILED, fingerprint=fp, inputs=inputs or {}, message=str(exc),
                       started=_iso(started), seconds=seconds),
        )
        ctx.console.print(f"[red]✗ {step.name}: {exc}[/red]")
        return StepReport(step.name, step.title, FAILED, seconds, str(exc))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
