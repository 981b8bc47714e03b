"""The `gemmaios` command line: thin wrappers over the step modules."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from . import crash, quiet
from .archs import get_arch
from .buildlayout import ORACLE_FILE
from .cli_console import exit_process, interrupted, terminal
from .cli_options import (
    AllowTblOpt,
    AllowUncompiledOpt,
    ArchOpt,
    AudioOpt,
    BundleLocationOpt,
    CalibrationOpt,
    ConfigOpt,
    ForceOpt,
    HeadQuantOpt,
    JsonOpt,
    KernelOpt,
    MacOpt,
    MaxContextOpt,
    ModelOpt,
    OutOpt,
    PleOpt,
    PrefillChunkOpt,
    QuantOpt,
    RecipeOpt,
    TargetOpt,
    TeamIdOpt,
    VisionOpt,
)
from .config import load_config
from .errors import GemmaiosError
from .pipeline import FAILED, PENDING, BuildOptions, StepReport
from .registry import MODELS

app = typer.Typer(add_completion=True, no_args_is_help=False, help=__doc__,
                  context_settings={"help_option_names": ["--help", "-h"]})
console = terminal(stderr=True)
_session: dict[str, str | None] = {"command": None}  # the command being run, for the crash line

def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"gemmaios {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _global_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(
        "--debug", help=f"show the traceback of an unexpected error instead of writing a crash log (or {crash.DEBUG_ENV}=1)")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="also show third-party warnings and the native runtime's output (always in the build's log)")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print gemmaios's version and exit")] = False,
) -> None:
    if debug:
        os.environ[crash.DEBUG_ENV] = "1"  # also reaches the step modules and subprocesses
    if verbose:
        os.environ[quiet.VERBOSE_ENV] = "1"
    _session["command"] = ctx.invoked_subcommand
    if ctx.invoked_subcommand is None:  # bare `gemmaios`: the help, and success
        print(ctx.get_help())
        raise typer.Exit(0)


def _fail(exc: GemmaiosError) -> None:
    if crash.debug_requested():
        console.print_exception()
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(2)


def _build_options(out: Path | None, *, mac: str | None = None, config: Path | None = None,
                   **given) -> tuple[Path, BuildOptions]:
    """(build folder, options) for a command: the folder's own options (buildfolder.resolve), the
    given ones checked against them; option mistakes are named before any folder is made."""
    from .buildfolder import resolve
    from .checkpoint import check_model_source
    from .convert import resolve_prefill_chunks

    if given.get("arch") is not None:
        get_arch(given["arch"])
    if given.get("model") is not None:
        check_model_source(given["model"])  # before a build folder is made for a model that cannot exist
    if given.get("prefill_chunk") is not None:  # stored canonical: "16,8", or "0" when off
        given["prefill_chunk"] = ",".join(map(str, resolve_prefill_chunks(given["prefill_chunk"]))) or "0"
    if given.get("recipe") is not None:  # a bad recipe is named before any folder is made
        from .recipe import load_recipe

        load_recipe(given["recipe"])
        path = Path(given["recipe"]).expanduser()
        if path.is_file():  # remembered absolute: later commands may run elsewhere
            given["recipe"] = str(path.resolve())
    if given.get("calibration") is not None:
        given["calibration"] = str(Path(given["calibration"]).expanduser().resolve())
    user = load_config(config)
    build_dir, options = resolve(out, given)
    if given.get("model") is None:
        check_model_source(options.model)
    if options.kernel is not None and options.target != "mac":
        raise typer.BadParameter(f"{options.kernel!r} only applies to --target mac; drop --kernel, or add --target mac",
                                 param_hint="--kernel")
    options.mac = mac or user.mac
    options.extra.update({"ssh_options": user.ssh_options, "mac_workdir": user.mac_workdir})
    return build_dir, options


def _remember_app(options: BuildOptions, **values) -> None:
    """The app step's options on top of those the folder remembers (a later `build` keeps them)."""
    options.extra["app"] = {**(options.extra.get("app") or {}), **{k: v for k, v in values.items() if v is not None}}


