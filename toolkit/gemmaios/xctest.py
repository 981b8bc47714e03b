"""The XCTest bench: names and settings shared by the generated test target, `bench --xctest`
and `gemmaios farm` (one source; the Swift test file is rendered from these values).

The test target (`TARGET`) is a unit-test bundle hosted in the app (TEST_HOST), so its one test
(`TEST_CLASS`/`TEST_METHOD`) runs GemmaiosCore's bench protocol inside the app process and writes
the same transcript the app's bench mode writes, to Documents/<contract.RUNS_DIR>/ and attached
to the test's result. `xcodebuild test-without-building` hands the test process every variable
of its own environment named `TEST_RUNNER_<NAME>` as `<NAME>` (Xcode's documented mechanism), so
the bench settings travel as `TEST_RUNNER_` + the contract's launch settings.
"""

from __future__ import annotations

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
