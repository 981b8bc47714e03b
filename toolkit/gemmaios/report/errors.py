"""The report's named errors."""

from __future__ import annotations

from ..errors import GemmaiosError


class ReportError(GemmaiosError):
    """A report cannot be produced as asked (no transcripts, bad option, unreadable bundle facts)."""


class IncomparableRuns(ReportError):
    """Two runs used different prompt sets or bundles, so their figures do not compare."""
