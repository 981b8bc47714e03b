"""The boundary to Apple's toolchain (xcrun, xcodebuild): run a command here or on a Mac.

A command is a list whose items are strings, `In(path)` (a local file or folder the tool
reads) or `Out(name)` (a file or folder the tool writes, delivered to the caller's
`deliver_to` folder under that name). `LocalRunner` runs it on this Mac; `SSHRunner` copies
the inputs to a job folder on a remote Mac, runs it there, copies the outputs back, checks
each file against the remote sha256 and removes the job folder. Outputs replace their
destination only once complete, so an interrupted run leaves the old ones in place.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GemmaiosError, NeedsMacOS
from .files import sha256_file


class ToolchainError(GemmaiosError):
    """An Apple tool ran and failed, or its outputs could not be brought back intact."""


@dataclass(frozen=True)
class In:
    """A local input path; the runner substitutes where the tool sees it."""

    path: Path


@dataclass(frozen=True)
class Out:
    """An output the tool writes; `name` is a single path component. With `folder=True` the
    runner creates it (empty) before the run, for tools that write into an existing folder."""

    name: str
    folder: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"output name must be one path component, got {self.name!r}")


Arg = str | In | Out


@dataclass
class RunResult:
    host: str  # "local" or user@host
    command: str  # what ran, as a shell line (paths as the tool saw them)
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)  # Out name → delivered local path
    sha256: dict[str, str] = field(default_factory=dict)  # delivered file (relative to deliver_to) → digest


def display_command(command: Sequence[Arg], *, out_dir: str = ".") -> str:
    """The command as a user would type it: inputs at their local paths, outputs in `out_dir`."""
    return shlex.join(_resolve(command, lambda p: str(p), lambda n: f"{out_dir.rstrip('/')}/{n}"))


def _resolve(command: Sequence[Arg], on_in, on_out) -> list[str]:
    argv = []
    for item in command:
        if isinstance(item, In):
            argv.append(on_in(item.path))
        elif isinstance(item, Out):
            argv.append(on_out(item.name))
        else:
            argv.append(str(item))
    return argv


def _outputs(command: Sequence[Arg]) -> list[str]:
    return [a.name for a in command if isinstance(a, Out)]


def _folders(command: Sequence[Arg]) -> list[str]:
    return [a.name for a in command if isinstance(a, Out) and a.folder]


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _promote(staged: Path, dest: Path) -> None:
    """Replace dest with staged (same filesystem), keeping dest until staged is in place."""
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dest, old)
        os.replace(staged, dest)
        shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    else:
        os.replace(staged, dest)


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root (or of root itself), keyed by path relative to root's parent."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): sha256_file(p) for p in files}


class ToolchainRunner:
    """Runs Apple's tools. Subclasses implement `run`."""

    host = "local"

    def describe(self) -> str:
        return self.host

    def close(self) -> None:
        """Release what the runner holds (SSH: its shared connection)."""

    def run(self, command: Sequence[Arg], deliver_to: Path, *, timeout: float | None = None) -> RunResult:
        raise NotImplementedError

    def check(self, argv: Sequence[str], *, timeout: float = 60) -> str:
        """Run a small query (e.g. a tool's version) with no inputs or outputs; its stdout."""
        result = self.run(list(argv), Path(tempfile.gettempdir()), timeout=timeout)
        return result.stdout.strip()

    def _fail(self, result: RunResult) -> ToolchainError:
        return ToolchainError(
            f"`{result.command}` failed on {self.describe()} (exit {result.returncode}):\n{_tail(result.stderr or result.stdout)}",
            hint="fix the cause above and re-run; the outputs already in place were left untouched",
        )


class LocalRunner(ToolchainRunner):
    """This machine is a Mac with Xcode: run the tool directly."""

    def run(self, command: Sequence[Arg], deliver_to: Path, *, timeout: float | None = None) -> RunResult:
        deliver_to = Path(deliver_to)
        names = _outputs(command)
        if names:
            deliver_to.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".gemmaios-run-", dir=deliver_to)) if names else None
        try:
            argv = _resolve(command, lambda p: str(Path(p).resolve()), lambda n: str(staging / n))
            for name in _folders(command):
                (staging / name).mkdir()
            started = time.time()
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
            except FileNotFoundError as exc:
                raise ToolchainError(f"{argv[0]} not found on this machine",
                                     hint="install Xcode 27 and select it with `sudo xcode-select -s`") from exc
            except subprocess.TimeoutExpired as exc:
                raise ToolchainError(f"`{shlex.join(argv)}` ran past {timeout:.0f}s", hint="re-run with more time") from exc
            result = RunResult(self.host, shlex.join(argv), proc.returncode, proc.stdout, proc.stderr,
                               round(time.time() - started, 3))
            if proc.returncode != 0:
                raise self._fail(result)
            for name in names:
                if not (staging / name).exists() or ((staging / name).is_dir() and not any((staging / name).iterdir())):
                    raise ToolchainError(f"`{result.command}` exited 0 but wrote no {name}",
                                         hint="check the tool's output above; it may have written elsewhere")
            for name in names:
                result.sha256.update(hash_tree(staging / name))
                _promote(staging / name, deliver_to / name)
                result.outputs[name] = deliver_to / name
            return result
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)


