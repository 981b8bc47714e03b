"""Apple's `xcrun devicectl` (Xcode 15+, CoreDevice) as the device transport on macOS.

CoreDevice brings up the iOS 17+ tunnel and mounts the developer disk image itself, with no
root, so on a Mac (here, or one reached over SSH with `--mac`, the phone then attached to it)
listing, install, launch with environment, process checks and copying the transcript back go
through devicectl. The resumable multi-GB payload push stays on pymobiledevice3 (usbmuxd) when
the phone is attached to this machine; on Linux everything stays on pymobiledevice3.

Every call runs `xcrun devicectl ... --json-output <file>` through a toolchain runner
(`gemmaios.runners`: this Mac, or a Mac over SSH) and reads that JSON, which has the shape
`{"info": {..., "outcome": "success" | "failed"}, "result": {...}}` or, on failure,
`{"error": {"code", "domain", "userInfo": {...}}, "info": {...}}` with each userInfo value
wrapped as `{"string": ...}` and the cause under `NSUnderlyingError: {"error": {...}}`.
Failures map to the named device errors. The codes and texts come from public reports of
devicectl's output (Xcode 15 to 27), never from a run against a real phone in this project.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..runners import Arg, In, Out, ToolchainRunner, runner_for
from .connect import TRANSPORT_ENV, TRANSPORTS, DeviceInfo, arch_name_for_product
from .devicectl_errors import DevicectlFailed
from .errors import (
    AppIdentifierMismatch,
    AppInstallFailed,
    AppMissing,
    DeveloperImageNotMounted,
    DeveloperModeOff,
    DeveloperNotTrusted,
    DeviceDisconnected,
    DeviceError,
    DeviceLocked,
    DeviceNotFound,
    DeviceNotTrusted,
    LaunchFailed,
    NoDevice,
    SeveralDevices,
)

DEVICECTL = "devicectl"  # the GEMMAIOS_DEVICE_TRANSPORT value that forces it
PYMOBILEDEVICE3 = "pymobiledevice3"
APP_DATA_CONTAINER = "appDataContainer"
CORE_DEVICE_ERROR = "com.apple.dt.CoreDeviceError"
TRUST_DEVELOPER_HINT = ("on the iPhone: Settings → General → VPN & Device Management → your developer → Trust, "
                        "then run again (a first launch of a development-signed app needs this once)")
MISMATCH_HINT = ("an app with this bundle id signed by another team is installed: delete it from the iPhone "
                 "(or give this build another bundle id), then deploy again")
_OUT = "@out@/"  # an argument starting with this names a file in the call's output folder

# Runs devicectl with `@out@/<name>` arguments pointing into the output folder $1, and records
# the exit status and both streams there: a failed call still hands back devicectl's JSON
# (the runners discard outputs of a command that exits non-zero).
_WRAPPER = (
    'd=$1; shift; mkdir -p "$d/pulled"; '
    'for a in "$@"; do shift; case $a in ' + _OUT + '*) a="$d/${a#' + _OUT + '}";; esac; set -- "$@" "$a"; done; '
    'xcrun devicectl "$@" >"$d/stdout" 2>"$d/stderr"; echo $? >"$d/rc"'
)


# ---- choosing the transport ----------------------------------------------------------------------

def device_transport(*, mac: str | None = None, platform: str | None = None,
                     phone_is_local: Callable[[], bool] | None = None) -> str:
    """Which tool lists, installs, launches and copies back: "devicectl" or "pymobiledevice3".

    GEMMAIOS_DEVICE_TRANSPORT=devicectl forces devicectl; lockdown/tunnel/tunneld/userspace force pymobiledevice3.
    Otherwise devicectl on macOS, and with `--mac` when the phone is not attached here (it then
    hangs off that Mac); pymobiledevice3 on Linux. `phone_is_local` is asked only in that last case.
    """
    setting = os.environ.get(TRANSPORT_ENV, "auto")
    if setting == DEVICECTL:
        return DEVICECTL
    if setting not in TRANSPORTS:
        raise DeviceError(f"{TRANSPORT_ENV}={setting!r} is not one of {', '.join(TRANSPORTS)}",
                          hint=f"unset {TRANSPORT_ENV} or set it to auto")
    if setting != "auto":  # lockdown, tunnel, tunneld, userspace: pymobiledevice3's ways in
        return PYMOBILEDEVICE3
    if (platform or sys.platform) == "darwin":
        return DEVICECTL
    if mac and not (phone_is_local or (lambda: False))():
        return DEVICECTL
    return PYMOBILEDEVICE3


def _usbmuxd_sees_a_phone() -> bool:
    import asyncio

    from .connect import mux_devices

    try:
        return bool(asyncio.run(mux_devices()))
    except DeviceError:
        return False


def devicectl_for(mac: str | None = None, ssh_options: Sequence[str] = (), workdir: str = "~/gemmaios-remote", *,
                  platform: str | None = None) -> Devicectl | None:
    """A Devicectl on this Mac or on `mac` when device_transport() picks devicectl, else None. On a Mac
    with `mac` given, this Mac's own devicectl when the phone is attached here."""
    if device_transport(mac=mac, platform=platform, phone_is_local=_usbmuxd_sees_a_phone) != DEVICECTL:
        return None
    command = "xcrun devicectl list devices"
    system = "Darwin" if (platform or sys.platform) == "darwin" else "Linux"
    if mac and system == "Darwin" and _usbmuxd_sees_a_phone():
        mac = None
    return Devicectl(runner_for(mac, ssh_options, workdir, pending_command=command, system=system,
                                resume=f"or unset {TRANSPORT_ENV} to use pymobiledevice3 with the phone attached here"))


