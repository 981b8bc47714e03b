"""The CLI's last-resort handler (gemmaios.crash): one line + a crash log, --debug for the traceback,
and nothing half-written in the build folder when a crash hits mid-step (issue 19)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gemmaios
from gemmaios import cli, crash, files, tables

TOOLKIT = str(Path(gemmaios.__file__).resolve().parents[1])
# `gemmaios <args>` in a fresh interpreter, with `gemmaios models` made to crash.
CRASHING_CLI = """
import sys
from gemmaios import cli

class Broken(dict):
    def values(self):
        raise RuntimeError("injected crash for the test")

cli.MODELS = Broken()
sys.argv = ["gemmaios", *sys.argv[1:]]
cli.main()
"""


class Broken(dict):
    def values(self):
        raise RuntimeError("injected crash for the test")


@pytest.fixture
def crash_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "crash-logs"
    monkeypatch.setenv(crash.CRASH_DIR_ENV, str(folder))
    monkeypatch.setenv(crash.DEBUG_ENV, "0")  # restored afterwards, also when --debug sets it
    return folder


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out + out.err


def run_cli(args: list[str], crash_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": TOOLKIT, crash.CRASH_DIR_ENV: str(crash_dir), "COLUMNS": "300",
               crash.DEBUG_ENV: "0", **env}
    return subprocess.run([sys.executable, "-c", CRASHING_CLI, *args], capture_output=True, text=True, env=environ,
                          timeout=120)


def only_log(folder: Path) -> Path:
    logs = sorted(folder.glob("gemmaios-crash-*.log"))
    assert len(logs) == 1, logs
    return logs[0]


def test_unexpected_error_prints_one_line_and_writes_the_traceback_to_a_log(crash_dir, monkeypatch, capsys):
    monkeypatch.setattr(cli, "MODELS", Broken())
    code, output = run_main(["models", "--json"], capsys)
    assert code == crash.CRASH_EXIT
    assert "Traceback" not in output and 'File "' not in output
    log = only_log(crash_dir)
    assert "gemmaios models failed unexpectedly: RuntimeError: injected crash for the test" in " ".join(output.split())
    assert str(log) in output.replace("\n", "")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: injected crash for the test" in text
    assert "in models" in text  # the frame that raised
    for fact in (f"gemmaios: {gemmaios.__version__}", "python: ", "platform: ", "torch: ", "typer: ",
                 "command line: gemmaios models --json"):
        assert fact in text, fact


def test_crash_log_falls_back_to_the_temp_folder(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the crash folder should be")
    monkeypatch.setenv(crash.CRASH_DIR_ENV, str(blocker / "crash"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(crash.tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(cli, "MODELS", Broken())
    code, output = run_main(["models"], capsys)
    assert code == crash.CRASH_EXIT
    log = only_log(tmp_path / "tmp")
    assert str(log) in output.replace("\n", "")


def test_debug_option_raises_instead_of_writing_a_log(crash_dir, monkeypatch, capsys):
    monkeypatch.setattr(cli, "MODELS", Broken())
    with pytest.raises(RuntimeError, match="injected crash"):
        cli.main(["--debug", "models"])
    assert not crash_dir.exists()


def test_crash_in_a_real_process_exits_70_with_the_log_path(tmp_path):
    result = run_cli(["models"], tmp_path / "logs")
    assert result.returncode == crash.CRASH_EXIT, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    log = only_log(tmp_path / "logs")
    assert str(log) in result.stderr.replace("\n", "")
    assert "RuntimeError: injected crash for the test" in log.read_text()


@pytest.mark.parametrize("how", [["--debug", "models"], ["models"]], ids=["--debug", "GEMMAIOS_DEBUG=1"])
def test_debug_shows_the_traceback_in_a_real_process(tmp_path, how):
    env = {} if how[0] == "--debug" else {crash.DEBUG_ENV: "1"}
    result = run_cli(how, tmp_path / "logs", **env)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "injected crash for the test" in result.stderr
    assert not (tmp_path / "logs").exists()


def test_named_errors_keep_message_and_hint(crash_dir, capsys):
    code, output = run_main(["build", "--model", "tiny", "--arch", "h99x"], capsys)
    assert code == 2
    assert "error: unknown architecture 'h99x'" in output and "→" in output
    assert not crash_dir.exists()


def test_a_crash_mid_step_leaves_no_half_written_files(tmp_path, tiny_checkpoint, crash_dir, monkeypatch, capsys):
    """An unforeseen error inside the tables step: finished steps stay recorded, the step's temp files
    are gone, build.json is valid, and the same command afterwards finishes the build."""
    out = tmp_path / "b"

    def broken_quantize(*args, **kwargs):
        raise RuntimeError("injected crash in the tables step")

    monkeypatch.setattr(tables.writer, "quantize_rows", broken_quantize)  # where the writer looks it up
    argv = ["tables", "--model", str(tiny_checkpoint.path), "--out", str(out)]
    code, output = run_main(argv, capsys)
    assert code == crash.CRASH_EXIT, output
    assert "while running step tables" in " ".join(output.split())
    assert "injected crash in the tables step" in only_log(crash_dir).read_text()
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["steps"]["checkpoint"]["status"] == "done" and "tables" not in manifest["steps"]
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "temp files left behind"
    assert not (out / "tables" / "embed_per_layer.i8").exists()

    monkeypatch.undo()
    monkeypatch.setenv(crash.CRASH_DIR_ENV, str(crash_dir))
    code, output = run_main(argv, capsys)
    assert code == 0, output
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["steps"]["tables"]["status"] == "done"


def test_a_crash_while_writing_the_manifest_keeps_the_old_one(tmp_path, tiny_checkpoint, crash_dir, monkeypatch,
                                                                capsys):
    out = tmp_path / "b"
    argv = ["tables", "--model", str(tiny_checkpoint.path), "--out", str(out)]
    assert run_main(argv, capsys)[0] == 0
    before = (out / "build.json").read_bytes()

    def dump_half_then_crash(data, fh, **kwargs):
        fh.write('{"schema": 1, "steps": {"half')
        fh.flush()
        raise RuntimeError("injected crash mid-write")

    with monkeypatch.context() as patch:
        patch.setattr(files.json, "dump", dump_half_then_crash)  # the manifest's writer (gemmaios.files)
        code, output = run_main([*argv, "--force"], capsys)
    assert code == crash.CRASH_EXIT, output
    assert (out / "build.json").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".build.json")], "half-written temp manifest left"


# `gemmaios models` as the program, after Core AI's runtime was loaded, with an atexit hook that tells
# whether Python's interpreter shutdown ran (it is where the runtime's threads abort the process).
CLI_AFTER_THE_RUNTIME = """
import atexit, sys
import coreai.runtime
from gemmaios import cli

