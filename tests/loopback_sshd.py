"""A real OpenSSH server on 127.0.0.1 for the SSH runner tests: throwaway host and user keys,
a non-default port, and the stand-ins `xcrun` and `xcodebuild` (tests/standin_bin) first on the session PATH,
the way Xcode's `xcrun` is on a real Mac's PATH. The runner under test is plain ssh/rsync/scp.
The server is the `loopback_mac` fixture (tests/conftest.py).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gemmaios.runners import SSHRunner

STANDIN_BIN = Path(__file__).parent / "standin_bin"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class LoopbackMac:
    target: str
    ssh_options: list[str]
    log: Path  # the stand-in xcrun's call log
    home: Path  # where remote workdirs go in the tests

    def calls(self, log: Path | None = None) -> list[dict]:
        import json

        log = log or self.log
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def xcodebuild_calls(self) -> list[dict]:
        """The stand-in xcodebuild's call log (tests/standin_bin/xcodebuild)."""
        return self.calls(self.log.with_name("xcodebuild-calls.jsonl"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_loopback_mac(tmp: Path, extra_env: dict[str, str] | None = None):
    """`extra_env`: more variables for the sessions (e.g. the simulator's USBMUXD_SOCKET_ADDRESS for
    the devicectl stand-in); values without spaces."""
    if not Path(SSHD).exists() or not shutil.which("ssh"):
        pytest.skip("openssh-server/client not installed (scripts/system-deps.sh installs them)")
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o700)
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
    shutil.copy(tmp / "user_key.pub", tmp / "authorized_keys")
    os.chmod(tmp / "authorized_keys", 0o600)
    log = tmp / "xcrun-calls.jsonl"
    port = _free_port()
    # The stand-in is a python3 script: keep this interpreter's folder on the remote PATH too.
    path = f"{STANDIN_BIN}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPidFile {tmp / 'sshd.pid'}\n"
        "UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\n"
        f"AllowUsers {getpass.getuser()}\nSubsystem sftp internal-sftp\n"
        f"SetEnv PATH={path} STANDIN_XCRUN_LOG={log} STANDIN_XCODEBUILD_LOG={log.with_name('xcodebuild-calls.jsonl')} STANDIN_PYTHON={sys.executable}"
        + "".join(f" {k}={v}" for k, v in (extra_env or {}).items()) + "\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "sshd.log", "w"))
    options = ["-p", str(port), "-i", str(tmp / "user_key"), "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp / 'known_hosts'}",
               "-o", "LogLevel=ERROR"]
    mac = LoopbackMac(f"{getpass.getuser()}@127.0.0.1", options, log, tmp / "remote-home")
    deadline = time.time() + 20
    while True:
        probe = subprocess.run(["ssh", "-o", "BatchMode=yes", *options, mac.target, "command -v xcrun"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            assert probe.stdout.strip() == str(STANDIN_BIN / "xcrun"), probe.stdout
            break
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            if os.geteuid() != 0 and proc.returncode not in (None, -9):
                pytest.skip(f"sshd would not start as a normal user: {(tmp / 'sshd.log').read_text()[-300:]}")
            pytest.fail(f"loopback sshd did not come up: {probe.stderr}\n{(tmp / 'sshd.log').read_text()}")
        time.sleep(0.2)
    return proc, mac


class CorruptingSSHRunner(SSHRunner):
    """Flips one byte of what comes back, as a faulty link or disk would."""

    def _copy(self, sources, dest, *, what):
        super()._copy(sources, dest, what=what)
        if what == "fetching the outputs":
            victim = next(p for p in sorted(Path(dest).rglob("*")) if p.is_file())
            data = bytearray(victim.read_bytes())
            data[0] ^= 0xFF
            victim.write_bytes(bytes(data))