# ---- reading devicectl's JSON --------------------------------------------------------------------

def _plain(value):
    """userInfo values come wrapped by type (`{"string": "..."}`); unwrap one level."""
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if not isinstance(inner, (dict, list)):
            return inner
    return value


@dataclass
class ErrorChain:
    """An NSError and its underlying errors, flattened: (domain, code) pairs and every text."""

    links: list[tuple[str, int | None]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)  # BSErrorCodeDescription, LegacyErrorString, ...

    @classmethod
    def read(cls, error: dict | None) -> ErrorChain:
        chain = cls()
        seen = 0
        while isinstance(error, dict) and seen < 16:
            seen += 1
            code = error.get("code")
            chain.links.append((str(error.get("domain") or ""), code if isinstance(code, int) else None))
            info = error.get("userInfo") or {}
            underlying = None
            for key, raw in info.items() if isinstance(info, dict) else ():
                if key == "NSUnderlyingError":
                    underlying = raw.get("error") if isinstance(raw, dict) else None
                    continue
                value = _plain(raw)
                if isinstance(value, str):
                    if key.startswith("NSLocalized") or key == "NSDescription":
                        chain.texts.append(value)
                    else:
                        chain.fields.setdefault(key, value)
            error = underlying
        return chain

    def has(self, domain: str, *codes: int) -> bool:
        return any(d == domain and c in codes for d, c in self.links)

    def text(self) -> str:
        return " ".join([*self.texts, *self.fields.values()])


