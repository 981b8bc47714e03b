"""The toolchain runners: a real sshd on 127.0.0.1 (tests/loopback_sshd.py) stands in for the
remote Mac and tests/standin_bin/xcrun for Apple's tool; everything between is the real thing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from loopback_sshd import STANDIN_BIN, CorruptingSSHRunner

from gemmaios.compile import compile_bundle
from gemmaios.errors import NeedsMacOS
from gemmaios.runners import (
    In,
    LocalRunner,
    Out,
    SSHRunner,
    ToolchainError,
    hash_tree,
    runner_for,
    scp_options,
)

COPY = ["sh", "-c", 'cp -R "$1" "$2" && echo copied', "sh"]


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "b.txt").write_text("hello\n")
    return root


def _remote_jobs(mac, root: str) -> list[str]:
    proc = subprocess.run(["ssh", "-o", "BatchMode=yes", *mac.ssh_options, mac.target, f"ls -A {root}"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split()


@pytest.mark.parametrize("transfer", ["rsync", "scp"])
def test_ssh_runner_copies_in_runs_copies_back_and_cleans_up(loopback_mac, tmp_path, transfer):
    src = _tree(tmp_path / "model.aimodel")
    dest = tmp_path / "delivered"
    remote = tmp_path / f"remote-{transfer}"
    with SSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(remote), transfer=transfer) as runner:
        result = runner.run([*COPY, In(src), Out("copy")], dest)
    assert result.returncode == 0 and result.stdout.strip() == "copied"
    assert f"{remote}/job-" in result.command  # it ran on the remote side, on the remote copy
    copy = dest / "copy"
    assert (copy / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
    assert (copy / "sub" / "b.txt").read_text() == "hello\n"
    assert result.outputs == {"copy": copy}
    assert result.sha256 == hash_tree(copy)
    assert _remote_jobs(loopback_mac, str(remote)) == []  # job folder removed
    assert [p.name for p in dest.iterdir()] == ["copy"]  # no staging left behind


def test_remote_workdir_tilde_expands_on_the_remote(loopback_mac, tmp_path):
    name = f"gemmaios-test-{os.getpid()}"
    with SSHRunner(loopback_mac.target, loopback_mac.ssh_options, f"~/{name}") as runner:
        root = runner.remote_root()
        assert root == str(Path.home().resolve() / name)
        runner._ssh(f"rmdir {root}")


def test_failed_command_reports_exit_and_stderr_and_keeps_old_outputs(loopback_mac, tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "out").write_text("previous result")
    remote = tmp_path / "remote"
    with SSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(remote)) as runner:
        with pytest.raises(ToolchainError) as err:
            runner.run(["sh", "-c", 'echo "compiler exploded" >&2; exit 3', "sh", Out("out")], dest)
    assert "exit 3" in str(err.value) and "compiler exploded" in str(err.value)
    assert (dest / "out").read_text() == "previous result"
    assert _remote_jobs(loopback_mac, str(remote)) == []


def test_exit_zero_without_the_output_is_an_error(loopback_mac, tmp_path):
    with SSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(tmp_path / "r")) as runner:
        with pytest.raises(ToolchainError, match="wrote no result"):
            runner.run(["true", Out("result")], tmp_path / "d")


def test_outputs_are_verified_by_hash(loopback_mac, tmp_path):
    src = _tree(tmp_path / "in")
    dest = tmp_path / "d"
    with CorruptingSSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(tmp_path / "r")) as runner:
        with pytest.raises(ToolchainError, match="do not match their remote sha256"):
            runner.run([*COPY, In(src), Out("copy")], dest)
    assert not (dest / "copy").exists()


def test_unreachable_mac_says_so(tmp_path):
    runner = SSHRunner("nobody@127.0.0.1", ["-p", "1", "-o", "StrictHostKeyChecking=no",
                                            "-o", f"UserKnownHostsFile={tmp_path / 'kh'}"], connect_timeout=3)
    with pytest.raises(ToolchainError, match="cannot reach nobody@127.0.0.1") as err:
        runner.run(["true"], tmp_path)
    assert "password prompt" in err.value.hint
    runner.close()


def test_compile_bundle_over_ssh_and_locally_with_the_stand_in(loopback_mac, tmp_path, monkeypatch, bundle):
    with SSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(tmp_path / "r")) as runner:
        result = compile_bundle(bundle, "h18p", runner)
    assert result.aimodelc == bundle / "gemma4_tiny_decode_int4.h18p.aimodelc"
    assert json.loads((bundle / "metadata.json").read_text())["assets"]["main"] == result.aimodelc.name
    assert result.tool_version.startswith("coreai-build-0.0-gemmaios-test-stand-in")
    remote_ssh = result.sha256

    # The same compile on "this Mac": LocalRunner runs xcrun from PATH.
    monkeypatch.setenv("PATH", f"{STANDIN_BIN}:{os.environ['PATH']}")
    result = compile_bundle(bundle, "h18p", LocalRunner())
    assert result.host == "local" and str(bundle) in result.command
    assert set(result.sha256) == set(remote_ssh)  # same files either way
    assert not [p for p in bundle.iterdir() if p.name.startswith(".")]


def test_local_runner_without_xcode(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match="xcrun not found") as err:
        LocalRunner().run(["xcrun", "coreai-build", "--version"], tmp_path)
    assert "Xcode 27" in err.value.hint


def test_runner_for_picks_ssh_then_local_then_needs_macos():
    ssh = runner_for("me@mac.local", ["-p", "2222"], "~/w", pending_command="xcrun x", resume="r", system="Linux")
    assert isinstance(ssh, SSHRunner) and ssh.host == "me@mac.local" and ssh.ssh_options == ["-p", "2222"]
    ssh.close()
    assert isinstance(runner_for(None, pending_command="x", resume="r", system="Darwin"), LocalRunner)
    with pytest.raises(NeedsMacOS) as err:
        runner_for(None, pending_command="cd b && xcrun coreai-build compile m.aimodel", resume="re-run build",
                   system="Linux")
    assert err.value.command == "cd b && xcrun coreai-build compile m.aimodel"
    assert "--mac user@host" in str(err.value) and "re-run build" in str(err.value)


def test_scp_takes_the_port_as_capital_p():
    assert scp_options(["-p", "2222", "-i", "k", "-p2200", "-o", "Port=1"]) == ["-P", "2222", "-i", "k", "-P2200",
                                                                              "-o", "Port=1"]


def test_output_names_are_single_components():
    with pytest.raises(ValueError):
        Out("../escape")