def scp_options(ssh_options: Sequence[str]) -> list[str]:
    """ssh's options as scp takes them: only the port flag differs (-p → -P)."""
    out, it = [], iter(ssh_options)
    for opt in it:
        if opt == "-p":
            out += ["-P", next(it, "")]
        elif opt.startswith("-p") and opt[2:].isdigit():
            out.append("-P" + opt[2:])
        else:
            out.append(opt)
    return out


class SSHRunner(ToolchainRunner):
    """A Mac reachable over SSH (key-based, no password prompt): copy in, run, copy back, verify."""

    def __init__(self, target: str, ssh_options: Sequence[str] = (), workdir: str = "~/gemmaios-remote",
                 *, transfer: str | None = None, keep_remote: bool = False, connect_timeout: int = 15) -> None:
        self.host = target
        self.ssh_options = list(ssh_options)
        self.workdir = workdir
        self.keep_remote = keep_remote
        self.connect_timeout = connect_timeout
        if transfer is None:
            transfer = "rsync" if shutil.which("rsync") else "scp"
        if transfer not in ("rsync", "scp"):
            raise ValueError(f"transfer must be rsync or scp, got {transfer!r}")
        self.transfer = transfer
        self._remote_root: str | None = None
        # One authenticated connection per runner, shared by every ssh/rsync/scp it starts.
        self._control_dir = tempfile.mkdtemp(prefix="gemmaios-ssh-")
        self._mux = ["-o", f"ControlPath={self._control_dir}/%C"]
        self._master = False

    def describe(self) -> str:
        return f"{self.host} (ssh)"

    # -- plumbing -------------------------------------------------------------------------
    def _ssh_argv(self, remote_command: str) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                *self._mux, *self.ssh_options, self.host, remote_command]

    def _start_master(self) -> None:
        """Open the shared connection in the background (-f, output to /dev/null so no pipe is
        held open); if that fails each command simply connects on its own."""
        if self._master:
            return
        argv = ["ssh", "-M", "-N", "-f", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ControlPersist=60", *self._mux, *self.ssh_options, self.host]
        with contextlib.suppress(subprocess.TimeoutExpired):
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=self.connect_timeout + 5, check=False)
            self._master = done.returncode == 0

    def close(self) -> None:
        """Close the shared connection (it also closes itself after 60 s idle)."""
        if self._master:
            subprocess.run(["ssh", *self._mux, *self.ssh_options, "-O", "exit", self.host],
                           capture_output=True, timeout=15, check=False)
            self._master = False
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def __enter__(self) -> SSHRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ssh(self, remote_command: str, *, timeout: float | None = None, what: str = "") -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(self._ssh_argv(remote_command), capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ToolchainError(f"{what or 'ssh'} on {self.host} ran past {timeout:.0f}s",
                                 hint="check the Mac is reachable (`gemmaios doctor --mac ...`)") from exc
        if proc.returncode == 255:  # ssh's own failure (connection, auth), not the command's
            raise ToolchainError(
                f"cannot reach {self.host} over ssh: {_tail(proc.stderr, 3) or 'no answer'}",
                hint="check `ssh <host>` works without a password prompt (key in ssh-agent or -i in ssh_options)",
            )
        return proc

    def _copy(self, sources: list[str], dest: str, *, what: str) -> None:
        if self.transfer == "rsync":
            rsh = shlex.join(["ssh", "-o", "BatchMode=yes", *self._mux, *self.ssh_options])
            argv = ["rsync", "-a", "--delete", "-e", rsh, *sources, dest]
        else:
            argv = ["scp", "-q", "-r", "-o", "BatchMode=yes", *self._mux, *scp_options(self.ssh_options), *sources, dest]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ToolchainError(f"{self.transfer} failed while {what} ({self.host}): {_tail(proc.stderr, 5)}",
                                 hint="check disk space and permissions on both ends, then re-run")

    def remote_root(self) -> str:
        """The absolute remote workdir (created if missing); `~` expands on the Mac."""
        if self._remote_root is None:
            self._start_master()
            wd = self.workdir
            shell_wd = '"$HOME"' + shlex.quote(wd[1:]) if wd.startswith("~") else shlex.quote(wd)
            proc = self._ssh(f"mkdir -p {shell_wd} && cd {shell_wd} && pwd -P", timeout=60, what="creating the workdir")
            if proc.returncode != 0 or not proc.stdout.strip():
                raise ToolchainError(f"cannot create {wd} on {self.host}: {_tail(proc.stderr, 3)}",
                                     hint="set `mac_workdir:` in gemmaios.yaml to a writable folder on the Mac")
            self._remote_root = proc.stdout.strip().splitlines()[-1]
        return self._remote_root

    def _remote_hashes(self, job: str) -> dict[str, str]:
        # macOS has shasum; Linux hosts (the loopback test host) may have only sha256sum.
        listing = ("cd out && find . -type f -exec sh -c "
                   "'if command -v shasum >/dev/null 2>&1; then shasum -a 256 \"$@\"; else sha256sum \"$@\"; fi' sh {} +")
        proc = self._ssh(f"cd {shlex.quote(job)} && {listing}", timeout=3600, what="hashing the outputs")
        if proc.returncode != 0:
            raise ToolchainError(f"could not hash the outputs on {self.host}: {_tail(proc.stderr, 3)}")
        hashes = {}
        for line in proc.stdout.splitlines():
            digest, _, rel = line.partition("  ")
            if rel:
                hashes[rel.removeprefix("./")] = digest.strip().lower()
        return hashes

    # -- the API -------------------------------------------------------------------------
    def run(self, command: Sequence[Arg], deliver_to: Path, *, timeout: float | None = None) -> RunResult:
        deliver_to = Path(deliver_to)
        names = _outputs(command)
        inputs = [Path(a.path) for a in command if isinstance(a, In)]
        basenames = [p.name for p in inputs]
        if len(set(basenames)) != len(basenames):
            raise ValueError(f"inputs must have distinct names, got {basenames}")
        for path in inputs:
            if not path.exists():
                raise ToolchainError(f"input {path} does not exist", hint="run the step that produces it first")

        if names:
            deliver_to.mkdir(parents=True, exist_ok=True)
        job = f"{self.remote_root()}/job-{uuid.uuid4().hex[:12]}"
        qjob = shlex.quote(job)
        staging = Path(tempfile.mkdtemp(prefix=".gemmaios-run-", dir=deliver_to)) if names else None
        try:
            folders = " ".join(shlex.quote(f"{job}/out/{n}") for n in _folders(command))
            proc = self._ssh(f"mkdir -p {qjob}/in {qjob}/out {folders}", timeout=60, what="creating the job folder")
            if proc.returncode != 0:
                raise ToolchainError(f"cannot create {job} on {self.host}: {_tail(proc.stderr, 3)}")
            if inputs:
                self._copy([str(p.resolve()) for p in inputs], f"{self.host}:{job}/in/", what="sending the inputs")

            argv = _resolve(command, lambda p: f"{job}/in/{Path(p).name}", lambda n: f"{job}/out/{n}")
            line = shlex.join(argv)
            started = time.time()
            proc = self._ssh(f"cd {qjob} && {line}", timeout=timeout, what=f"`{line}`")
            result = RunResult(self.host, line, proc.returncode, proc.stdout, proc.stderr, round(time.time() - started, 3))
            if proc.returncode != 0:
                raise self._fail(result)
            if not names:
                return result

            remote = self._remote_hashes(job)
            missing = [n for n in names if not any(r == n or r.startswith(n + "/") for r in remote)]
            if missing:
                raise ToolchainError(f"`{line}` exited 0 on {self.host} but wrote no {', '.join(missing)}",
                                     hint="check the tool's output; it may have written elsewhere")
            self._copy([f"{self.host}:{job}/out/{n}" for n in names], f"{staging}/", what="fetching the outputs")
            local = {}
            for n in names:
                local.update(hash_tree(staging / n))
            expected = {r: d for r, d in remote.items() if any(r == n or r.startswith(n + "/") for n in names)}
            if local != expected:
                bad = sorted(set(local.items()) ^ set(expected.items()))[:5]
                raise ToolchainError(f"outputs fetched from {self.host} do not match their remote sha256: {bad}",
                                     hint="re-run; if it persists, check the network and disk on both ends")
            result.sha256 = local
            for n in names:
                _promote(staging / n, deliver_to / n)
                result.outputs[n] = deliver_to / n
            return result
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if not self.keep_remote:
                self._ssh(f"rm -rf {qjob}", timeout=600, what="cleaning up")


def runner_for(mac: str | None = None, ssh_options: Sequence[str] = (), workdir: str = "~/gemmaios-remote", *,
               pending_command: str, resume: str, system: str | None = None) -> ToolchainRunner:
    """A configured Mac over SSH (`--mac` / `mac:`), else this Mac, else NeedsMacOS.

    `pending_command` is the exact command the user would run by hand on a Mac, and
    `resume` what to do afterwards; both go into the NeedsMacOS message.
    """
    if mac:
        return SSHRunner(mac, ssh_options, workdir)
    if (system or platform.system()) == "Darwin":
        return LocalRunner()
    raise NeedsMacOS(
        "needs macOS with Xcode 27 (this machine cannot run Apple's toolchain and no Mac is configured)",
        command=pending_command,
        hint=f"on a Mac run: {pending_command}\n    then {resume}\n"
             "    or let gemmaios do it over SSH: pass --mac user@host, or set `mac:` in gemmaios.yaml",
    )


def runner_for_build(options, *, pending_command: str, resume: str) -> ToolchainRunner:
    """runner_for with a build's options (`--mac`, and `ssh_options`/`mac_workdir` from the
    YAML config, which the CLI puts in `options.extra`). For the compile, app and deploy steps."""
    extra = options.extra or {}
    return runner_for(options.mac, extra.get("ssh_options") or (), extra.get("mac_workdir") or "~/gemmaios-remote",
                      pending_command=pending_command, resume=resume)
