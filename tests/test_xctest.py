"""The bench's XCTest target: rendered into the app project, its pbxproj passing the project checks,
its Swift type-checked against GemmaiosCore (Linux XCTest, plus a labelled shim for attachments)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from fixture_bundle import RENDER_PROMPTS, render_bundle
from loopback_sshd import STANDIN_BIN, start_loopback_mac
from pbxproj import XcodeProject
from swift_toolchain import run

from gemmaios import contract, xctest
from gemmaios.app.render import render_app
from gemmaios.app.values import AppSettings
from gemmaios.app.xcode import check_project

# Apple's XCTest has attachments, swift-corelibs-xctest (Linux) does not: a type-check-only stand-in
# of exactly the API the test uses. NOT Apple's XCTest.
ATTACHMENT_SHIM = """import Foundation
import XCTest
final class XCTAttachment {
    enum Lifetime { case keepAlways, deleteOnSuccess }
    var name: String?
    var lifetime: Lifetime = .deleteOnSuccess
    init(contentsOfFile url: URL) {}
}
extension XCTestCase { func add(_ attachment: XCTAttachment) {} }
"""


def _render(tmp_path):
    name, _ = render_bundle(tmp_path, "provider")
    return render_app(tmp_path, AppSettings(ple="provider", ple_layers=2, ple_dim=4, vocab_size=64, bundle_name=name,
                                            bundle_dir=f"bundle/{name}", prompt_set=RENDER_PROMPTS, prepare_engine=False))


def test_test_target_is_hosted_in_the_app_and_every_reference_resolves(tmp_path):
    result = _render(tmp_path)
    pbx = result.xcodeproj / "project.pbxproj"
    assert check_project(pbx) == []
    project = XcodeProject.load(str(pbx))
    targets = {str(t["name"]): t for t in project.objects.get_objects_in_section("PBXNativeTarget")}
    app, tests = targets["GemmaBench"], targets[xctest.TARGET]
    assert str(tests["productType"]) == "com.apple.product-type.bundle.unit-test"
    (dep,) = tests["dependencies"]
    assert str(project.objects[str(dep)]["target"]) == app.get_id()
    configs = project.objects[str(tests["buildConfigurationList"])]["buildConfigurations"]
    for config in configs:
        settings = project.objects[str(config)]["buildSettings"]
        assert str(settings["TEST_HOST"]).endswith("/GemmaBench.app/$(BUNDLE_EXECUTABLE_FOLDER_PATH)/GemmaBench")
        assert str(settings["BUNDLE_LOADER"]) == "$(TEST_HOST)"
    core = [project.objects[str(p)] for p in tests["packageProductDependencies"]]
    assert [str(p["productName"]) for p in core] == ["GemmaiosCore"]
    source = result.project_dir / xctest.TARGET / xctest.SOURCE
    assert source.is_file()
    # the scheme tests the bundle (xcodebuild build-for-testing / test-without-building use it)
    scheme = ET.parse(next((result.xcodeproj / "xcshareddata" / "xcschemes").glob("*.xcscheme")))
    (testable,) = scheme.getroot().iter("TestableReference")
    ref = testable.find("BuildableReference")
    assert ref.get("BlueprintIdentifier") == tests.get_id() and ref.get("BuildableName") == f"{xctest.TARGET}.xctest"


def test_bench_test_typechecks_against_the_core(swift_toolchain, core_build, tmp_path):
    result = _render(tmp_path)
    source = result.project_dir / xctest.TARGET / xctest.SOURCE
    text = source.read_text()
    assert f"func {xctest.TEST_METHOD}()" in text and f"class {xctest.TEST_CLASS}: XCTestCase" in text
    assert f"TEST_RUNNER_{contract.ENV['bench']}=1" in text
    shim = tmp_path / "AttachmentShim.swift"
    shim.write_text(ATTACHMENT_SHIM)
    modules = core_build / "Modules" if (core_build / "Modules").is_dir() else core_build
    run([swift_toolchain.swiftc, "-typecheck", "-I", modules, source, shim])


def test_runner_environment_is_the_contracts_bench_settings_prefixed():
    env = xctest.runner_environment("r1", 3, "UDID-1")
    assert env == {f"TEST_RUNNER_{contract.ENV[k]}": v for k, v in
                   {"bench": "1", "trials": "3", "runId": "r1", "udid": "UDID-1"}.items()}
    assert re.fullmatch(r"\w+/\w+/\w+", xctest.TEST_IDENTIFIER)


# ---- `gemmaios bench --xctest` on the loopback "Mac" with two simulated phones -------------------

UDIDS = ("00008150-0000000000000A17", "00008140-0000000000000B16")


def _products(build, tmp_path):
    """What `gemmaios sign` brings back from build-for-testing (sign/xctest/), made by the same
    xcodebuild stand-in the sign tests run on the loopback Mac."""
    project = next((build / "app").glob("*/*.xcodeproj"))
    derived = tmp_path / "dd"
    env = {**os.environ, "PATH": f"{STANDIN_BIN}:{os.environ['PATH']}"}
    subprocess.run(["xcodebuild", "-project", str(project), "-scheme", project.stem, "-configuration", "Release",
                    "-destination", "generic/platform=iOS", "-derivedDataPath", str(derived), "build-for-testing",
                    "-allowProvisioningUpdates", "DEVELOPMENT_TEAM=ABCDE12345"], env=env, check=True, capture_output=True)
    shutil.copytree(derived / "Build" / "Products", build / "sign" / "xctest")


@pytest.fixture
def mac_with_phones(sim, tmp_path):
    """The loopback SSH "Mac" with two simulated phones attached (its stand-ins reach the simulator)."""
    from device_helpers import add_device

    add_device(sim, UDIDS[0], name="iPhone 17 Pro", product_type="iPhone18,1")
    add_device(sim, UDIDS[1], name="iPhone 16 Pro", product_type="iPhone17,1")
    proc, mac = start_loopback_mac(tmp_path / "sshd", {"USBMUXD_SOCKET_ADDRESS": str(sim.folder / "mux.sock")})
    yield mac
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.full  # ~25 s: two simulated phones each run the tiny model's bench
def test_bench_xctest_on_two_destinations_writes_two_transcripts_and_one_report(
        sim, mac_with_phones, tiny_app_builds, tmp_path, monkeypatch):
    from device_helpers import shrink_prompt_set
    from devicebuild import copy_build
    from typer.testing import CliRunner

    from gemmaios.cli import app as cli_app

    build = copy_build(tiny_app_builds[contract.BUNDLED], tmp_path / "build")
    shrink_prompt_set(build)
    _products(build, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemmaios.yaml").write_text(json.dumps({"ssh_options": mac_with_phones.ssh_options,
                                                         "mac_workdir": str(tmp_path / "remote")}))
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--xctest", "--trials", "1", "--mac",
                                       mac_with_phones.target, *(f"--destination=id={u}" for u in UDIDS)])
    assert ran.exit_code == 0, ran.output + "".join(d.app_log() for d in sim.devices)
    calls = [c["argv"] for c in mac_with_phones.xcodebuild_calls()]
    tests = [a for a in calls if "test-without-building" in a]
    assert sorted(a[a.index("-destination") + 1] for a in tests) == sorted(f"id={u}" for u in UDIDS)
    run_dirs = sorted((build / "runs").iterdir())
    assert len(run_dirs) == 2
    names = set()
    for run_dir in run_dirs:
        (transcript,) = run_dir.glob("*.jsonl")
        header = json.loads(transcript.read_text().splitlines()[0])
        names.add(header["device"]["name"])
        udid = run_dir.name[-len(UDIDS[0]):]
        assert header["device"]["udid"] == udid  # the contract's setting arrived through TEST_RUNNER_
        on_phone = {d.udid: d for d in sim.devices}[udid].container(json.loads((run_dir / "run.json").read_text())["bundle_id"])
        assert (on_phone / "Documents" / contract.APP_RUNS_DIR / transcript.name).read_bytes() == transcript.read_bytes()
        assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert names == {"iPhone 17 Pro", "iPhone 16 Pro"}
    (report_dir,) = (build / "reports").glob("xctest-*")
    report = json.loads((report_dir / "report.json").read_text())
    assert len(report["runs"]) == 2
    text = (report_dir / "report.md").read_text()
    assert "iPhone 17 Pro" in text and "iPhone 16 Pro" in text
    side = text[text.index("## Devices side by side"):].splitlines()
    assert "iPhone 17 Pro" in side[2] and "iPhone 16 Pro" in side[2]  # one column per device
    assert any(line.startswith("| decode") for line in side[4:])


def test_bench_xctest_without_a_mac_names_the_command(tiny_app_builds, tmp_path, monkeypatch):
    from devicebuild import copy_build

    from gemmaios.errors import NeedsMacOS
    from gemmaios.xctestbench import bench_xctest

    monkeypatch.setattr("platform.system", lambda: "Linux")
    build = copy_build(tiny_app_builds[contract.BUNDLED], tmp_path / "build")
    with pytest.raises(NeedsMacOS) as err:
        bench_xctest(build, [f"id={UDIDS[0]}"], trials=1)
    assert "xcodebuild test-without-building" in err.value.command and "TEST_RUNNER_GEMMAIOS_BENCH=1" in err.value.command


@pytest.mark.full  # ~25 s: one simulated phone runs the bench, the other refuses the launch
def test_bench_xctest_names_a_failed_destination_and_keeps_the_others(
        sim, mac_with_phones, tiny_app_builds, tmp_path, monkeypatch):
    from device_helpers import shrink_prompt_set
    from devicebuild import copy_build
    from typer.testing import CliRunner

    from gemmaios.cli import app as cli_app

    build = copy_build(tiny_app_builds[contract.BUNDLED], tmp_path / "build")
    shrink_prompt_set(build)
    _products(build, tmp_path)
    refusing = next(d for d in sim.devices if d.udid == UDIDS[1])
    refusing.refuse_launch = "The request was denied by service delegate (SBMainWorkspace)."
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemmaios.yaml").write_text(json.dumps({"ssh_options": mac_with_phones.ssh_options,
                                                         "mac_workdir": str(tmp_path / "remote")}))
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--xctest", "--trials", "1", "--mac",
                                       mac_with_phones.target, *(f"--destination=id={u}" for u in UDIDS)])
    said = " ".join(ran.output.split())
    assert ran.exit_code == 2 and f"did not pass on {UDIDS[1]}" in said and UDIDS[0] not in said.split("did not pass on")[1].split("→")[0]
    failed = next((build / "runs").glob(f"*-{UDIDS[1]}"))
    assert "Unable to launch" in (failed / "xcodebuild.log").read_text()
    assert json.loads((failed / "run.json").read_text())["status"] == "failed"
    kept = next((build / "runs").glob(f"*-{UDIDS[0]}"))
    assert len(list(kept.glob("*.jsonl"))) == 1
    (report_dir,) = (build / "reports").glob("xctest-*")
    assert len(json.loads((report_dir / "report.json").read_text())["runs"]) == 1
