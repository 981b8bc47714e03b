"""What the host runner knows about running a bundle on this machine: the transcript's platform name, the
bundle size above which a CPU decode step takes minutes, and the seconds a step takes per GB of weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HOST_PLATFORM = "host-runtime"
# Above this many weight bytes a CPU decode step takes minutes, not milliseconds (read at call time: tests lower it).
LARGE_BUNDLE_BYTES = 512 << 20
# Measured: tiny bundles ~0.05-0.09 s per step; synthetic E4B int4 ~420 s per step on 2 cores.
CPU_SECONDS_PER_GB = 420 / 3.95

Progress = Callable[[int], Any]
