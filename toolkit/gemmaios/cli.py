"""The `gemmaios` command line: thin wrappers over the step modules."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import crash
from .archs import get_arch
from .config import load_config
from .errors import GemmaiosError
from .pipeline import FAILED, PENDING, BuildOptions, StepReport
from .registry import DEFAULT_MODEL, MODELS

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="HF id, local checkpoint folder, or `tiny`")]
ArchOpt = Annotated[str, typer.Option("--arch", help="AOT target architecture (e.g. h18p = iPhone 17 Pro class)")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="build folder (default: build/<model>-<arch>-...)")]
QuantOpt = Annotated[str, typer.Option("--quant", help="weight quantization: int4 | int8 | fp16")]
PleOpt = Annotated[str, typer.Option("--ple", help="per-layer embeddings: provider | tbl")]
HeadQuantOpt = Annotated[str | None, typer.Option(
    "--head-quant", help="lm_head storage: int4 | int8 (an untied copy) | fp16 (tied to the embedding); default: --quant")]
MacOpt = Annotated[str | None, typer.Option("--mac", help="user@host of a Mac with Xcode 27 for Apple-only steps")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (default: ./gemmaios.yaml)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run the step(s) even if up to date")]
TargetOpt = Annotated[str, typer.Option(
    "--target", help="ios (iPhone) | mac (12B/31B: flash-decode Metal kernel on the full layers)")]
KernelOpt = Annotated[str | None, typer.Option(
    "--kernel", help="flash-decode kernel for --target mac builds of 12B/31B: g8 (default) | simple")]

PrefillChunkOpt = Annotated[str, typer.Option(
    "--prefill-chunk", help="prompt prefill in static chunks: a prefill_C function beside main "
    "(0 = off; 8 | 16, or a ladder such as 16,8)")]

VisionOpt = Annotated[bool, typer.Option(
    "--vision", help="image input (E2B/E4B): the vision asset beside the decoder, image_embeds on main, "
    "image prompts in the oracle and the runtime gate (provider PLE, --target ios)")]

QUANTS = ("int4", "int8", "fp16")
PLE_MODES = ("provider", "tbl")
TARGETS = ("ios", "mac")
KERNELS = ("g8", "simple")
MIN_CONTEXT = 16  # the converter's floor (convert._check_options); checked here before any work
_session: dict[str, str | None] = {"command": None}  # the command being run, for the crash line


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(
        "--debug", help=f"show the traceback of an unexpected error instead of writing a crash log (or {crash.DEBUG_ENV}=1)")] = False,
) -> None:
    if debug:
        os.environ[crash.DEBUG_ENV] = "1"  # also reaches the step modules and subprocesses
    _session["command"] = ctx.invoked_subcommand


def _fail(exc: GemmaiosError) -> None:
    if crash.debug_requested():
        console.print_exception()
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(2)


def _head_quant(value: str | None) -> str | None:
    if value is not None and value not in QUANTS:
        raise typer.BadParameter(f"{value!r}; choose one of {', '.join(QUANTS)}", param_hint="--head-quant")
    return value


def _options(model: str, arch: str, quant: str, ple: str, mac: str | None, config: Path | None) -> BuildOptions:
    from .checkpoint import check_model_source

    get_arch(arch)
    check_model_source(model)  # before a build folder is made for a model that cannot exist
    if quant not in QUANTS:
        raise typer.BadParameter(f"{quant!r}; choose one of {', '.join(QUANTS)}", param_hint="--quant")
    if ple not in PLE_MODES:
        raise typer.BadParameter(f"{ple!r}; choose one of {', '.join(PLE_MODES)}", param_hint="--ple")
    user = load_config(config)
    return BuildOptions(model=model, arch=arch, quant=quant, ple=ple, mac=mac or user.mac,
                        extra={"ssh_options": user.ssh_options, "mac_workdir": user.mac_workdir})


def _set_conversion(options: BuildOptions, max_context: int | None, target: str, kernel: str | None,
                    head_quant: str | None, prefill_chunk: str = "0", vision: bool = False) -> None:
    """Apply the convert step's own options (shared by `build` and `convert`)."""
    from .convert import resolve_prefill_chunks

    options.max_context = max_context
    _set_target(options, target, kernel)
    options.head_quant = _head_quant(head_quant)
    # Validated here (named error, exit 2) and stored canonical: "16,8", or "0" when off.
    options.prefill_chunk = ",".join(map(str, resolve_prefill_chunks(prefill_chunk))) or "0"
    options.vision = bool(vision)