def devicectl_error(command: Sequence[str], data: dict | None, stderr: str, *, device: str = "?",
                    bundle_id: str | None = None) -> DeviceError:
    """The named error for a failed devicectl call (its JSON `error`, else its stderr)."""
    chain = ErrorChain.read((data or {}).get("error"))
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # without JSON: devicectl's `ERROR:` line, else the last line (a crash ends with its exception)
    fallback = [ln for ln in lines if ln.startswith("ERROR:")][:1] or lines[-1:] or ["no error text"]
    texts = list(dict.fromkeys(chain.texts))[:2] or fallback
    said = "; ".join(t.removeprefix("ERROR: ").strip() for t in texts)
    text = f"{chain.text()} {stderr}".lower()
    reason = chain.fields.get("BSErrorCodeDescription", "")
    legacy = chain.fields.get("LegacyErrorString", "")
    what = " ".join(command[:3])
    app = bundle_id or "the app"
    if "not been explicitly trusted" in text or reason == "Security":
        return DeveloperNotTrusted(f"{device} would not launch {app}: its developer is not trusted on the iPhone ({said})",
                                  hint=TRUST_DEVELOPER_HINT)
    if "mismatchedapplicationidentifierentitlement" in text:
        return AppIdentifierMismatch(f"{device} refused {app}: MismatchedApplicationIdentifierEntitlement ({said})",
                                     hint=MISMATCH_HINT)
    if "developer mode" in text and any(w in text for w in ("disabled", "not enabled", " off")):
        return DeveloperModeOff(f"Developer Mode is off on {device} ({said})",
                                hint="on the iPhone: Settings → Privacy & Security → Developer Mode → On, restart "
                                     "and confirm, then run again")
    if reason == "Locked" or "locked" in text or "passcode" in text:
        return DeviceLocked(f"{device} is locked ({said})",
                            hint="unlock the iPhone, keep it awake, and run again")
    if chain.has(CORE_DEVICE_ERROR, 1000) or "device was not found" in text or "no devices" in text:
        return DeviceNotFound(f"devicectl does not see {device} ({said})",
                              hint="attach the iPhone to the Mac that runs devicectl, unlock it, and check "
                                   "`xcrun devicectl list devices` shows it")
    if "is not installed" in text:
        return AppMissing(f"{app} is not installed on {device} ({said})",
                          hint="run `gemmaios deploy` first")
    if "not paired" in text or "unpaired" in text:
        return DeviceNotTrusted(f"{device} is not paired with the Mac ({said})",
                                hint="unlock the iPhone, tap Trust on the dialog and enter the passcode, then run again")
    if "developer disk image" in text or chain.has(CORE_DEVICE_ERROR, 12040):
        return DeveloperImageNotMounted(f"the developer disk image could not be mounted on {device} ({said})",
                                        hint="keep the iPhone unlocked and attached while the Mac downloads it (once, "
                                             "needs internet); `xcrun devicectl device info details` shows its state")
    if command[:3] == ["device", "install", "app"] or legacy:
        from .install import INSTALL_HINTS

        return AppInstallFailed(f"{device} refused to install {app}: {said}" + (f" ({legacy})" if legacy else ""),
                                hint=INSTALL_HINTS.get(legacy, "check the app is signed for this device and run again"))
    if "connection" in text or "tunnel" in text or chain.has(CORE_DEVICE_ERROR, 4, 4000):
        return DeviceDisconnected(f"the Mac lost its connection to {device} during `devicectl {what}` ({said})",
                                  hint="reconnect and unlock the iPhone, then run the same command again")
    if command[:3] == ["device", "process", "launch"]:
        return LaunchFailed(f"{device} would not launch {app}: {said}",
                            hint="open the app once by hand on the iPhone, then run again")
    return DevicectlFailed(f"`devicectl {what}` failed on {device}: {said}",
                           hint="run the same devicectl command on the Mac to see its full output")


def file_missing(data: dict | None) -> bool:
    """Whether a failed copy failed only because the file is not there (yet)."""
    chain = ErrorChain.read((data or {}).get("error"))
    return (chain.has("NSPOSIXErrorDomain", 2) or chain.has("NSCocoaErrorDomain", 4, 260)
            or "no such file" in chain.text().lower())


