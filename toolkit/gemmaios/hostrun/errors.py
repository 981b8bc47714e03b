"""The host runner's constants and named errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import GemmaiosError

HOST_PLATFORM = "host-runtime"
# Above this many weight bytes a CPU decode step takes minutes, not milliseconds.
LARGE_BUNDLE_BYTES = 512 << 20
# Measured: tiny bundles ~0.05-0.09 s per step; synthetic E4B int4 ~420 s per step on 2 cores.
CPU_SECONDS_PER_GB = 420 / 3.95

Progress = Callable[[int], Any]


class HostRunError(GemmaiosError):
    """A bundle cannot be run on this machine (missing files, tables, or an op the runtime cannot execute)."""


class BundleGateFailed(GemmaiosError):
    """The saved bundle, run by Core AI's runtime, does not reproduce the fp32 oracle."""

    def __init__(self, message: str, *, prompt: str | None = None, position: int | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.prompt, self.position = prompt, position


