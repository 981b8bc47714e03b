"""The sign step (xcodebuild archive + export with development signing) and `gemmaios deploy` as the
whole job, against the loopback SSH "Mac" (tests/loopback_sshd.py) whose PATH holds the labelled
stand-ins tests/standin_bin/xcrun and tests/standin_bin/xcodebuild, and the device simulator
(tests/devicesim) through the real pymobiledevice3 client.
"""

from __future__ import annotations

import io
import json
import os
import platform
import plistlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml
from device_helpers import flat
from devicebuild import BUNDLE_ID, copy_build
from devicesim import SimDevice
from loopback_sshd import STANDIN_BIN, CorruptingSSHRunner
from rich.console import Console
from typer.testing import CliRunner

from gemmaios import contract
from gemmaios import device as dev
from gemmaios.cli import app as cli_app
from gemmaios.errors import NeedsMacOS
from gemmaios.pipeline import DONE, PENDING, BuildContext, BuildOptions, Pipeline
from gemmaios.runners import SSHRunner, ToolchainError
from gemmaios.sign import (
    EXPORT_METHOD,
    BadIpa,
    KeychainLocked,
    MissingTeamId,
    NoDeveloperAccount,
    NoProvisioningProfile,
    SignStep,
    archive_argv,
    check_ipa,
    export_argv,
    export_options,
    manual_command,
    sign_app,
)
from gemmaios.steps import step_names

TEAM = "ABCDE12345"
XCODEBUILD = STANDIN_BIN / "xcodebuild"
UDID = "00008150-000A1B2C3D4E5F60"
not_on_mac = pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS the step runs xcodebuild itself")


@pytest.fixture(scope="module")
def signable(tiny_app_builds, tmp_path_factory, engine_checkout) -> Path:
    """The session's tiny documents build with its engine package prepared (the project resolves)."""
    build = copy_build(tiny_app_builds[contract.PUSHED_TO_DOCUMENTS], tmp_path_factory.mktemp("signable") / "build")
    options = _options(build)
    options.extra["app"] = {**options.extra["app"], "engine_source": engine_checkout}
    ctx = BuildContext(build, options, console=Console(file=io.StringIO()))
    from gemmaios.app import AppStep

    [report] = Pipeline([AppStep()]).run(ctx)
    assert report.status == DONE, report.message
    assert ctx.manifest.get("app").details.engine.status == "ready"
    return build


def _options(build: Path, **kw) -> BuildOptions:
    from gemmaios.fulldeploy import options_from_manifest

    options = options_from_manifest(build)
    for key, value in kw.items():
        setattr(options, key, value)
    return options


def project_of(build: Path) -> Path:
    return build / json.loads((build / "build.json").read_text())["steps"]["app"]["details"]["project"]


def run_standin(*argv, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(XCODEBUILD), *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})})


# ---- the commands ---------------------------------------------------------------------------------

def test_commands_and_export_options_are_the_development_signing_ones():
    assert archive_argv("A/A.xcodeproj", "A", "a.xcarchive", TEAM) == [
        "xcodebuild", "-project", "A/A.xcodeproj", "-scheme", "A", "-configuration", "Release",
        "-destination", "generic/platform=iOS", "-archivePath", "a.xcarchive", "archive",
        "-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={TEAM}"]
    assert export_argv("a.xcarchive", "E.plist", "out") == [
        "xcodebuild", "-exportArchive", "-archivePath", "a.xcarchive", "-exportOptionsPlist", "E.plist",
        "-exportPath", "out", "-allowProvisioningUpdates"]
    # Xcode 15.3+ calls a development export `debugging`; Xcode 26 rejects the old alias `development`.
    assert export_options(TEAM) == {"method": "debugging", "signingStyle": "automatic", "teamID": TEAM,
                                    "destination": "export", "thinning": "<none>"}
    assert EXPORT_METHOD == "debugging"


def test_sign_is_the_step_after_app():
    names = step_names()
    assert names[-2:] == ["app", "sign"]


# ---- the stand-in refuses what gemmaios would never run ----------------------------------------------