def parse_devices(data: dict) -> list[DeviceInfo]:
    """`list devices` → DeviceInfo per physical device. Reads Xcode 27's `properties` first, then the
    older `hardwareProperties` / `deviceProperties` / `connectionProperties`; drops simulators."""
    found = []
    for entry in (data.get("result") or {}).get("devices") or []:
        props = entry.get("properties") or {}

        def pick(new: tuple[str, ...], old: tuple[str, ...], entry=entry, props=props):
            for root, path in ((props, new), (entry, old)):
                value = root
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                if value not in (None, ""):
                    return value
            return None

        if pick(("hardware", "reality"), ("hardwareProperties", "reality")) == "simulated":
            continue
        udid = pick(("hardware", "udid"), ("hardwareProperties", "udid")) or entry.get("identifier")
        if not udid:
            continue
        version = pick(("software", "osVersionNumber", "stringValue"), ("deviceProperties", "osVersionNumber"))
        mode = pick(("state", "developerModeStatus"), ("deviceProperties", "developerModeStatus"))
        if isinstance(mode, dict):  # Xcode 27: {"enabled": {...}}
            mode = next(iter(mode), None)
        pairing = pick(("connection", "pairingState"), ("connectionProperties", "pairingState"))
        transport = pick(("connection", "transportType"), ("connectionProperties", "transportType"))
        product = pick(("hardware", "productType"), ("hardwareProperties", "productType"))
        info = DeviceInfo(udid=udid, name=pick(("state", "name"), ("deviceProperties", "name")),
                          product_type=product, ios_version=str(version) if version else None, arch=arch_name_for_product(product),
                          developer_mode={"enabled": True, "disabled": False}.get(mode),
                          connection={"wired": "USB", "localNetwork": "Network"}.get(transport, transport or "?"),
                          paired=pairing == "paired")
        if not info.paired:
            info.problem = "not paired: unlock the iPhone and tap Trust"
        found.append(info)
    return found


def launched_pid(data: dict) -> int | None:
    process = (data.get("result") or {}).get("process") or {}
    pid = process.get("processIdentifier")
    return pid if isinstance(pid, int) and pid > 0 else None


def running_pids(data: dict) -> set[int]:
    return {p["processIdentifier"] for p in (data.get("result") or {}).get("runningProcesses") or []
            if isinstance(p, dict) and isinstance(p.get("processIdentifier"), int)}


# ---- the runner ----------------------------------------------------------------------------------

