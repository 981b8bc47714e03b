"""The bench's XCTest target: rendered into the app project, its pbxproj passing the project checks,
its Swift type-checked against GemmaiosCore (Linux XCTest, plus a labelled shim for attachments)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from pbxproj import XcodeProject
from swift_toolchain import run
from test_swift import PROMPTS, _fake_bundle

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
    name, _ = _fake_bundle(tmp_path, "provider")
    return render_app(tmp_path, AppSettings(ple="provider", ple_layers=2, ple_dim=4, vocab_size=64, bundle_name=name,
                                            bundle_dir=f"bundle/{name}", prompt_set=PROMPTS, prepare_engine=False))


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
