"""Named errors. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class GemmaiosError(Exception):
    """Base class: `str(err)` is the problem, `err.hint` the next action."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  → {self.hint}" if self.hint else base


class CheckpointError(GemmaiosError):
    """A checkpoint is missing, incomplete, corrupt or not Gemma 4."""


class RegistryError(GemmaiosError):
    """An unknown model or architecture name, or a config that contradicts the registry."""


class BuildError(GemmaiosError):
    """The build folder or its manifest is unusable."""


class StepFailed(GemmaiosError):
    """A pipeline step could not finish; the build stops here and can be resumed."""


class AppTemplateError(GemmaiosError):
    """A value for the app template is invalid, or the template/rendered project is broken."""


class TrainingRecordError(GemmaiosError):
    """Weights trained elsewhere cannot be recorded: their folder or their training log is not a whole run."""


class NeedsMacOS(GemmaiosError):
    """A step needs Apple's toolchain, which is not reachable from this machine."""

    def __init__(self, message: str, command: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.command = command


class BuildFolderMismatch(BuildError):
    """An option contradicts what the build folder was built with (its build.json `options`)."""


class NoBuildFolder(BuildError):
    """A command needs a build folder and none (or several) can be found."""


class AbBuildsError(GemmaiosError):
    """Two build folders cannot be A/B benched against each other (`--ab`): not a build, the same folder twice,
    builds of different models or prompt sets, or two apps that install under one bundle id."""
