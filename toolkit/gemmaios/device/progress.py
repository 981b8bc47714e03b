"""Progress bars for transfers and installs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .transfer import ProgressFn


def rich_progress(console=None) -> tuple[ProgressFn, Callable[[], None]]:
    """A progress callback drawing one rich bar per label; returns (callback, close)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    class BytesOnly(ProgressColumn):
        def __init__(self, inner: ProgressColumn) -> None:
            super().__init__()
            self.inner = inner

        def render(self, task):
            return self.inner.render(task) if task.fields.get("bytes") else ""

    bars = Progress(TextColumn("  {task.description}"), BarColumn(), TaskProgressColumn(),
                    BytesOnly(DownloadColumn(binary_units=True)), BytesOnly(TransferSpeedColumn()),
                    console=console, transient=False)
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if not tasks:
            bars.start()  # lazily, so prompts printed before the first transfer ("tap Trust") stay readable
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total, bytes=not label.startswith("install "))
        bars.update(tasks[label], completed=done, total=total)

    return update, bars.stop
