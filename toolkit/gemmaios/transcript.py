"""Device transcripts (bench logs): JSON lines, schema `gemmaios.transcript/1`.

The app's bench mode writes them, `bench` pulls them, `oracle` scores them and `report`
summarises them. Reading is strict: a malformed or truncated line is an error naming the
file and line number, never skipped. The format is documented in docs/contracts.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import (
    LAUNCH_KIND_COLD,
    LAUNCH_KIND_WARM,
    PROMPT_AUDIO_FIELD,
    PROMPT_IMAGE_FIELD,
    PROMPT_PREFILL_FUNCTION,
    RECORD_FAILURE,
    RECORD_LAUNCH,
    RECORD_LAUNCH_END,
    RECORD_SAMPLE,
    RECORD_THERMAL,
    TRANSCRIPT_SCHEMA,
)
from .errors import GemmaiosError

SCHEMA = TRANSCRIPT_SCHEMA
THERMAL_STATES = ("nominal", "fair", "serious", "critical")
LAUNCH_KINDS = (LAUNCH_KIND_COLD, LAUNCH_KIND_WARM)
BATTERY_STATES = ("unplugged", "charging", "full", "unknown")
# prefill over fewer prompt tokens says little about a long prompt's (bench warns, the report notes it)
SHORT_PREFILL_TOKENS = 256


class TranscriptError(GemmaiosError):
    """A transcript line is malformed, truncated or out of order."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(
            f"{path}:{line}: {problem}",
            hint="the log is damaged or was written by an incompatible app; re-run the bench to produce a fresh one",
        )
        self.path = path
        self.line = line


class TranscriptMissing(GemmaiosError):
    """The transcript path does not exist or is not a file."""


# Required fields per record type: name → accepted Python types.
_NUM = (int, float)
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "header": {"schema": (str,), "run_id": (str,), "started_at": (str,), "device": (dict,), "bundle": (dict,),
               "prompt_set": (dict,), "trials": (int,), "max_new_tokens": (int,)},
    "load": {"seconds": _NUM, "cold": (bool,)},
    "prompt": {"trial": (int,), "index": (int,), "prompt_id": (str,), "prompt_ids": (list,),
               "generated_ids": (list,), "prefill_tokens": (int,), "prefill_seconds": _NUM,
               "decode_tokens": (int,), "decode_seconds": _NUM},
    "memory": {"t": _NUM, "phys_footprint_bytes": (int,)},
    "footer": {"completed": (bool,)},
    # bench protocol (issue 16): each launch of a multi-launch run opens and closes with these
    RECORD_LAUNCH: {"index": (int,), "kind": (str,), "first_trial": (int,), "trials": (int,)},
    RECORD_LAUNCH_END: {"index": (int,)},
    RECORD_THERMAL: {"t": _NUM, "state": (str,)},
    RECORD_SAMPLE: {"t": _NUM, "interval_s": _NUM, "tokens": (int,), "tok_s": _NUM},
    # the app's bench failed: its reason (and the prompt it was on); the last record, no footer
    RECORD_FAILURE: {"reason": (str,)},
}


@dataclass
class PromptRecord:
    trial: int
    index: int
    prompt_id: str
    prompt_ids: list[int]
    generated_ids: list[int]
    prefill_tokens: int
    prefill_seconds: float
    decode_tokens: int
    decode_seconds: float
    ttft_seconds: float | None = None
    decode_token_seconds: list[float] = field(default_factory=list)
    peak_phys_footprint_bytes: int | None = None
    os_proc_available_memory_bytes: int | None = None
    thermal_state: str | None = None
    seconds_since_launch: float | None = None
    prefill_function: str | None = None  # the prefill_C that ran full chunks; None: `main` only (or not recorded)
    launch: int = 0  # the launch that ran it (multi-launch runs: `bench --cold N`)
    # cold launches' first prompt: process start → first generated token (model load included)
    ttft_since_launch_seconds: float | None = None
    # an image prompt (issue 17): its picture file, payload-relative; prompt_ids then hold the placeholder
    # once and prefill_tokens counts the expanded ids. Scored against the image oracle, not the text one.
    image: str | None = None
    # an audio prompt (issue 28): its clip file, payload-relative; the same rule as images, scored against
    # the audio oracle
    audio: str | None = None
    # issue 27: the KV positions the engine had bound for this prompt (the app mirrors the pinned
    # engine's growth; a host run records the states it allocated) and the named warnings that
    # applied (contract.KV_FAULT_WARNING: an iOS binding above 1024, apple/coreai-models#124)
    kv_capacity: int | None = None
    kv_growth: str | None = None  # the KV cache's start: "from-256" (upstream) or "from-384" (`bench --ab-kv`)
    warnings: list[str] = field(default_factory=list)
    line: int = 0

    @property
    def prefill_tok_s(self) -> float | None:
        return self.prefill_tokens / self.prefill_seconds if self.prefill_seconds > 0 else None

    @property
    def decode_tok_s(self) -> float | None:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else None