class Devicectl:
    """`xcrun devicectl` through a toolchain runner (this Mac, or a Mac over SSH); JSON in, named errors out."""

    def __init__(self, runner: ToolchainRunner, *, timeout: float = 600) -> None:
        self.runner = runner
        self.timeout = timeout

    def describe(self) -> str:
        return f"devicectl on {self.runner.describe()}"

    def close(self) -> None:
        self.runner.close()

    def call(self, words: Sequence[str], args: Sequence[Arg] = (), *, device: str = "?", bundle_id: str | None = None,
             pull: Path | None = None, timeout: float | None = None, missing_ok: bool = False) -> dict | None:
        """Run `devicectl <words> --json-output … <args>` and return its JSON. With `pull`, what devicectl
        wrote into the call's `pulled/` folder is moved there. `missing_ok`: a copy of a file that
        does not exist returns None instead of raising."""
        command: list[Arg] = ["sh", "-c", _WRAPPER, "sh", Out("devicectl", folder=True), *words,
                              "--json-output", _OUT + "result.json", *args]
        with tempfile.TemporaryDirectory(prefix="gemmaios-devicectl-") as tmp:
            self.runner.run(command, Path(tmp), timeout=timeout or self.timeout)
            folder = Path(tmp) / "devicectl"
            rc_text = (folder / "rc").read_text().strip() if (folder / "rc").is_file() else ""
            stderr = (folder / "stderr").read_text(errors="replace") if (folder / "stderr").is_file() else ""
            try:
                data = json.loads((folder / "result.json").read_text())
            except (OSError, json.JSONDecodeError):
                data = None
            rc = int(rc_text) if rc_text.lstrip("-").isdigit() else -1
            if rc == 127 or "unable to find utility" in stderr:
                raise DevicectlFailed(f"xcrun devicectl is not available on {self.runner.describe()}",
                                      hint="install Xcode 15 or later there and select it with `sudo xcode-select -s`")
            outcome = ((data or {}).get("info") or {}).get("outcome")
            if rc != 0 or outcome != "success":
                if missing_ok and file_missing(data):
                    return None
                raise devicectl_error(list(words), data, stderr, device=device, bundle_id=bundle_id)
            if pull is not None:
                got = sorted(p for p in (folder / "pulled").rglob("*") if p.is_file())
                if len(got) != 1:
                    raise DevicectlFailed(f"`devicectl {' '.join(words)}` reported success but brought back "
                                          f"{len(got)} files", hint="run it on the Mac by hand to see what it copied")
                pull.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(got[0]), pull)
            return data

    # -- what gemmaios needs ----------------------------------------------------------------------
    def devices(self) -> list[DeviceInfo]:
        return parse_devices(self.call(["list", "devices"]))

    def select(self, udid: str | None) -> DeviceInfo:
        """The one phone to use, as connect._select does for usbmuxd: errors for none, several, unknown,
        and for a phone that has not paired or has Developer Mode off."""
        found = self.devices()
        where = self.runner.describe()
        if udid:
            match = [d for d in found if d.udid.lower() == udid.lower()]
            if not match:
                listed = ", ".join(d.udid for d in found) or "none"
                raise DeviceNotFound(f"devicectl on {where} sees no device with UDID {udid} (it sees: {listed})",
                                     hint="check the cable and the UDID (`xcrun devicectl list devices` on the Mac)")
            info = match[0]
        elif not found:
            raise NoDevice(f"devicectl on {where} sees no iPhone",
                           hint="connect it to that Mac by USB, unlock it and tap Trust")
        elif len(found) > 1:
            raise SeveralDevices(f"devicectl on {where} sees {len(found)} devices "
                                 f"({', '.join(d.udid for d in found)})", hint="choose one with --udid <UDID>")
        else:
            info = found[0]
        if not info.paired:
            raise DeviceNotTrusted(f"{info.udid} is not paired with {where}",
                                   hint="unlock the iPhone, tap Trust on the dialog and enter the passcode, then run again")
        if info.developer_mode is False:
            raise DeveloperModeOff(f"Developer Mode is off on {info.name or info.udid}",
                                   hint="on the iPhone: Settings → Privacy & Security → Developer Mode → On, restart "
                                        "and confirm")
        return info

    def app(self, udid: str) -> DevicectlApp:
        return DevicectlApp(self, udid)


@dataclass
class DevicectlApp:
    """The tiny interface deploy and bench use for one phone: install, launch, running, kill, read."""

    ctl: Devicectl
    udid: str

    def install(self, package: Path, bundle_id: str | None = None) -> None:
        self.ctl.call(["device", "install", "app"], ["--device", self.udid, In(Path(package))], device=self.udid,
                      bundle_id=bundle_id)

    def launch(self, bundle_id: str, env: dict[str, str]) -> int:
        """Launch (terminating a running copy) with exactly `env`; the pid."""
        data = self.ctl.call(["device", "process", "launch"],
                             ["--device", self.udid, "--terminate-existing",
                              "--environment-variables", json.dumps(env, sort_keys=True), bundle_id],
                             device=self.udid, bundle_id=bundle_id)
        pid = launched_pid(data or {})
        if pid is None:
            raise LaunchFailed(f"devicectl launched {bundle_id} on {self.udid} but reported no process id",
                               hint="open the app once by hand on the iPhone, then run again")
        return pid

    def running(self, pid: int) -> bool:
        return pid in running_pids(self.ctl.call(["device", "info", "processes"], ["--device", self.udid],
                                                 device=self.udid) or {})

    def kill(self, pid: int) -> None:
        self.ctl.call(["device", "process", "signal"], ["--device", self.udid, "--pid", str(pid), "--signal", "SIGKILL"],
                      device=self.udid)

    def pull(self, bundle_id: str, remote: str, local: Path) -> Path | None:
        """Copy `remote` (a path in the app's container, e.g. /Documents/x) to `local`; None if it is not there."""
        data = self.ctl.call(["device", "copy", "from"],
                             ["--device", self.udid, "--domain-type", APP_DATA_CONTAINER, "--domain-identifier",
                              bundle_id, "--source", remote.lstrip("/"), "--destination", _OUT + "pulled"],
                             device=self.udid, bundle_id=bundle_id, pull=Path(local), missing_ok=True)
        return Path(local) if data is not None else None

    def read(self, bundle_id: str, remote: str) -> bytes | None:
        with tempfile.TemporaryDirectory(prefix="gemmaios-pull-") as tmp:
            got = self.pull(bundle_id, remote, Path(tmp) / "file")
            return got.read_bytes() if got else None

    def push(self, bundle_id: str, local: Path, remote: str) -> None:
        """Copy a local file to `remote` in the app's container (sent to the Mac first when it is remote)."""
        self.ctl.call(["device", "copy", "to"],
                      ["--device", self.udid, "--domain-type", APP_DATA_CONTAINER, "--domain-identifier", bundle_id,
                       "--source", In(Path(local)), "--destination", remote.lstrip("/")],
                      device=self.udid, bundle_id=bundle_id)