def _bundle_steps() -> set[str]:
    """The steps that produce a gated bundle (steps.BUNDLE_STEPS)."""
    from .steps import BUNDLE_STEPS

    return set(BUNDLE_STEPS)


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_summary(reports: list[StepReport], build_dir: Path, manifest=None) -> None:
    """The steps' table, then what is left to do: each pending step's own command, each command once."""
    table = Table(title=f"gemmaios build · {_shown(build_dir)}", show_lines=False)
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("notes", overflow="fold")
    styles = {"done": "green", "skipped": "cyan", PENDING: "yellow", FAILED: "red", "n/a": "dim"}
    for r in reports:
        label = "needs macOS" if r.status == PENDING else r.status
        table.add_row(r.name, f"[{styles.get(r.status, '')}]{label}[/]", f"{r.seconds:.1f}s",
                      escape(r.message.splitlines()[0] if r.message else ""))  # the hint was printed with the step
    console.print(table)
    ran_app = any(r.name == "app" for r in reports)
    app = manifest.details("app") if manifest is not None and ran_app else None
    engine = app.engine if app is not None else None
    if engine is not None and engine.status == "pending":  # the app's Swift package: fetched once, with network
        console.print(f"[yellow]engine package pending[/yellow] ({escape(engine.message)}); "
                      "on a machine with network run:")
        console.print(f"  {engine.command}", markup=False, highlight=False)
        console.print("  (or pass --engine-source PATH), then re-run `gemmaios app`", markup=False)
    pending = [r for r in reports if r.status == PENDING]
    if not pending:
        return
    # Each pending step with its own command, each command once: the app step waits on the compile's
    # command (or renders now with --allow-uncompiled), sign has the two xcodebuild commands.
    printed: dict[str, str] = {}
    for r in pending:
        if r.command and r.command not in printed:
            if r.message.startswith("waits for"):
                console.print(f"[yellow]{r.name} is pending[/yellow] ({escape(r.message)}); after it, on a Mac "
                              "with Xcode 27 run:")
            else:
                console.print(f"[yellow]{r.name} is pending.[/yellow] On a Mac with Xcode 27 run:")
            console.print(f"  {r.command}", markup=False, highlight=False)
            printed[r.command] = r.name
        elif r.name == "app":
            console.print(f"[yellow]app is pending[/yellow] until {printed.get(r.command, 'compile')} is done; "
                          "to render the Xcode project now with the uncompiled bundle run:")
            console.print(f"  gemmaios app --allow-uncompiled --out {_shown(build_dir)}", markup=False, highlight=False)
        else:
            console.print(f"[yellow]{r.name} is pending[/yellow] until {printed.get(r.command, 'the steps before it')} "
                          "is done")
    console.print(f"Then re-run `gemmaios build --out {_shown(build_dir)}` to pick up from there "
                  "(or pass --mac user@host to let gemmaios run the Mac steps over SSH).", markup=False)


def _print_json(build_dir: Path, reports: list[StepReport], **more) -> None:
    """A command's result on stdout as JSON (--json): the build folder and each step's report."""
    print(json.dumps({"build_dir": str(build_dir), "steps": [vars(r) for r in reports], **more}, indent=2))


def _run(options: BuildOptions, out: Path | None, only: set[str] | None, force: bool, as_json: bool = False) -> None:
    from .steps import run_build

    try:
        ctx, reports = run_build(options, out, only=only, force=set(only or []) if force else set(), console=console)
    except KeyboardInterrupt:
        # Finished steps are already in build.json; the interrupted one left no record.
        interrupted(console, "finished steps are kept; run the same command again to resume")
    print_summary(reports, ctx.build_dir, ctx.manifest)
    if as_json:
        _print_json(ctx.build_dir, reports)
    if any(r.status == FAILED for r in reports):
        raise typer.Exit(1)


