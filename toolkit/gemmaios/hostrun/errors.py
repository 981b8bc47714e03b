"""The host runner's named errors."""

from __future__ import annotations

from ..errors import GemmaiosError


class HostRunError(GemmaiosError):
    """A bundle cannot be run on this machine (missing files, tables, or an op the runtime cannot execute)."""


class BundleGateFailed(GemmaiosError):
    """The saved bundle, run by Core AI's runtime, does not reproduce the fp32 oracle."""

    def __init__(self, message: str, *, prompt: str | None = None, position: int | None = None, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.prompt, self.position = prompt, position


