"""The app step: the tiny build renders a consistent Xcode project with escaped values."""

from __future__ import annotations

import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tree_sitter_swift
from devicebuild import copy_build
from pbxproj import XcodeProject
from swift_toolchain import find_swift
from tree_sitter import Language, Parser

from gemmaios.app import (
    EXTENDED_VA_KEY,
    INCREASED_MEMORY_KEY,
    MICROPHONE_USAGE,
    MICROPHONE_USAGE_KEY,
    AppSettings,
    AppStep,
    AppTemplateError,
    PromptSet,
    check_project,
    object_id,
    pbx_string,
    render_app,
    swift_string,
)
from gemmaios.patches import load_series
from gemmaios.pipeline import BuildOptions
from gemmaios.steps import all_steps, run_build

REPO = Path(__file__).resolve().parents[1]
SWIFT = Parser(Language(tree_sitter_swift.language()))
SWIFTC = find_swift()[0]
HOSTILE = 'Gemma "4" \\(boom) */ \n\t\u0000 end'
PRINTABLE_HOSTILE = 'Gemma "4" \\(boom) */ <&> $(x) `y`'


def swift_problems(source: bytes) -> list[str]:
    """tree-sitter-swift: only a fallback where no Swift compiler can be had (test_swift.py uses swiftc)."""
    tree = SWIFT.parse(source)
    bad = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            bad.append(f"{node.type} at {node.start_point}: {source[node.start_byte:node.start_byte + 40]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return bad


@pytest.fixture(scope="module")
def app_build(tiny_build, engine_checkout, tmp_path_factory):
    """A copy of the session's `gemmaios build --arch h18p --model tiny`, built on with the app step's
    options (engine from a checkout); Linux cannot AOT-compile, so the iOS app takes the .aimodel only
    with the explicit override. The steps before app are the copy's, unchanged (skipped)."""
    out = copy_build(tiny_build.path, tmp_path_factory.mktemp("app") / "build")
    options = BuildOptions(model="tiny", arch="h18p", extra={"app": {
        "engine_source": engine_checkout, "bundle_id": "org.gemmaios.test", "config": out / "none.yaml",
        "allow_uncompiled": True}})
    (out / "none.yaml").write_text("{}\n")
    ctx, reports = run_build(options, out)
    return ctx, reports


def test_app_is_the_last_step_before_signing():
    assert [s.name for s in all_steps()][-2:] == ["app", "sign"]
    assert isinstance(all_steps()[-2], AppStep)


def test_tiny_build_renders_the_project(app_build):
    ctx, reports = app_build
    assert [r.status for r in reports if r.name == "app"] == ["done"]
    details = ctx.manifest.get("app").details
    project = ctx.build_dir / details.project
    assert (project / "GemmaBench.xcodeproj" / "project.pbxproj").is_file()
    assert details.engine.status == "ready"
    assert details.engine.applied == [p.name for p in load_series().patches]


def test_entitlements_and_info_plist(app_build):
    ctx, _ = app_build
    src = ctx.path("app", "GemmaBench", "GemmaBench")
    ent = plistlib.loads((src / "GemmaBench.entitlements").read_bytes())
    assert ent == {INCREASED_MEMORY_KEY: True, EXTENDED_VA_KEY: True}
    info = plistlib.loads((src / "Info.plist").read_bytes())
    assert info["UIFileSharingEnabled"] is True and info["LSSupportsOpeningDocumentsInPlace"] is True
    assert info["CFBundleIdentifier"] == "$(PRODUCT_BUNDLE_IDENTIFIER)"


def test_pbxproj_parses_and_every_reference_resolves(app_build):
    ctx, _ = app_build
    project_dir = ctx.path("app", "GemmaBench")
    pbx = project_dir / "GemmaBench.xcodeproj" / "project.pbxproj"
    assert check_project(pbx) == []
    project = XcodeProject.load(str(pbx))
    sources = {str(f["path"]) for f in project.objects.get_objects_in_section("PBXFileReference")
               if str(f["lastKnownFileType"] or "") == "sourcecode.swift"}
    assert sources == {p.name for p in (project_dir / "GemmaBench").glob("*.swift")} | {"BenchTests.swift"}
    build_files = project.objects.get_objects_in_section("PBXBuildFile")
    assert all(project.objects[str(b["fileRef"])] is not None for b in build_files if "fileRef" in b.get_keys())
    locals_ = {str(p["relativePath"]): p for p in project.objects.get_objects_in_section("XCLocalSwiftPackageReference")}
    assert set(locals_) == {"../../engine/coreai-models", "GemmaiosCore"}
    assert (project_dir / "../../engine/coreai-models" / ".gemmaios-engine").is_file()
    assert (project_dir / "GemmaiosCore" / "Package.swift").is_file()
    assert not (project_dir / "GemmaiosCore" / ".build").exists()
    (remote,) = project.objects.get_objects_in_section("XCRemoteSwiftPackageReference")
    assert str(remote["repositoryURL"]) == "https://github.com/huggingface/swift-transformers"
    products = {str(p["productName"]): str(p["package"])
                for p in project.objects.get_objects_in_section("XCSwiftPackageProductDependency")}
    # every module the app imports is linked explicitly
    assert products == {"CoreAILM": locals_["../../engine/coreai-models"].get_id(),
                        "CoreAIShared": locals_["../../engine/coreai-models"].get_id(),
                        "GemmaiosCore": locals_["GemmaiosCore"].get_id(), "Tokenizers": remote.get_id()}
    imported = set(re.findall(r"^import (\w+)", "\n".join(
        p.read_text() for p in (project_dir / "GemmaBench").glob("*.swift")), re.M))
    # SDK frameworks (autolinked); CoreAI is the OS's, ImageIO/PhotosUI/CoreGraphics the chat picker's,
    # AVFoundation/UniformTypeIdentifiers its audio input's
    sdk = {"Foundation", "SwiftUI", "UIKit", "Metal", "Darwin", "os", "CoreAI", "CoreGraphics", "ImageIO", "PhotosUI",
           "AVFoundation", "UniformTypeIdentifiers"}
    assert imported - sdk == set(products) - {"CoreAILM"} | {"CoreAILanguageModels"}
    target, tests = sorted(project.objects.get_objects_in_section("PBXNativeTarget"), key=lambda t: str(t["name"]))
    assert str(target["name"]) == "GemmaBench" and str(tests["name"]) == "GemmaiosBenchTests"
    assert set(products.keys()) == {str(project.objects[str(x)]["productName"]) for x in target["packageProductDependencies"]}
    text = pbx.read_text()
    assert re.search(r"PRODUCT_BUNDLE_IDENTIFIER = org\.gemmaios\.test;", text)
    assert "com.apple.developer" not in text  # entitlements live in the plist, referenced by path


@pytest.mark.skipif(SWIFTC is not None, reason="a Swift compiler is here: test_swift.py parses with swiftc")
def test_every_rendered_swift_file_parses_with_tree_sitter_fallback(app_build):
    """Fallback where no Swift toolchain can be had (tree-sitter is not Swift's parser)."""
    ctx, _ = app_build
    files = sorted(ctx.path("app", "GemmaBench", "GemmaBench").glob("*.swift"))
    assert len(files) >= 8
    for path in files:
        assert swift_problems(path.read_bytes()) == [], path.name


def test_engine_setup_run_contract(app_build):
    ctx, _ = app_build
    src = ctx.path("app", "GemmaBench", "GemmaBench")
    host = (src / "EngineHost.swift").read_text()
    assert host.index("setenv(Contract.chunkThresholdVariable, Contract.chunkThresholdValue, 1)") < host.index(
        "EngineFactory.createEngine(")
    assert host.index("removeSpecCache()\n        }") < host.index("EngineFactory.createEngine(")
    bench = (src / "BenchRunner.swift").read_text()  # an unattended run keeps the screen awake, then restores it
    assert bench.index("UIApplication.shared.isIdleTimerDisabled = true") < bench.index("EngineHost.load(")
    assert "defer { UIApplication.shared.isIdleTimerDisabled = idleTimerWasDisabled }" in bench
    assert bench.index("sampler.stop()  // returns once") < bench.index('"type": "footer"')
    code = "\n".join(line.split("//")[0] for p in src.glob("*.swift") for line in p.read_text().splitlines())
    assert not re.search(r"\.warmup\(", code)
    config = (src / "AppConfig.swift").read_text()
    assert "PLEMode.provider" in config and re.search(r"PLEShape\(vocabSize: \d+, layers: \d+, dim: 8\)", config)


def test_rendering_is_deterministic_and_ids_depend_on_the_app(tmp_path):
    settings = dict(ple="none", prepare_engine=False, bundle_location="documents")
    a = render_app(tmp_path / "a", AppSettings(**settings))
    b = render_app(tmp_path / "b", AppSettings(**settings))
    pa, pb = (r.xcodeproj / "project.pbxproj" for r in (a, b))
    assert pa.read_bytes() == pb.read_bytes()
    other = render_app(tmp_path / "c", AppSettings(app_name="Other", **settings))
    ids = set(re.findall(r"\b[0-9A-F]{24}\b", pa.read_text()))
    assert ids and not ids & set(re.findall(r"\b[0-9A-F]{24}\b", (other.xcodeproj / "project.pbxproj").read_text()))
    assert object_id("X", "k") == object_id("X", "k") != object_id("X", "k2")


def test_hostile_values_are_escaped_everywhere(tmp_path):
    prompts = PromptSet(HOSTILE, "0" * 64, 8, [{"id": HOSTILE, "prompt_ids": [2, 3]}])
    result = render_app(tmp_path, AppSettings(display_name=PRINTABLE_HOSTILE, model_id=HOSTILE, quant=HOSTILE,
                                              ple="none", prompt_set=prompts, prepare_engine=False,
                                              bundle_location="documents"))
    src = result.project_dir / "GemmaBench"
    config = (src / "AppConfig.swift").read_bytes()
    if SWIFTC is not None:  # Swift's own parser: no interpolation survives the escaping
        dump = subprocess.run([str(SWIFTC.swiftc), "-dump-parse", str(src / "AppConfig.swift")],
                              capture_output=True, text=True)
        assert dump.returncode == 0, dump.stderr
        assert "string_literal_expr" in dump.stdout + dump.stderr
        assert "interpolated_string_literal_expr" not in dump.stdout + dump.stderr
    else:  # fallback: tree-sitter
        assert swift_problems(config) == []
        tree = SWIFT.parse(config)
        literals = []

        def walk(node):
            if node.type == "line_string_literal":
                literals.append(node)
            for child in node.children:
                walk(child)

        walk(tree.root_node)
        assert not any(c.type == "interpolated_expression" for lit in literals for c in lit.children)
    assert swift_string(HOSTILE).encode() in config
    info = plistlib.loads((src / "Info.plist").read_bytes())
    assert info["CFBundleDisplayName"] == PRINTABLE_HOSTILE
    assert swift_string(PRINTABLE_HOSTILE).encode() in config
    assert check_project(result.xcodeproj / "project.pbxproj") == []


def test_swift_and_pbx_escaping():
    assert swift_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    assert swift_string("\\(x)") == '"\\\\(x)"'
    assert swift_string("\x00") == '"\\u{0}"'
    assert pbx_string("iphoneos") == "iphoneos"
    assert pbx_string("") == '""'
    assert pbx_string('a "b"') == '"a \\"b\\""'
    assert pbx_string("<group>") == '"<group>"'


@pytest.mark.parametrize("field,value", [
    ("app_name", 'Bad"Name'), ("app_name", "1App"), ("app_name", "has space"),
    ("bundle_id", "com.example.gemma_app"), ("bundle_id", "nodots"), ("bundle_id", 'com."x".y'),
    ("team_id", "abc"), ("deployment_target", "17.0"), ("deployment_target", "27; rm -rf /"),
    ("bundle_location", "cloud"), ("ple", "magic"), ("display_name", "tab\there"), ("display_name", ""), ("bundle_name", 'x"y'), ("bundle_dir", "../../etc"),
])
def test_invalid_values_raise_a_named_error(tmp_path, field, value):
    with pytest.raises(AppTemplateError):
        render_app(tmp_path, AppSettings(**{"ple": "none", "prepare_engine": False, "bundle_location": "documents",
                                            field: value}))
    assert not (tmp_path / "app" / "GemmaBench").exists()


def test_engine_pending_without_a_checkout_still_renders(tmp_path):
    result = render_app(tmp_path, AppSettings(ple="none", allow_clone=False, engine_cache=tmp_path / "cache",
                                              bundle_location="documents"))
    assert result.engine.status == "pending"
    assert load_series().base in result.engine.command and "git clone" in result.engine.command
    assert check_project(result.xcodeproj / "project.pbxproj") == []


def test_fastlane_files_are_valid_ruby():
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("ruby is not installed (scripts/system-deps.sh installs it)")
    for name in ("Fastfile", "Appfile"):
        check = subprocess.run([ruby, "-c", str(REPO / "fastlane" / name)], capture_output=True, text=True)
        assert check.returncode == 0 and "Syntax OK" in check.stdout, check.stderr
    assert "gemmaios" in (REPO / "fastlane" / "Fastfile").read_text()


def test_info_plist_states_why_the_app_uses_the_microphone(tmp_path):
    """iOS ends an app that opens the microphone without NSMicrophoneUsageDescription; the chat records
    (AudioInput.swift's AVAudioRecorder), so the rendered Info.plist carries the purpose string."""
    result = render_app(tmp_path, AppSettings(ple="none", prepare_engine=False, bundle_location="documents"))
    info = plistlib.loads((result.project_dir / "GemmaBench" / "Info.plist").read_bytes())
    assert MICROPHONE_USAGE_KEY == "NSMicrophoneUsageDescription"
    assert info[MICROPHONE_USAGE_KEY] == MICROPHONE_USAGE and "on-device" in MICROPHONE_USAGE
    swift = (result.project_dir / "GemmaBench" / "AudioInput.swift").read_text()
    assert "AVAudioApplication.requestRecordPermission()" in swift and "AVAudioRecorder(" in swift


def test_check_project_reports_a_dangling_reference(tmp_path):
    result = render_app(tmp_path, AppSettings(ple="none", prepare_engine=False, bundle_location="documents"))
    pbx = result.xcodeproj / "project.pbxproj"
    text = pbx.read_text()
    build_file = re.search(r"(\w{24}) /\* App\.swift in Sources \*/ = \{isa = PBXBuildFile; fileRef = (\w{24})", text)
    pbx.write_text(text.replace(f"fileRef = {build_file.group(2)}", "fileRef = 0123456789ABCDEF01234567"))
    problems = check_project(pbx)
    assert any("0123456789ABCDEF01234567 does not exist" in p for p in problems)


def test_bundled_app_holds_exactly_the_payload(app_build):
    from gemmaios import contract
    from gemmaios.payload import payload_plan

    ctx, _ = app_build
    details = ctx.manifest.get("app").details
    assert details.bundle_location == "bundled" and details.prompt_set == "app/prompts.json"
    project_dir = ctx.path("app", "GemmaBench")
    staged = sorted(p.relative_to(project_dir).as_posix() for p in (project_dir / contract.PAYLOAD_DIR).rglob("*")
                    if p.is_file())
    plan = payload_plan(ctx.build_dir, "bundled")
    assert staged == sorted(dest for _, dest in plan.app_files()) == sorted(details.app_payload)
    assert plan.documents_files() == []  # deploy pushes none of it
    assert f"{contract.PAYLOAD_DIR}/{contract.PROMPT_SET_FILE}" in staged
    assert any(p.endswith(contract.TABLE_I8_FILE) for p in staged)
    # the one asset metadata.json names: here the .aimodel (--allow-uncompiled), never also an .aimodelc
    assert any(".aimodel/" in p for p in staged) != any(".aimodelc/" in p for p in staged)
    assert not any(p.endswith(("metadata.mac.json", "embed_per_layer.json")) for p in staged)
    for rel in staged:  # hard links: no GB copies
        assert (project_dir / rel).stat().st_ino == next(src for src, dest in plan.app_files() if dest == rel).stat().st_ino
    pbx = (project_dir / "GemmaBench.xcodeproj" / "project.pbxproj").read_text()
    assert re.search(rf"lastKnownFileType = folder; path = {contract.PAYLOAD_DIR};", pbx)


def test_uncompiled_bundle_is_refused_for_an_iphone_with_the_compile_command(app_build):
    ctx, _ = app_build
    options = BuildOptions(model="tiny", arch="h18p", extra={"app": {"bundle_id": "org.gemmaios.test",
                                                                    "config": ctx.build_dir / "none.yaml"}})
    _, reports = run_build(options, ctx.build_dir, only={"app"}, force={"app"})
    (app,) = reports
    assert app.status == "pending"
    assert "not an AOT .aimodelc for h18p" in app.message
    assert "xcrun coreai-build compile" in app.command and "--architecture h18p" in app.command


def test_lone_surrogates_are_refused_by_name(tmp_path):
    with pytest.raises(AppTemplateError, match="lone surrogate U\\+DCFF"):
        swift_string("caf\udcff")
    with pytest.raises(AppTemplateError, match="display name .*lone surrogate"):  # was: UnicodeEncodeError in plistlib
        render_app(tmp_path, AppSettings(display_name="Gemma \udcff", ple="none", prepare_engine=False,
                                         bundle_location="documents"))
    assert not (tmp_path / "app" / "GemmaBench").exists()


def test_a_removed_payload_file_re_renders_the_app(app_build):
    from gemmaios import contract

    ctx, _ = app_build
    options = BuildOptions(model="tiny", arch="h18p", extra={"app": {"bundle_id": "org.gemmaios.test",
                                                                    "config": ctx.build_dir / "none.yaml",
                                                                    "allow_uncompiled": True}})
    staged = ctx.path("app", "GemmaBench", contract.PAYLOAD_DIR, contract.PROMPT_SET_FILE)
    staged.unlink()
    _, reports = run_build(options, ctx.build_dir, only={"app"})
    assert [r.status for r in reports] == ["done"] and staged.is_file()
    _, reports = run_build(options, ctx.build_dir, only={"app"})
    assert [r.status for r in reports] == ["skipped"]
