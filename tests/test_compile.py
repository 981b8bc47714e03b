"""The compile step: argument building, metadata rewriting, pending on Linux, resume by pick-up,
staleness, the SSH path through the pipeline and the CLI. The convert step is built in
parallel, so these tests write a minimal bundle (tests/fixture_bundle.py) and record it as
convert's output in build.json, the way convert records it (docs/contracts.md)."""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from devicebuild import copy_build
from fixture_bundle import NAME, make_bundle
from loopback_sshd import STANDIN_BIN
from rich.console import Console
from typer.testing import CliRunner

from gemmaios.archs import ARCHS, arch_for_product_type, get_arch
from gemmaios.cli import app
from gemmaios.compile import (
    CompileError,
    CompileStep,
    aimodelc_name,
    check_aimodelc,
    compile_argv,
    manual_command,
    point_metadata_at,
)
from gemmaios.errors import RegistryError
from gemmaios.pipeline import (
    DONE,
    PENDING,
    SKIPPED,
    BuildContext,
    BuildOptions,
    Pipeline,
    StepRecord,
    outputs_intact,
    sha256_file,
)
from gemmaios.steprecords import ConvertDetails

H18P = get_arch("h18p")
ROOT = Path(__file__).resolve().parents[1]
not_on_mac = pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS the step runs xcrun itself")