@dataclass
class Transcript:
    path: Path
    header: dict[str, Any]
    prompts: list[PromptRecord] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    launches: list[dict[str, Any]] = field(default_factory=list)  # `launch` records, in order
    launch_ends: list[dict[str, Any]] = field(default_factory=list)
    thermal: list[dict[str, Any]] = field(default_factory=list)  # thermal state changes
    samples: list[dict[str, Any]] = field(default_factory=list)  # sustained-mode tok/s samples
    footer: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None  # the app's failure record: its bench failed (no footer)

    @property
    def complete(self) -> bool:
        """True when the app wrote its footer: the run was not cut short (crash, jetsam, timeout)."""
        return bool(self.footer and self.footer.get("completed"))

    @property
    def device(self) -> dict[str, Any]:
        return self.header["device"]

    @property
    def bundle(self) -> dict[str, Any]:
        return self.header["bundle"]

    def trial(self, n: int) -> list[PromptRecord]:
        return sorted((p for p in self.prompts if p.trial == n), key=lambda p: p.index)

    @property
    def trials(self) -> list[int]:
        return sorted({p.trial for p in self.prompts})

    def launch_kind(self, launch: int) -> str:
        """`cold` or `warm`; a transcript without launch records is one warm launch (before issue 16)."""
        for record in self.launches:
            if record["index"] == launch:
                return record["kind"]
        return LAUNCH_KIND_WARM

    def trial_kind(self, trial: int) -> str:
        """The kind of the launch that ran `trial`."""
        launches = {p.launch for p in self.prompts if p.trial == trial}
        return self.launch_kind(min(launches)) if launches else LAUNCH_KIND_WARM

    def thermal_states(self) -> list[tuple[float | None, str]]:
        """Every thermal observation in file order, (seconds since its launch or None, state): launch
        records, prompts, thermal changes, sustained samples, launch ends and the footer."""
        out: list[tuple[float | None, str]] = []
        for record in self.records:
            state = record.get("state") if record.get("type") == RECORD_THERMAL else record.get("thermal_state")
            if state in THERMAL_STATES:
                out.append((record.get("t", record.get("seconds_since_launch")), state))
        return out

    records: list[dict[str, Any]] = field(default_factory=list, repr=False)  # every record, in file order


def _check_fields(path: Path, lineno: int, record: dict) -> None:
    kind = record.get("type")
    if kind not in _FIELDS:
        raise TranscriptError(path, lineno, f"unknown record type {kind!r} (expected one of {sorted(_FIELDS)})")
    for name, types in _FIELDS[kind].items():
        if name not in record:
            raise TranscriptError(path, lineno, f"{kind} record lacks {name!r}")
        value = record[name]
        # bool is an int subclass: reject it where a number is expected
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TranscriptError(path, lineno, f"{kind}.{name} should be {'/'.join(t.__name__ for t in types)}, got {value!r}")
    if kind == "prompt":
        for name in ("prompt_ids", "generated_ids"):
            if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in record[name]):
                raise TranscriptError(path, lineno, f"prompt.{name} must be a list of non-negative token ids")
        function = record.get(PROMPT_PREFILL_FUNCTION)
        if function is not None and (not isinstance(function, str) or not function):
            raise TranscriptError(path, lineno, f"prompt.{PROMPT_PREFILL_FUNCTION} must be a function name or null, "
                                                f"got {function!r}")
        image = record.get(PROMPT_IMAGE_FIELD)
        if image is not None and (not isinstance(image, str) or not image):
            raise TranscriptError(path, lineno, f"prompt.{PROMPT_IMAGE_FIELD} must be the picture's payload path, "
                                                f"got {image!r}")
        audio = record.get(PROMPT_AUDIO_FIELD)
        if audio is not None and (not isinstance(audio, str) or not audio):
            raise TranscriptError(path, lineno, f"prompt.{PROMPT_AUDIO_FIELD} must be the clip's payload path, "
                                                f"got {audio!r}")
        if image is not None and audio is not None:
            raise TranscriptError(path, lineno, f"prompt has both {PROMPT_IMAGE_FIELD} and {PROMPT_AUDIO_FIELD}; "
                                                "a prompt holds one picture or one clip")
        if record["prefill_seconds"] < 0 or record["decode_seconds"] < 0:
            raise TranscriptError(path, lineno, "negative timing")
    state = record.get("state") if kind == RECORD_THERMAL else record.get("thermal_state")
    if (state is not None or kind == RECORD_THERMAL) and state not in THERMAL_STATES:
        field_name = "state" if kind == RECORD_THERMAL else "thermal_state"
        raise TranscriptError(path, lineno, f"{kind}.{field_name} {state!r} is not one of {THERMAL_STATES}")
    battery = record.get("battery_level")
    if battery is not None and (not isinstance(battery, _NUM) or isinstance(battery, bool) or battery > 1):
        raise TranscriptError(path, lineno, f"{kind}.battery_level must be a fraction 0–1 (or -1 when unknown), "
                                            f"got {battery!r}")
    battery_state = record.get("battery_state")
    if battery_state is not None and battery_state not in BATTERY_STATES:
        raise TranscriptError(path, lineno, f"{kind}.battery_state {battery_state!r} is not one of {BATTERY_STATES}")
    if kind == RECORD_LAUNCH and record["kind"] not in LAUNCH_KINDS:
        raise TranscriptError(path, lineno, f"launch.kind {record['kind']!r} is not one of {LAUNCH_KINDS}")
    if kind == RECORD_SAMPLE and (record["interval_s"] <= 0 or record["tokens"] < 0 or record["tok_s"] < 0):
        raise TranscriptError(path, lineno, "sample: interval_s must be positive, tokens and tok_s non-negative")


