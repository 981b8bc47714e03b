"""The CLI's consoles: piped output (a log, CI) is never wrapped, so commands and paths copy whole."""

from __future__ import annotations

import logging
import os
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


NATIVE_RUNTIME_MODULE = "coreai.runtime"  # Core AI's runtime: Swift code with its own worker threads


def exit_process(code: int | str | None) -> None:
    """End the `gemmaios` process with `code` (SystemExit's meaning: None is 0, a string is printed, 1).

    Once Core AI's runtime has been loaded, skip Python's interpreter shutdown: during it, a runtime
    worker thread that still reaches for the interpreter (releasing an array it borrowed, say) is
    ended with pthread_exit, whose unwinding through Swift frames aborts the process ("C++ exception
    handling detected but the Swift runtime was compiled with exceptions disabled", SIGABRT) after
    the command has finished — measured here in 9 of 40 runs on a busy machine. Nothing is lost:
    the commands close their files themselves; output and logging are flushed first."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    code = 0 if code is None else code
    if NATIVE_RUNTIME_MODULE not in sys.modules:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code)
