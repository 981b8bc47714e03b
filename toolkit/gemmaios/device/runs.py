"""A bench run on the phone as the device code follows it: how it ended, and whether its
transcript (bytes pulled so far) holds a launch's end or the run's footer. Shared by `gemmaios.devicebench`
(pymobiledevice3) and `gemmaios.device.devicectl` (Apple's tool)."""

from __future__ import annotations

import json

from .. import contract

COMPLETED, CRASHED, JETSAM, EXITED, TIMEOUT = "completed", "crashed", "jetsam", "exited", "timeout"


def launch_ended(raw: bytes, index: int) -> bool:
    """Whether the transcript holds launch `index`'s launch_end record (a non-final launch is done)."""
    for line in raw.splitlines():
        if b'"' + contract.RECORD_LAUNCH_END.encode() + b'"' not in line:
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and record.get("type") == contract.RECORD_LAUNCH_END and record.get("index") == index:
            return True
    return False


def run_footer(raw: bytes) -> dict | None:
    """The transcript's footer record (its last line), or None while the run has not finished it."""
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        last = json.loads(lines[-1])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return last if isinstance(last, dict) and last.get("type") == "footer" else None
