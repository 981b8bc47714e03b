"""The `gemmaios` command line: thin wrappers over the step modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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
MacOpt = Annotated[str | None, typer.Option("--mac", help="user@host of a Mac with Xcode 27 for Apple-only steps")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (default: ./gemmaios.yaml)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run the step(s) even if up to date")]

QUANTS = ("int4", "int8", "fp16")
PLE_MODES = ("provider", "tbl")


def _fail(exc: GemmaiosError) -> None:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(2)


def _options(model: str, arch: str, quant: str, ple: str, mac: str | None, config: Path | None) -> BuildOptions:
    get_arch(arch)
    if quant not in QUANTS:
        raise typer.BadParameter(f"{quant!r}; choose one of {', '.join(QUANTS)}", param_hint="--quant")
    if ple not in PLE_MODES:
        raise typer.BadParameter(f"{ple!r}; choose one of {', '.join(PLE_MODES)}", param_hint="--ple")
    user = load_config(config)
    return BuildOptions(model=model, arch=arch, quant=quant, ple=ple, mac=mac or user.mac)


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

    ctx, reports = run_build(options, out, only=only, force=set(only or []) if force else set(), console=console)
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
) -> None:
    """Checkpoint → Core AI bundle, PLE tables, oracle, AOT .aimodelc and Xcode app, in one build folder."""
    try:
        from .steps import step_names

        _run(_options(model, arch, quant, ple, mac, config), out, None if not force else set(step_names()), force)
    except GemmaiosError as exc:
        _fail(exc)


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The Gemma 4 targets gemmaios knows, with their architecture facts."""
    if as_json:
        print(json.dumps([s.as_dict() for s in MODELS.values()], indent=2))
        return
    table = Table(title="Gemma 4 targets")
    for col in ("key", "hf id", "layers", "hidden", "heads/kv", "head dims", "PLE", "kv-shared", "source"):
        table.add_column(col)
    for s in MODELS.values():
        kv = s.num_key_value_heads if s.num_key_value_heads is not None else "?"
        table.add_row(s.key, s.hf_id, str(s.num_hidden_layers), str(s.hidden_size),
                      f"{s.num_attention_heads}/{kv}", f"{s.head_dim}/{s.global_head_dim}",
                      str(s.hidden_size_per_layer_input or "—"), str(s.num_kv_shared_layers), s.source)
    Console().print(table)


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


@app.command()
def convert(
    model: ModelOpt = DEFAULT_MODEL,
    out: OutOpt = None,
    quant: QuantOpt = "int4",
    ple: PleOpt = "provider",
    max_context: Annotated[int, typer.Option("--max-context", help="longest context the bundle serves")] = 4096,
    force: ForceOpt = False,
) -> None:
    """Checkpoint → Core AI LanguageBundle (parity-gated), i.e. the build's checkpoint, tables and convert steps."""
    try:
        options = _options(model, "h18p", quant, ple, None, None)
        options.max_context = max_context
        only = {"checkpoint", "tables", "convert"} if ple == "tbl" else {"checkpoint", "convert"}
        _run(options, out, only, force)
    except GemmaiosError as exc:
        _fail(exc)


def main() -> None:
    try:
        app()
    except GemmaiosError as exc:  # a step module raised outside a command's own handler
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
