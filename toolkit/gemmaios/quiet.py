"""Third-party chatter goes to the build's log file, not the user's terminal.

torch, transformers and torchao warn through Python's logging and warnings (to sys.stderr), and
Core AI's native runtime writes straight to file descriptors 1 and 2. While a step runs, both
descriptors point at <build>/gemmaios.log; gemmaios's own consoles keep writing to the terminal
through duplicates of the original descriptors. `gemmaios --verbose` leaves everything on the
terminal.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from .buildlayout import LOG_NAME  # noqa: F401  (re-exported: quiet.LOG_NAME)

VERBOSE_ENV = "GEMMAIOS_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def _is_fd(stream, fd: int) -> bool:
    """The stream writes to descriptor `fd` itself (not a test runner's or a capture's stand-in)."""
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


@contextlib.contextmanager
def to_log(log_path: Path, label: str, consoles: dict[int, list[Console]]) -> Iterator[None]:
    """Point descriptors 1 and 2 at `log_path` for the block; `consoles` (by the descriptor they print
    to) keep printing to the terminal. Does nothing with --verbose, or where sys.stdout/sys.stderr are
    not the process's own descriptors (a test's CliRunner)."""
    fds = [fd for fd, stream in ((1, sys.stdout), (2, sys.stderr)) if _is_fd(stream, fd)]
    if verbose() or not fds:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pinned: list[tuple[Console, object]] = []
    saved: dict[int, int] = {}
    terminals: list[io.TextIOWrapper] = []
    with open(log_path, "ab") as log:
        log.write(f"\n== {label} · {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        log.flush()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            for fd in fds:
                saved[fd] = os.dup(fd)
                terminal = io.TextIOWrapper(os.fdopen(os.dup(saved[fd]), "wb", buffering=0),
                                            encoding=getattr(sys.stdout, "encoding", None) or "utf-8",
                                            line_buffering=True, write_through=True)
                terminals.append(terminal)
                for console in consoles.get(fd, []):
                    pinned.append((console, console.file))
                    console.file = terminal
                os.dup2(log.fileno(), fd)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for console, previous in pinned:
                console.file = previous
            for terminal in terminals:
                with contextlib.suppress(Exception):
                    terminal.close()
