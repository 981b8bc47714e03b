import pytest

from gemmaios.checkpoint import Checkpoint, resolve_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Checkpoint:
    """The built-in tiny Gemma 4 checkpoint, generated once per test session."""
    return resolve_checkpoint("tiny", tiny_dir=tmp_path_factory.mktemp("tiny") / "ckpt")


# ---- Swift (issue 15): a real compiler, or a skip that says how to get one -------------------

from swift_toolchain import REQUIRE_ENV, find_swift, missing_message  # noqa: E402

_SWIFT = find_swift()
SWIFT_RESULTS: list[str] = []  # lines for the terminal summary (e.g. the `swift test` count)


def pytest_report_header(config):
    toolchain, tried = _SWIFT
    if toolchain is None:
        return [f"swift: none — {missing_message(tried)}"]
    return [f"swift: {toolchain.describe()}"]


def pytest_terminal_summary(terminalreporter):
    if SWIFT_RESULTS:  # shown even with -q (CI): which compiler ran and what it checked
        terminalreporter.section("Swift")
        terminalreporter.write_line(pytest_report_header(None)[0])
        for line in SWIFT_RESULTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def swift_toolchain():
    """The Swift toolchain; skips (or fails when GEMMAIOS_REQUIRE_SWIFT=1, as in CI) without one."""
    import os

    toolchain, tried = _SWIFT
    if toolchain is None:
        message = missing_message(tried)
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
        pytest.skip(message)
    return toolchain

@pytest.fixture(scope="session")
def tiny_app_builds(tmp_path_factory) -> dict:
    """The tiny model built for real (int8 bundle, rendered app) in both bundle locations, once per session
    (tests copy them before changing anything; see tests/devicebuild.py)."""
    from devicebuild import build_tiny_app, copy_build

    root = tmp_path_factory.mktemp("tiny-app")
    bundled = build_tiny_app(root / "bundled", "bundled")
    documents = build_tiny_app(copy_build(bundled, root / "documents"), "documents", only={"checkpoint", "app"})
    return {"bundled": bundled, "documents": documents}


# ---- the pinned upstream engine (apple/coreai-models at the base of patches/series) -----------

@pytest.fixture(scope="session")
def pinned_engine(tmp_path_factory):
    """The pinned upstream tree (read-only), from $GEMMAIOS_ENGINE_SOURCE, the user cache or the vendor
    snapshot; skips where none exists, fails under CI=true (the upstream checks must run there)."""
    import os

    from upstream_engine import materialise, missing_message

    from gemmaios.patches import load_series

    series = load_series()
    engine = materialise(series, tmp_path_factory.mktemp("pinned-engine"))
    if engine is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {missing_message(series)}", pytrace=False)
        pytest.skip(missing_message(series))
    SWIFT_RESULTS.append(f"upstream engine: {engine.origin}")
    return engine
