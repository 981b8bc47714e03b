"""The pinned upstream engine (apple/coreai-models at the base commit of `patches/series`) for the tests.

Where it comes from, in order: $GEMMAIOS_ENGINE_SOURCE (a checkout or a plain tree), the user cache
gemmaios itself clones into (`patches.default_cache_dir()`), or the snapshot shipped beside the
repository at `../shared/vendor/coreai-models-<base[:7]>.tar.gz` (a `git archive` of the pinned
commit, see its README). No test reads a path of one machine, and under CI=true a missing source
fails instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gemmaios.patches import Series, default_cache_dir

REPO = Path(__file__).resolve().parents[1]
SOURCE_ENV = "GEMMAIOS_ENGINE_SOURCE"
VENDOR_DIR = REPO.parent / "shared" / "vendor"


@dataclass(frozen=True)
class PinnedEngine:
    root: Path  # a tree of the pinned commit's files (never modified by the tests)
    origin: str  # where it came from, for the report header

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()


def snapshot_path(series: Series) -> Path:
    return VENDOR_DIR / f"coreai-models-{series.base[:7]}.tar.gz"


def _has_commit(repo: Path, commit: str) -> bool:
    probe = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    return probe.returncode == 0


def _export(repo: Path, commit: str, dest: Path) -> None:
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def candidates(series: Series) -> list[tuple[str, Path]]:
    found = []
    if os.environ.get(SOURCE_ENV):
        found.append((f"${SOURCE_ENV}", Path(os.environ[SOURCE_ENV]).expanduser()))
    found.append(("user cache", default_cache_dir()))
    found.append(("vendor snapshot", snapshot_path(series)))
    return found


def materialise(series: Series, workdir: Path) -> PinnedEngine | None:
    """The first source that holds the pinned commit, as a plain tree under `workdir` (or the user's own
    plain tree, which is only read); None when no source has it."""
    for origin, path in candidates(series):
        if origin == "vendor snapshot":
            if path.is_file():
                dest = workdir / "coreai-models"
                with tarfile.open(path) as tar:
                    tar.extractall(dest, filter="data")
                return PinnedEngine(dest, f"{origin} {path.name}")
        elif path.is_dir() and _has_commit(path, series.base):
            dest = workdir / "coreai-models"
            _export(path, series.base, dest)
            return PinnedEngine(dest, f"{origin} {path} @ {series.base[:12]}")
        elif origin.startswith("$") and (path / "Package.swift").is_file():
            return PinnedEngine(path, f"{origin} {path} (a plain tree, taken as the pinned commit)")
    return None


def missing_message(series: Series) -> str:
    tried = ", ".join(f"{origin} ({path})" for origin, path in candidates(series))
    return (f"no source of apple/coreai-models at {series.base[:12]}: tried {tried}. Set {SOURCE_ENV} to a checkout, "
            f"or put the snapshot (see shared/vendor/README.md) beside the repository")