def test_standin_xcodebuild_checks_its_arguments(signable, tmp_path):
    project = project_of(signable)
    name = project.name
    xcodeproj = project / f"{name}.xcodeproj"
    good = ["-project", xcodeproj, "-scheme", name, "-configuration", "Release", "-destination",
            "generic/platform=iOS", "-archivePath", tmp_path / "a.xcarchive", "archive", "-allowProvisioningUpdates",
            f"DEVELOPMENT_TEAM={TEAM}"]
    log = tmp_path / "calls.jsonl"

    def refused(argv, text):
        done = run_standin(*argv, env={"STANDIN_XCODEBUILD_LOG": str(log)})
        assert done.returncode != 0 and text in done.stderr, (argv, done.stderr)
        assert not (tmp_path / "a.xcarchive").exists()

    refused([*good[:3], "Nope", *good[4:]], "does not contain a scheme named 'Nope'")
    refused([*good[:5], "Debugish", *good[6:]], "is not one of the project's")
    refused([*good[:7], "platform=iOS Simulator", *good[8:]], "archives only for")
    refused([a for a in good if a != "-allowProvisioningUpdates"], "without -allowProvisioningUpdates")
    refused(good[:-1], "requires a development team")
    refused([*good[:1], tmp_path / "Missing.xcodeproj", *good[2:]], "does not exist")
    refused([*good, "-sdk", "iphoneos"], "unknown argument '-sdk'")
    assert len(log.read_text().splitlines()) == 7  # every call logged, like the xcrun stand-in

    done = run_standin(*good)
    assert done.returncode == 0, done.stderr
    archive = tmp_path / "a.xcarchive"
    props = plistlib.loads((archive / "Info.plist").read_bytes())["ApplicationProperties"]
    assert props["ApplicationPath"] == f"Applications/{name}.app" and props["Team"] == TEAM
    app = archive / "Products" / "Applications" / f"{name}.app"
    info = plistlib.loads((app / "Info.plist").read_bytes())
    assert info["CFBundleIdentifier"] == BUNDLE_ID and (app / info["CFBundleExecutable"]).is_file()

    options = tmp_path / "E.plist"
    export = ["-exportArchive", "-archivePath", archive, "-exportOptionsPlist", options, "-exportPath",
              tmp_path / "out", "-allowProvisioningUpdates"]
    for bad, text in [({**export_options(TEAM), "method": "development"}, 'found development (use debugging)'),
                      ({**export_options(TEAM), "teamID": "ZZZZZ99999"}, "is not the archive's team"),
                      ({**export_options(TEAM), "signingStyl": "automatic"}, "not keys this stand-in knows")]:
        options.write_bytes(plistlib.dumps(bad))
        done = run_standin(*export)
        assert done.returncode == 65 and text in done.stderr, done.stderr
    options.write_bytes(plistlib.dumps(export_options(TEAM)))
    done = run_standin(*export)
    assert done.returncode == 0, done.stderr
    ipa = check_ipa(tmp_path / "out" / f"{name}.ipa", name, BUNDLE_ID)
    assert ipa.executable == name and ipa.version == info["CFBundleShortVersionString"]


def test_standin_refuses_a_project_whose_engine_package_is_missing(tiny_app_builds, tmp_path):
    """The session build has no engine package (no network, no checkout): real Xcode cannot resolve it."""
    project = project_of(tiny_app_builds[contract.PUSHED_TO_DOCUMENTS])
    done = run_standin("-project", project / f"{project.name}.xcodeproj", "-scheme", project.name, "-configuration",
                       "Release", "-destination", "generic/platform=iOS", "-archivePath", tmp_path / "a.xcarchive",
                       "archive", "-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={TEAM}")
    assert done.returncode == 74 and "Could not resolve package dependencies" in done.stderr


# ---- the step ---------------------------------------------------------------------------------------

def run_sign(build: Path, *, mac=None, tmp_path=None, team: str | None = TEAM):
    options = _options(build)
    if mac is not None:
        options.mac = mac.target
        options.extra.update(ssh_options=mac.ssh_options, mac_workdir=str(tmp_path / "remote"))
    options.extra["sign"] = {"team_id": team}
    options.extra["app"] = {**options.extra["app"], "config": str(tmp_path / "none.yaml")}
    (tmp_path / "none.yaml").write_text("{}\n")
    ctx = BuildContext(build, options, console=Console(file=io.StringIO()))
    [report] = Pipeline([SignStep()]).run(ctx)
    return ctx, report