def wait_for_run(app: DevicectlApp, bundle_id: str, env: dict[str, str], remote_log: str, *, timeout: float,
                 poll: float, say: Callable[[str], None],
                 done: Callable[[bytes | None], bool] | None = None) -> tuple[int, str, bytes | None]:
    """bench's launch → wait → pull over devicectl: launch with `env`, poll the transcript and the pid
    until `done(transcript)` (default: the run's footer landed), the app's failure record landed (then
    end it: it stays on screen), the process is gone, or `timeout` passes (then kill it). Returns (pid,
    status, the transcript's bytes)."""
    import time

    from .runs import COMPLETED, FAILED, TIMEOUT, run_failure, run_footer, status_at_exit

    if done is None:
        def done(raw: bytes | None) -> bool:
            return bool(raw) and run_footer(raw) is not None

    pid = app.launch(bundle_id, env)
    say(f"launched {bundle_id} (pid {pid}) with devicectl on {app.ctl.runner.describe()}")
    deadline = time.monotonic() + timeout
    lines_seen = 0
    while True:
        time.sleep(poll)
        text = app.read(bundle_id, remote_log)
        if done(text):
            return pid, COMPLETED, text
        if text and run_failure(text):
            app.kill(pid)
            return pid, FAILED, text
        if not app.running(pid):
            text = app.read(bundle_id, remote_log)  # the last record may have landed just before exit
            return pid, status_at_exit(text, done), text
        if time.monotonic() > deadline:
            app.kill(pid)
            return pid, TIMEOUT, app.read(bundle_id, remote_log)
        if text and text.count(b"\n") != lines_seen:
            lines_seen = text.count(b"\n")
            say(f"{lines_seen} log lines so far")


def phone_only_on_the_mac(ctl: Devicectl, udid: str | None, local_error: DeviceError) -> DeviceError:
    """What to say when this machine's usbmuxd has no phone (`local_error`): if the Mac's devicectl
    sees it, that the payload push, preflight and crash reports still need it attached here."""
    try:
        seen = [d.udid for d in ctl.devices()]
    except DeviceError:
        return local_error
    if not seen or (udid and udid not in seen):
        return local_error
    from .devicectl_errors import PhoneOnlyOnTheMac

    return PhoneOnlyOnTheMac(
        f"the iPhone ({', '.join(seen)}) is attached to {ctl.runner.describe()}, not to this machine ({local_error})",
        hint="attach it to this machine by USB (devicectl on the Mac still installs and launches), or run gemmaios "
             "on the Mac itself: the payload push, the preflight and the crash reports go over this machine's usbmuxd")
