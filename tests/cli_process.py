"""`gemmaios` as a user runs it: a real subprocess (this checkout's toolkit first on its path), read as it
prints, interrupted with a real SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"


def gemmaios_process(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TOOLKIT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", "from gemmaios.cli import main; main()", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_until(proc: subprocess.Popen, ready, seconds: float = 120) -> bytes:
    """stdout as it comes, until `ready(text)` (non-blocking reads)."""
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stdout.read() or b""
        if ready(seen):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting; stdout so far {seen!r}, exit {proc.poll()}")


def interrupt_generation(build: Path, cwd: Path) -> tuple[int, str, str]:
    """`gemmaios run -p` interrupted once a few words are out: (exit status, stdout, stderr)."""
    proc = gemmaios_process(["run", "--out", str(build), "-p", "Tell me about the sea.", "-n", "500"], cwd)
    partial = read_until(proc, lambda text: len(text.split()) >= 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, (partial + out).decode(), err.decode()
