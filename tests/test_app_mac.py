"""The macOS app of a `--target mac` build (issue 29): the 12B's four-function bundle gets the same template,
rendered for macOS. Rendered here from the session's tiny unified build (conftest `unified_mm_bundle`) through
the pipeline's app step; the project, plists and entitlements are read with the validators test_app.py uses
(plistlib, the `pbxproj` parser, check_project). The Xcode build is Apple's: on Linux the step is pending with
its command."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
from pathlib import Path

import pytest
from pbxproj import XcodeProject

from gemmaios import contract as c
from gemmaios.app import (
    APP_PLATFORMS,
    APP_SANDBOX_KEY,
    AUDIO_INPUT_KEY,
    EXTENDED_VA_KEY,
    INCREASED_MEMORY_KEY,
    MICROPHONE_USAGE,
    MICROPHONE_USAGE_KEY,
    USER_SELECTED_READ_ONLY_KEY,
    AppSettings,
    AppTemplateError,
    check_project,
    render_app,
)
from gemmaios.pipeline import BuildOptions
from gemmaios.steps import run_build


def _linked_copy(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, copy_function=os.link)  # hard links: the shared build stays untouched


@pytest.fixture(scope="module")
def mac_app_build(unified_mm_bundle, engine_checkout, tmp_path_factory):
    """`build --target mac --vision --audio` of the tiny unified checkpoint, on to its app and Xcode build: the
    session's bundle (and checkpoint) linked into a fresh folder, then the checkpoint, app and sign steps."""
    shared = unified_mm_bundle.parent.parent  # shared_builds.unified_mm_bundle_build: out/bundle/<name>
    out = tmp_path_factory.mktemp("mac-app") / "build"
    _linked_copy(shared / "12b_unified", out / "12b_unified")
    rel = f"bundle/{unified_mm_bundle.name}"
    _linked_copy(unified_mm_bundle, out / rel)
    (out / "none.yaml").write_text("{}\n")
    options = BuildOptions(model=str(out / "12b_unified"), quant="int4", max_context=256, target="mac",
                           kernel="stock", vision=True, audio=True,
                           extra={"app": {"engine_source": engine_checkout, "bundle_id": "org.gemmaios.mac",
                                          "config": out / "none.yaml", "bundle_dir": rel,
                                          "bundle_name": unified_mm_bundle.name}})
    ctx, reports = run_build(options, out, only={"checkpoint", "app", "sign"})
    return ctx, {r.name: r for r in reports}, out / rel


def _configs(project) -> dict[str, dict]:
    """Each XCBuildConfiguration's settings, keyed `<list comment target>/<name>`."""
    found = {}
    for lst in project.objects.get_objects_in_section("XCConfigurationList"):
        owner = next(t for t in (*project.objects.get_objects_in_section("PBXNativeTarget"),
                                 *project.objects.get_objects_in_section("PBXProject"))
                     if str(t["buildConfigurationList"]) == lst.get_id())
        name = str(owner["name"]) if "name" in owner.get_keys() else "project"
        for cid in lst["buildConfigurations"]:
            cfg = project.objects[str(cid)]
            found[f"{name}/{cfg['name']}"] = {k: str(cfg["buildSettings"][k]) for k in cfg["buildSettings"].get_keys()}
    return found


def test_mac_build_renders_a_macos_project(mac_app_build):
    ctx, reports, bundle = mac_app_build
    assert reports["checkpoint"].status == "done"
    assert reports["app"].status == "done", reports["app"].message
    assert "macOS app" in reports["app"].message and ".aimodel as is" in reports["app"].message
    details = ctx.manifest.details("app")
    assert details.engine.status == "ready" and details.warnings == []
    pbx = ctx.path(details.xcodeproj, "project.pbxproj")
    assert check_project(pbx) == []
    configs = _configs(XcodeProject.load(str(pbx)))
    assert set(configs) == {"project/Debug", "project/Release", "GemmaBench/Debug", "GemmaBench/Release",
                            "GemmaiosBenchTests/Debug", "GemmaiosBenchTests/Release"}
    for key, settings in configs.items():
        assert "IPHONEOS_DEPLOYMENT_TARGET" not in settings and "TARGETED_DEVICE_FAMILY" not in settings, key
        if key.startswith("project/"):
            assert settings["SDKROOT"] == "macosx" and settings["MACOSX_DEPLOYMENT_TARGET"] == "27.0"
        else:
            assert settings["SUPPORTED_PLATFORMS"] == "macosx", key
    app = configs["GemmaBench/Release"]
    assert app["LD_RUNPATH_SEARCH_PATHS"] == "$(inherited) @executable_path/../Frameworks"
    assert app["CODE_SIGN_ENTITLEMENTS"] == "GemmaBench/GemmaBench.entitlements"
    assert app["PRODUCT_BUNDLE_IDENTIFIER"] == "org.gemmaios.mac"
    assert configs["GemmaiosBenchTests/Release"]["MACOSX_DEPLOYMENT_TARGET"] == "27.0"


