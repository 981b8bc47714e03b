"""Every CLI command, fed the mistakes a user makes: exit 1 or 2, a message naming the input and
what to do, and never a traceback (issue 19).

The commands come from the typer app itself; `test_every_command_has_cases` fails until a new
command has an entry in CASES. A case is the command line after the command name, with `{tiny}`
standing for a valid local checkpoint folder, plus the texts its message must contain (the input
it names). The files the cases name are made by `workspace` below; they are read relative to the
test's working folder. Cases prefer mistakes caught before any heavy work (conversion).

Each case runs in-process through `gemmaios.cli.main`, the real entry point with its last-resort
handler, so a case that reaches that handler (an unforeseen exception) fails too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gemmaios import cli, crash
from gemmaios.transcript import SCHEMA, write_transcript


@dataclass(frozen=True)
class Case:
    args: str
    mentions: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # environment variables set for this case


def C(args: str, *mentions: str, env: dict[str, str] | None = None) -> Case:  # noqa: N802 - reads as a table row
    return Case(args, mentions, tuple((env or {}).items()))


NO_USBMUXD = {"USBMUXD_SOCKET_ADDRESS": "/nonexistent/usbmuxd"}


# Mistakes in --model, for the commands that resolve the checkpoint first.
MODEL_MISTAKES = [
    C("--model /nonexistent/gemma", "/nonexistent/gemma", "no checkpoint folder", "not a Hugging Face id"),
    C("--model ./mistyped-folder", "./mistyped-folder", "no checkpoint folder"),
    C("--model mistyped", "mistyped", "no checkpoint folder"),
    C("--model a/b/c", "a/b/c", "Hugging Face id"),
    C("--model 'bad id/x y!'", "bad id/x y!", "Hugging Face id"),
    C("--model ''", "--model", "empty"),
    C("--model google/absent-model", "google/absent-model", "HF_HUB_OFFLINE"),
    C("--model afile.txt", "afile.txt", "is a file"),
    C("--model adir", "config.json", "missing"),
    C("--model ckpt_llama", "ckpt_llama", "'llama'", "not Gemma 4"),
    C("--model ckpt_badjson", "config.json", "not valid JSON"),
    C("--model ckpt_list", "config.json", "not the model's config"),
    C("--model ckpt_binary", "config.json", "not valid JSON"),
    C("--model ckpt_empty", "config.json", "not valid JSON"),
    C("--model ckpt_noweights", "ckpt_noweights", "safetensors"),
    C("--model ckpt_badindex", "model.safetensors.index.json"),
    C("--model ckpt_truncated", "model.safetensors", "truncated"),
]

OUT_MISTAKES = [
    C("--model {tiny} --out afile.txt", "afile.txt", "is a file"),
    C("--model {tiny} --out afile.txt/sub", "afile.txt/sub", "cannot create"),
    C("--model {tiny} --out build_badjson", "build.json", "not valid JSON"),
    C("--model {tiny} --out build_list", "build.json", "not a gemmaios manifest"),
    C("--model {tiny} --out build_binary", "build.json", "not valid JSON"),
    C("--model {tiny} --out build_manifestdir", "build.json", "not a file"),
]

CONFIG_MISTAKES = [
    C("--config missing.yaml", "missing.yaml", "does not exist"),
    C("--config bad.yaml", "bad.yaml", "not valid YAML"),
    C("--config list.yaml", "list.yaml", "mapping"),
    C("--config garbage.bin", "garbage.bin"),
    C("--config adir", "adir", "folder"),
    C("--config unknown_key.yaml", "unknown_key.yaml", "macc"),
    C("--config wrong_type.yaml", "wrong_type.yaml", "ssh_options"),
]

QUANT_MISTAKES = [
    C("--quant int3", "--quant", "int3"),
    C("--ple nope", "--ple", "nope"),
]

CONVERSION_MISTAKES = [
    *QUANT_MISTAKES,
    C("--head-quant int2", "--head-quant", "int2"),
    C("--target watch", "--target", "watch"),
    C("--kernel fast --target mac", "--kernel", "fast"),
    C("--kernel g8", "--kernel", "--target mac"),
    C("--max-context 0", "--max-context"),
    C("--max-context -5", "--max-context"),
    C("--max-context lots", "--max-context"),
]

BUILD_DIR_MISTAKES = [  # commands that work on an existing build folder
    C("--out missing_dir", "missing_dir", "build.json"),
    C("--out afile.txt", "afile.txt", "build.json"),
    C("", "--out", "build folder"),  # no --out and no ./build/*
    C("--out build_badjson", "build.json", "not valid JSON"),
    C("--out build_list", "build.json", "not a gemmaios manifest"),
]

TRANSCRIPT_MISTAKES = [  # the first argument of `score` / the runs of `report`
    C("missing.jsonl", "missing.jsonl", "does not exist"),
    C("adir", "adir"),
    C("empty.jsonl", "empty.jsonl", "empty"),
    C("bad.jsonl", "bad.jsonl"),
    C("garbage.bin", "garbage.bin"),
    C("wrong_shape.jsonl", "wrong_shape.jsonl", "JSON object"),
    C("afile.txt", "afile.txt"),
]

USAGE_MISTAKES = [C("--no-such-option", "--no-such-option"), C("surplus-argument", "surplus-argument")]

AB_MISTAKES = [  # `--ab OTHER` (issue 31), after `--out build_tiny` (a build of the tiny checkpoint, no bundle)
    C("--ab build_tiny", "--ab build_tiny", "same build folder"),
    C("--ab missing_dir", "missing_dir", "does not exist"),
    C("--ab afile.txt", "afile.txt", "is a file"),
    C("--ab adir", "adir", "build.json"),
    C("--ab build_other_model", "build_other_model", "different models"),
    C("--ab build_tiny_again", "build_tiny", "no converted bundle"),
    C("--ab build_ok", "build_ok", "checkpoint fingerprint"),
]

# One entry per CLI command. A new command gets a row here, e.g.
#     "run": [C("missing_dir", "missing_dir", "does not exist"), C("bundle_badmeta", "metadata.json"),
#             *USAGE_MISTAKES],
# reusing the lists above where the command shares their options, and files from `workspace`.
CASES: dict[str, list[Case]] = {
    "build": [*MODEL_MISTAKES, *OUT_MISTAKES, *[C(f"--model {{tiny}} {c.args}", *c.mentions) for c in CONFIG_MISTAKES],
              *[C(f"--model {{tiny}} {c.args}", *c.mentions) for c in CONVERSION_MISTAKES],
              C("--model {tiny} --arch h99x", "h99x", "gemmaios archs")],
    "convert": [*MODEL_MISTAKES, *OUT_MISTAKES[:2], *[C(f"--model {{tiny}} {c.args}", *c.mentions) for c in CONVERSION_MISTAKES]],
    "tables": [*MODEL_MISTAKES, *OUT_MISTAKES[:2], C("--model {tiny} --config bad.yaml", "bad.yaml")],
    "oracle": [
        *MODEL_MISTAKES, *OUT_MISTAKES[:2],
        C("--model {tiny} --prompts missing.yaml", "missing.yaml", "does not exist"),
        C("--model {tiny} --prompts bad.yaml", "bad.yaml", "not valid YAML"),
        C("--model {tiny} --prompts empty.yaml", "empty.yaml"),
        C("--model {tiny} --prompts list.yaml", "list.yaml", "mapping"),
        C("--model {tiny} --prompts garbage.bin", "garbage.bin"),
        C("--model {tiny} --prompts adir", "adir"),
        C("--model {tiny} --prompts no_prompts.yaml", "no_prompts.yaml", "prompts"),
        C("--model {tiny} --tokens 0", "--tokens"),
        C("--model {tiny} --top-k 1", "--top-k"),
        C("--model {tiny} --device warp-drive", "warp-drive", "--device"),
        C("--model {tiny} --device cuda", "cuda", "--device"),
        C("--model {tiny} --arch h99x", "h99x"),
    ],
    "app": [
        *MODEL_MISTAKES[:8], C("--model {tiny} --out afile.txt", "afile.txt"),
        C("--model {tiny} --bundle-location nowhere", "nowhere", "bundle location", "bundled, documents"),
        C("--model {tiny} --deployment-target 26.0", "26.0", "27"),
        C("--model {tiny} --deployment-target soon", "soon"),
        C("--model {tiny} --bundle-id 'not a bundle id'", "not a bundle id"),
        C("--model {tiny} --team-id 'X'", "X", "team"),
        C("--model {tiny} --config bad.yaml", "bad.yaml"),
    ],
    "compile": [
        C("--model /nonexistent/gemma", "/nonexistent/gemma"),
        C("--bundle missing_dir", "missing_dir"),
        C("--bundle afile.txt", "afile.txt"),
        C("--bundle adir", "adir", "metadata.json"),
        C("--bundle bundle_badmeta", "metadata.json"),
        C("--bundle bundle_listmeta", "metadata.json"),
        C("--bundle bundle_noasset", "bundle_noasset", ".aimodel"),
        C("--bundle bundle_badmeta --arch h99x", "h99x"),
        C("--model {tiny} --out afile.txt", "afile.txt"),
        C("--model {tiny} --out build_badjson", "build.json"),
        C("--model {tiny} --config bad.yaml", "bad.yaml"),
    ],
    "report": [
        *TRANSCRIPT_MISTAKES,
        C("", "no runs"),
        C("good.jsonl --fail-under decode=fast", "decode=fast", "--fail-under"),
        C("good.jsonl --fail-under nonsense", "nonsense", "--fail-under"),
        C("good.jsonl --require-oracle always", "always", "--require-oracle"),
        C("good.jsonl --bandwidth -5", "--bandwidth", "-5"),
        C("good.jsonl --oracle missing.json", "missing.json"),
        C("good.jsonl --oracle bad.json", "bad.json"),
        C("good.jsonl --bundle missing_dir", "missing_dir"),
        C("good.jsonl --bundle afile.txt", "afile.txt"),
        C("--compare good.jsonl missing.jsonl", "missing.jsonl"),
        C("--compare good.jsonl", "--compare"),
        C("good.jsonl --out afile.txt", "afile.txt"),
        C("good.jsonl --junit adir", "adir"),
    ],
    "score": [
        *TRANSCRIPT_MISTAKES,
        C("", "transcript"),
        C("good.jsonl --against missing.jsonl", "missing.jsonl", "does not exist"),
        C("good.jsonl --against bad.jsonl", "bad.jsonl"),
        C("good.jsonl --oracle missing.json", "missing.json"),
        C("good.jsonl --oracle bad.json", "bad.json", "not valid JSON"),
        C("good.jsonl --oracle list.json", "list.json"),
        C("good.jsonl --oracle empty.json", "empty.json", "not valid JSON"),
        C("good.jsonl --oracle adir", "adir"),
        C("good.jsonl --build adir", "adir", "oracle"),
        C("good.jsonl --build afile.txt", "afile.txt"),
        C("good.jsonl --build build_ok --oracle oracle.json", "--build", "--oracle"),
        C("good.jsonl --near-tie -1", "--near-tie"),
        C("good.jsonl --model {tiny}", "--model", "--oracle"),
    ],
    "deploy": [*BUILD_DIR_MISTAKES, C("--out build_ok --ipa missing.ipa", "--ipa", "missing.ipa"),
               C("--model /nonexistent/gemma", "/nonexistent/gemma"), C("--model {tiny} --arch h99x", "h99x"),
               C("--model {tiny} --team-id X", "X", "team"), C("--model {tiny} --config bad.yaml", "bad.yaml"),
               C("--model {tiny} --bundle-location nowhere", "nowhere", "bundled, documents"),
               C("--out build_ok --trials 0", "--trials"),
               C("--out build_ok --ipa afile.txt --team-id ABCDE12345", "--ipa", "--team-id"),
               *[C(f"--out build_tiny --bench {c.args}", *c.mentions) for c in AB_MISTAKES[:5]],
               C("--out build_tiny --ab build_tiny_again", "--ab", "--bench")],
    "sign": [C("--model /nonexistent/gemma", "/nonexistent/gemma"), C("--model {tiny} --team-id X", "X", "team"),
             C("--model {tiny} --out afile.txt", "afile.txt"), C("--model {tiny} --config bad.yaml", "bad.yaml")],
    "farm": [C("run --build missing_dir --pool P --yes", "missing_dir", "no signed .ipa"),
             C("run --build build_ok --ipa missing.ipa --pool P --yes", "missing.ipa"),
             C("run --build build_ok --ipa afile.txt --pool P --yes", "afile.txt", "not an .ipa"),
             C("status --build adir", "adir", "no recorded farm run"),
             C("fetch --build adir", "adir", "no recorded farm run"), *USAGE_MISTAKES],
    "bench": [*BUILD_DIR_MISTAKES, C("--out build_ok --xctest", "--destination"),
              C("--out build_ok --trials 0", "--trials"),
              C("--out build_ok --timeout -5", "--timeout"), C("--out build_ok --timeout 0", "--timeout"),
              *[C(f"--out build_tiny {c.args}", *c.mentions) for c in AB_MISTAKES],
              C("--out build_tiny --ab build_tiny_again --ab-kv", "--ab-kv", "one A/B at a time"),
              C("--out build_tiny --ab build_tiny_again --bundle-id a.b", "--bundle-id"),
              C("--out build_tiny --ab build_tiny_again --xctest", "--xctest")],
    "doctor": [*CONFIG_MISTAKES, *USAGE_MISTAKES],
    "devices": [*USAGE_MISTAKES, C("", "/nonexistent/usbmuxd", "usbmuxd", env=NO_USBMUXD),
                C("--json", "/nonexistent/usbmuxd", env=NO_USBMUXD)],
    "run": [
        C("--bundle missing_dir", "missing_dir", "does not exist"),
        C("--bundle afile.txt", "afile.txt", "is a file"),
        C("--bundle adir", "adir", "metadata.json"),
        C("--bundle bundle_badmeta", "metadata.json"),
        C("--bundle bundle_listmeta", "metadata.json"),
        C("--bundle bundle_noasset", "bundle_noasset", "metadata.json"),
        C("--out afile.txt", "afile.txt", "build.json"),
        C("--out adir", "adir", "build.json"),
        C("--out build_ok", "build_ok", "no bundle"),
        C("--out build_ok --tokens 0", "--tokens"),
        C("--out build_ok --bench --trials 0", "--trials"),
        *[C(f"--out build_tiny --bench --trials 2 {c.args}", *c.mentions) for c in AB_MISTAKES[:5]],
        C("--out build_tiny --bench --trials 1 --ab build_tiny_again", "--trials", "turns"),
        C("--out build_tiny --ab build_tiny_again", "--ab", "--bench"),
        *USAGE_MISTAKES,
    ],
    "tiny-train": [C("--steps 5", "--steps"), C("--out afile.txt", "afile.txt", "is a file"),
                   C("--device cuda", "--device cuda", "--vision"), C("--vision --device tpu", "tpu", "not cpu or cuda"),
                   *USAGE_MISTAKES],
    "recipes": USAGE_MISTAKES,
    "sensitivity": [C("--bits 5", "5"), C("--bits two", "two"), C("--mode sideways", "sideways", "--mode"),
                    C("--write-recipe plan.yaml", "--budget-bits"), C("--group 4", "--group"),
                    C("--prompts nothing.txt", "nothing.txt"), *MODEL_MISTAKES, *USAGE_MISTAKES],
    "models": USAGE_MISTAKES,
    "archs": USAGE_MISTAKES,
}

# What to do: a named error's hint (→), click's pointer to --help, or click's own self-explaining usage line.
_ADVICE = re.compile(r"→|--help|requires \d+ arguments")
_SQUASH = re.compile(r"[\s│╭╮╰╯─┃━|]+")


def _squash(text: str) -> str:
    """Whitespace and box-drawing removed: rich wraps and frames long messages."""
    return _SQUASH.sub("", text)


def cli_commands() -> list[str]:
    return sorted(typer.main.get_command(cli.app).commands)


def all_cases() -> list[tuple[str, Case]]:
    return [(command, case) for command in sorted(CASES) for case in CASES[command]]


def test_every_command_has_cases():
    commands = set(cli_commands())
    missing = sorted(commands - set(CASES))
    assert not missing, f"commands without bad-input cases: {missing}; add an entry to CASES in {__file__}"
    stale = sorted(set(CASES) - commands)
    assert not stale, f"CASES names commands the CLI no longer has: {stale}"
    assert all(CASES[c] for c in commands), "every command needs at least one case"


def _header() -> dict:
    return {"type": "header", "schema": SCHEMA, "run_id": "r1", "started_at": "2026-11-24T10:00:00Z",
            "device": {"product_type": "iPhone18,2", "arch": "h18p"}, "bundle": {"name": "b"},
            "prompt_set": {"name": "builtin", "sha256": "x", "count": 1}, "trials": 1, "max_new_tokens": 4}


def _prompt() -> dict:
    return {"type": "prompt", "trial": 0, "index": 0, "prompt_id": "p0", "prompt_ids": [2, 5, 9],
            "generated_ids": [7, 8, 9, 1], "prefill_tokens": 3, "prefill_seconds": 0.5,
            "decode_tokens": 3, "decode_seconds": 0.25, "thermal_state": "nominal"}


def _checkpoint_manifest(fingerprint: str, model: str) -> str:
    """A build.json whose checkpoint step names a model (no bundle yet): the `--ab` cases' build folders."""
    return json.dumps({"schema": 1, "steps": {"checkpoint": {"status": "done",
                                                             "inputs": {"checkpoint": fingerprint, "model": model}}}})


