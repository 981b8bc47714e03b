"""Our patch stack for apple/coreai-models: the pinned commit, the series, atomic apply.

`patches/series` names the upstream commit the stack is written against and each patch with
its sha256, in order. `apply_series` finds how much of the stack a tree already has, applies
the rest on a scratch copy of the touched files and only then replaces the originals, so a
tree is either fully patched or left exactly as it was. A hunk that does not apply is named
by patch, file and hunk header.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GemmaiosError
from .files import replace_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
PATCHES_DIR = REPO_ROOT / "patches"
ENGINE_DIRNAME = "coreai-models"


class PatchError(GemmaiosError):
    """The patch series is unreadable, tampered with, or does not apply to a tree."""


class EngineSourceUnavailable(GemmaiosError):
    """No checkout of the pinned apple/coreai-models commit could be found or fetched."""

    def __init__(self, message: str, command: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.command = command


@dataclass(frozen=True)
class Hunk:
    index: int  # 1-based within its file
    header: str
    old_start: int
    new_start: int
    lines: list[tuple[str, str]]  # (" " | "-" | "+", text)

    @property
    def old_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "+"]

    @property
    def new_lines(self) -> list[str]:
        return [text for tag, text in self.lines if tag != "-"]

    def old_index_of_new(self, new_index: int) -> int | None:
        """Index in old_lines of new_lines[new_index]; None when that line was added."""
        old_i = new_i = 0
        for tag, _ in self.lines:
            if tag != "-":
                if new_i == new_index:
                    return old_i if tag == " " else None
                new_i += 1
            if tag != "+":
                old_i += 1
        return None


@dataclass(frozen=True)
class FilePatch:
    path: str
    hunks: list[Hunk]


@dataclass(frozen=True)
class Patch:
    name: str
    path: Path
    sha256: str

    @property
    def files(self) -> list[FilePatch]:
        return parse_patch(self.path.read_text())


@dataclass(frozen=True)
class Series:
    upstream: str
    base: str
    patches: list[Patch]
    directory: Path

    @property
    def touched_files(self) -> list[str]:
        seen: dict[str, None] = {}
        for patch in self.patches:
            for fp in patch.files:
                seen.setdefault(fp.path, None)
        return list(seen)

    def fingerprint(self) -> dict:
        return {"base": self.base, "patches": [[p.name, p.sha256] for p in self.patches]}


@dataclass
class ApplyResult:
    applied: list[str] = field(default_factory=list)  # applied by this call
    already: list[str] = field(default_factory=list)  # found already applied


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def parse_patch(text: str) -> list[FilePatch]:
    """The files and hunks of a git diff (text before the first `diff --git` is ignored)."""
    files: list[FilePatch] = []
    path = None
    hunks: list[Hunk] = []
    current: tuple[str, int, int, list[tuple[str, str]]] | None = None

    def close_hunk() -> None:
        nonlocal current
        if current is not None:
            header, old_start, new_start, lines = current
            hunks.append(Hunk(len(hunks) + 1, header, old_start, new_start, lines))
            current = None

    def close_file() -> None:
        nonlocal hunks, path
        close_hunk()
        if path is not None:
            files.append(FilePatch(path, hunks))
        path, hunks = None, []

    for line in text.splitlines():
        if line.startswith("diff --git "):
            close_file()
            path = line.split(" b/", 1)[1]
        elif path is None:
            continue
        elif line.startswith("@@"):
            close_hunk()
            match = _HUNK_RE.match(line)
            if not match:
                raise PatchError(f"malformed hunk header {line!r} in the diff of {path}")
            current = (line, int(match.group(1)), int(match.group(3)), [])
        elif current is not None and line[:1] in (" ", "-", "+", ""):
            current[3].append((line[:1] or " ", line[1:]))
    close_file()
    return files


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_series(directory: Path = PATCHES_DIR) -> Series:
    """Read `series`, checking that every listed patch exists with its recorded sha256."""
    directory = Path(directory)
    series_file = directory / "series"
    if not series_file.is_file():
        raise PatchError(f"{series_file} does not exist", hint="restore patches/ from the gemmaios repository")
    upstream = base = ""
    patches: list[Patch] = []
    for lineno, raw in enumerate(series_file.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, *rest = line.split()
        if key == "upstream" and len(rest) == 1:
            upstream = rest[0]
        elif key == "base" and len(rest) == 1 and re.fullmatch(r"[0-9a-f]{40}", rest[0]):
            base = rest[0]
        elif key == "patch" and len(rest) == 2:
            name, digest = rest
            path = directory / name
            if not path.is_file():
                raise PatchError(f"{series_file}:{lineno}: patch {name} is missing",
                                 hint="restore it, or remove its line from the series")
            actual = sha256_bytes(path.read_bytes())
            if actual != digest:
                raise PatchError(
                    f"{series_file}:{lineno}: {name} has sha256 {actual}, the series records {digest}",
                    hint="a patch was edited without updating the series: re-record its sha256 "
                    "(sha256sum patches/NAME) after reviewing the change",
                )
            patches.append(Patch(name, path, digest))
        else:
            raise PatchError(f"{series_file}:{lineno}: cannot read {raw!r}",
                             hint="lines are `upstream URL`, `base <40-hex commit>` or `patch NAME SHA256`")
    if not base or not upstream:
        raise PatchError(f"{series_file} lacks its `base` commit or `upstream` URL", hint="add both lines")
    return Series(upstream, base, patches, directory)


# ---- applying -------------------------------------------------------------------------------

def _git_apply(tree: Path, patch: Path, *, reverse: bool = False, check: bool = False) -> subprocess.CompletedProcess:
    cmd = ["git", "apply", "--whitespace=nowarn"]
    if reverse:
        cmd.append("--reverse")
    if check:
        cmd.append("--check")
    cmd.append(str(patch))
    # GIT_DIR pointing nowhere: apply as a plain patch tool even when tree sits inside a repo.
    env = {**os.environ, "GIT_DIR": str(tree / ".gemmaios-no-git")}
    return subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env)


def _failure(patch: Patch, result: subprocess.CompletedProcess) -> PatchError:
    """Name the patch, file and hunk git could not apply."""
    match = re.search(r"patch failed: (.+):(\d+)", result.stderr)
    if match:
        path, line = match.group(1), int(match.group(2))
        for fp in patch.files:
            if fp.path == path:
                hunk = next((h for h in fp.hunks if h.old_start == line), None)
                where = f"hunk #{hunk.index} ({hunk.header})" if hunk else f"the hunk at line {line}"
                return PatchError(
                    f"patch {patch.name}: {where} of {path} does not apply",
                    hint="the tree is not the pinned upstream commit (or was edited); start from a clean "
                    "checkout of the `base` commit in patches/series, or rebase the patch",
                )
    missing = re.search(r"(\S+): No such file or directory", result.stderr)
    if missing:
        return PatchError(f"patch {patch.name}: {missing.group(1)} does not exist in the tree",
                          hint="point gemmaios at a checkout of apple/coreai-models at the pinned commit")
    return PatchError(f"patch {patch.name} does not apply: {result.stderr.strip()}",
                      hint="start from a clean checkout of the pinned commit")


def _copy_touched(src: Path, dst: Path, paths: list[str]) -> None:
    for rel in paths:
        if (src / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)


def applied_count(tree: Path, series: Series) -> int:
    """How many leading patches `tree` already carries (0..n; 0 also for a tree that matches none).

    Peels the stack from the top on scratch copies: the tree is at base+k when patches k..1
    reverse-apply in turn. A later patch may rewrite an earlier one's lines, so a single
    reverse check of patch 1 cannot tell.
    """
    n = len(series.patches)
    for k in range(n, 0, -1):
        with tempfile.TemporaryDirectory(prefix="gemmaios-peel-") as tmp:
            scratch = Path(tmp)
            _copy_touched(tree, scratch, series.touched_files)
            if all(_git_apply(scratch, p.path, reverse=True).returncode == 0
                   for p in reversed(series.patches[:k])):
                return k
    return 0


def apply_series(tree: Path, series: Series | None = None) -> ApplyResult:
    """Apply the not-yet-applied rest of the series to `tree`, all or nothing."""
    series = series or load_series()
    tree = Path(tree)
    if not tree.is_dir():
        raise PatchError(f"{tree} is not a directory", hint="pass the root of a coreai-models checkout")
    done = applied_count(tree, series)
    result = ApplyResult(already=[p.name for p in series.patches[:done]])
    todo = series.patches[done:]
    if not todo:
        return result
    touched = series.touched_files
    with tempfile.TemporaryDirectory(prefix="gemmaios-apply-") as tmp:
        scratch = Path(tmp)
        _copy_touched(tree, scratch, touched)
        for patch in todo:
            check = _git_apply(scratch, patch.path, check=True)
            if check.returncode != 0:
                raise _failure(patch, check)
            applied = _git_apply(scratch, patch.path)
            if applied.returncode != 0:
                raise _failure(patch, applied)
            result.applied.append(patch.name)
        # Every patch applied on the scratch copy: now replace the originals (rename each in).
        staged: list[tuple[Path, Path]] = []
        try:
            for rel in touched:
                if not (scratch / rel).is_file():
                    continue
                target = tree / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
                os.close(fd)
                shutil.copy2(scratch / rel, tmp_name)
                staged.append((Path(tmp_name), target))
        except OSError:
            for tmp_path, _ in staged:
                tmp_path.unlink(missing_ok=True)
            raise
        for tmp_path, target in staged:
            os.replace(tmp_path, target)
    return result


# ---- fixtures: the stack's own pre-image ----------------------------------------------------

def reconstruct_preimage(series: Series) -> dict[str, str]:
    """Rebuild, from the hunks alone, a version of each touched file the whole stack applies to.

    Lines the patches show (context and removed lines of every patch, mapped back through the
    earlier patches to base line numbers) are placed at their base positions; every other line
    is a unique filler. This lets tests exercise the real series without the upstream checkout.
    """
    known: dict[str, dict[int, str]] = {}
    # per file: the hunks applied so far, to map later patches' line numbers back to base
    history: dict[str, list[list[Hunk]]] = {}
    for patch in series.patches:
        for fp in patch.files:
            lines = known.setdefault(fp.path, {})
            earlier = history.setdefault(fp.path, [])
            for hunk in fp.hunks:
                for offset, text in enumerate(hunk.old_lines):
                    base_line = _to_base(hunk.old_start + offset, earlier)
                    if base_line is not None:
                        lines.setdefault(base_line, text)
            earlier.append(fp.hunks)
    files = {}
    for path, lines in known.items():
        last = max(lines) + 3
        files[path] = "".join(
            (lines.get(n, f"// gemmaios fixture filler {n}") + "\n") for n in range(1, last + 1)
        )
    return files


def _to_base(line: int, earlier: list[list[Hunk]]) -> int | None:
    """Map a line number of base+patches[:k] back to base; None for a line a patch wrote."""
    for hunks in reversed(earlier):
        shift = 0
        for hunk in hunks:
            if line < hunk.new_start:
                break
            if line < hunk.new_start + len(hunk.new_lines):
                old_i = hunk.old_index_of_new(line - hunk.new_start)
                if old_i is None:
                    return None
                line, shift = hunk.old_start + old_i, 0
                break
            shift += len(hunk.new_lines) - len(hunk.old_lines)
        line -= shift
    return line


# ---- obtaining the pinned checkout ----------------------------------------------------------

def default_cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "gemmaios" / ENGINE_DIRNAME


def clone_command(series: Series, cache: Path) -> str:
    return f"git clone {series.upstream} {cache} && git -C {cache} checkout {series.base}"


def _has_commit(repo: Path, commit: str) -> bool:
    probe = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True)
    return probe.returncode == 0


def _export_commit(repo: Path, commit: str, dest: Path) -> None:
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit],
                       stdout=archive, check=True)
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="data")


def locate_pinned_source(series: Series, source: Path | None, cache: Path, allow_clone: bool) -> Path:
    """A git repository holding the pinned commit, or a plain directory the user gave."""
    if source is not None:
        source = Path(source).expanduser()
        if not source.is_dir():
            what = "is a file, not a checkout" if source.exists() else "does not exist"
            raise EngineSourceUnavailable(f"engine source {source} {what}",
                                          command=clone_command(series, source),
                                          hint="pass --engine-source a checkout of apple/coreai-models")
        return source
    if (cache / ".git").exists() and _has_commit(cache, series.base):
        return cache
    if allow_clone:
        cache.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        if not (cache / ".git").exists():
            subprocess.run(["git", "clone", "--quiet", series.upstream, str(cache)],
                           capture_output=True, env=env, timeout=900)
        elif not _has_commit(cache, series.base):
            subprocess.run(["git", "-C", str(cache), "fetch", "--quiet", "origin"],
                           capture_output=True, env=env, timeout=900)
        if (cache / ".git").exists() and _has_commit(cache, series.base):
            return cache
    raise EngineSourceUnavailable(
        f"no checkout of apple/coreai-models at {series.base[:12]} (looked in {cache}"
        + (", and cloning failed" if allow_clone else "") + ")",
        command=clone_command(series, cache),
        hint="run the command on a machine with network (or pass --engine-source PATH to a checkout), "
        "then re-run the same gemmaios command",
    )


def prepare_engine_package(dest: Path, series: Series, source: Path) -> ApplyResult:
    """Write the pinned tree + the whole series to `dest` (replaced only when complete)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        if _has_commit(source, series.base):  # a clone, a bare mirror, or a worktree
            _export_commit(source, series.base, staging)
        else:
            shutil.rmtree(staging)
            shutil.copytree(source, staging, ignore=shutil.ignore_patterns(".git", ".build"))
        result = apply_series(staging, series)
        (staging / ".gemmaios-engine").write_text(
            f"base {series.base}\n" + "".join(f"patch {p.name} {p.sha256}\n" for p in series.patches))
        replace_dir(staging, dest)
        return result
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