def _bundle_steps(ple: str) -> set[str]:
    """The steps that produce a gated bundle (steps.BUNDLE_STEPS; the same for both PLE modes)."""
    from .steps import BUNDLE_STEPS

    return set(BUNDLE_STEPS)


def _set_target(options: BuildOptions, target: str, kernel: str | None) -> None:
    if target not in TARGETS:
        raise typer.BadParameter(f"{target!r}; choose one of {', '.join(TARGETS)}", param_hint="--target")
    if kernel is not None and kernel not in KERNELS:
        raise typer.BadParameter(f"{kernel!r}; choose one of {', '.join(KERNELS)}", param_hint="--kernel")
    if kernel is not None and target != "mac":
        raise typer.BadParameter(f"{kernel!r} only applies to --target mac; drop --kernel, or add --target mac",
                                 param_hint="--kernel")
    options.target, options.kernel = target, kernel


def print_summary(reports: list[StepReport], build_dir: Path) -> None:
    table = Table(title=f"gemmaios build · {build_dir}", show_lines=False)
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("notes", overflow="fold")
    styles = {"done": "green", "skipped": "cyan", PENDING: "yellow", FAILED: "red", "n/a": "dim"}
    for r in reports:
        label = "needs macOS" if r.status == PENDING else r.status
        table.add_row(r.name, f"[{styles.get(r.status, '')}]{label}[/]", f"{r.seconds:.1f}s", r.message)
    console.print(table)
    for r in reports:
        if r.status == PENDING and r.command:
            console.print(f"[yellow]{r.name} is pending.[/yellow] On a Mac with Xcode 27 run:\n  {r.command}\n"
                          "then re-run the same `gemmaios build` command to pick up from there "
                          "(or pass --mac user@host to let gemmaios do it over SSH).")


def _run(options: BuildOptions, out: Path | None, only: set[str] | None, force: bool) -> None:
    from .steps import run_build

    try:
        ctx, reports = run_build(options, out, only=only, force=set(only or []) if force else set(), console=console)
    except KeyboardInterrupt:
        # Finished steps are already in build.json; the interrupted one left no record.
        console.print("[yellow]interrupted[/yellow]: finished steps are kept; run the same command again to resume")
        raise typer.Exit(130) from None
    print_summary(reports, ctx.build_dir)
    if any(r.status == FAILED for r in reports):
        raise typer.Exit(1)