def _config(model_type: str = "gemma4_text") -> str:
    return json.dumps({"model_type": model_type, "num_hidden_layers": 2})


@pytest.fixture
def workspace(tmp_path) -> Path:
    """The files the cases name, each a typical mistake (see the names), in a fresh folder per case."""
    root = tmp_path / "work"
    garbage = bytes(range(128, 256)) * 4  # not UTF-8, not JSON, not YAML
    files = {
        "afile.txt": "just some text\n",
        "empty.jsonl": "", "empty.yaml": "", "empty.json": "",
        "bad.json": '{"schema": "gemmaios.oracle/1",', "list.json": "[1, 2]\n",
        "bad.yaml": "prompts: [unclosed\n", "list.yaml": "- a\n- b\n", "no_prompts.yaml": "name: x\n",
        "unknown_key.yaml": "macc: me@mac\n", "wrong_type.yaml": "ssh_options: -p 2222\n",
        "bad.jsonl": '{"type": "header", "schema"\n', "wrong_shape.jsonl": "[1, 2, 3]\n",
        "ckpt_llama/config.json": _config("llama"), "ckpt_badjson/config.json": '{"model_type": ',
        "ckpt_list/config.json": "[]", "ckpt_empty/config.json": "", "ckpt_noweights/config.json": _config(),
        "ckpt_badindex/config.json": _config(), "ckpt_badindex/model.safetensors.index.json": '{"weight_map": ',
        "ckpt_truncated/config.json": _config(), "ckpt_truncated/model.safetensors": "\x10\x00\x00\x00\x00\x00\x00\x00{",
        "build_badjson/build.json": "{", "build_list/build.json": "[]",
        "build_ok/build.json": json.dumps({"schema": 1, "steps": {}}),
        "bundle_badmeta/metadata.json": "{", "bundle_listmeta/metadata.json": "[]",
        "bundle_noasset/metadata.json": json.dumps({"kind": "llm", "assets": {"main": "model.aimodel"}}),
        "oracle.json": "{}",
        "build_tiny/build.json": _checkpoint_manifest("a" * 64, "tiny"),
        "build_tiny_again/build.json": _checkpoint_manifest("a" * 64, "tiny"),
        "build_other_model/build.json": _checkpoint_manifest("b" * 64, "google/gemma-4-E2B-it"),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "garbage.bin").write_bytes(garbage)
    (root / "ckpt_binary").mkdir()
    (root / "ckpt_binary" / "config.json").write_bytes(garbage)
    (root / "build_binary").mkdir()
    (root / "build_binary" / "build.json").write_bytes(garbage)
    (root / "build_manifestdir" / "build.json").mkdir(parents=True)
    (root / "adir").mkdir()
    write_transcript(root / "good.jsonl", [_header(), _prompt(), {"type": "footer", "completed": True}])
    return root


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """`gemmaios <argv>` in-process through the real entry point: (exit status, stdout + stderr)."""
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, an empty Hugging Face cache and crash logs in a folder the test can see."""
    from huggingface_hub import constants

    hub_cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv(crash.CRASH_DIR_ENV, str(tmp_path / "crash"))
    monkeypatch.setenv(crash.DEBUG_ENV, "0")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))  # no user config leaks in
    return tmp_path / "crash"


@pytest.mark.parametrize(("command", "case"), all_cases(),
                         ids=[f"{cmd}[{case.args or '<none>'}]" for cmd, case in all_cases()])
def test_bad_input_gets_a_named_error(command, case, workspace, tiny_checkpoint, offline, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    for name, value in case.env:
        monkeypatch.setenv(name, value)
    argv = [command, *shlex.split(case.args.replace("{tiny}", str(tiny_checkpoint.path)))]
    code, output = run_main(argv, capsys)
    shown = f"gemmaios {shlex.join(argv)} → exit {code}:\n{output}"
    assert "Traceback" not in output and 'File "' not in output, shown
    assert not (offline.exists() and any(offline.iterdir())), f"reached the crash handler: {shown}"
    assert code in (1, 2), shown
    squashed = _squash(output)
    for needle in case.mentions:
        assert _squash(needle) in squashed, f"message does not name {needle!r}: {shown}"
    assert _ADVICE.search(output), f"no advice on what to do: {shown}"


# The three mistakes issue 19 reported, through the typer app as the old tests drove it (CliRunner):
# each printed a raw traceback before (HFValidationError, FileExistsError, FileNotFoundError).
runner = CliRunner()


def _said(result) -> str:
    return " ".join(result.output.split())


def test_mistyped_model_folder_says_the_folder_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.app, ["build", "--model", "/nonexistent"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit | None), result.output
    said = _said(result)
    assert "there is no checkpoint folder '/nonexistent' (no such file or folder)" in said
    assert "'/nonexistent' is not a Hugging Face id either" in said
    assert "HFValidationError" not in said
    assert not (tmp_path / "build").exists(), "a build folder was made for a model that cannot exist"


def test_a_file_as_build_folder_is_a_named_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    result = runner.invoke(cli.app, ["build", "--model", "tiny", "--out", "afile"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit | None), result.output
    said = _said(result)
    assert "the build folder afile is a file" in said and "→ pass --out a new folder" in said
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_a_missing_transcript_is_a_named_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.app, ["score", "nothing.jsonl"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit | None), result.output
    said = _said(result)
    assert "transcript nothing.jsonl does not exist" in said and "→ check the path" in said


@pytest.mark.parametrize("argv", [["build", "--model", "/nonexistent"], ["build", "--model", "tiny", "--out", "afile"],
                                  ["score", "nothing.jsonl"]], ids=["model", "out", "score"])
def test_issue_cases_in_a_real_process(argv, tmp_path):
    """The same three as a user runs them: `python -m gemmaios.cli`, its exit status and its stderr."""
    (tmp_path / "afile").write_text("not a folder")
    toolkit = str(Path(cli.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": toolkit, "HF_HUB_OFFLINE": "1", crash.CRASH_DIR_ENV: str(tmp_path / "crash"),
           crash.DEBUG_ENV: "0"}
    result = subprocess.run([sys.executable, "-m", "gemmaios.cli", *argv], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output and "error:" in output and "→" in output
    assert not (tmp_path / "crash").exists()
