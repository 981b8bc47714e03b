"""The CLI's consoles: piped output (a log, CI) is never wrapped, so commands and paths copy whole."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

PIPED_WIDTH = 200  # tables in a log: wide enough for a path per cell, narrow enough to read


def terminal(stderr: bool = False, **kwargs) -> Console:
    """A rich Console for stdout (or stderr). On a terminal it wraps tables to the window but never
    breaks a printed line (soft_wrap); piped, it also draws tables at PIPED_WIDTH instead of 80."""
    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, soft_wrap=True, width=None if tty else PIPED_WIDTH, **kwargs)


INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C


def interrupted(console: Console, what_is_kept: str) -> None:
    """Ctrl-C: say what is kept and how to resume, exit 130 (click alone would print "Aborted!", exit 1)."""
    console.print(f"[yellow]interrupted[/yellow] (Ctrl-C): {what_is_kept}")
    raise typer.Exit(INTERRUPTED)
