"""Loading runs: transcripts read strictly (a damaged log becomes an *invalid* run, never skipped), with their
build folder's bundle facts and oracle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..buildlayout import MANIFEST_NAME, ORACLE_FILE
from ..pipeline import finished_details
from ..roofline import RooflineError
from ..steprecords import OracleDetails
from ..transcript import Transcript, TranscriptError, read_transcript
from .bundlefacts import BundleFacts, bundle_facts
from .errors import ReportError


@dataclass
class RunData:
    """One transcript: parsed, or the error that stopped parsing it (the run is then invalid)."""

    path: Path
    transcript: Transcript | None = None
    error: TranscriptError | None = None
    bundle: BundleFacts | None = None
    bundle_note: str = ""
    oracle_path: Path | None = None
    image_oracle_dir: Path | None = None  # the image oracle (oracle/images/) for a run with image prompts
    audio_oracle_dir: Path | None = None  # the audio oracle (oracle/audio/) for a run with audio prompts
    build_dir: Path | None = None
    run_info: dict = field(default_factory=dict)  # `bench`'s run.json next to the transcript (battery capacity)

    @property
    def valid(self) -> bool:
        return self.transcript is not None

    @property
    def label(self) -> str:
        if self.transcript is not None:
            dev = self.transcript.device
            return f"{self.transcript.header['run_id']} ({dev.get('name') or dev.get('product_type', '?')})"
        return self.path.name


def transcript_paths(path: Path) -> list[Path]:
    """A .jsonl file, or every *.jsonl in a run folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"))
        if not found:
            raise ReportError(f"{path} holds no *.jsonl transcripts",
                              hint="pass a run folder from `gemmaios bench` (build/<name>/runs/<stamp>-<udid>/)")
        return found
    raise ReportError(f"{path} does not exist", hint="pass a run folder or a transcript .jsonl")


def find_build_dir(path: Path) -> Path | None:
    """The build folder a run folder lives in (build/<slug>/runs/<stamp>/), if any."""
    for parent in list(Path(path).resolve().parents)[:4]:
        if (parent / MANIFEST_NAME).is_file():
            return parent
    return None


def load_run(path: Path, *, bundle_dir: Path | None = None, oracle_path: Path | None = None) -> RunData:
    """Read one transcript (or a run folder holding exactly one) with its bundle facts and oracle."""
    paths = transcript_paths(path)
    if len(paths) > 1:
        raise ReportError(f"{path} holds {len(paths)} transcripts", hint="use load_runs, or pass one .jsonl")
    return _load(paths[0], bundle_dir, oracle_path)


def load_runs(paths: Iterable[Path], *, bundle_dir: Path | None = None,
              oracle_path: Path | None = None) -> list[RunData]:
    runs = [_load(p, bundle_dir, oracle_path) for path in paths for p in transcript_paths(path)]
    if not runs:
        raise ReportError("no runs given", hint="gemmaios report <run-dir>...")
    return runs


def _load(path: Path, bundle_dir: Path | None, oracle_path: Path | None) -> RunData:
    run = RunData(path=Path(path), build_dir=find_build_dir(path), run_info=_run_info(Path(path)))
    try:
        run.transcript = read_transcript(path)
    except TranscriptError as exc:
        run.error = exc
        return run
    oracle = finished_details(run.build_dir, "oracle")  # a damaged build.json is named here
    run.oracle_path = oracle_path or _oracle_in_build(run.build_dir, oracle)
    if any(p.image for p in run.transcript.prompts):
        run.image_oracle_dir = _image_oracle(run.oracle_path if oracle_path else None, run.build_dir, oracle)
    if any(p.audio for p in run.transcript.prompts):
        run.audio_oracle_dir = _audio_oracle(run.oracle_path if oracle_path else None, run.build_dir, oracle)
    try:
        run.bundle, run.bundle_note = bundle_facts(run.transcript, run.build_dir, bundle_dir)
    except (ReportError, RooflineError) as exc:
        if bundle_dir is not None:
            raise  # asked for by name (--bundle): say so rather than report without it
        run.bundle_note = str(exc).splitlines()[0]
    return run


def _run_info(transcript: Path) -> dict:
    """`bench`'s run.json beside the transcript, when it is there and readable."""
    path = transcript.parent / "run.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _image_oracle(oracle_path: Path | None, build_dir: Path | None, oracle: OracleDetails | None) -> Path | None:
    """The image oracle's folder: beside an oracle.json given by name (<oracle dir>/images/), else the build's."""
    from ..vision.imagebench import image_oracle_folders, image_oracle_path

    recorded = oracle.image_oracle if oracle is not None else None
    folders = image_oracle_folders(oracle_path, build_dir, recorded)
    return next((f for f in folders if image_oracle_path(f).is_file()), None)


def _audio_oracle(oracle_path: Path | None, build_dir: Path | None, oracle: OracleDetails | None) -> Path | None:
    """The audio oracle's folder: beside an oracle.json given by name (<oracle dir>/audio/), else the build's."""
    from ..audio.audiobench import audio_oracle_folders, audio_oracle_path

    recorded = oracle.audio_oracle if oracle is not None else None
    folders = audio_oracle_folders(oracle_path, build_dir, recorded)
    return next((f for f in folders if audio_oracle_path(f).is_file()), None)


def _oracle_in_build(build_dir: Path | None, oracle: OracleDetails | None) -> Path | None:
    if build_dir is None:
        return None
    rel = oracle.oracle if oracle is not None else ORACLE_FILE
    candidate = build_dir / rel
    return candidate if candidate.is_file() else None