@app.command()
def build(
    model: ModelOpt = DEFAULT_MODEL,
    arch: ArchOpt = "h18p",
    out: OutOpt = None,
    quant: QuantOpt = "int4",
    ple: PleOpt = "provider",
    mac: MacOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    max_context: Annotated[int | None, typer.Option(
        "--max-context", min=MIN_CONTEXT, help="longest context the bundle serves (default: 4096, capped at the model's limit)")] = None,
    target: TargetOpt = "ios",
    kernel: KernelOpt = None,
    head_quant: HeadQuantOpt = None,
    prefill_chunk: PrefillChunkOpt = "0",
    vision: VisionOpt = False,
) -> None:
    """Checkpoint → Core AI bundle, PLE tables, oracle, AOT .aimodelc and Xcode app, in one build folder."""
    try:
        from .steps import step_names

        options = _options(model, arch, quant, ple, mac, config)
        _set_conversion(options, max_context, target, kernel, head_quant, prefill_chunk, vision)
        only = None if not force else set(step_names())
        if target == "mac":
            console.print("[dim]--target mac: building the bundle only (the AOT compile and app steps are "
                          "iPhone-only; the Mac engine loads the .aimodel as is)[/dim]")
            only = _bundle_steps(ple)
        _run(options, out, only, force)
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The Gemma 4 targets gemmaios knows, with their architecture facts."""
    if as_json:
        print(json.dumps([s.as_dict() for s in MODELS.values()], indent=2))
        return
    table = Table(title="Gemma 4 targets")
    for col in ("key", "layers", "hidden", "heads/kv", "head dims", "PLE dim", "kv-shared"):
        table.add_column(col, no_wrap=True)
    for s in MODELS.values():
        kv = s.num_key_value_heads if s.num_key_value_heads is not None else "?"
        table.add_row(s.key, str(s.num_hidden_layers), str(s.hidden_size),
                      f"{s.num_attention_heads}/{kv}", f"{s.head_dim}/{s.global_head_dim}",
                      str(s.hidden_size_per_layer_input or "—"), str(s.num_kv_shared_layers))
    out = Console()
    out.print(table)
    for s in MODELS.values():
        out.print(f"{s.key}: {s.hf_id}  [dim]({s.source})[/dim]")


@app.command()
def doctor(config: ConfigOpt = None, mac: MacOpt = None) -> None:
    """What this machine can do (deps, Xcode, remote Mac, usbmuxd, devices) and how to fix what it cannot."""
    from .doctor import MISSING, OK, run_checks

    try:
        user = load_config(config)
    except GemmaiosError as exc:
        _fail(exc)
    if mac:
        user.mac = mac
    table = Table(title="gemmaios doctor")
    for col in ("check", "status", "detail", "what to do"):
        table.add_column(col, overflow="fold")
    for c in run_checks(user):
        style = "green" if c.status == OK else ("red" if c.status == MISSING else "yellow")
        table.add_row(c.name, f"[{style}]{c.status}[/]", c.detail, c.fix)
    Console().print(table)


@app.command("app")
def app_command(
    model: ModelOpt = DEFAULT_MODEL,
    arch: ArchOpt = "h18p",
    out: OutOpt = None,
    quant: QuantOpt = "int4",
    ple: PleOpt = "provider",
    config: ConfigOpt = None,
    team_id: Annotated[str | None, typer.Option("--team-id", help="Apple Developer Team ID (default: config)")] = None,
    bundle_id: Annotated[str | None, typer.Option("--bundle-id", help="e.g. com.example.gemma (default: config)")] = None,
    app_name: Annotated[str | None, typer.Option("--app-name", help="Xcode target name (default: config or GemmaBench)")] = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="name on the home screen")] = None,
    bundle_location: Annotated[str | None, typer.Option("--bundle-location", help="bundled | documents")] = None,
    deployment_target: Annotated[str | None, typer.Option("--deployment-target", help="iOS version, >= 27.0")] = None,
    engine_source: Annotated[Path | None, typer.Option("--engine-source", help="a checkout of apple/coreai-models")] = None,
    no_clone: Annotated[bool, typer.Option("--no-clone", help="never git clone coreai-models")] = False,
    allow_uncompiled: Annotated[bool, typer.Option(
        "--allow-uncompiled", help="iOS: ship a bundle that is not AOT-compiled for --arch")] = False,
    allow_tbl: Annotated[bool, typer.Option(
        "--allow-tbl", help="iOS: ship a --ple tbl bundle past the entitled-memory arithmetic")] = False,
    force: ForceOpt = False,
) -> None:
    """Render the Xcode project for the build (app/<AppName>/) and the patched coreai-models package."""
    from .steps import run_build

    try:
        options = _options(model, arch, quant, ple, None, config)
        options.extra["app"] = {
            "team_id": team_id, "bundle_id": bundle_id, "app_name": app_name, "display_name": display_name,
            "bundle_location": bundle_location, "deployment_target": deployment_target,
            "engine_source": engine_source, "allow_clone": False if no_clone else None, "config": config,
            "allow_uncompiled": allow_uncompiled or None, "allow_tbl": allow_tbl or None,
        }
        ctx, reports = run_build(options, out, only={"checkpoint", "app"}, force={"app"} if force else set(),
                                 console=console)
    except GemmaiosError as exc:
        _fail(exc)
    print_summary(reports, ctx.build_dir)
    record = ctx.manifest.get("app")
    if record and record.details:
        engine = record.details.get("engine", {})
        console.print(f"Xcode project: {ctx.build_dir / record.details['xcodeproj']}")
        if engine.get("status") == "pending":
            console.print(f"[yellow]engine package pending:[/yellow] {engine.get('message')}\n"
                          f"  on a machine with network run: {engine.get('command')}\n"
                          "  (or pass --engine-source PATH), then re-run `gemmaios app`")
    if any(r.status == FAILED for r in reports):
        raise typer.Exit(1)


@app.command(name="compile")
def compile_cmd(
    model: ModelOpt = DEFAULT_MODEL,
    arch: ArchOpt = "h18p",
    out: OutOpt = None,
    quant: QuantOpt = "int4",
    ple: PleOpt = "provider",
    mac: MacOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="compile this bundle folder (metadata.json + .aimodel) instead of a build's")] = None,
) -> None:
    """AOT-compile the bundle for --arch with `xcrun coreai-build compile` (here on a Mac, or over SSH with --mac)."""
    from .compile import (
        aimodelc_name,
        check_aimodelc,
        compile_bundle,
        manual_command,
        point_metadata_at,
        source_aimodel,
    )
    from .runners import runner_for_build

    try:
        if bundle is None:
            options = _options(model, arch, quant, ple, mac, config)
            options.extra["recompile"] = force  # otherwise an up-to-date .aimodelc is reused
            _run(options, out, {"compile"}, force)
            return
        options = _options(model, arch, quant, ple, mac, config)
        target = get_arch(arch)
        aimodel = source_aimodel(bundle)
        compiled = bundle / aimodelc_name(Path(aimodel).name, target)
        if compiled.exists() and not force:  # compiled by hand on a Mac and copied back
            info = check_aimodelc(compiled, target)
            point_metadata_at(bundle, aimodel, compiled.name, target)
            console.print(f"[green]✓[/green] picked up {compiled} ({info.producer}); metadata.json → {compiled.name}")
            return
        runner = runner_for_build(options, pending_command=manual_command(bundle, aimodel, target),
                                  resume="re-run this command (it picks the compiled asset up)")
        try:
            result = compile_bundle(bundle, target, runner)
        finally:
            runner.close()
        console.print(f"[green]✓[/green] {result.aimodelc} ({result.producer}, on {result.host}, {result.seconds:.1f}s)\n"
                      f"  metadata.json → {result.aimodelc.name}; {result.mac_metadata.name} keeps the .aimodel for Mac")
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def sign(
    model: ModelOpt = DEFAULT_MODEL,
    arch: ArchOpt = "h18p",
    out: OutOpt = None,
    quant: QuantOpt = "int4",
    ple: PleOpt = "provider",
    mac: MacOpt = None,
    config: ConfigOpt = None,
    team_id: Annotated[str | None, typer.Option("--team-id", help="Apple Developer Team ID (default: config)")] = None,
    force: ForceOpt = False,
) -> None:
    """Archive and export the rendered app as a development-signed .ipa (xcodebuild; here on a Mac, or over SSH with --mac)."""
    from .app import validate_team_id

    try:
        validate_team_id(team_id)
        options = _options(model, arch, quant, ple, mac, config)
        options.extra["sign"] = {"team_id": team_id}
        options.extra["app"] = {"config": config}
        _run(options, out, {"sign"}, force)
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def archs(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The AOT architectures --arch accepts, with device, memory and bandwidth facts and their sources."""
    from .archs import ARCHS

    if as_json:
        print(json.dumps([a.as_dict() for a in ARCHS.values()], indent=2))
        return
    table = Table(title="--arch values (xcrun coreai-build compile --architecture)")
    for col in ("arch", "platform", "devices", "memory", "entitled", "bandwidth", "validated", "source"):
        table.add_column(col, overflow="fold")

    def gb(v, unit="GB"):
        return f"{v:g} {unit}" if v is not None else "—"

    for a in ARCHS.values():
        table.add_row(a.name, "/".join(a.platforms), ", ".join(a.devices) or "—", gb(a.memory_gb),
                      gb(a.entitled_limit_gb), gb(a.bandwidth_gbps, "GB/s"), "yes" if a.device_validated else "—",
                      a.source)
    Console().print(table)