def read_transcript(path: Path, *, require_complete: bool = False) -> Transcript:
    """Parse and validate a transcript; raise TranscriptError with the line number on any defect."""
    path = Path(path)
    if path.is_dir():
        raise TranscriptMissing(f"{path} is a folder, not a transcript (.jsonl)",
                                hint="pass one of the .jsonl files in it (`gemmaios report <folder>` takes whole run folders)")
    if not path.is_file():
        raise TranscriptMissing(f"transcript {path} does not exist",
                                hint="check the path; `gemmaios bench` writes them to <build>/runs/<stamp>-<udid>/")
    raw = path.read_bytes()
    if not raw.strip():
        raise TranscriptError(path, 1, "empty transcript")
    lines = raw.split(b"\n")
    transcript: Transcript | None = None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            if lineno == len(lines):
                break  # the newline that ends the last record
            raise TranscriptError(path, lineno, "blank line inside the transcript")
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            last = lineno == len(lines) or (lineno == len(lines) - 1 and not lines[-1])
            what = "truncated record (the run was cut off mid-write)" if last else "not valid JSON"
            raise TranscriptError(path, lineno, f"{what}: {exc}") from None
        if not isinstance(record, dict):
            raise TranscriptError(path, lineno, "each line must be a JSON object")
        _check_fields(path, lineno, record)
        kind = record["type"]
        if transcript is None:
            if kind != "header":
                raise TranscriptError(path, lineno, f"first record must be the header, got {kind!r}")
            if record["schema"] != SCHEMA:
                raise TranscriptError(path, lineno, f"schema {record['schema']!r}, expected {SCHEMA!r}")
            transcript = Transcript(path=path, header=record)
            transcript.records.append(record)
            continue
        if transcript.footer is not None:
            raise TranscriptError(path, lineno, f"{kind} record after the footer")
        if transcript.failure is not None:
            raise TranscriptError(path, lineno, f"{kind} record after the app's failure record")
        if kind == "header":
            raise TranscriptError(path, lineno, "second header")
        transcript.records.append(record)
        if kind == "prompt":
            known = {k: v for k, v in record.items() if k in PromptRecord.__dataclass_fields__ and k != "line"}
            launch = known.get("launch", 0)
            if not isinstance(launch, int) or isinstance(launch, bool) or launch < 0:
                raise TranscriptError(path, lineno, f"prompt.launch must be a launch index, got {launch!r}")
            if transcript.launches and launch != transcript.launches[-1]["index"]:
                raise TranscriptError(path, lineno, f"prompt of launch {launch} inside launch "
                                                    f"{transcript.launches[-1]['index']}")
            capacity, warnings = known.get("kv_capacity"), known.get("warnings", [])
            if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1):
                raise TranscriptError(path, lineno, f"prompt.kv_capacity must be a positive position count, got "
                                                    f"{capacity!r}")
            if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
                raise TranscriptError(path, lineno, f"prompt.warnings must be a list of warning names, got {warnings!r}")
            transcript.prompts.append(PromptRecord(**known, line=lineno))
        elif kind == RECORD_LAUNCH:
            expected = transcript.launches[-1]["index"] + 1 if transcript.launches else 0
            if record["index"] != expected:
                raise TranscriptError(path, lineno, f"launch {record['index']} where launch {expected} was due "
                                                    "(a launch of a multi-launch run is missing or repeated)")
            transcript.launches.append(record)
        elif kind == RECORD_LAUNCH_END:
            transcript.launch_ends.append(record)
        elif kind == RECORD_THERMAL:
            transcript.thermal.append(record)
        elif kind == RECORD_SAMPLE:
            transcript.samples.append(record)
        elif kind == "load":
            transcript.loads.append(record)
        elif kind == "memory":
            transcript.memory.append(record)
        elif kind == "footer":
            transcript.footer = record
        elif kind == RECORD_FAILURE:
            transcript.failure = record
    assert transcript is not None
    if require_complete and transcript.failure is not None:
        raise TranscriptError(path, len(lines), "no footer: the app's bench failed"
                              + (f" at prompt {transcript.failure['prompt_id']}" if transcript.failure.get("prompt_id")
                                 else "") + f": {transcript.failure['reason']}")
    if require_complete and not transcript.complete:
        raise TranscriptError(path, len(lines), "no footer: the run did not finish (crash, jetsam kill or timeout)")
    return transcript


def write_transcript(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write records as JSON lines (used by Mac runs, the simulator and test fixtures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return path
