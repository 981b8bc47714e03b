import pytest

from gemmaios.checkpoint import Checkpoint, resolve_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Checkpoint:
    """The built-in tiny Gemma 4 checkpoint, generated once per test session."""
    return resolve_checkpoint("tiny", tiny_dir=tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def tiny_app_builds(tmp_path_factory) -> dict:
    """The tiny model built for real (int8 bundle, rendered app) in both bundle locations, once per session
    (tests copy them before changing anything; see tests/devicebuild.py)."""
    from devicebuild import build_tiny_app, copy_build

    root = tmp_path_factory.mktemp("tiny-app")
    bundled = build_tiny_app(root / "bundled", "bundled")
    documents = build_tiny_app(copy_build(bundled, root / "documents"), "documents", only={"checkpoint", "app"})
    return {"bundled": bundled, "documents": documents}
