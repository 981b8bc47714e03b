import pytest

from gemmaios.checkpoint import Checkpoint, resolve_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Checkpoint:
    """The built-in tiny Gemma 4 checkpoint, generated once per test session."""
    return resolve_checkpoint("tiny", tiny_dir=tmp_path_factory.mktemp("tiny") / "ckpt")