def test_sign_step_over_ssh_brings_back_a_hash_verified_ipa(loopback_mac, signable, tmp_path):
    build = copy_build(signable, tmp_path / "b")
    calls = len(loopback_mac.xcodebuild_calls())
    ctx, report = run_sign(build, mac=loopback_mac, tmp_path=tmp_path)
    assert report.status == DONE, report.message
    record = ctx.manifest.get("sign")
    d = record.details
    name = project_of(build).name
    ipa = build / d.ipa
    assert d.ipa == f"sign/export/{name}.ipa" and d.bundle_id == BUNDLE_ID and d.host == loopback_mac.target
    assert record.outputs[d.ipa]["sha256"] == d.ipa_sha256 == check_ipa(ipa, name, BUNDLE_ID).sha256
    assert d.tool_version.startswith("Xcode 0.0 (gemmaios test stand-in")
    argv = [c["argv"] for c in loopback_mac.xcodebuild_calls()[calls:]]
    assert [a[-3:] for a in argv[:2]] == [["archive", "-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={TEAM}"],
                                         ["-exportPath", argv[1][-2], "-allowProvisioningUpdates"]]
    assert argv[0][argv[0].index("-project") + 1].endswith(f"/in/app/{name}/{name}.xcodeproj")  # sent, then built there
    assert argv[2][argv[2].index("build-for-testing") + 1:] == ["-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={TEAM}"]
    assert argv[3] == ["-version"]
    # the XCTest bench's products came back with the .ipa, and the farm's test package was zipped from them
    (xctestrun,) = (build / "sign" / "xctest").glob("*.xctestrun")
    assert plistlib.loads(xctestrun.read_bytes())["GemmaiosBenchTests"]["TestHostBundleIdentifier"] == BUNDLE_ID
    with zipfile.ZipFile(build / "xctest" / "GemmaiosBenchTests.zip") as z:
        assert f"Release-iphoneos/{name}.app/PlugIns/GemmaiosBenchTests.xctest/Info.plist" in z.namelist()
    assert list((tmp_path / "remote").iterdir()) == []  # the job folder (and the archive) removed on the Mac
    assert plistlib.loads((build / "sign" / "ExportOptions.plist").read_bytes())["teamID"] == TEAM
    assert dev.find_app_package(build) == ipa  # deploy installs this one
    with zipfile.ZipFile(ipa) as z:  # a documents build: the .app carries no payload
        assert not any(contract.PAYLOAD_DIR in n for n in z.namelist())

    calls = len(loopback_mac.xcodebuild_calls())
    _, again = run_sign(build, mac=loopback_mac, tmp_path=tmp_path)
    assert again.status == "skipped" and len(loopback_mac.xcodebuild_calls()) == calls  # nothing changed: not re-signed


def test_a_corrupted_pull_back_is_detected_and_nothing_is_kept(loopback_mac, signable, tmp_path):
    build = copy_build(signable, tmp_path / "b")
    name = project_of(build).name
    with CorruptingSSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(tmp_path / "r")) as runner:
        with pytest.raises(ToolchainError, match="do not match their remote sha256"):
            sign_app(build, name, BUNDLE_ID, TEAM, runner)
    assert not (build / "sign" / "export").exists()


def test_missing_team_id_says_where_to_put_it(loopback_mac, signable, tmp_path):
    build = copy_build(signable, tmp_path / "b")
    ctx, report = run_sign(build, mac=loopback_mac, tmp_path=tmp_path, team=None)
    # in a build the step waits (the rest of the build is kept); `gemmaios deploy` stops on it up front
    assert report.status == PENDING and "no Apple Developer Team ID" in report.message
    recorded = ctx.manifest.get("sign").message  # the whole error, hint included (the console shows it too)
    assert "--team-id" in recorded and "team_id: ABCDE12345" in recorded and "gemmaios.yaml" in recorded
    with pytest.raises(MissingTeamId):
        with SSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(tmp_path / "r")) as runner:
            sign_app(build, project_of(build).name, BUNDLE_ID, "nope", runner)