def seed_convert(build_dir: Path, options: BuildOptions) -> Path:
    """A bundle in build_dir plus convert's manifest record of it (fingerprint, outputs, details)."""
    ctx = BuildContext(build_dir, options, console=Console(file=io.StringIO()))
    rel = f"bundle/{NAME}"
    bundle = ctx.path(rel)
    if not bundle.exists():
        make_bundle(bundle)
    outputs = {}
    for p in sorted(bundle.rglob("*")):
        if p.is_file():
            outputs[str(p.relative_to(ctx.build_dir))] = {
                "sha256": sha256_file(p), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
    details = ConvertDetails(bundle_dir=rel, name=NAME, aimodel=f"{rel}/{NAME}.aimodel",
                             metadata=f"{rel}/metadata.json", quant="int4", head_quant="int4", ple="provider",
                             max_context=64)
    ctx.manifest.record("convert", StepRecord(status=DONE, fingerprint="convert-fp-" + outputs[
        f"{rel}/{NAME}.aimodel/main.mlirb"]["sha256"][:8], inputs={}, outputs=outputs, details=details))
    return bundle


def run_compile(build_dir: Path, options: BuildOptions):
    ctx = BuildContext(build_dir, options, console=Console(file=io.StringIO()))
    [report] = Pipeline([CompileStep()]).run(ctx)
    return ctx, report


def main_asset(bundle: Path, name: str = "metadata.json") -> str:
    return json.loads((bundle / name).read_text())["assets"]["main"]


# -- arguments and registry ------------------------------------------------------------------

def test_command_is_the_run_contract_with_output_and_platform_from_the_registry(tmp_path):
    assert compile_argv("m.aimodel", "out", H18P) == [
        "xcrun", "coreai-build", "compile", "m.aimodel", "--output", "out", "--platform", "iOS",
        "--preferred-compute", "gpu", "--architecture", "h18p", "--expect-frequent-reshapes"]
    assert compile_argv("m.aimodel", "out", get_arch("h16c"))[7] == "macOS"
    assert aimodelc_name("gemma4_x.aimodel", H18P) == "gemma4_x.h18p.aimodelc"
    cmd = manual_command(tmp_path / "my bundle", "m.aimodel", H18P)
    assert cmd.startswith(f"cd '{tmp_path}/my bundle' && xcrun coreai-build compile m.aimodel --output . ")


def test_registry_entries_name_their_source_and_map_product_types():
    assert {"h18p", "h17p", "h16p", "h16c"} <= set(ARCHS)
    for arch in ARCHS.values():
        assert arch.source and arch.platform in ("iOS", "macOS")
    assert arch_for_product_type("iPhone18,1") is H18P
    assert arch_for_product_type("iPhone1,1") is None
    assert H18P.entitled_limit_gb == 6.4 and H18P.bandwidth_gbps is None  # no public peak figure
    listed = json.loads(CliRunner().invoke(app, ["archs", "--json"]).stdout)
    assert [a["name"] for a in listed] == list(ARCHS)
    assert listed[0]["devices"] == ["iPhone18,1", "iPhone18,2"] and "seed 002" in listed[0]["source"]


def test_bad_arch_lists_the_valid_ones():
    with pytest.raises(RegistryError) as err:
        get_arch("h18")
    message = str(err.value)
    assert "did you mean 'h18p'" in message
    assert all(name in message for name in ARCHS)
    result = CliRunner().invoke(app, ["build", "--model", "tiny", "--arch", "h99z", "--out", "unused"])
    assert result.exit_code == 2
    assert "unknown architecture 'h99z'" in result.output and "h18p" in result.output and "h16c" in result.output


# -- metadata and asset checks ---------------------------------------------------------------

def test_metadata_points_at_the_aimodelc_and_the_mac_copy_keeps_the_aimodel(tmp_path):
    bundle = make_bundle(tmp_path / NAME)
    before = json.loads((bundle / "metadata.json").read_text())
    for _ in range(2):  # idempotent
        point_metadata_at(bundle, f"{NAME}.aimodel", f"{NAME}.h18p.aimodelc", H18P)
    ios, mac = (json.loads((bundle / n).read_text()) for n in ("metadata.json", "metadata.mac.json"))
    assert ios["assets"]["main"] == f"{NAME}.h18p.aimodelc"
    assert ios["user_data"] == {"quant": "int4", "aot_architecture": "h18p"}
    assert mac == before
    assert {k: v for k, v in ios.items() if k not in ("assets", "user_data")} == \
        {k: v for k, v in before.items() if k not in ("assets", "user_data")}


def _asset(path: Path, producer: str, program: str) -> Path:
    path.mkdir(parents=True)
    (path / "metadata.json").write_text(json.dumps({"producer": producer}))
    (path / program).write_text("x")
    return path


def test_check_aimodelc_refuses_what_is_not_a_compiled_asset_for_the_arch(tmp_path):
    with pytest.raises(CompileError, match="no metadata.json"):
        check_aimodelc(tmp_path / "missing.aimodelc", H18P)
    with pytest.raises(CompileError, match="not produced by coreai-build"):
        check_aimodelc(_asset(tmp_path / "a.aimodelc", "coreai-core 1.0.0b3", "main-h18p.mlirb"), H18P)
    with pytest.raises(CompileError, match=r"not compiled for h18p \(found main-h17p.mlirb\)"):
        check_aimodelc(_asset(tmp_path / "b.aimodelc", "coreai-build-3600.67.5.8.1", "main-h17p.mlirb"), H18P)
    info = check_aimodelc(_asset(tmp_path / "c.aimodelc", "coreai-build-3600.67.5.8.1", "main-h18p.mlirb"), H18P)
    assert info.producer == "coreai-build-3600.67.5.8.1"


# -- the step: pending, resume, staleness, SSH -------------------------------------------------

@not_on_mac
def test_pending_without_a_mac_then_resume_from_the_printed_command(tmp_path):
    build = tmp_path / "build"
    options = BuildOptions(model="tiny", arch="h18p")
    bundle = seed_convert(build, options)

    ctx, report = run_compile(build, options)
    assert report.status == PENDING
    assert report.command == manual_command(bundle, f"{NAME}.aimodel", H18P)
    assert "--platform iOS --preferred-compute gpu --architecture h18p --expect-frequent-reshapes" in report.command
    assert ctx.manifest.get("compile").details.command == report.command
    assert main_asset(bundle) == f"{NAME}.aimodel"  # untouched

    # The user runs exactly that command on a Mac (here: the stand-in on PATH) and copies the result back.
    env = {**os.environ, "PATH": f"{STANDIN_BIN}:{os.environ['PATH']}"}
    subprocess.run(report.command, shell=True, check=True, env=env, capture_output=True)
    target = bundle / f"{NAME}.h18p.aimodelc"
    assert target.is_dir()

    ctx, report = run_compile(build, options)
    assert report.status == DONE
    record = ctx.manifest.get("compile")
    assert record.details.picked_up is True
    assert record.details.aimodelc == f"bundle/{NAME}/{NAME}.h18p.aimodelc"
    assert record.tools["coreai-build"] == "coreai-build-0.0-gemmaios-test-stand-in"
    assert main_asset(bundle) == target.name and main_asset(bundle, "metadata.mac.json") == f"{NAME}.aimodel"
    # convert's record of metadata.json was re-stamped: the next build does not re-convert.
    assert outputs_intact(ctx.build_dir, ctx.manifest.get("convert").outputs)

    _, report = run_compile(build, options)
    assert report.status == SKIPPED


@not_on_mac
def test_an_aimodelc_compiled_from_an_older_aimodel_is_not_reused(tmp_path):
    build = tmp_path / "build"
    options = BuildOptions(model="tiny", arch="h18p")
    bundle = seed_convert(build, options)
    target = bundle / f"{NAME}.h18p.aimodelc"
    _asset(target, "coreai-build-3600.67.5.8.1", "main-h18p.mlirb")
    assert run_compile(build, options)[1].status == DONE

    # convert runs again with new weights: new .aimodel, metadata back on the .aimodel.
    (bundle / f"{NAME}.aimodel" / "main.mlirb").write_bytes(os.urandom(4096))
    (bundle / "metadata.json").write_text((bundle / "metadata.mac.json").read_text())
    seed_convert(build, options)
    ctx, report = run_compile(build, options)
    assert report.status == PENDING
    assert not target.exists()


def _ssh_options(mac, tmp_path) -> BuildOptions:
    return BuildOptions(model="tiny", arch="h18p", mac=mac.target,
                        extra={"ssh_options": mac.ssh_options, "mac_workdir": str(tmp_path / "remote")})


def test_step_compiles_over_ssh_and_records_tool_and_command(loopback_mac, tmp_path):
    build = tmp_path / "build"
    options = _ssh_options(loopback_mac, tmp_path)
    bundle = seed_convert(build, options)
    calls_before = len(loopback_mac.calls())

    ctx, report = run_compile(build, options)
    assert report.status == DONE, report.message
    record = ctx.manifest.get("compile")
    d = record.details
    assert d.host == loopback_mac.target and d.picked_up is False
    assert d.command.startswith(f"xcrun coreai-build compile {tmp_path}/remote/job-")
    assert d.command.endswith("--platform iOS --preferred-compute gpu --architecture h18p "
                                 "--expect-frequent-reshapes")
    assert d.tool_version.startswith("coreai-build-0.0-gemmaios-test-stand-in")
    assert record.tools["coreai-build"] == d.tool_version
    assert main_asset(bundle) == f"{NAME}.h18p.aimodelc"
    assert f"bundle/{NAME}/{NAME}.h18p.aimodelc/main-h18p.mlirb" in record.outputs
    argv = [c["argv"] for c in loopback_mac.calls()[calls_before:]]
    assert argv[0][:2] == ["coreai-build", "compile"] and argv[1] == ["coreai-build", "--version"]
    assert list((tmp_path / "remote").iterdir()) == []
    assert outputs_intact(ctx.build_dir, ctx.manifest.get("convert").outputs)

    # convert runs again and writes the same .aimodel (metadata back on it): nothing to recompile.
    (bundle / "metadata.json").write_text((bundle / "metadata.mac.json").read_text())
    seed_convert(build, options)
    calls_before = len(loopback_mac.calls())
    ctx, report = run_compile(build, options)
    assert report.status == DONE and report.message.startswith("reused")
    assert len(loopback_mac.calls()) == calls_before
    assert main_asset(bundle) == f"{NAME}.h18p.aimodelc"
    assert ctx.manifest.get("compile").details.host == loopback_mac.target


def test_failed_remote_compile_fails_the_step_with_the_tool_output(loopback_mac, tmp_path):
    build = tmp_path / "build"
    options = _ssh_options(loopback_mac, tmp_path)
    bundle = seed_convert(build, options)
    (bundle / f"{NAME}.aimodel" / "FAIL").write_text("")  # the stand-in fails on this input
    seed_convert(build, options)
    ctx, report = run_compile(build, options)
    assert report.status == "failed"
    assert "exit 1" in report.message and "asks the stand-in to fail" in report.message
    assert main_asset(bundle) == f"{NAME}.aimodel"
    assert not (bundle / f"{NAME}.h18p.aimodelc").exists()


def test_cli_compile_of_a_bundle_folder_over_ssh(loopback_mac, tmp_path):
    bundle = make_bundle(tmp_path / NAME)
    config = tmp_path / "gemmaios.yaml"
    config.write_text(yaml.safe_dump({"mac": loopback_mac.target, "ssh_options": loopback_mac.ssh_options,
                                      "mac_workdir": str(tmp_path / "remote")}))
    result = CliRunner().invoke(app, ["compile", "--bundle", str(bundle), "--arch", "h18p", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert main_asset(bundle) == f"{NAME}.h18p.aimodelc"
    assert (bundle / f"{NAME}.h18p.aimodelc" / "main-h18p.mlirb").is_file()

    # Without a Mac: the exact command to run by hand; run again after that, it picks the asset up.
    other = make_bundle(tmp_path / "other" / NAME)
    args = ["compile", "--bundle", str(other), "--arch", "h18p"]
    if platform.system() != "Darwin":
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "needs macOS" in result.output
        assert f"compile {NAME}.aimodel --output . --platform iOS" in " ".join(result.output.split())
    (other / f"{NAME}.h18p.aimodelc").mkdir()
    (other / f"{NAME}.h18p.aimodelc" / "metadata.json").write_text('{"producer": "coreai-build-3600.67.5.8.1"}')
    (other / f"{NAME}.h18p.aimodelc" / "main-h18p.mlirb").write_text("x")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "picked up" in result.output
    assert main_asset(other) == f"{NAME}.h18p.aimodelc"


@not_on_mac
def test_gemmaios_build_reports_pending_then_completes_with_mac(loopback_mac, tiny_build, tmp_path):
    """`gemmaios build --arch h18p --model tiny`, as a user runs it (a subprocess), in a copy of the
    session's tiny build: the bundle steps are done, compile waits for a Mac, then runs on one."""
    out = copy_build(tiny_build.path, tmp_path / "b")
    cli = [sys.executable, "-m", "gemmaios.cli", "build", "--model", "tiny", "--arch", "h18p", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "toolkit"), "COLUMNS": "200"}

    first = subprocess.run(cli, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "needs macOS" in first.stderr and "compile is pending" in first.stderr
    assert "xcrun coreai-build compile" in first.stderr and "--architecture h18p" in first.stderr
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["steps"]["checkpoint"]["status"] == DONE
    assert manifest["steps"]["compile"]["status"] == PENDING

    # --mac names the host; the YAML config carries how to reach it (port, key, known_hosts).
    config = tmp_path / "gemmaios.yaml"
    config.write_text(yaml.safe_dump({"ssh_options": loopback_mac.ssh_options, "mac_workdir": str(tmp_path / "r")}))
    with_mac = [*cli, "--mac", loopback_mac.target, "--config", str(config)]
    second = subprocess.run(with_mac, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    steps = json.loads((out / "build.json").read_text())["steps"]
    assert steps["compile"]["status"] == DONE and steps["compile"]["details"]["host"] == loopback_mac.target
    bundle = out / steps["convert"]["details"]["bundle_dir"]
    assert main_asset(bundle) == Path(steps["compile"]["details"]["aimodelc"]).name
    assert (out / steps["compile"]["details"]["aimodelc"]).is_dir()

    # `gemmaios compile --force` compiles again rather than reusing the asset in place.
    calls = len(loopback_mac.calls())
    forced = subprocess.run([*with_mac[:3], "compile", *with_mac[4:], "--force"], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert [c["argv"][1] for c in loopback_mac.calls()[calls:]] == ["compile", "--version"]


def test_encoder_assets_are_pointed_at_like_the_decoder(tmp_path):
    """An E2B/E4B bundle with --vision --audio: both encoder assets' .aimodelc on the iPhone side,
    their .aimodel in metadata.mac.json; audio_source/vision_source name the assets to compile."""
    from gemmaios import contract as c
    from gemmaios.compile import audio_source, vision_source

    bundle = make_bundle(tmp_path / NAME)
    meta = json.loads((bundle / "metadata.json").read_text())
    meta.setdefault("gemmaios", {})[c.VISION_METADATA_KEY] = {c.VISION_ASSET_FIELD: f"{NAME}.vision.aimodel"}
    meta["gemmaios"][c.AUDIO_METADATA_KEY] = {c.AUDIO_ASSET_FIELD: f"{NAME}.audio.aimodel"}
    (bundle / "metadata.json").write_text(json.dumps(meta))
    assert audio_source(bundle) == f"{NAME}.audio.aimodel" and vision_source(bundle) == f"{NAME}.vision.aimodel"
    point_metadata_at(bundle, f"{NAME}.aimodel", f"{NAME}.h18p.aimodelc", H18P,
                      (f"{NAME}.vision.aimodel", f"{NAME}.vision.h18p.aimodelc"),
                      (f"{NAME}.audio.aimodel", f"{NAME}.audio.h18p.aimodelc"))
    ios, mac = (json.loads((bundle / n).read_text())["gemmaios"] for n in ("metadata.json", "metadata.mac.json"))
    assert ios[c.AUDIO_METADATA_KEY][c.AUDIO_ASSET_FIELD] == f"{NAME}.audio.h18p.aimodelc"
    assert mac[c.AUDIO_METADATA_KEY][c.AUDIO_ASSET_FIELD] == f"{NAME}.audio.aimodel"
    assert ios[c.VISION_METADATA_KEY][c.VISION_ASSET_FIELD] == f"{NAME}.vision.h18p.aimodelc"
