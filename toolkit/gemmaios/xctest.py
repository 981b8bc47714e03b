"""The XCTest bench: names and settings shared by the generated test target, `bench --xctest`
and `gemmaios farm` (one source; the Swift test file is rendered from these values).

The test target (`TARGET`) is a unit-test bundle hosted in the app (TEST_HOST), so its one test
(`TEST_CLASS`/`TEST_METHOD`) runs GemmaiosCore's bench protocol inside the app process and writes
the same transcript the app's bench mode writes, to Documents/<contract.APP_RUNS_DIR>/ and attached
to the test's result. `xcodebuild test-without-building` hands the test process every variable
of its own environment named `TEST_RUNNER_<NAME>` as `<NAME>` (Xcode's documented mechanism), so
the bench settings travel as `TEST_RUNNER_` + the contract's launch settings.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from . import contract

TARGET = "GemmaiosBenchTests"
TEST_CLASS = "BenchTests"
TEST_METHOD = "testBench"
TEST_IDENTIFIER = f"{TARGET}/{TEST_CLASS}/{TEST_METHOD}"  # for -only-testing:
RUNNER_PREFIX = "TEST_RUNNER_"
# Where the test also copies the transcript when the farm's host sets it (Device Farm's log folder).
FARM_LOG_DIR_ENV = "DEVICEFARM_LOG_DIR"


def runner_environment(run_id: str, trials: int, udid: str) -> dict[str, str]:
    """The contract's bench launch settings as `xcodebuild test-without-building` passes them on."""
    env = {contract.ENV["bench"]: "1", contract.ENV["trials"]: str(trials),
           contract.ENV["runId"]: run_id, contract.ENV["udid"]: udid}
    return {RUNNER_PREFIX + k: v for k, v in env.items()}

# What `gemmaios sign --xctest` leaves in the build folder (build-for-testing), and farm uploads.
XCTEST_DIR = "xctest"
TEST_PACKAGE_REL = f"{XCTEST_DIR}/{TARGET}.zip"  # the test products (.xctest in the host app) zipped

FOOTER_RECORD = "footer"  # the transcript's last record (transcript.py, bench._footer)
TIMEOUT_SECONDS = 3600  # the test's wait for the footer
TEMPLATE = "Tests/BenchTests.swift.j2"
SOURCE = "BenchTests.swift"


def swift_values() -> dict:
    """What the Swift test template is rendered with (names from this module and the contract)."""
    return {"test_class": TEST_CLASS, "test_method": TEST_METHOD, "timeout_seconds": TIMEOUT_SECONDS,
            "runner_prefix": RUNNER_PREFIX, "bench_env": contract.ENV["bench"], "run_id_env": contract.ENV["runId"],
            "footer_record": FOOTER_RECORD}


def test_target_model(app_name: str, bundle_id: str, deployment_target: str, team_id: str | None, oid,
                      app_target_id: str, core_package: dict, *, sdk: str = "iphoneos",
                      deployment_key: str = "IPHONEOS_DEPLOYMENT_TARGET") -> dict:
    """The pbxproj objects of the unit-test bundle hosted in the app (rendered by project.pbxproj.j2);
    `sdk`/`deployment_key`: the app's platform (gemmaios.app.APP_PLATFORMS)."""
    ids = {k: oid(f"xctest:{k}") for k in ("target", "sources_phase", "frameworks_phase", "group", "configs",
                                            "product_ref", "dependency", "proxy", "file", "build_file",
                                            "core_product", "core_build")}
    settings = {
        "BUNDLE_LOADER": "$(TEST_HOST)",
        "CODE_SIGN_STYLE": "Automatic",
        "CURRENT_PROJECT_VERSION": "1",
        "DEVELOPMENT_TEAM": team_id or "",
        "GENERATE_INFOPLIST_FILE": "YES",
        deployment_key: deployment_target,
        "MARKETING_VERSION": "1.0",
        "PRODUCT_BUNDLE_IDENTIFIER": f"{bundle_id}.{TARGET}",
        "PRODUCT_NAME": "$(TARGET_NAME)",
        "SUPPORTED_PLATFORMS": sdk,
        "TEST_HOST": f"$(BUILT_PRODUCTS_DIR)/{app_name}.app/$(BUNDLE_EXECUTABLE_FOLDER_PATH)/{app_name}",
    }
    if sdk == "iphoneos":
        settings["TARGETED_DEVICE_FAMILY"] = "1"  # iPhone
    configs = [{"id": oid(f"xctest:config:{n}"), "name": n, "settings": settings} for n in ("Debug", "Release")]
    return {"name": TARGET, "ids": ids, "source": SOURCE, "app_target": app_target_id, "configs": configs,
            "core_package": core_package, "product": f"{TARGET}.xctest"}


# ---- build-for-testing (the sign step): the test products and the farm's test package ------------

PRODUCTS_DIR = "xctest"  # <build>/sign/xctest/: build-for-testing's Build/Products
DESTINATION = "generic/platform=iOS"


def build_for_testing_argv(project: str, scheme: str, derived: str, team_id: str) -> list[str]:
    return ["xcodebuild", "-project", project, "-scheme", scheme, "-configuration", "Release",
            "-destination", DESTINATION, "-derivedDataPath", derived, "build-for-testing",
            "-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={team_id}"]


def package_test_products(build_dir: Path, products: Path) -> Path:
    """The test products zipped as the farm's test package (<build>/xctest/GemmaiosBenchTests.zip)."""
    out = Path(build_dir) / TEST_PACKAGE_REL
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in products.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(products).as_posix())
    tmp.replace(out)
    return out