@app.command()
def build(
    model: ModelOpt = None,
    arch: ArchOpt = None,
    out: OutOpt = None,
    quant: QuantOpt = None,
    ple: PleOpt = None,
    mac: MacOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    max_context: MaxContextOpt = None,
    target: TargetOpt = None,
    kernel: KernelOpt = None,
    head_quant: HeadQuantOpt = None,
    prefill_chunk: PrefillChunkOpt = None,
    vision: VisionOpt = None,
    recipe: RecipeOpt = None,
    calibration: CalibrationOpt = None,
    audio: AudioOpt = None,
    allow_uncompiled: AllowUncompiledOpt = None,
    allow_tbl: AllowTblOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Checkpoint → Core AI bundle, PLE tables, oracle, AOT .aimodelc and Xcode app, in one build folder."""
    try:
        from .steps import step_names

        build_dir, options = _build_options(
            out, mac=mac, config=config, model=model, arch=arch, quant=quant, ple=ple, max_context=max_context,
            target=target, kernel=kernel, head_quant=head_quant, prefill_chunk=prefill_chunk, vision=vision,
            recipe=recipe, calibration=calibration, audio=audio)
        _remember_app(options, allow_uncompiled=allow_uncompiled, allow_tbl=allow_tbl)
        only = None if not force else set(step_names())
        if options.target == "mac":
            console.print("[dim]--target mac: the bundle, then the macOS app (no AOT compile: the Mac loads the "
                          ".aimodel as is and specializes it at its first load)[/dim]")
            only = _bundle_steps() | {"app", "sign"}
        _run(options, build_dir, only, force, as_json)
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """The Gemma 4 targets gemmaios knows (and the built-in `tiny`), with their architecture facts."""
    from .tiny import tiny_spec

    specs = [*MODELS.values(), tiny_spec()]
    if as_json:
        print(json.dumps([s.as_dict() for s in specs], indent=2))
        return
    table = Table(title="Gemma 4 targets (--model KEY or HF id)")
    for col in ("key", "layers", "hidden", "heads/kv", "head dims", "PLE dim", "kv-shared"):
        table.add_column(col, no_wrap=True)
    for s in specs:
        kv = s.num_key_value_heads if s.num_key_value_heads is not None else "?"
        table.add_row(s.key, str(s.num_hidden_layers), str(s.hidden_size),
                      f"{s.num_attention_heads}/{kv}", f"{s.head_dim}/{s.global_head_dim}",
                      str(s.hidden_size_per_layer_input or "—"), str(s.num_kv_shared_layers))
    out = terminal()
    out.print(table)
    for s in specs:
        out.print(f"{s.key}: {escape(s.hf_id)}  [dim]({escape(s.source)})[/dim]")


@app.command()
def recipes(as_json: JsonOpt = False) -> None:
    """The packaged mixed-bit quantization recipes (--recipe NAME), with their plans and floors."""
    from .recipe import load_recipe, packaged_recipes

    try:
        found = [load_recipe(n) for n in packaged_recipes()]
    except GemmaiosError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps([r.as_dict() for r in found], indent=2))
        return
    out = terminal()
    for r in found:
        out.print(f"[bold]{escape(r.name)}[/bold]: {escape(r.description)}")
        out.print(f"  default {r.default.label} ({r.default.storage}); floors {escape(json.dumps(r.floors))}")
        for pattern, tq in r.rules:
            out.print(f"  {escape(pattern)} → {tq.label} ({tq.storage})")


@app.command()
def sensitivity(
    model: ModelOpt = None,
    bits: Annotated[str, typer.Option("--bits", help="candidate bit widths, comma-separated (2, 3, 4, 8)")] = "2,4,8",
    group: Annotated[int, typer.Option("--group", min=8, help="group size of every candidate")] = 64,
    mode: Annotated[Literal["symmetric", "affine"], typer.Option("--mode", help="the candidates' level grid")] = "affine",
    only: Annotated[str | None, typer.Option("--only", help="measure only the weights matching this pattern "
                                             "(checkpoint names, e.g. 'layers.*.mlp.*')")] = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", exists=True, dir_okay=False,
                                                 help="calibration prompts file (default: the packaged chat "
                                                      "prompts)")] = None,
    budget_bits: Annotated[float | None, typer.Option("--budget-bits", min=1.0, help="propose a plan of at most this "
                                                       "many bits per weight (levels + scales)")] = None,
    write_recipe: Annotated[Path | None, typer.Option("--write-recipe", help="write the proposed plan as a recipe "
                                                      "YAML (use it with --recipe)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-tensor KL divergence vs the fp32 model for each candidate bit width; a plan for a byte budget."""
    from .checkpoint import resolve_checkpoint
    from .roofline import size_text
    from .sensitivity import SensitivityError, parse_candidates, plan_for_budget, tensor_sensitivity

    try:
        if write_recipe is not None and budget_bits is None:
            raise typer.BadParameter("a recipe is written from a plan: add --budget-bits", param_hint="--write-recipe")
        candidates = parse_candidates(bits, group, mode)
        from .registry import DEFAULT_MODEL

        checkpoint = resolve_checkpoint(DEFAULT_MODEL if model is None else model)  # ModelOpt's default: E4B
        with console.status("") as status:
            report = tensor_sensitivity(
                checkpoint, candidates, only=only, prompts_file=prompts,
                progress=lambda done, total: status.update(f"sensitivity {done}/{total} (tensor × width)"))
        result = report.as_dict()
        if budget_bits is not None:
            result["plan"] = plan_for_budget(report, budget_bits, candidates, checkpoint.model_id, write_recipe)
    except (GemmaiosError, SensitivityError) as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out = terminal()
    table = Table(title=f"KL vs fp32 per tensor ({report.tokens} teacher-forced tokens; most sensitive first)")
    table.add_column("tensor", no_wrap=True)
    for c in candidates:
        table.add_column(c.label, justify="right")
    for name, _ in report.ranking():
        table.add_row(name, *(f"{report.kl[name][c.label]:.2e}" if c.label in report.kl[name] else "—"
                              for c in candidates))
    out.print(table)
    if "plan" in result:
        p = result["plan"]
        out.print(f"plan: {p['bits_per_weight']} bits/weight, {size_text(p['bytes'])} of the measured weights")
        if "recipe" in p:
            out.print(f"recipe written: {escape(p['recipe'])} (build with --recipe {escape(p['recipe'])})")


@app.command()
def doctor(config: ConfigOpt = None, mac: MacOpt = None, as_json: JsonOpt = False) -> None:
    """What this machine can do (deps, Xcode, remote Mac, usbmuxd, devices) and how to fix what it cannot."""
    from .doctor import MISSING, OK, run_checks

    try:
        user = load_config(config)
    except GemmaiosError as exc:
        _fail(exc)
    if mac:
        user.mac = mac
    checks = run_checks(user)
    if as_json:
        print(json.dumps([vars(c) for c in checks], indent=2))
        return
    table = Table(title="gemmaios doctor")
    for col in ("check", "status", "detail", "what to do"):
        table.add_column(col, overflow="fold")
    for c in checks:
        style = "green" if c.status == OK else ("red" if c.status == MISSING else "yellow")
        table.add_row(c.name, f"[{style}]{c.status}[/]", c.detail, c.fix)
    terminal().print(table)


@app.command("app")
def app_command(
    model: ModelOpt = None,
    arch: ArchOpt = None,
    out: OutOpt = None,
    quant: QuantOpt = None,
    ple: PleOpt = None,
    config: ConfigOpt = None,
    team_id: TeamIdOpt = None,
    bundle_id: Annotated[str | None, typer.Option("--bundle-id", help="e.g. com.example.gemma (default: config)")] = None,
    app_name: Annotated[str | None, typer.Option("--app-name", help="Xcode target name (default: config or GemmaBench)")] = None,
    display_name: Annotated[str | None, typer.Option("--display-name", help="name on the home screen")] = None,
    bundle_location: BundleLocationOpt = None,
    deployment_target: Annotated[str | None, typer.Option("--deployment-target", help="iOS version, >= 27.0")] = None,
    engine_source: Annotated[Path | None, typer.Option("--engine-source", help="a checkout of apple/coreai-models")] = None,
    no_clone: Annotated[bool, typer.Option("--no-clone", help="never git clone coreai-models")] = False,
    allow_uncompiled: AllowUncompiledOpt = None,
    allow_tbl: AllowTblOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Render the Xcode project for the build (app/<AppName>/) and the patched coreai-models package."""
    from .steps import run_build

    try:
        build_dir, options = _build_options(out, config=config, model=model, arch=arch, quant=quant, ple=ple)
        _remember_app(options, team_id=team_id, bundle_id=bundle_id, app_name=app_name, display_name=display_name,
                      bundle_location=bundle_location, deployment_target=deployment_target,
                      engine_source=engine_source, allow_clone=False if no_clone else None, config=config,
                      allow_uncompiled=allow_uncompiled, allow_tbl=allow_tbl)
        ctx, reports = run_build(options, build_dir, only={"checkpoint", "app"}, force={"app"} if force else set(),
                                 console=console)
    except GemmaiosError as exc:
        _fail(exc)
    print_summary(reports, ctx.build_dir, ctx.manifest)
    app = ctx.manifest.details("app")
    finished = app is not None and reports[-1].name == "app" \
        and reports[-1].status in ("done", "skipped")  # never the details of an earlier run after a failed step
    if finished:
        console.print(f"Xcode project: {_shown(ctx.build_dir / app.xcodeproj)}", markup=False)
    if as_json:
        _print_json(ctx.build_dir, reports, xcodeproj=str(ctx.build_dir / app.xcodeproj) if finished else None)
    if any(r.status == FAILED for r in reports):
        raise typer.Exit(1)


@app.command(name="compile")
def compile_cmd(
    model: ModelOpt = None,
    arch: ArchOpt = None,
    out: OutOpt = None,
    quant: QuantOpt = None,
    ple: PleOpt = None,
    mac: MacOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    bundle: Annotated[Path | None, typer.Option(
        "--bundle", help="compile this bundle folder (metadata.json + .aimodel) instead of a build's")] = None,
    as_json: JsonOpt = False,
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
            build_dir, options = _build_options(out, mac=mac, config=config, model=model, arch=arch, quant=quant,
                                                ple=ple)
            options.extra["recompile"] = force  # otherwise an up-to-date .aimodelc is reused
            _run(options, build_dir, {"compile"}, force, as_json)
            return
        # a bundle outside any build folder: the options say what to compile it for
        target = get_arch(arch or "h18p")
        user = load_config(config)
        options = BuildOptions(model=model or "tiny", arch=target.name, mac=mac or user.mac,
                               extra={"ssh_options": user.ssh_options, "mac_workdir": user.mac_workdir})
        if model is not None:
            from .checkpoint import check_model_source

            check_model_source(model)
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
    model: ModelOpt = None,
    arch: ArchOpt = None,
    out: OutOpt = None,
    quant: QuantOpt = None,
    ple: PleOpt = None,
    mac: MacOpt = None,
    config: ConfigOpt = None,
    team_id: TeamIdOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Archive and export the rendered app as a development-signed .ipa (xcodebuild; here on a Mac, or over SSH with --mac)."""
    from .app import validate_team_id

    try:
        validate_team_id(team_id)
        build_dir, options = _build_options(out, mac=mac, config=config, model=model, arch=arch, quant=quant, ple=ple)
        options.extra["sign"] = {"team_id": team_id}
        _remember_app(options, config=config)
        _run(options, build_dir, {"sign"}, force, as_json)
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def archs(as_json: JsonOpt = False) -> None:
    """The AOT architectures --arch accepts, with device, memory and bandwidth facts and their sources."""
    from .archs import ARCHS

    if as_json:
        print(json.dumps([a.as_dict() for a in ARCHS.values()], indent=2))
        return
    table = Table(title="--arch values (xcrun coreai-build compile --architecture)")
    for col in ("arch", "platform", "memory", "entitled", "bandwidth", "validated", "devices"):
        table.add_column(col, no_wrap=col != "devices", overflow="fold")

    def gb(v, unit="GB"):
        return f"{v:g} {unit}" if v is not None else "—"

    for a in ARCHS.values():
        table.add_row(a.name, "/".join(a.platforms), gb(a.memory_gb), gb(a.entitled_limit_gb),
                      gb(a.bandwidth_gbps, "GB/s"), "yes" if a.device_validated else "—",
                      ", ".join(a.devices) or "—")
    out = terminal()
    out.print(table)
    out.print("[dim]sources (full records: gemmaios archs --json):[/dim]")
    for a in ARCHS.values():  # one line each, never wrapped: the table stays a table at 80 columns
        out.print(f"  {a.name}: {escape(a.source)}", highlight=False)


@app.command()
def tables(
    model: ModelOpt = None,
    arch: ArchOpt = None,
    out: OutOpt = None,
    quant: QuantOpt = None,
    ple: PleOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Int8 per-layer embedding table + row scales (+ sidecar) for the app's mmap gather, verified against HF."""
    try:
        build_dir, options = _build_options(out, config=config, model=model, arch=arch, quant=quant, ple=ple)
        _run(options, build_dir, {"checkpoint", "tables"}, force, as_json)
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def oracle(
    model: ModelOpt = None,
    out: OutOpt = None,
    prompts: Annotated[Path | None, typer.Option(
        "--prompts", help="prompts YAML, or a packaged set: `long-prefill` (2 prompts of > 512 tokens, for prefill "
                          "figures) (default: the folder's, else the built-in 8)")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", "-n", min=1, help="new tokens per prompt (default: the folder's, else 32)")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=2, help="logits recorded per step")] = 5,
    device: Annotated[str, typer.Option("--device", help="torch device for the fp32 reference")] = "cpu",
    arch: ArchOpt = None,
    quant: QuantOpt = None,
    ple: PleOpt = None,
    vision: VisionOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The fp32 Hugging Face reference (greedy, N tokens per prompt, top-k logits) → <build>/oracle/oracle.json."""
    from .steps import run_build

    try:
        build_dir, options = _build_options(out, config=config, model=model, arch=arch, quant=quant, ple=ple,
                                            vision=vision)
        if tokens is not None:
            options.oracle_tokens = tokens
        if prompts is not None:
            options.prompts_file = prompts
        options.extra.update(oracle_top_k=top_k, oracle_device=device)
        ctx, reports = run_build(options, build_dir, only={"checkpoint", "oracle"},
                                 force={"oracle"} if force else set(), console=console)
    except GemmaiosError as exc:
        _fail(exc)
    print_summary(reports, ctx.build_dir, ctx.manifest)
    if any(r.status == FAILED for r in reports):
        raise typer.Exit(1)
    path = ctx.path(ORACLE_FILE)
    if as_json:
        _print_json(ctx.build_dir, reports, oracle=str(path))
    else:
        print(path)


@app.command()
def convert(
    model: ModelOpt = None,
    arch: ArchOpt = None,
    out: OutOpt = None,
    quant: QuantOpt = None,
    ple: PleOpt = None,
    max_context: MaxContextOpt = None,
    config: ConfigOpt = None,
    force: ForceOpt = False,
    target: TargetOpt = None,
    kernel: KernelOpt = None,
    head_quant: HeadQuantOpt = None,
    prefill_chunk: PrefillChunkOpt = None,
    vision: VisionOpt = None,
    recipe: RecipeOpt = None,
    calibration: CalibrationOpt = None,
    audio: AudioOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Checkpoint → Core AI LanguageBundle (parity-gated and run by Core AI's runtime against the oracle)."""
    try:
        build_dir, options = _build_options(
            out, config=config, model=model, arch=arch, quant=quant, ple=ple, max_context=max_context,
            target=target, kernel=kernel, head_quant=head_quant, prefill_chunk=prefill_chunk, vision=vision,
            recipe=recipe, calibration=calibration, audio=audio)
        _run(options, build_dir, _bundle_steps(), force, as_json)
    except GemmaiosError as exc:
        _fail(exc)


@app.command("tiny-train")
def tiny_train(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for the weights, tokenizer and record (default: the package's data/tiny)")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=10, help="training steps (the last fifth are int4 quantization-aware)")] = None,
    vision: Annotated[bool, typer.Option("--vision", help="retrain the tiny multimodal model (tiny-vision: its vision tower fine-tuned; 1500 steps take minutes with --device cuda, hours on a CPU)")] = False,
    device: Annotated[str, typer.Option("--device", help="with --vision: cpu, or cuda to train on a GPU")] = "cpu",
    as_json: JsonOpt = False,
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
                                hint="train with --device cpu, or on a machine with a GPU"))
    elif device != "cpu":
        _fail(GemmaiosError(f"--device {device!r} is not cpu or cuda", hint="use --device cpu or --device cuda"))
    target = out or (tinymodel.SHIPPED_DIR if vision else SHIPPED_DIR)
    if target.exists() and not target.is_dir():
        _fail(GemmaiosError(f"--out {target} is a file, not a folder", hint="pass a folder for the weights (it is created)"))
    tower = tinymodel.SHIPPED_DIR / tinymodel.TOWER_INIT  # the vision tower fine-tuned from here
    tower = tower if vision and tower.is_file() else None
    total = steps or ((tinymodel.WARM_STEPS if tower else tinymodel.DEFAULT_STEPS) if vision else DEFAULT_STEPS)
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("train", total=total, loss="-")

        def show(step, _n, loss):
            bar.update(task, completed=step, loss=f"{loss:.3f}")

        if vision:
            result = tinymodel.train_tiny_vision(total, progress=show, device=device, tower_init=tower)
        else:
            result = train_tiny(total, progress=show)
    record = tinymodel.ship(result, target) if vision else ship(result, target)
    if as_json:  # the record ship() wrote beside the weights (training facts, margins, sha256s)
        print(json.dumps({"out": str(target), "device": device, **record}, indent=2))
        return
    if vision:
        grid = record["image_margins_int4_grid"]
        console.print(f"loss {record['training']['first_loss']} → {record['training']['final_loss']} in "
                      f"{record['training']['seconds']:.0f} s on {device}")
        console.print(f"image prompts: {record['image_answers_right']}/{len(record['image_answers'])} answered right "
                      f"(fp32), {grid['answers_right']} on the int4 grid; margins median {record['image_margins']['median']}, "
                      f"min {record['image_margins']['min']} (int4 grid min {grid['min']})")
    else:
        margins = record["margins"]
        console.print(f"loss {record['training']['first_loss']} → {record['training']['final_loss']} "
                      f"in {record['training']['seconds']:.0f} s ({record['training']['qat_steps']} int4-aware steps)")
        console.print(f"greedy top-1/top-2 margins over {margins['steps']} steps: median {margins['median']}, "
                      f"min {margins['min']}, {margins['below_near_tie']} below the near-tie threshold 0.1")
        chat = record["conversation_margins"]
        console.print(f"the 6-turn chat, each turn on its history: median {chat['median']}, min {chat['min']}, "
                      f"{chat['below_near_tie']} below 0.1")
    for name, digest in record["sha256"].items():
        print(f"{digest}  {target / name}")


# Commands kept in their own modules; each registers on this app (works under `python -m` too).
from . import cli_device, cli_farm, cli_results, cli_run  # noqa: E402

for _commands in (cli_results, cli_run, cli_farm):
    _commands.register(app, console, _fail)
cli_device.register(app, console, _fail, _build_options)


def main(argv: list[str] | None = None) -> None:
    """The `gemmaios` entry point: named errors print message + hint, anything else a crash log (see crash.py).

    Run as the program (no `argv`), the process ends through cli_console.exit_process, which keeps
    Core AI's native threads from aborting it at interpreter shutdown."""
    if argv is not None:  # called from Python (tests, scripts): exit as a function does, by SystemExit
        _main(argv)
        return
    try:
        _main(None)
    except SystemExit as exc:
        exit_process(exc.code)
    exit_process(0)


def _main(argv: list[str] | None) -> None:
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
