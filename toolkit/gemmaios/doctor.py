"""`gemmaios doctor`: what this machine can do, and what to do about what it cannot."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata

from .config import UserConfig

OK, WARN, MISSING = "ok", "warn", "missing"

PYTHON_DEPS = [
    "torch", "transformers", "safetensors", "tokenizers", "huggingface_hub", "numpy",
    "coreai-core", "coreai-torch", "coremltools", "pymobiledevice3", "typer", "rich", "jinja2", "pyyaml",
]


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _run(cmd: list[str], timeout: float = 10) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_python_deps() -> list[Check]:
    checks = []
    for dist in PYTHON_DEPS:
        try:
            checks.append(Check(f"python: {dist}", OK, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            checks.append(Check(f"python: {dist}", MISSING, "not installed", f"pip install -e . (installs {dist})"))
    return checks


def check_macos() -> list[Check]:
    is_mac = platform.system() == "Darwin"
    if not is_mac:
        return [
            Check(
                "macOS + Xcode 27", MISSING, f"this is {platform.system()} {platform.machine()}",
                "AOT compile, xcodebuild and signing run on a Mac: set `mac: user@host` in gemmaios.yaml "
                "or pass --mac; otherwise those steps stop with the exact command to run there",
            )
        ]
    checks = [Check("macOS", OK, platform.mac_ver()[0])]
    for tool, fix in [("xcodebuild", "install Xcode 27 and run `sudo xcode-select -s /Applications/Xcode.app`")]:
        result = _run(["xcrun", "--find", tool]) if shutil.which("xcrun") else None
        if result and result.returncode == 0:
            version = _run([tool, "-version"])
            checks.append(Check(tool, OK, (version.stdout.splitlines() or ["?"])[0] if version else "present"))
        else:
            checks.append(Check(tool, MISSING, "not found", fix))
    result = _run(["xcrun", "--find", "coreai-build"]) if shutil.which("xcrun") else None
    if result and result.returncode == 0:
        checks.append(Check("xcrun coreai-build", OK, result.stdout.strip()))
    else:
        checks.append(Check("xcrun coreai-build", MISSING, "not found", "install Xcode 27 (macOS 27 SDK) and select it with xcode-select"))
    return checks


def check_remote_mac(config: UserConfig) -> Check:
    if not config.mac:
        return Check("remote Mac", WARN, "none configured", "add `mac: user@host` to gemmaios.yaml, or pass --mac user@host")
    if not shutil.which("ssh"):
        return Check("remote Mac", MISSING, f"{config.mac} configured, but no ssh client here", "install openssh-client")
    result = _run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *config.ssh_options, config.mac,
                   "xcrun --find coreai-build"], timeout=15)
    if result and result.returncode == 0:
        return Check("remote Mac", OK, f"{config.mac}: coreai-build at {result.stdout.strip()}")
    detail = (result.stderr.strip().splitlines() or ["no answer"])[-1] if result else "timed out"
    return Check("remote Mac", MISSING, f"{config.mac}: {detail}",
                 "check `ssh <host>` works without a password prompt and Xcode 27 is selected there")


def check_usbmuxd() -> list[Check]:
    address = os.environ.get("USBMUXD_SOCKET_ADDRESS") or "/var/run/usbmuxd"
    present = ":" in address or os.path.exists(address)
    if not present:
        return [Check("usbmuxd", MISSING, f"no socket at {address}",
                      "Linux: install and start usbmuxd (`apt install usbmuxd`); macOS has it built in")]
    checks = [Check("usbmuxd", OK, address)]
    from .device import list_devices

    try:
        devices = list_devices()  # pymobiledevice3's usbmux API is async; this wraps it
    except Exception as exc:  # noqa: BLE001 - any failure here is reported, not raised
        checks.append(Check("devices", WARN, f"could not list devices: {exc}", "check usbmuxd is running"))
        return checks
    if not devices:
        checks.append(Check("devices", WARN, "none connected", "connect an iPhone by USB and tap Trust"))
    for d in devices:
        if d.problem:
            checks.append(Check(f"device {d.udid}", WARN, d.problem, "unlock the iPhone and tap Trust"))
        else:
            detail = f"{d.name} · {d.product_type} ({d.arch or 'arch not in registry'}) · iOS {d.ios_version}"
            fix = "" if d.developer_mode is not False else "turn on Settings → Privacy & Security → Developer Mode"
            checks.append(Check(f"device {d.udid}", OK if not fix else WARN, detail, fix))
    return checks


def run_checks(config: UserConfig) -> list[Check]:
    return [*check_python_deps(), *check_macos(), check_remote_mac(config), *check_usbmuxd()]