def test_mac_entitlements_and_info_plist(mac_app_build):
    ctx, _, _ = mac_app_build
    src = ctx.path("app", "GemmaBench", "GemmaBench")
    ent = plistlib.loads((src / "GemmaBench.entitlements").read_bytes())
    assert ent == {"com.apple.security.app-sandbox": True, "com.apple.security.files.user-selected.read-only": True,
                   "com.apple.security.device.audio-input": True}
    assert ent.keys() == {APP_SANDBOX_KEY, USER_SELECTED_READ_ONLY_KEY, AUDIO_INPUT_KEY}
    assert INCREASED_MEMORY_KEY not in ent and EXTENDED_VA_KEY not in ent  # iOS-only keys
    info = plistlib.loads((src / "Info.plist").read_bytes())
    assert info[MICROPHONE_USAGE_KEY] == MICROPHONE_USAGE
    assert info["LSMinimumSystemVersion"] == "$(MACOSX_DEPLOYMENT_TARGET)"
    assert info["CFBundleIdentifier"] == "$(PRODUCT_BUNDLE_IDENTIFIER)"
    assert not [k for k in info if k.startswith("UI") or k == "LSRequiresIPhoneOS"]
    config = (src / "AppConfig.swift").read_text()
    assert 'static let platform = "macOS"' in config and 'static let arch = ""' in config


def test_mac_app_carries_the_four_function_bundle_as_is(mac_app_build):
    """The payload is the bundle's: metadata.json with gemmaios.multimodal, the tokenizer and the one .aimodel
    (no .aimodelc: the Mac specializes it at its first load), hard links into the .app's payload folder."""
    ctx, _, bundle = mac_app_build
    meta = json.loads((bundle / c.BUNDLE_METADATA_FILE).read_text())
    main = meta["assets"]["main"]
    assert main.endswith(".aimodel") and "multimodal" in meta["gemmaios"]
    payload = ctx.path("app", "GemmaBench", c.PAYLOAD_DIR, c.PAYLOAD_BUNDLES_DIR, bundle.name)
    shipped = sorted(p.relative_to(payload).as_posix() for p in payload.rglob("*") if p.is_file())
    assert c.BUNDLE_METADATA_FILE in shipped and any(p.startswith(f"{c.BUNDLE_TOKENIZER_DIR}/") for p in shipped)
    assets = {p.split("/")[0] for p in shipped if ".aimodel" in p.split("/")[0]}
    assert assets == {main}
    for rel in shipped:
        assert (payload / rel).stat().st_ino == (bundle / rel).stat().st_ino, rel
    assert json.loads((payload / c.BUNDLE_METADATA_FILE).read_text())["gemmaios"]["multimodal"] \
        == meta["gemmaios"]["multimodal"]


def test_mac_xcode_build_is_pending_with_its_command(mac_app_build):
    """No Mac here: the sign step (for a Mac build: `xcodebuild build` of the macOS app) stops with the command."""
    ctx, reports, _ = mac_app_build
    sign = reports["sign"]
    assert sign.status == "pending"
    assert "xcodebuild -project app/GemmaBench/GemmaBench.xcodeproj -scheme GemmaBench -configuration Release " \
           "-destination generic/platform=macOS" in sign.command
    assert " build -allowProvisioningUpdates" in sign.command and "sign/mac/" in sign.command
    assert "archive" not in sign.command and "exportArchive" not in sign.command
    assert not ctx.path("sign", "mac").exists()