@app.command()
def tables(model: ModelOpt = DEFAULT_MODEL, out: OutOpt = None, config: ConfigOpt = None, force: ForceOpt = False) -> None:
    """Int8 per-layer embedding table + row scales (+ sidecar) for the app's mmap gather, verified against HF."""
    try:
        _run(_options(model, "h18p", "int4", "provider", None, config), out, {"checkpoint", "tables"}, force)
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def oracle(
    model: ModelOpt = DEFAULT_MODEL,
    out: OutOpt = None,
    prompts: Annotated[Path | None, typer.Option(
        "--prompts", help="prompts YAML, or a packaged set: `long-prefill` (2 prompts of > 512 tokens, for prefill "
                          "figures) (default: the built-in 8)")] = None,
    tokens: Annotated[int, typer.Option("--tokens", "-n", min=1, help="new tokens per prompt")] = 32,
    top_k: Annotated[int, typer.Option("--top-k", min=2, help="logits recorded per step")] = 5,
    device: Annotated[str, typer.Option("--device", help="torch device for the fp32 reference")] = "cpu",
    arch: ArchOpt = "h18p",
    quant: QuantOpt = "int4",
    ple: PleOpt = "provider",
    force: ForceOpt = False,
) -> None:
    """The fp32 Hugging Face reference (greedy, N tokens per prompt, top-k logits) → <build>/oracle/oracle.json."""
    from .steps import run_build

    try:
        options = _options(model, arch, quant, ple, None, None)
        options.oracle_tokens, options.prompts_file = tokens, prompts
        options.extra.update(oracle_top_k=top_k, oracle_device=device)
        ctx, reports = run_build(options, out, only={"checkpoint", "oracle"},
                                 force={"oracle"} if force else set(), console=console)
    except GemmaiosError as exc:
        _fail(exc)
    print_summary(reports, ctx.build_dir)
    if any(r.status == FAILED for r in reports):
        raise typer.Exit(1)
    print(ctx.path("oracle", "oracle.json"))


