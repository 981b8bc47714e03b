"""A bench run on the phone as the device code follows it: how it ended, and whether its
transcript (bytes pulled so far) holds a launch's end, the run's footer or the app's failure record.
Shared by `gemmaios.devicebench` (pymobiledevice3) and `gemmaios.device.devicectl` (Apple's tool)."""

from __future__ import annotations

import json

from .. import contract

COMPLETED, CRASHED, JETSAM, EXITED, TIMEOUT = "completed", "crashed", "jetsam", "exited", "timeout"
FAILED = "failed"  # the app's bench failed and said why (a contract.RECORD_FAILURE record): no footer will come


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


def run_failure(raw: bytes) -> dict | None:
    """The app's failure record (contract.RECORD_FAILURE: its reason, the prompt it was on) when it is the
    transcript's last line, or None: the app writes it last when its bench fails, and then stays on screen."""
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if not lines or contract.RECORD_FAILURE.encode() not in lines[-1]:
        return None
    try:
        last = json.loads(lines[-1])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return last if isinstance(last, dict) and last.get("type") == contract.RECORD_FAILURE else None


def status_at_exit(raw: bytes, done) -> str:
    """How a launch whose process is gone ended, from its transcript's last bytes: COMPLETED when `done(raw)`
    (its footer landed), FAILED when the app's failure record is last, else EXITED (classified further from
    the device's crash reports)."""
    return COMPLETED if done(raw) else FAILED if raw and run_failure(raw) else EXITED
