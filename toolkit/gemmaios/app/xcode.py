"""The Xcode project: Info.plist, entitlements, the project.pbxproj object model, and a check
that every reference in a rendered project resolves (parsed with the `pbxproj` library)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from .values import (
    APP_SANDBOX_KEY,
    AUDIO_INPUT_KEY,
    CORE_PACKAGE,
    ENGINE_PRODUCTS,
    EXTENDED_VA_KEY,
    INCREASED_MEMORY_KEY,
    MICROPHONE_USAGE,
    MICROPHONE_USAGE_KEY,
    TRANSFORMERS_MIN_VERSION,
    TRANSFORMERS_PRODUCT,
    TRANSFORMERS_URL,
    USER_SELECTED_READ_ONLY_KEY,
    AppSettings,
    object_id,
)


def info_plist(s: AppSettings) -> dict:
    common = {
        "CFBundleDevelopmentRegion": "en",
        "CFBundleDisplayName": s.display_name or s.app_name,
        "CFBundleExecutable": "$(EXECUTABLE_NAME)",
        "CFBundleIdentifier": "$(PRODUCT_BUNDLE_IDENTIFIER)",
        "CFBundleInfoDictionaryVersion": "6.0",
        "CFBundleName": "$(PRODUCT_NAME)",
        "CFBundlePackageType": "APPL",
        "CFBundleShortVersionString": s.app_version,
        "CFBundleVersion": "1",
        # the chat's audio input records with the microphone (AudioInput.swift); on macOS the sandboxed
        # app also needs the audio-input entitlement (`entitlements`)
        MICROPHONE_USAGE_KEY: MICROPHONE_USAGE,
    }
    if s.platform == "mac":
        # no UIKit keys: a SwiftUI macOS app (its window is App.swift's WindowGroup)
        return {**common, "LSMinimumSystemVersion": "$(MACOSX_DEPLOYMENT_TARGET)"}
    return {
        **common,
        "LSRequiresIPhoneOS": True,
        # Documents visible in Finder / `pymobiledevice3 apps afc`: the bench logs are read back from there.
        "UIFileSharingEnabled": True,
        "LSSupportsOpeningDocumentsInPlace": True,
        "UIApplicationSceneManifest": {"UIApplicationSupportsMultipleScenes": False},
        "UILaunchScreen": {},
        "UIRequiredDeviceCapabilities": ["arm64", "metal"],
        "UISupportedInterfaceOrientations": ["UIInterfaceOrientationPortrait"],
    }


def entitlements(s: AppSettings) -> dict:
    if s.platform == "mac":
        # App Sandbox; the photo/audio file pickers hand the app user-selected files to read; the
        # microphone needs audio input (with NSMicrophoneUsageDescription in Info.plist).
        return {APP_SANDBOX_KEY: True, USER_SELECTED_READ_ONLY_KEY: True, AUDIO_INPUT_KEY: True}
    # GB-class bundles die in cold GPU specialization at the default jetsam limit (iOS-only keys).
    return {INCREASED_MEMORY_KEY: True, EXTENDED_VA_KEY: True}



def pbxproj_model(s: AppSettings, sources: list[str], resources: list[tuple[str, str, str]],
                   engine_relpath: str) -> dict:
    """The objects of project.pbxproj; every id derives from the app name and a stable key."""
    ns = s.app_name

    def oid(key: str) -> str:
        return object_id(ns, key)

    ids = {k: oid(k) for k in ("project", "main_group", "app_group", "products_group", "resources_group",
                               "target", "sources_phase", "frameworks_phase", "resources_phase",
                               "project_configs", "target_configs", "product_ref")}
    packages = [
        {"id": oid("package:engine"), "kind": "local", "name": engine_relpath, "path": engine_relpath},
        {"id": oid("package:core"), "kind": "local", "name": CORE_PACKAGE, "path": CORE_PACKAGE},
        {"id": oid("package:transformers"), "kind": "remote", "name": "swift-transformers",
         "url": TRANSFORMERS_URL, "min_version": TRANSFORMERS_MIN_VERSION},
    ]
    by_key = {"engine": packages[0], "core": packages[1], "transformers": packages[2]}
    products = [
        {"id": oid(f"product:{name}"), "name": name, "package": by_key[key]}
        for key, name in [*(("engine", n) for n in ENGINE_PRODUCTS), ("core", CORE_PACKAGE),
                          ("transformers", TRANSFORMERS_PRODUCT)]
    ]
    file_refs, build_files, app_children, res_children = [], [], [], []
    for name in sources:
        ref = {"id": oid(f"file:{name}"), "comment": name, "type": "sourcecode.swift", "path": name,
               "tree": "<group>", "name": None, "explicit": False}
        file_refs.append(ref)
        app_children.append(ref)
        build_files.append({"id": oid(f"build:{name}"), "ref": ref["id"], "product": None,
                            "comment": f"{name} in Sources", "phase": "sources"})
    for key, path, kind in resources:
        name = Path(path).name
        ref = {"id": oid(f"file:{key}"), "comment": name, "type": kind, "path": path, "tree": "<group>",
               "name": name if name != path else None, "explicit": False}
        file_refs.append(ref)
        (app_children if key.startswith("app:") else res_children).append(ref)
        if kind not in ("text.plist.xml", "text.plist.entitlements"):
            build_files.append({"id": oid(f"build:{key}"), "ref": ref["id"], "product": None,
                                "comment": f"{name} in Resources", "phase": "resources"})
    product = {"id": ids["product_ref"], "comment": f"{s.app_name}.app", "type": "wrapper.application",
               "path": f"{s.app_name}.app", "tree": "BUILT_PRODUCTS_DIR", "name": None, "explicit": True}
    file_refs.append(product)
    for product_dep in products:
        build_files.append({"id": oid(f"build:product:{product_dep['name']}"), "ref": None,
                            "product": product_dep["id"], "comment": f"{product_dep['name']} in Frameworks",
                            "phase": "frameworks"})
    groups = [
        {"id": ids["main_group"], "comment": None, "name": None, "path": None,
         "children": [{"id": ids["app_group"], "comment": s.app_name},
                      {"id": ids["resources_group"], "comment": "Model"},
                      {"id": ids["products_group"], "comment": "Products"}]},
        {"id": ids["app_group"], "comment": s.app_name, "name": None, "path": s.app_name,
         "children": app_children},
        {"id": ids["resources_group"], "comment": "Model", "name": "Model", "path": None,
         "children": res_children},
        {"id": ids["products_group"], "comment": "Products", "name": "Products", "path": None,
         "children": [product]},
    ]
    platform = s.app_platform
    common = {
        "ALWAYS_SEARCH_USER_PATHS": "NO",
        "CLANG_ENABLE_MODULES": "YES",
        "ENABLE_USER_SCRIPT_SANDBOXING": "YES",
        platform.deployment_key: s.deployment_target,
        "SDKROOT": platform.sdkroot,
        "SWIFT_VERSION": "5.0",
    }
    project_cfgs = [
        {"id": oid("config:project:Debug"), "name": "Debug",
         "settings": {**common, "DEBUG_INFORMATION_FORMAT": "dwarf", "ONLY_ACTIVE_ARCH": "YES",
                      "SWIFT_OPTIMIZATION_LEVEL": "-Onone", "SWIFT_ACTIVE_COMPILATION_CONDITIONS": "DEBUG"}},
        # Benchmark Release builds only: a Debug engine measures ~3x slower.
        {"id": oid("config:project:Release"), "name": "Release",
         "settings": {**common, "DEBUG_INFORMATION_FORMAT": "dwarf-with-dsym", "SWIFT_OPTIMIZATION_LEVEL": "-O",
                      "SWIFT_COMPILATION_MODE": "wholemodule", "VALIDATE_PRODUCT": "YES"}},
    ]
    target_settings = {
        "CODE_SIGN_ENTITLEMENTS": f"{s.app_name}/{s.app_name}.entitlements",
        "CODE_SIGN_STYLE": "Automatic",
        "CURRENT_PROJECT_VERSION": "1",
        "DEVELOPMENT_TEAM": s.team_id or "",
        "INFOPLIST_FILE": f"{s.app_name}/Info.plist",
        "GENERATE_INFOPLIST_FILE": "NO",
        "MARKETING_VERSION": s.app_version,
        "PRODUCT_BUNDLE_IDENTIFIER": s.bundle_id,
        "PRODUCT_NAME": "$(TARGET_NAME)",
        "SUPPORTED_PLATFORMS": platform.sdkroot,
        "LD_RUNPATH_SEARCH_PATHS": platform.runpath,
    }
    if platform.sdkroot == "iphoneos":
        target_settings["TARGETED_DEVICE_FAMILY"] = "1"  # iPhone
    target_cfgs = [
        {"id": oid(f"config:target:{n}"), "name": n, "settings": target_settings} for n in ("Debug", "Release")
    ]
    from .. import xctest  # the bench's XCTest bundle, hosted in the app

    test = xctest.test_target_model(s.app_name, s.bundle_id, s.deployment_target, s.team_id, oid, ids["target"],
                                    packages[1], sdk=platform.sdkroot, deployment_key=platform.deployment_key)
    return {
        "test": test,
        "ids": ids,
        "app_name": s.app_name,
        "file_refs": file_refs,
        "build_files": build_files,
        "groups": groups,
        "configurations": project_cfgs + target_cfgs + test["configs"],
        "configuration_lists": [
            {"id": ids["project_configs"], "comment": f'Build configuration list for PBXProject "{s.app_name}"',
             "configs": project_cfgs},
            {"id": ids["target_configs"],
             "comment": f'Build configuration list for PBXNativeTarget "{s.app_name}"', "configs": target_cfgs},
            {"id": test["ids"]["configs"],
             "comment": f'Build configuration list for PBXNativeTarget "{test["name"]}"', "configs": test["configs"]},
        ],
        "packages": packages,
        "products": products,
    }


# ---- checking a rendered project ------------------------------------------------------------

_REF_KEYS = ("fileRef", "productRef", "package", "buildConfigurationList", "mainGroup", "productRefGroup",
             "productReference", "rootObject")
_LIST_KEYS = ("children", "files", "buildPhases", "targets", "buildConfigurations", "packageReferences",
              "packageProductDependencies", "dependencies")


def check_project(pbxproj: Path) -> list[str]:
    """Parse with the `pbxproj` library and list every reference that does not resolve."""
    from pbxproj import XcodeProject

    try:
        # the library prints a warning for files not there yet (the bundle before convert)
        with contextlib.redirect_stdout(io.StringIO()):
            project = XcodeProject.load(str(pbxproj))
    except Exception as exc:  # the parser raises plain exceptions on syntax errors
        return [f"{pbxproj} does not parse: {exc}"]
    data = _plain(project)
    objects = data["objects"]
    problems = []
    if data.get("rootObject") not in objects:
        problems.append(f"rootObject {data.get('rootObject')} is not an object")
    for oid, obj in objects.items():
        if not re.fullmatch(r"[0-9A-F]{24}", oid):
            problems.append(f"object id {oid} is not 24 hex digits")
        for key in _REF_KEYS:
            if key in obj and obj[key] not in objects:
                problems.append(f"{obj.get('isa')} {oid}.{key} → {obj[key]} does not exist")
        for key in _LIST_KEYS:
            for ref in obj.get(key, []) or []:
                if ref not in objects:
                    problems.append(f"{obj.get('isa')} {oid}.{key} → {ref} does not exist")
        if obj.get("isa") == "PBXNativeTarget":
            for config in objects.get(obj["buildConfigurationList"], {}).get("buildConfigurations", []):
                settings = objects.get(config, {}).get("buildSettings", {})
                for key in ("INFOPLIST_FILE", "CODE_SIGN_ENTITLEMENTS"):
                    if key in settings and not (pbxproj.parent.parent / settings[key]).is_file():
                        problems.append(f"{key} {settings[key]} does not exist next to the project")
    return problems


def _plain(project) -> dict:
    """The project as plain dicts/lists (via the library's own serialisation of each object)."""
    objects = {}
    for obj in project.objects.get_objects_in_section(*project.objects.get_sections()):
        objects[obj.get_id()] = _to_plain(obj)
    return {"objects": objects, "rootObject": str(project.rootObject)}


def _to_plain(value):
    from pbxproj.PBXGenericObject import PBXGenericObject
    from pbxproj.PBXList import PBXList

    if isinstance(value, PBXGenericObject):
        return {k: _to_plain(value[k]) for k in value.get_keys()}
    if isinstance(value, PBXList | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return str(value)