atexit.register(lambda: print("interpreter shutdown ran", flush=True))
sys.argv = ["gemmaios", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize(("args", "code"), [(["models", "--json"], 0), (["build", "--arch", "h99x"], 2)])
def test_once_the_native_runtime_is_loaded_the_program_exits_without_interpreter_shutdown(tmp_path, args, code):
    """Interpreter shutdown ends a runtime thread still reaching for Python with pthread_exit, which
    aborts the process in Swift's unwinder (SIGABRT after a finished command; 9 of 40 runs of a
    `BundleRunner` script on a busy machine). The exit code and everything printed still arrive."""
    proc = subprocess.run([sys.executable, "-c", CLI_AFTER_THE_RUNTIME, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": TOOLKIT, "COLUMNS": "300"})
    assert proc.returncode == code, proc.stderr
    assert "interpreter shutdown ran" not in proc.stdout
    if code == 0:
        assert any(model["key"] == "e4b" for model in json.loads(proc.stdout)), proc.stdout
    else:
        assert "h99x" in proc.stdout + proc.stderr
    plain = subprocess.run([sys.executable, "-c", CLI_AFTER_THE_RUNTIME.replace("import coreai.runtime\n", ""),
                            *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": TOOLKIT, "COLUMNS": "300"})
    assert plain.returncode == code and "interpreter shutdown ran" in plain.stdout  # without it: a normal exit
