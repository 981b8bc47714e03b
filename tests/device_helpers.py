"""Helpers for the tests that drive the loopback device simulator (tests/devicesim) through the real
pymobiledevice3 client: the simulated iPhone, the build copies deploy pushes, transcript records.
The simulator itself is the `sim` fixture (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from devicebuild import BUNDLE_ID, copy_build, shrink_prompt_set
from devicesim import DeviceSim, SimDevice
from devicesim.appbuild import package_app

from gemmaios import contract
from gemmaios import device as dev

UDID = "00008150-000A1B2C3D4E5F60"
CHUNK = 64 << 10
PAYLOAD = contract.PAYLOAD_DIR
TABLE_I8 = f"{PAYLOAD}/{contract.PAYLOAD_TABLES_DIR}/{contract.TABLE_I8_FILE}"
TABLE_SCALE = f"{PAYLOAD}/{contract.PAYLOAD_TABLES_DIR}/{contract.TABLE_SCALE_FILE}"


def add_device(sim: DeviceSim, udid: str = UDID, **kw) -> SimDevice:
    return sim.add(SimDevice(udid=udid, root=sim.folder / udid, **kw))


def make_build(tiny_app_builds: dict, tmp_path: Path, location: str, *, short: bool = True) -> Path:
    """A copy of the session's tiny build, its .ipa where fastlane exports it (<build>/ipa/)."""
    build = copy_build(tiny_app_builds[location], tmp_path / f"build-{location}")
    if short:
        shrink_prompt_set(build)
    package_app(build)
    return build


def deploy(build: Path, **kw) -> dev.DeployResult:
    """Deploy as a user without a Mac must: the tiny bundle is not AOT-compiled."""
    return dev.deploy(build, chunk=CHUNK, allow_uncompiled=True, **kw)


def payload(build: Path) -> dict[str, bytes]:
    return {f.rel: f.path.read_bytes() for f in dev.local_files(build)}


def on_device(device: SimDevice, rel: str) -> Path:
    return device.container(BUNDLE_ID) / "Documents" / rel


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Events:
    def __init__(self):
        self.last: dict[str, tuple[int, int]] = {}

    def __call__(self, label, done, total):
        self.last[label] = (done, total)


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def deployed(sim, build, **device_state) -> SimDevice:
    device = add_device(sim, **device_state)
    deploy(build, verify=False)
    return device