def test_mac_xcode_build_over_ssh_brings_back_the_app(mac_app_build, loopback_mac, tmp_path):
    """With a Mac (here the loopback SSH "Mac" whose PATH holds the labelled xcodebuild stand-in, which builds
    nothing and refuses a project that is not a macOS one), the step runs the same command there and records
    the .app it brings back: its bundle id, executable and hash."""
    ctx, _, _ = mac_app_build
    options = BuildOptions(model=str(ctx.path("12b_unified")), quant="int4", max_context=256, target="mac",
                           kernel="stock", vision=True, audio=True, mac=loopback_mac.target,
                           extra={"app": {"bundle_id": "org.gemmaios.mac", "config": ctx.path("none.yaml")},
                                  "sign": {"team_id": "ABCDE12345"}, "ssh_options": loopback_mac.ssh_options,
                                  "mac_workdir": str(tmp_path / "remote")})
    calls = len(loopback_mac.xcodebuild_calls())
    ctx, reports = run_build(options, ctx.build_dir, only={"sign"})
    (sign,) = reports
    assert sign.status == "done", sign.message
    (argv,) = [call["argv"] for call in loopback_mac.xcodebuild_calls()[calls:] if call["argv"] != ["-version"]]
    assert argv[:8] == ["-project", argv[1], "-scheme", "GemmaBench", "-configuration", "Release", "-destination",
                        "generic/platform=macOS"] and argv[1].endswith("GemmaBench/GemmaBench.xcodeproj")
    assert "build" in argv and "DEVELOPMENT_TEAM=ABCDE12345" in argv
    d = ctx.manifest.details("sign")
    assert (d.platform, d.app, d.ipa, d.host) == ("mac", "sign/mac/GemmaBench.app", "", loopback_mac.target)
    assert (d.bundle_id, d.executable) == ("org.gemmaios.mac", "GemmaBench")
    contents = ctx.path(d.app, "Contents")
    assert (contents / "MacOS" / "GemmaBench").is_file() and (contents / "_CodeSignature" / "CodeResources").is_file()
    assert (contents / "Resources" / c.PAYLOAD_DIR / c.PAYLOAD_BUNDLES_DIR).is_dir()


def test_platform_choices_are_checked(tmp_path):
    assert set(APP_PLATFORMS) == {"ios", "mac"}
    with pytest.raises(AppTemplateError, match="platform 'tvos' is not one of ios, mac"):
        render_app(tmp_path, AppSettings(ple="none", prepare_engine=False, platform="tvos"))
    with pytest.raises(AppTemplateError, match="not a macOS version >= 27.0"):
        render_app(tmp_path, AppSettings(ple="none", prepare_engine=False, platform="mac", deployment_target="26.0"))


def test_a_bundle_compiled_for_an_iphone_is_refused_for_the_mac_app(mac_app_build):
    """metadata.json naming an .aimodelc (an iPhone compile) is refused by name, pointing at metadata.mac.json."""
    ctx, _, bundle = mac_app_build
    compiled = ctx.path("bundle", "compiled-for-iphone")
    compiled.mkdir()
    meta = json.loads((bundle / c.BUNDLE_METADATA_FILE).read_text())
    meta["assets"]["main"] = meta["assets"]["main"].replace(".aimodel", ".h18p.aimodelc")
    (compiled / c.BUNDLE_METADATA_FILE).write_text(json.dumps(meta))  # a new file: the shared bundle is untouched
    options = BuildOptions(model=str(ctx.path("12b_unified")), quant="int4", max_context=256, target="mac",
                           kernel="stock", vision=True, audio=True,
                           extra={"app": {"bundle_id": "org.gemmaios.mac", "config": ctx.path("none.yaml"),
                                          "bundle_dir": "bundle/compiled-for-iphone", "bundle_name": bundle.name,
                                          "prepare_engine": False}})
    _, reports = run_build(options, ctx.build_dir, only={"checkpoint", "app"})
    app = next(r for r in reports if r.name == "app")
    assert app.status == "failed"
    assert "the macOS app loads the bundle's .aimodel" in app.message and ".h18p.aimodelc" in app.message
    assert "metadata.mac.json" in app.message