def test_engine_package_not_ready_is_named_before_xcodebuild_runs(loopback_mac, tiny_app_builds, tmp_path):
    build = copy_build(tiny_app_builds[contract.PUSHED_TO_DOCUMENTS], tmp_path / "b")
    calls = len(loopback_mac.xcodebuild_calls())
    _, report = run_sign(build, mac=loopback_mac, tmp_path=tmp_path)
    assert report.status == PENDING and "engine package is pending" in report.message
    assert report.command.startswith("git clone") and len(loopback_mac.xcodebuild_calls()) == calls


@pytest.mark.parametrize("printed,error,fix", [
    ('error: No Account for Team "ABCDE12345". Add a new account in Accounts settings.', NoDeveloperAccount,
     "Xcode → Settings → Accounts"),
    ("error: No profiles for 'dev.gemmaios.bench' were found: Xcode couldn't find any iOS App Development "
     "provisioning profiles matching 'dev.gemmaios.bench'.", NoProvisioningProfile, "--bundle-id"),
    ("Warning: unable to build chain to self-signed root\nerror: errSecInternalComponent\nCommand CodeSign failed",
     KeychainLocked, "security unlock-keychain"),
])
def test_xcodebuild_failures_become_named_errors_with_the_fix(loopback_mac, signable, tmp_path,
                                                             printed, error, fix):
    build = copy_build(signable, tmp_path / "b")
    name = project_of(build).name
    (project_of(build) / "STANDIN_FAIL").write_text(printed)
    with SSHRunner(loopback_mac.target, loopback_mac.ssh_options, str(tmp_path / "r")) as runner:
        with pytest.raises(error) as err:
            sign_app(build, name, BUNDLE_ID, TEAM, runner)
    assert fix in err.value.hint and printed.splitlines()[1 if error is KeychainLocked else 0] in str(err.value)


