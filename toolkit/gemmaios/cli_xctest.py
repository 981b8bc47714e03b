"""`gemmaios bench --xctest`: the bench as an XCTest on the Mac runner's phones (see xctestbench)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from .errors import GemmaiosError


def bench_xctest_command(console: Console, fail, build_dir: Path, destinations: list[str], trials: int,
                         mac: str | None, timeout: float) -> None:
    from .config import load_config
    from .xctestbench import bench_xctest

    try:
        user = load_config()
        result = bench_xctest(build_dir, destinations, trials=trials, mac=mac or user.mac,
                              ssh_options=user.ssh_options or (), workdir=user.mac_workdir or "~/gemmaios-remote",
                              timeout=timeout, status_fn=lambda msg: console.print(f"  {escape(msg)}"))
    except GemmaiosError as exc:
        fail(exc)
        raise typer.Exit(2) from exc
    for d in result.destinations:
        console.print(f"[green]✓[/green] {escape(d.udid)}: transcript {escape(str(d.transcript))}")
    if result.report_dir:
        console.print(f"report ({len(result.destinations)} devices side by side): {escape(str(result.report_dir / 'report.md'))}")