@app.command()
def convert(
    model: ModelOpt = DEFAULT_MODEL,
    out: OutOpt = None,
    quant: QuantOpt = "int4",
    ple: PleOpt = "provider",
    max_context: Annotated[int | None, typer.Option("--max-context", min=MIN_CONTEXT, help="longest context the bundle serves (default: 4096, capped at the model's limit)")] = None,
    force: ForceOpt = False,
    target: TargetOpt = "ios",
    kernel: KernelOpt = None,
    head_quant: HeadQuantOpt = None,
    prefill_chunk: PrefillChunkOpt = "0",
    vision: VisionOpt = False,
) -> None:
    """Checkpoint → Core AI LanguageBundle (parity-gated and run by Core AI's runtime against the oracle)."""
    try:
        options = _options(model, "h18p", quant, ple, None, None)
        _set_conversion(options, max_context, target, kernel, head_quant, prefill_chunk, vision)
        _run(options, out, _bundle_steps(ple), force)
    except GemmaiosError as exc:
        _fail(exc)


@app.command("tiny-train")
def tiny_train(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for the weights, tokenizer and record (default: the package's data/tiny)")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=10, help="training steps (the last fifth are int4 quantization-aware)")] = None,
    vision: Annotated[bool, typer.Option("--vision", help="retrain the tiny multimodal model (tiny-vision: ~6 min on a GPU, ~3 h on one CPU thread)")] = False,
    device: Annotated[str, typer.Option("--device", help="with --vision: cpu, or cuda to train on a GPU")] = "cpu",
) -> None:
    """Retrain the built-in tiny model on the generated corpus (CPU, minutes) and write its shipped weights."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .tiny import SHIPPED_DIR
    from .tinytrain import DEFAULT_STEPS, ship, train_tiny
    from .vision import tinymodel

    if device != "cpu" and not vision:
        _fail(GemmaiosError(f"--device {device} is for --vision: the tiny text model trains on one CPU thread",
                            hint="drop --device, or add --vision"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail(GemmaiosError(f"--device {device}: this machine's torch sees no CUDA GPU",
                                hint="train with --device cpu (one thread, ~3 h), or on a machine with a GPU"))
    elif device != "cpu":
        _fail(GemmaiosError(f"--device {device!r} is not cpu or cuda", hint="use --device cpu or --device cuda"))
    target = out or (tinymodel.SHIPPED_DIR if vision else SHIPPED_DIR)
    if target.exists() and not target.is_dir():
        _fail(GemmaiosError(f"--out {target} is a file, not a folder", hint="pass a folder for the weights (it is created)"))
    total = steps or (tinymodel.DEFAULT_STEPS if vision else DEFAULT_STEPS)
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("train", total=total, loss="-")

        def show(step, _n, loss):
            bar.update(task, completed=step, loss=f"{loss:.3f}")

        if vision:
            result = tinymodel.train_tiny_vision(total, progress=show, device=device)
        else:
            result = train_tiny(total, progress=show)
    if vision:
        record = tinymodel.ship(result, target)
        grid = record["image_margins_int4_grid"]
        console.print(f"loss {record['training']['first_loss']} → {record['training']['final_loss']} in "
                      f"{record['training']['seconds']:.0f} s on {device}")
        console.print(f"image prompts: {record['image_answers_right']}/{len(record['image_answers'])} answered right "
                      f"(fp32), {grid['answers_right']} on the int4 grid; margins median {record['image_margins']['median']}, "
                      f"min {record['image_margins']['min']} (int4 grid min {grid['min']})")
    else:
        record = ship(result, target)
        margins = record["margins"]
        console.print(f"loss {record['training']['first_loss']} → {record['training']['final_loss']} "
                      f"in {record['training']['seconds']:.0f} s ({record['training']['qat_steps']} int4-aware steps)")
        console.print(f"greedy top-1/top-2 margins over {margins['steps']} steps: median {margins['median']}, "
                      f"min {margins['min']}, {margins['below_near_tie']} below the near-tie threshold 0.1")
    for name, digest in record["sha256"].items():
        print(f"{digest}  {target / name}")


# Commands kept in their own modules; each registers on this app (works under `python -m` too).
from . import cli_device, cli_farm, cli_results, cli_run  # noqa: E402

for _commands in (cli_results, cli_device, cli_run, cli_farm):
    _commands.register(app, console, _fail)


def main(argv: list[str] | None = None) -> None:
    """The `gemmaios` entry point: named errors print message + hint, anything else a crash log (see crash.py)."""
    _session["command"] = None
    try:
        app(args=argv, prog_name="gemmaios")
    except GemmaiosError as exc:  # a step module raised outside a command's own handler
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    except Exception as exc:
        if crash.debug_requested():
            raise
        sys.exit(crash.report_crash(exc, ["gemmaios", *(sys.argv[1:] if argv is None else argv)], _session["command"],
                                    lambda line: console.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)))


if __name__ == "__main__":
    main()