@not_on_mac
def test_without_a_mac_the_step_waits_with_the_exact_commands_then_picks_the_ipa_up(signable, tmp_path):
    build = copy_build(signable, tmp_path / "b")
    ctx, report = run_sign(build, tmp_path=tmp_path)
    assert report.status == PENDING
    name = project_of(build).name
    assert report.command == manual_command(build, name, TEAM)
    assert f"xcodebuild -project app/{name}/{name}.xcodeproj -scheme {name} -configuration Release" in report.command
    assert f"DEVELOPMENT_TEAM={TEAM} && xcodebuild -exportArchive" in report.command
    with pytest.raises(NeedsMacOS) as err:
        from gemmaios.runners import runner_for
        runner_for(None, pending_command=report.command, resume="x")
    assert "--mac user@host" in err.value.hint

    # The user runs exactly those commands on a Mac (here: the stand-in first on PATH) and copies the .ipa back.
    bin_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    (bin_dir / "xcodebuild").symlink_to(XCODEBUILD)
    subprocess.run(report.command, shell=True, check=True, capture_output=True, cwd=tmp_path,
                   env={**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"})
    ctx, report = run_sign(build, tmp_path=tmp_path)
    assert report.status == DONE and report.message == f"picked up {name}.ipa"
    assert ctx.manifest.get("sign").details.picked_up is True

    (build / "sign" / "export" / f"{name}.ipa").write_bytes(b"not a zip")
    with pytest.raises(BadIpa, match="is not an .ipa"):
        check_ipa(build / "sign" / "export" / f"{name}.ipa", name, BUNDLE_ID)


# ---- gemmaios deploy: the whole job -------------------------------------------------------------------

@pytest.fixture
def no_user_config(tmp_path, monkeypatch):
    """No gemmaios.yaml in the working folder, no ~/.config/gemmaios/config.yaml."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_deploy_without_a_team_id_stops_before_building(tmp_path, no_user_config):
    ran = CliRunner().invoke(cli_app, ["deploy", "--model", "tiny", "--out", "b"])
    out = flat(ran.output)
    assert ran.exit_code == 2 and "no Apple Developer Team ID to sign the app with" in out
    assert "--team-id" in out and "team_id: ABCDE12345" in out and "gemmaios.yaml" in out
    assert not (tmp_path / "b" / "build.json").exists()  # nothing built for an app that could not be signed


@not_on_mac
def test_deploy_on_linux_without_a_mac_names_the_xcodebuild_commands(signable, tmp_path, no_user_config):
    build = copy_build(signable, tmp_path / "b")
    ran = CliRunner().invoke(cli_app, ["deploy", "--out", str(build), "--team-id", TEAM, "--allow-uncompiled"])
    out = flat(ran.output)
    assert ran.exit_code == 2, ran.output
    assert "step sign needs macOS" in out and "--mac user@host" in out
    name = project_of(build).name
    assert (f"xcodebuild -project app/{name}/{name}.xcodeproj -scheme {name} -configuration Release "
            f"-destination generic/platform=iOS -archivePath sign/{name}.xcarchive archive -allowProvisioningUpdates "
            f"DEVELOPMENT_TEAM={TEAM} && xcodebuild -exportArchive") in out
    assert "▶ install" not in out




@pytest.mark.full
@not_on_mac
def test_deploy_model_tiny_bench_builds_signs_installs_pushes_benches_and_reports(
        loopback_mac, sim, engine_checkout, tmp_path, monkeypatch):
    """The done-when of issue 16: one `gemmaios deploy --model tiny --bench`, from nothing."""
    from gemmaios import devicebench as bench_mod

    device = sim.add(SimDevice(udid=UDID, root=sim.folder / UDID))
    monkeypatch.chdir(tmp_path)
    Path("gemmaios.yaml").write_text(yaml.safe_dump({
        "mac": loopback_mac.target, "ssh_options": loopback_mac.ssh_options, "mac_workdir": str(tmp_path / "remote"),
        "team_id": TEAM, "bundle_id": BUNDLE_ID, "engine_source": str(engine_checkout)}))
    real_bench = bench_mod.bench  # the CLI polls every 2 s; poll faster here
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.2}))
    xcrun_calls, xcodebuild_calls = len(loopback_mac.calls()), len(loopback_mac.xcodebuild_calls())

    ran = CliRunner().invoke(cli_app, ["deploy", "--model", "tiny", "--out", "build/tiny", "--bundle-location",
                                       "documents", "--bench", "--trials", "1", "--timeout", "600"])
    out = flat(ran.output)
    assert ran.exit_code == 0, ran.output
    stages = ["▶ build:", "✓ build:", "▶ install + push:", "✓ install + push:", "▶ bench:", "✓ bench:", "▶ report:",
              "✓ report:"]
    positions = [out.index(s) for s in stages]
    assert positions == sorted(positions), out
    for step in ("checkpoint", "tables", "oracle", "convert", "compile", "app", "sign"):
        assert f"▶ {step}:" in out

    build = tmp_path / "build" / "tiny"
    steps = json.loads((build / "build.json").read_text())["steps"]
    assert {n: s["status"] for n, s in steps.items()} == {n: DONE for n in step_names()}
    assert steps["compile"]["details"]["host"] == steps["sign"]["details"]["host"] == loopback_mac.target
    assert [c["argv"][:2] for c in loopback_mac.calls()[xcrun_calls:]][0] == ["coreai-build", "compile"]
    assert len(loopback_mac.xcodebuild_calls()) - xcodebuild_calls == 4  # archive, export, build-for-testing, -version

    # installed: the signed .ipa the sign step recorded; pushed: the payload, compiled asset included
    record = json.loads((build / "deploy.json").read_text())["devices"][UDID]
    assert record["package"]["sha256"] == steps["sign"]["details"]["ipa_sha256"]
    assert device.installs and record["bundle_location"] == contract.PUSHED_TO_DOCUMENTS
    aimodelc = Path(steps["compile"]["details"]["aimodelc"]).name
    assert any(aimodelc in rel for rel in record["payload"]) and len(record["payload"]) >= 5
    # benched and reported: the app ran the bundle, scored token-exact against the fp32 oracle
    report = json.loads((build / "reports" / "report.json").read_text())
    run = report["runs"][0]
    assert run["device"]["udid"] == UDID and run["oracle"]["label"] == "8/8" and run["oracle"]["total"] == 8
    assert "oracle 8/8" in out and "gates pass" in out
