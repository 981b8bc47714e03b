"""The CLI's last resort: an unexpected exception becomes one line and a crash log, not a traceback.

A bad input is a named `GemmaiosError` (message + hint) raised where the input is read; this
module only handles what nobody foresaw. It prints what was being done and the exception in
one line, writes the full traceback and the facts a bug report needs (versions, platform,
command line) to a log file whose path it prints, and exits with CRASH_EXIT.

`gemmaios --debug …` or GEMMAIOS_DEBUG=1 prints the traceback instead. The logs go to
GEMMAIOS_CRASH_DIR, else <GEMMAIOS_CACHE or ~/.cache/gemmaios>/crash/.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

DEBUG_ENV = "GEMMAIOS_DEBUG"
CRASH_DIR_ENV = "GEMMAIOS_CRASH_DIR"
# EX_SOFTWARE (sysexits.h): an internal error, told apart from bad input (1: a step failed, 2: usage).
CRASH_EXIT = 70
# Environment variables that change what gemmaios does; their values go into the log (no tokens).
_ENV_FACTS = (
    "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
    "GEMMAIOS_CACHE", "GEMMAIOS_DEVICE_TRANSPORT", "COREAI_CHUNK_THRESHOLD", "CUDA_VISIBLE_DEVICES",
)
_DISTRIBUTIONS = ("torch", "transformers", "huggingface_hub", "safetensors", "tokenizers", "numpy", "coreai-core",
                  "coreai-torch", "coreai-opt", "coremltools", "pymobiledevice3", "typer", "click", "rich")
_DOING_ATTR = "_gemmaios_doing"


def debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def doing(what: str) -> Iterator[None]:
    """Label the work inside for the crash line, e.g. doing("step convert"); the innermost label wins."""
    try:
        yield
    except Exception as exc:
        if not hasattr(exc, _DOING_ATTR):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _DOING_ATTR, what)
        raise


def what_was_done(exc: BaseException) -> str | None:
    return getattr(exc, _DOING_ATTR, None)


def crash_dir() -> Path:
    if os.environ.get(CRASH_DIR_ENV):
        return Path(os.environ[CRASH_DIR_ENV]).expanduser()
    base = os.environ.get("GEMMAIOS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gemmaios")
    return Path(base) / "crash"


def environment_facts(argv: list[str]) -> dict[str, str]:
    from importlib import metadata

    from . import __version__

    facts = {
        "gemmaios": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "command line": " ".join(argv),
        "working folder": os.getcwd(),
    }
    for dist in _DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            facts[dist] = metadata.version(dist)
    for name in _ENV_FACTS:
        if name in os.environ:
            facts[f"${name}"] = os.environ[name]
    return facts


def write_crash_log(exc: BaseException, argv: list[str], doing_what: str | None) -> Path:
    """The traceback and environment facts in a new file; falls back to the temp folder if the crash dir is unusable."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = [f"gemmaios crash report, {datetime.now(UTC).isoformat(timespec='seconds')}",
             f"while: {doing_what or 'running the command'}", ""]
    try:
        lines += [f"{key}: {value}" for key, value in environment_facts(argv).items()]
    except Exception as facts_exc:  # the traceback matters more than the facts
        lines += [f"command line: {' '.join(argv)}", f"(environment facts unavailable: {facts_exc!r})"]
    lines += ["", "".join(traceback.format_exception(exc))]
    text = "\n".join(lines)
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"gemmaios-crash-{stamp}-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return Path(name)
        except OSError:
            continue
    raise OSError("no writable folder for the crash log")


def one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def report_crash(exc: BaseException, argv: list[str], command: str | None, print_line) -> int:
    """Write the crash log and print the one-line summary through `print_line`; returns the exit status."""
    doing_what = what_was_done(exc)
    where = f"gemmaios {command}" if command else "gemmaios"
    during = f" while {doing_what}" if doing_what else ""
    try:
        log = write_crash_log(exc, argv, doing_what or f"running `{' '.join(argv)}`")
    except Exception:  # nowhere to write: the traceback is the only record left
        traceback.print_exception(exc, file=sys.stderr)
        print_line(f"{where} failed unexpectedly{during}: {one_line(exc)} (traceback above; no crash log could be written)")
        return CRASH_EXIT
    print_line(f"{where} failed unexpectedly{during}: {one_line(exc)}\n"
               f"  → this is a gemmaios bug: the traceback and environment are in {log}; please attach it to an "
               f"issue (run again with --debug or {DEBUG_ENV}=1 to see the traceback here)")
    return CRASH_EXIT
