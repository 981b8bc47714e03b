"""Issue 26: a build folder remembers what it is; one option layer; the CLI's conventions; Ctrl-C.

The folder tests use the session's tiny app build (copied before anything changes it) or a build.json
written here; the Ctrl-C tests send a real SIGINT to a `gemmaios run` subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from cli_process import TOOLKIT, gemmaios_process, interrupt_generation
from devicebuild import copy_build
from typer.testing import CliRunner

from gemmaios import __version__
from gemmaios.cli import app
from gemmaios.pipeline import MANIFEST_SCHEMA

runner = CliRunner()


def _folder(tmp_path: Path, name: str = "tiny-h18p-int4-provider", **options) -> Path:
    """A build folder whose build.json records `options` (no step has run)."""
    folder = tmp_path / "build" / name
    folder.mkdir(parents=True)
    recorded = {"model": "tiny", "arch": "h18p", "quant": "int4", "ple": "provider", "vision": False,
                "prefill_chunk": "0", "max_context": None, "target": "ios", "kernel": None, "head_quant": None,
                "extra": {}, **options}
    (folder / "build.json").write_text(json.dumps({"schema": MANIFEST_SCHEMA, "steps": {}, "options": recorded}))
    return folder


def _the_only_build(tiny_app_builds, tmp_path: Path) -> Path:
    """A copy of the tiny app build as ./build/<name>, the working folder being tmp_path."""
    return copy_build(tiny_app_builds["bundled"], tmp_path / "build" / "tiny-h18p-int8-provider")


# ---- the folder remembers what it is ------------------------------------------------------------

@pytest.mark.parametrize(("argv", "flag", "built", "asked"), [
    (["app", "--quant", "int8"], "--quant", "int4", "int8"),
    (["compile", "--model", "tiny"], "--model", "checkpoints/mine", "tiny"),
    (["sign", "--arch", "h17p"], "--arch", "h18p", "h17p"),
    (["tables", "--ple", "tbl"], "--ple", "provider", "tbl"),
    (["build", "--vision"], "--vision", "off", "on"),
    (["convert", "--prefill-chunk", "16"], "--prefill-chunk", "0", "16"),
    (["oracle", "--quant", "fp16"], "--quant", "int4", "fp16"),
])
def test_an_option_contradicting_the_folder_is_a_named_error_and_changes_nothing(
        tmp_path, monkeypatch, argv, flag, built, asked):
    folder = _folder(tmp_path, **({"model": built} if flag == "--model" else {}))
    before = (folder / "build.json").read_bytes()
    monkeypatch.chdir(tmp_path)
    for args in (argv, [*argv, "--out", str(folder)]):  # found as the only one, and given
        result = runner.invoke(app, args)
        output = " ".join(result.output.split())
        assert result.exit_code == 2, output
        assert f"was built with {flag} {built}; this command asks for {flag} {asked}" in output
        assert f"drop {flag} to use the folder as built" in output, output
        assert f"gemmaios build --model tiny {flag if asked == 'on' else ''}".rstrip() in output, output
        assert (folder / "build.json").read_bytes() == before  # never a silent rewrite
        assert sorted(p.name for p in (tmp_path / "build").iterdir()) == [folder.name]  # no other folder made


def test_several_build_folders_and_no_out_names_them(tmp_path, monkeypatch):
    _folder(tmp_path, "a")
    _folder(tmp_path, "b")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["app", "--allow-uncompiled"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "2 under ./build (build/a, build/b)" in output and "--out build/a" in output


def test_app_and_build_take_the_model_and_settings_of_the_only_build(tiny_app_builds, tmp_path, monkeypatch):
    folder = _the_only_build(tiny_app_builds, tmp_path)
    options = json.loads((folder / "build.json").read_text())["options"]
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["app", "--allow-uncompiled"])  # no --model, no --out: the folder's own
    assert result.exit_code == 0, result.output
    assert "app/GemmaBench/GemmaBench.xcodeproj" in result.output
    after = json.loads((folder / "build.json").read_text())
    assert {k: after["options"][k] for k in ("model", "quant", "arch", "ple")} == \
        {k: options[k] for k in ("model", "quant", "arch", "ple")} == \
        {"model": "tiny", "quant": "int8", "arch": "h18p", "ple": "provider"}
    assert after["steps"]["app"]["status"] == "done"

    # a later plain `build` keeps the app the folder rendered (its --allow-uncompiled is remembered)
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    steps = json.loads((folder / "build.json").read_text())["steps"]
    assert steps["app"]["status"] == "done" and steps["app"]["fingerprint"] == after["steps"]["app"]["fingerprint"]
    assert re.search(r"app\s+│\s+skipped", result.output), result.output


def test_a_failed_step_never_leaves_the_app_command_reading_old_details(tiny_checkpoint, tmp_path, monkeypatch):
    """A pending app record (details: only a command) and a checkpoint that now fails: exit 1 and the
    failure, not a KeyError on details the failed run did not write (issue 26: exit 70)."""
    import shutil

    ckpt = shutil.copytree(tiny_checkpoint.path, tmp_path / "ckpt")
    folder = _folder(tmp_path, model=str(ckpt))
    data = json.loads((folder / "build.json").read_text())
    data["steps"]["app"] = {"status": "pending", "fingerprint": "", "inputs": {}, "details": {"command": "xcrun …"}}
    (folder / "build.json").write_text(json.dumps(data))
    (ckpt / "model.safetensors").write_bytes(b"\0" * 16)  # truncated: the checkpoint step fails
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["app", "--allow-uncompiled"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "checkpoint" in result.output and "failed" in result.output and "KeyError" not in result.output


def test_the_pending_steps_each_name_their_own_command_once(tiny_app_builds, tmp_path, monkeypatch):
    folder = _the_only_build(tiny_app_builds, tmp_path)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["build"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("  ")]  # the printed commands
    compile_lines = [line for line in lines if "xcrun coreai-build compile" in line]
    assert len(compile_lines) == 1 and compile_lines[0].rstrip().endswith("--expect-frequent-reshapes")
    archive = [line for line in lines if "xcodebuild -project" in line]
    assert len(archive) == 1 and "xcodebuild -exportArchive" in archive[0]  # sign: its own two commands
    assert f"cd {folder.relative_to(tmp_path)} && xcodebuild" in archive[0]
    assert result.output.count("Then re-run") == 1


# ---- one option layer, the CLI's conventions -------------------------------------------------------

def _params(command: str) -> dict[str, object]:
    return {p.name: p for p in typer.main.get_command(app).commands[command].params}


def test_deploy_accepts_every_build_option_and_every_bench_option():
    deploy = _params("deploy")
    build_only = {"force", "out"}  # deploy's --out is the build folder too (BuildDirOpt)
    assert set(_params("build")) - build_only <= set(deploy), set(_params("build")) - set(deploy)
    bench_only = {"udid", "out", "bundle_id", "as_json", "mac"}  # deploy has its own --mac, --udid, --json
    # `bench --xctest --destination`: xcodebuild test-without-building installs the signed test products on the
    # Mac's phones itself, a flow of its own after `gemmaios sign`, not deploy's install + push
    bench_only |= {"xctest", "destination"}
    assert set(_params("bench")) - bench_only <= set(deploy), set(_params("bench")) - set(deploy)


def test_the_shared_options_are_one_declaration_with_choices_in_help():
    for command in ("build", "convert", "tables", "oracle", "compile", "app", "sign", "deploy"):
        params = _params(command)
        assert params["model"].default is None, f"{command} --model defaults to the folder's"
        assert {"--out", "-o"} <= set(params["out"].opts), command
        shown = runner.invoke(app, [command, "-h"], terminal_width=200)
        assert shown.exit_code == 0 and "int4|int8|fp16" in shown.output and "provider|tbl" in shown.output, command


def test_conventions_version_help_bare_and_completion():
    assert runner.invoke(app, ["--version"]).output.strip() == f"gemmaios {__version__}"
    bare = runner.invoke(app, [])
    assert bare.exit_code == 0 and "Usage" in bare.output and "build" in bare.output
    assert runner.invoke(app, ["-h"]).exit_code == 0
    # a real process started from bash, as a user's would be: typer detects the shell from its parent
    # processes (under `make` the test's own parent is sh, which typer does not support)
    command = shlex.join([sys.executable, "-c", "from gemmaios.cli import main; main()", "--show-completion"])
    # (a second command keeps bash as the parent instead of exec-ing python in its place)
    completion = subprocess.run(["bash", "-c", f"{command}; exit $?"], env={**os.environ, "PYTHONPATH": str(TOOLKIT)},
                                capture_output=True, text=True, timeout=120)
    assert completion.returncode == 0 and "_gemmaios_completion" in completion.stdout, completion


def test_models_lists_tiny_and_archs_fits_a_terminal():
    models = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert "tiny" in {m["key"] for m in models}
    shown = runner.invoke(app, ["models"]).output
    assert re.search(r"│ tiny\s+│ 12\s+│ 64", shown), shown
    archs = runner.invoke(app, ["archs"]).output
    assert len(archs.splitlines()) < 60, f"{len(archs.splitlines())} lines"


# ---- Ctrl-C: a real SIGINT to `gemmaios run` ----------------------------------------------------------

def test_ctrl_c_during_generation_keeps_the_partial_text_and_exits_130(tiny_app_builds, tmp_path):
    build = copy_build(tiny_app_builds["bundled"], tmp_path / "build")
    code, out, err = interrupt_generation(build, tmp_path)
    assert code == 130, (code, out, err)
    assert len(out.split()) >= 2 and "interrupted" in err, (out, err)
    assert "C++ exception" not in err and "Traceback" not in err, err


def test_ctrl_c_during_a_host_bench_writes_no_transcript(tiny_app_builds, tmp_path):
    build = copy_build(tiny_app_builds["bundled"], tmp_path / "build")
    proc = gemmaios_process(["run", "--out", str(build), "--bench", "--trials", "3"], tmp_path)
    time.sleep(12)  # imports and the load (a few seconds); the bench itself takes a minute
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "C++ exception" not in err.decode() and "no transcript written" in err.decode(), err
    assert not list(build.glob("runs/*/*.jsonl")), "an interrupted bench left a transcript"


@pytest.mark.parametrize(("command", "target", "kept"), [
    ("bench", "gemmaios.devicebench.bench", "nothing of this run was pulled into runs/"),
    ("deploy", "gemmaios.fulldeploy.deploy_all", "finished build steps and pushed files are kept"),
])
def test_ctrl_c_during_a_device_bench_or_deploy_says_what_is_kept_and_exits_130(
        tmp_path, monkeypatch, command, target, kept):
    """Click alone turns Ctrl-C into "Aborted!" and exit 1; the device commands say how to resume."""
    import importlib

    module, name = target.rsplit(".", 1)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), name, ctrl_c)
    folder = _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    result = runner.invoke(app, [command, "--out", str(folder)])
    assert result.exit_code == 130, result.output
    assert "interrupted (Ctrl-C)" in result.output and kept in " ".join(result.output.split())


def test_the_readers_of_build_json_name_a_damaged_one_instead_of_reading_an_empty_build(tmp_path):
    """device/local, payload and report read build.json through pipeline.finished_details (typed records,
    steprecords): before issue 26 each parsed it by hand and took a damaged file for a build with no steps."""
    from gemmaios.device.local import build_arch, bundle_location, signed_bundle_id
    from gemmaios.errors import BuildError
    from gemmaios.payload import payload_plan
    from gemmaios.pipeline import finished_details

    folder = _folder(tmp_path, arch="h17p")
    assert build_arch(folder) == "h17p" and bundle_location(folder) == "bundled" and signed_bundle_id(folder) is None
    assert finished_details(tmp_path / "not-a-build", "convert") is None
    (folder / "build.json").write_text('{"schema": 2, "steps": {"half')
    for read in (lambda: build_arch(folder), lambda: bundle_location(folder), lambda: payload_plan(folder),
                 lambda: finished_details(folder, "convert")):
        with pytest.raises(BuildError, match="not valid JSON"):
            read()
    # valid JSON whose step record lacks the pipeline's fields (written by hand or by another tool)
    (folder / "build.json").write_text(json.dumps({"schema": MANIFEST_SCHEMA, "steps": {"app": {"details": {}}}}))
    with pytest.raises(BuildError, match="the app step's record is damaged") as err:
        bundle_location(folder)
    assert "gemmaios build --force --out" in err.value.hint  # a command that exists for every step


def test_the_folder_remembers_its_options_but_not_a_one_off_recompile(tmp_path):
    from gemmaios.buildfolder import stored_options

    folder = _folder(tmp_path, quant="int8", extra={"recompile": True, "app": {"allow_uncompiled": True,
                                                                               "config": "gemmaios.yaml"}})
    options = stored_options(folder)
    assert (options.model, options.quant) == ("tiny", "int8")
    assert options.extra == {"app": {"allow_uncompiled": True, "config": Path("gemmaios.yaml")}}
