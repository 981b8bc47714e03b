"""iPhone discovery, preflight checks and deploy, through pymobiledevice3 (usbmuxd + lockdown).

`list_devices()` describes what is attached; `preflight()` checks one device is fit for a
build (paired, unlocked, Developer Mode, architecture, iOS, free space, and for the bench the
developer disk image and the iOS 17+ tunnel); `deploy()` installs the app and pushes the
bundle and tables into the app's Documents over house_arrest/AFC. The push is resumable and
skips what is already there: a device-side manifest (`Documents/gemmaios-manifest.json`)
records size + sha256 of every finished file and the file in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import plistlib
import posixpath
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .archs import arch_for_product_type
from .errors import GemmaiosError
from .pipeline import MANIFEST_NAME, sha256_file, write_json_atomic

MIN_IOS_MAJOR = 27  # Core AI
RESERVE_BYTES = 1 << 30  # leave this much free: iOS misbehaves on a full disk
DOCUMENTS = "/Documents"
DEVICE_MANIFEST = "gemmaios-manifest.json"
DEVICE_MANIFEST_SCHEMA = "gemmaios.device-manifest/1"
STAGING_DIR = "/PublicStaging/gemmaios"
CHUNK_BYTES = 4 << 20
RESUME_CHECK_BYTES = 1 << 20
TUNNELD_COMMAND = "sudo python3 -m pymobiledevice3 remote tunneld"
DDI_COMMAND = "pymobiledevice3 mounter auto-mount"
# "auto": developer services over the tunnel on iOS 17+ (as Xcode does), over lockdown before.
# "lockdown": always over lockdown (iOS < 17, and the test simulator).
TRANSPORT_ENV = "GEMMAIOS_DEVICE_TRANSPORT"
TUNNELD_ENV = "GEMMAIOS_TUNNELD"  # host:port of tunneld (default 127.0.0.1:49151)
PAIR_TIMEOUT_ENV = "GEMMAIOS_PAIR_TIMEOUT"

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)


class DeviceError(GemmaiosError):
    """A device problem; the hint says what to do on the phone or on this machine."""


class UsbmuxdUnavailable(DeviceError):
    """usbmuxd is not running or its socket is unreachable."""


class NoDevice(DeviceError):
    """No iPhone is attached."""


class SeveralDevices(DeviceError):
    """More than one device is attached and none was chosen."""


class DeviceNotFound(DeviceError):
    """The requested UDID is not attached."""


class DeviceNotTrusted(DeviceError):
    """The device has not paired with (trusted) this computer."""


class DeviceLocked(DeviceError):
    """The device is locked with a passcode."""


class DeveloperModeOff(DeviceError):
    """Developer Mode is off, so development-signed apps cannot run."""


class DeveloperImageNotMounted(DeviceError):
    """The developer disk image is not mounted, so the app cannot be launched by a tool."""


class ArchMismatch(DeviceError):
    """The device is not of the architecture the build was compiled for."""


class NotEnoughSpace(DeviceError):
    """The device lacks the free space the transfer needs."""


class IOSTooOld(DeviceError):
    """The device's iOS predates Core AI."""


class TunnelNotRunning(DeviceError):
    """iOS 17+ needs a tunnel for developer services and none is running for this device."""


class DeviceDisconnected(DeviceError):
    """The connection dropped mid-transfer (unplugged, locked, or slept)."""


class NothingToDeploy(DeviceError):
    """The build folder has no bundle/tables, or no app to install."""


class AppMissing(DeviceError):
    """The app is not installed on the device."""


class AppInstallFailed(DeviceError):
    """installation_proxy refused the app (signing, iOS version, ...)."""


class LaunchFailed(DeviceError):
    """The device would not launch the app."""


# ------------------------------------------------------------------------------------------
# Device facts


@dataclass
class DeviceInfo:
    udid: str
    name: str | None = None
    product_type: str | None = None
    ios_version: str | None = None
    arch: str | None = None
    developer_mode: bool | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    battery_level: int | None = None  # percent
    charging: bool | None = None
    connection: str = "USB"
    paired: bool = False
    problem: str | None = None  # why some facts are missing (e.g. not trusted)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)



def _arch_name(product_type: str | None) -> str | None:
    arch = arch_for_product_type(product_type) if product_type else None
    return arch.name if arch else None

def _ios_major(version: str | None) -> int:
    try:
        return int((version or "0").split(".")[0])
    except ValueError:
        return 0


async def _mux_devices():
    from pymobiledevice3 import usbmux
    from pymobiledevice3.exceptions import ConnectionFailedToUsbmuxdError

    try:
        return await usbmux.list_devices()
    except (ConnectionFailedToUsbmuxdError, FileNotFoundError, ConnectionRefusedError) as exc:
        address = os.environ.get("USBMUXD_SOCKET_ADDRESS") or "/var/run/usbmuxd"
        raise UsbmuxdUnavailable(
            f"cannot reach usbmuxd at {address}",
            hint="Linux: `sudo apt install usbmuxd` and plug the iPhone in (udev starts it); macOS has it built in",
        ) from exc


async def _select(udid: str | None):
    attached = await _mux_devices()
    devices = [d for d in attached if d.is_usb] or attached  # prefer the cable over Wi-Fi sync
    if udid:
        match = [d for d in devices if d.matches_udid(udid)]
        if not match:
            listed = ", ".join(d.serial for d in devices) or "none"
            raise DeviceNotFound(f"no device with UDID {udid} is attached (attached: {listed})",
                                 hint="check the cable and the UDID (`gemmaios devices`)")
        return match[0]
    if not devices:
        raise NoDevice("no iPhone is attached",
                       hint="connect it by USB, unlock it and tap Trust; `gemmaios devices` lists what is seen")
    if len({d.serial for d in devices}) > 1:
        listed = ", ".join(sorted({d.serial for d in devices}))
        raise SeveralDevices(f"{len(devices)} devices are attached ({listed})",
                             hint="choose one with --udid <UDID> (see `gemmaios devices`)")
    return devices[0]


def pair_timeout() -> float:
    """Seconds to wait for someone to tap Trust on the phone (GEMMAIOS_PAIR_TIMEOUT, default 60)."""
    return float(os.environ.get(PAIR_TIMEOUT_ENV, "60"))


def _notice(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]{message}[/yellow]")


async def _lockdown(serial: str, *, pair: bool):
    """A lockdown client for `serial`. With `pair`, an untrusted device is asked to trust this
    computer and we wait (pair_timeout()) for the tap; a trusted one connects straight away."""
    from pymobiledevice3.exceptions import (
        FatalPairingError,
        NotPairedError,
        PairingDialogResponsePendingError,
        PairingError,
        PasswordRequiredError,
        UserDeniedPairingError,
    )
    from pymobiledevice3.lockdown import create_using_usbmux

    not_trusted = DeviceNotTrusted(f"{serial} does not trust this computer yet",
                                   hint="unlock the iPhone, tap Trust on the dialog and enter the passcode, then run again")
    client = None
    try:
        client = await create_using_usbmux(serial=serial, autopair=False)
        if pair and not client.paired:
            wait = pair_timeout()
            if wait:
                _notice(f"{serial}: tap Trust on the iPhone and enter its passcode (waiting up to {wait:.0f} s)")
            await client.pair(timeout=wait)
            if not await client.validate_pairing():
                raise not_trusted
    except PasswordRequiredError as exc:
        await _close(client)
        raise DeviceLocked(f"{serial} is locked", hint="unlock the iPhone, tap Trust if asked, and run again") from exc
    except UserDeniedPairingError as exc:
        await _close(client)
        raise DeviceNotTrusted(f"{serial} refused to trust this computer",
                               hint="unplug and replug it, tap Trust and enter the passcode, then run again") from exc
    except (PairingDialogResponsePendingError, NotPairedError, FatalPairingError, PairingError) as exc:
        await _close(client)
        raise not_trusted from exc
    except DeviceNotTrusted:
        await _close(client)
        raise
    return client


async def _close(client) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            await client.close()


async def _describe(client, serial: str, connection: str = "USB") -> DeviceInfo:
    values = client.all_values
    product_type = values.get("ProductType")
    info = DeviceInfo(udid=values.get("UniqueDeviceID") or serial, name=values.get("DeviceName"),
                      product_type=product_type, ios_version=values.get("ProductVersion"),
                      arch=_arch_name(product_type),
                      connection=connection, paired=bool(client.paired))
    if not client.paired:
        info.problem = "not trusted: unlock the iPhone and tap Trust"
        return info
    from pymobiledevice3.exceptions import PyMobileDevice3Exception

    with contextlib.suppress(PyMobileDevice3Exception):
        info.developer_mode = bool(await client.get_developer_mode_status()) if client.has_developer_mode else None
    with contextlib.suppress(PyMobileDevice3Exception):
        disk = await client.get_value("com.apple.disk_usage") or {}
        info.free_bytes = disk.get("AmountDataAvailable")
        info.total_bytes = disk.get("TotalDataCapacity") or disk.get("TotalDiskCapacity")
    with contextlib.suppress(PyMobileDevice3Exception):
        battery = await client.get_value("com.apple.mobile.battery") or {}
        info.battery_level = battery.get("BatteryCurrentCapacity")
        info.charging = battery.get("BatteryIsCharging")
    return info


def list_devices() -> list[DeviceInfo]:
    """Every attached device, described as far as its trust state allows (never prompts)."""
    return asyncio.run(_list_devices())


async def _list_devices() -> list[DeviceInfo]:
    from pymobiledevice3.exceptions import PyMobileDevice3Exception

    result = []
    attached = {}
    for mux in await _mux_devices():  # a device on both USB and Wi-Fi is listed twice: keep the cable
        if mux.serial not in attached or mux.is_usb:
            attached[mux.serial] = mux
    for mux in attached.values():
        try:
            client = await _lockdown(mux.serial, pair=False)
        except (DeviceError, PyMobileDevice3Exception, OSError) as exc:
            result.append(DeviceInfo(udid=mux.serial, connection=mux.connection_type, problem=str(exc).splitlines()[0]))
            continue
        try:
            result.append(await _describe(client, mux.serial, mux.connection_type))
        finally:
            await client.close()
    return result


# ------------------------------------------------------------------------------------------
# Preflight


@dataclass
class Preflight:
    info: DeviceInfo
    warnings: list[str] = field(default_factory=list)


def developer_transport(ios_version: str | None) -> str:
    """How developer services (launch, DDI) are reached: "tunnel" or "lockdown"."""
    setting = os.environ.get(TRANSPORT_ENV, "auto")
    if setting not in ("auto", "lockdown", "tunnel"):
        raise DeviceError(f"{TRANSPORT_ENV}={setting!r} is not one of auto, lockdown, tunnel",
                          hint=f"unset {TRANSPORT_ENV} or set it to auto")
    if setting != "auto":
        return setting
    return "tunnel" if _ios_major(ios_version) >= 17 else "lockdown"


def tunneld_address() -> tuple[str, int]:
    raw = os.environ.get(TUNNELD_ENV, "127.0.0.1:49151")
    host, _, port = raw.rpartition(":")
    return host or "127.0.0.1", int(port)


async def tunnel_provider(udid: str):
    """The RemoteServiceDiscovery of this device's tunnel, from a running tunneld."""
    from pymobiledevice3.exceptions import TunneldConnectionError
    from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid

    address = tunneld_address()
    try:
        rsd = await get_tunneld_device_by_udid(udid, address)
    except TunneldConnectionError as exc:
        raise TunnelNotRunning(
            f"iOS 17+ reaches developer services through a tunnel, and no tunneld answers at {address[0]}:{address[1]}",
            hint=f"start it in another terminal and leave it running: `{TUNNELD_COMMAND}`",
        ) from exc
    if rsd is None:
        raise TunnelNotRunning(
            f"tunneld is running but has no tunnel to {udid}",
            hint=f"unlock the iPhone and keep it attached; if it still does not appear restart `{TUNNELD_COMMAND}`",
        )
    return rsd


async def _check_locked(client) -> None:
    """A service a locked phone refuses: lockdown says PasswordProtected when it is locked."""
    from pymobiledevice3.exceptions import PasswordRequiredError
    from pymobiledevice3.services.installation_proxy import InstallationProxyService

    try:
        async with InstallationProxyService(client) as proxy:
            await proxy.lookup({"BundleIDs": ["com.apple.Preferences"]})
    except PasswordRequiredError as exc:
        raise DeviceLocked(f"{client.udid} is locked", hint="unlock the iPhone and keep it awake, then run again") from exc


async def _ddi_mounted(client) -> bool:
    from pymobiledevice3.services.mobile_image_mounter import MobileImageMounterService, image_type_for_device

    async with MobileImageMounterService(client) as mounter:
        return await mounter.is_image_mounted(image_type_for_device(client))


async def mount_developer_image(client, rsd=None) -> None:
    """Download (if needed) and mount the developer disk image, as `pymobiledevice3 mounter auto-mount`
    (iOS 27 installs it as a cryptex, which needs the tunnel's `rsd`)."""
    from pymobiledevice3.exceptions import PyMobileDevice3Exception, RSDRequiredError
    from pymobiledevice3.services.mobile_image_mounter import auto_mount

    try:
        await auto_mount(rsd or client)
    except RSDRequiredError as exc:
        raise DeveloperImageNotMounted(
            f"mounting the developer disk image on iOS {client.product_version} needs the tunnel",
            hint=f"start `{TUNNELD_COMMAND}`, unset {TRANSPORT_ENV}, and run again",
        ) from exc
    except (PyMobileDevice3Exception, OSError) as exc:
        raise DeveloperImageNotMounted(f"could not mount the developer disk image: {exc}",
                                       hint=f"run `{DDI_COMMAND}` to see the full error (it needs internet once)") from exc


async def run_preflight(client, *, arch: str | None = None, need_bytes: int = 0, bench: bool = False,
                        mount: bool = False) -> Preflight:
    info = await _describe(client, client.udid or "?")
    report = Preflight(info)
    if _ios_major(info.ios_version) < MIN_IOS_MAJOR:
        raise IOSTooOld(f"{info.name or info.udid} runs iOS {info.ios_version}; Core AI needs iOS {MIN_IOS_MAJOR} or later",
                        hint=f"update the iPhone (Settings → General → Software Update) to iOS {MIN_IOS_MAJOR}+")
    if info.developer_mode is False:
        raise DeveloperModeOff(
            f"Developer Mode is off on {info.name or info.udid}",
            hint="on the iPhone: Settings → Privacy & Security → Developer Mode → On, restart and confirm "
                 "(or reveal it with `pymobiledevice3 amfi reveal-developer-mode`)",
        )
    await _check_locked(client)
    if arch:
        if info.arch is None:
            report.warnings.append(f"{info.product_type} is not in the architecture registry; cannot confirm it is {arch}")
        elif info.arch != arch:
            raise ArchMismatch(
                f"{info.name or info.udid} is a {info.product_type} ({info.arch}); this build was compiled for {arch}",
                hint=f"rebuild for it (`gemmaios build --arch {info.arch}`) or attach a {arch} device",
            )
    check_space(info, need_bytes)
    if bench:
        rsd = await tunnel_provider(info.udid) if developer_transport(info.ios_version) == "tunnel" else None
        try:
            if not await _ddi_mounted(client):
                if not mount:
                    raise DeveloperImageNotMounted(
                        f"the developer disk image is not mounted on {info.name or info.udid}",
                        hint=f"mount it with `gemmaios bench --mount-ddi` or `{DDI_COMMAND}` (downloads it on first use)",
                    )
                await mount_developer_image(client, rsd)
        finally:
            if rsd is not None:
                await rsd.close()
    if info.battery_level is not None and info.battery_level < 30:
        report.warnings.append(f"battery at {info.battery_level}%: low-power mode throttles; charge above 30% first")
    return report


def check_space(info: DeviceInfo, need_bytes: int) -> None:
    if need_bytes and info.free_bytes is not None and need_bytes > info.free_bytes - RESERVE_BYTES:
        raise NotEnoughSpace(
            f"the transfer needs {_gib(need_bytes)} and {info.name or info.udid} has {_gib(info.free_bytes)} free "
            f"(keeping {_gib(RESERVE_BYTES)} spare)",
            hint="free space on the iPhone (Settings → General → iPhone Storage) and run again",
        )


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / (1 << 30):.2f} GiB"


@contextlib.asynccontextmanager
async def open_device(udid: str | None):
    """A paired lockdown client for the chosen device."""
    mux = await _select(udid)
    client = await _lockdown(mux.serial, pair=True)
    try:
        yield client
    finally:
        await client.close()


def preflight(udid: str | None = None, *, arch: str | None = None, need_bytes: int = 0,
              bench: bool = False, mount: bool = False) -> Preflight:
    async def _go():
        async with open_device(udid) as client:
            return await run_preflight(client, arch=arch, need_bytes=need_bytes, bench=bench, mount=mount)
    return asyncio.run(_go())


# ------------------------------------------------------------------------------------------
# What to deploy


@dataclass
class LocalFile:
    rel: str  # path relative to the build folder == path relative to the app's Documents
    path: Path
    size: int
    sha256: str


@dataclass
class AppPackage:
    path: Path
    bundle_id: str
    executable: str
    version: str
    sha256: str
    size: int


def _build_manifest(build_dir: Path) -> dict:
    path = build_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def build_arch(build_dir: Path) -> str | None:
    return (_build_manifest(build_dir).get("options") or {}).get("arch")


def step_details(build_dir: Path, step: str) -> dict:
    return ((_build_manifest(build_dir).get("steps") or {}).get(step) or {}).get("details") or {}


def payload_paths(build_dir: Path) -> list[Path]:
    """The files the app needs in its Documents: the bundle (compiled model if any), tables, prompts."""
    build_dir = Path(build_dir)
    paths: list[Path] = []
    bundle_rel = step_details(build_dir, "convert").get("bundle_dir")
    bundle_dirs = [build_dir / bundle_rel] if bundle_rel else sorted(p for p in (build_dir / "bundle").glob("*") if p.is_dir())
    for bundle in bundle_dirs:
        skip_uncompiled = False
        meta = bundle / "metadata.json"
        if meta.is_file():
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                main = (json.loads(meta.read_text()).get("assets") or {}).get("main", "")
                skip_uncompiled = str(main).endswith(".aimodelc")  # the device never opens the .aimodel then
        for path in sorted(bundle.rglob("*")):
            top = path.relative_to(bundle).parts[0]
            if path.is_file() and not (skip_uncompiled and top.endswith(".aimodel")):
                paths.append(path)
    tables = step_details(build_dir, "tables")
    named = [tables.get(k) for k in ("i8", "scale", "sidecar") if tables.get(k)]
    paths += [build_dir / rel for rel in named] if named else sorted(p for p in (build_dir / "tables").glob("*") if p.is_file())
    oracle = step_details(build_dir, "oracle").get("oracle")
    if oracle and (build_dir / oracle).is_file():
        paths.append(build_dir / oracle)
    return paths


def _hash_cache_path(build_dir: Path) -> Path:
    return build_dir / ".gemmaios-cache" / "hashes.json"


def local_files(build_dir: Path) -> list[LocalFile]:
    """The payload with sizes and sha256s (cached by size + mtime, so a re-deploy does not re-hash GBs)."""
    build_dir = Path(build_dir).resolve()
    cache_path = _hash_cache_path(build_dir)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    files, changed = [], False
    for path in payload_paths(build_dir):
        rel = path.relative_to(build_dir).as_posix()
        stat = path.stat()
        hit = cache.get(rel)
        if not hit or hit["size"] != stat.st_size or hit["mtime_ns"] != stat.st_mtime_ns:
            hit = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}
            cache[rel], changed = hit, True
        files.append(LocalFile(rel, path, stat.st_size, hit["sha256"]))
    if changed:
        write_json_atomic(cache_path, cache)
    return files


def read_app_package(path: Path) -> AppPackage:
    """Bundle id, executable and version of an .ipa or .app, from its Info.plist."""
    path = Path(path)
    try:
        if path.is_dir():
            info = plistlib.loads((path / "Info.plist").read_bytes())
            digest = hashlib.sha256()
            size = 0
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(f.relative_to(path).as_posix().encode() + b"\0" + bytes.fromhex(sha256_file(f)))
                size += f.stat().st_size
            sha = digest.hexdigest()
        else:
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist()
                            if n.startswith("Payload/") and n.endswith(".app/Info.plist") and n.count("/") == 2)
                info = plistlib.loads(archive.read(name))
            sha, size = sha256_file(path), path.stat().st_size
    except (OSError, StopIteration, zipfile.BadZipFile, plistlib.InvalidFileException, KeyError) as exc:
        raise NothingToDeploy(f"{path} is not a readable .ipa or .app ({exc})",
                              hint="pass the signed .ipa exported by Xcode (or the .app from the build) with --ipa") from exc
    if "CFBundleIdentifier" not in info:
        raise NothingToDeploy(f"{path}: Info.plist has no CFBundleIdentifier", hint="pass a built, signed app")
    return AppPackage(path, info["CFBundleIdentifier"], info.get("CFBundleExecutable", ""),
                      str(info.get("CFBundleShortVersionString", "")), sha, size)


def find_app_package(build_dir: Path) -> Path | None:
    """The signed app the build's app step produced, if any (`app/**/*.ipa`, then `*.app`)."""
    build_dir = Path(build_dir)
    details = step_details(build_dir, "app")
    for key in ("ipa", "app_path"):
        if details.get(key) and (build_dir / details[key]).exists():
            return build_dir / details[key]
    for pattern in ("app/**/*.ipa", "app/**/Build/Products/*-iphoneos/*.app"):
        found = sorted(build_dir.glob(pattern))
        if found:
            return found[0]
    return None


# ------------------------------------------------------------------------------------------
# Device-side manifest and transfers


def _empty_manifest() -> dict:
    return {"schema": DEVICE_MANIFEST_SCHEMA, "app": {}, "files": {}, "partial": {}}


async def read_device_manifest(afc) -> dict:
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    try:
        raw = await afc.get_file_contents(f"{DOCUMENTS}/{DEVICE_MANIFEST}")
        data = json.loads(raw)
    except AfcFileNotFoundError:
        return _empty_manifest()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _empty_manifest()  # damaged: every file gets re-checked and re-sent
    if data.get("schema") != DEVICE_MANIFEST_SCHEMA:
        return _empty_manifest()
    for key in ("app", "files", "partial"):
        data.setdefault(key, {})
    return data


async def write_device_manifest(afc, manifest: dict) -> None:
    """Write to a temporary name, then rename: an unplug never leaves a half-written manifest."""
    from pymobiledevice3.exceptions import AfcException

    manifest["updated"] = datetime.now(UTC).isoformat(timespec="seconds")

    final = f"{DOCUMENTS}/{DEVICE_MANIFEST}"
    await afc.set_file_contents(final + ".tmp", json.dumps(manifest, indent=1, sort_keys=True).encode())
    try:
        await afc.rename(final + ".tmp", final)
    except AfcException:  # an AFC that will not rename over an existing file
        await afc.rm_single(final, force=True)
        await afc.rename(final + ".tmp", final)


async def _remote_size(afc, remote: str) -> int | None:
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    try:
        return int((await afc.stat(remote))["st_size"])
    except AfcFileNotFoundError:
        return None


async def _read_range(afc, remote: str, offset: int, length: int) -> bytes:
    handle = await afc.fopen(remote, "r")
    try:
        if offset:
            await afc.fseek(handle, offset)
        return await afc.fread(handle, length) if length else b""
    finally:
        await afc.fclose(handle)


async def _remote_sha256(afc, remote: str, size: int, chunk: int, progress: ProgressFn | None, label: str) -> str:
    digest = hashlib.sha256()
    handle = await afc.fopen(remote, "r")
    try:
        done = 0
        while done < size:
            block = await afc.fread(handle, min(chunk, size - done))
            if not block:
                break
            digest.update(block)
            done += len(block)
            if progress:
                progress(label, done, size)
    finally:
        await afc.fclose(handle)
    return digest.hexdigest()


async def _resume_offset(afc, remote: str, local: LocalFile, partial: dict | None, remote_size: int | None) -> int:
    """Where to continue a file an unplug cut short: its current remote size, when that is a
    prefix of this very file (the manifest pins the file's sha256, and the last bytes written
    are read back and compared)."""
    if not partial or partial.get("sha256") != local.sha256 or not remote_size or remote_size > local.size:
        return 0
    window = min(RESUME_CHECK_BYTES, remote_size)
    start = remote_size - window
    remote_tail = await _read_range(afc, remote, start, window)
    with open(local.path, "rb") as fh:
        fh.seek(start)
        local_tail = fh.read(window)
    return remote_size if hashlib.sha256(remote_tail).digest() == hashlib.sha256(local_tail).digest() else 0


@dataclass
class PushReport:
    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: dict[str, int] = field(default_factory=dict)  # rel → offset resumed from
    resent: list[str] = field(default_factory=list)  # failed the read-back once, sent again
    removed: list[str] = field(default_factory=list)  # pushed earlier, no longer in the build
    bytes_sent: int = 0


async def _send(afc, local: LocalFile, remote: str, offset: int, chunk: int, progress: ProgressFn | None) -> int:
    """Write `local` from `offset` on (appending to what is there); returns bytes sent."""
    if progress:
        progress(local.rel, offset, local.size)
    handle = await afc.fopen(remote, "a" if offset else "w")
    sent = 0
    try:
        with open(local.path, "rb") as fh:
            fh.seek(offset)
            while block := fh.read(chunk):
                await afc.fwrite(handle, block)
                sent += len(block)
                if progress:
                    progress(local.rel, offset + sent, local.size)
    finally:
        await afc.fclose(handle)
    return sent


async def prune_files(afc, keep: set[str], manifest: dict) -> list[str]:
    """Remove files an earlier deploy pushed that the build no longer has (only manifest-tracked ones:
    what the app wrote itself, such as its run logs, is never touched)."""
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    removed = []
    for rel in sorted(set(manifest["files"]) | set(manifest["partial"])):
        if rel in keep:
            continue
        with contextlib.suppress(AfcFileNotFoundError):
            await afc.rm_single(f"{DOCUMENTS}/{rel}")
        manifest["files"].pop(rel, None)
        manifest["partial"].pop(rel, None)
        removed.append(rel)
    if removed:
        await write_device_manifest(afc, manifest)
    return removed


async def push_files(afc, files: list[LocalFile], manifest: dict, *, chunk: int = CHUNK_BYTES, verify: bool = True,
                     progress: ProgressFn | None = None) -> PushReport:
    """Push `files` under Documents/, skipping identical ones and resuming partial ones."""
    report = PushReport()
    for local in files:
        remote = f"{DOCUMENTS}/{local.rel}"
        remote_size = await _remote_size(afc, remote)
        done = manifest["files"].get(local.rel)
        if done and done.get("sha256") == local.sha256 and done.get("size") == local.size == remote_size:
            report.skipped.append(local.rel)
            continue
        offset = await _resume_offset(afc, remote, local, manifest["partial"].get(local.rel), remote_size)
        manifest["files"].pop(local.rel, None)
        manifest["partial"][local.rel] = {"size": local.size, "sha256": local.sha256}
        await write_device_manifest(afc, manifest)
        await afc.makedirs(posixpath.dirname(remote))
        if offset:
            report.resumed[local.rel] = offset
        for attempt in (1, 2):  # a read-back mismatch re-sends the whole file once
            if offset < local.size or remote_size != offset:  # (an empty file still needs creating/truncating)
                report.bytes_sent += await _send(afc, local, remote, offset, chunk, progress)
            final_size = await _remote_size(afc, remote)
            if final_size != local.size:
                raise DeviceError(f"{local.rel}: the device holds {final_size} bytes, expected {local.size}",
                                  hint="run `gemmaios deploy` again; the file is re-sent")
            if not verify or await _remote_sha256(afc, remote, local.size, max(chunk, CHUNK_BYTES), progress,
                                                  f"verify {local.rel}") == local.sha256:
                break
            if attempt == 2:
                manifest["partial"].pop(local.rel, None)
                await write_device_manifest(afc, manifest)
                raise DeviceError(f"{local.rel}: sha256 on the device differs from the build's, twice",
                                  hint="check the cable and run `gemmaios deploy` again")
            report.resent.append(local.rel)
            offset, remote_size = 0, None
        manifest["partial"].pop(local.rel, None)
        manifest["files"][local.rel] = {"size": local.size, "sha256": local.sha256,
                                        "pushed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        await write_device_manifest(afc, manifest)
        report.pushed.append(local.rel)
    return report


async def installed_apps(client, bundle_ids: list[str]) -> dict[str, dict]:
    from pymobiledevice3.services.installation_proxy import InstallationProxyService

    async with InstallationProxyService(client) as proxy:
        return await proxy.lookup({"BundleIDs": bundle_ids}) or {}


async def install_app(client, package: AppPackage, *, chunk: int = CHUNK_BYTES, progress: ProgressFn | None = None) -> None:
    """Stage the .ipa over AFC (with progress), then have installation_proxy install it."""
    from pymobiledevice3.services.afc import AfcService
    from pymobiledevice3.services.installation_proxy import (
        InstallationProxyService,
        create_ipa_contents_from_directory,
    )

    remote = f"{STAGING_DIR}/{package.bundle_id}.ipa"
    with tempfile.TemporaryDirectory() as tmp:
        ipa = package.path
        if ipa.is_dir():  # an .app from xcodebuild: zip it as an .ipa
            ipa = Path(tmp) / f"{package.path.stem}.ipa"
            ipa.write_bytes(create_ipa_contents_from_directory(str(package.path)))
        size = ipa.stat().st_size
        async with AfcService(client) as afc:
            await afc.makedirs(STAGING_DIR)
            handle = await afc.fopen(remote, "w")
            try:
                with open(ipa, "rb") as fh:
                    sent = 0
                    while block := fh.read(chunk):
                        await afc.fwrite(handle, block)
                        sent += len(block)
                        if progress:
                            progress(f"upload {ipa.name}", sent, size)
            finally:
                await afc.fclose(handle)
            try:
                async with InstallationProxyService(client) as proxy:
                    await _install_staged(proxy, package, remote, progress)
            finally:
                await afc.rm_single(remote, force=True)


# installation_proxy errors with a known cause → what to do
INSTALL_HINTS = {
    "ApplicationVerificationFailed": "the app is not signed for this device: add its UDID to the provisioning "
                                     "profile (or use automatic signing) and rebuild the app on the Mac",
    "DeviceOSVersionTooLow": f"the app needs a newer iOS: update the iPhone to iOS {MIN_IOS_MAJOR}+",
    "APIInternalError": "unlock the iPhone and run again; if it repeats, restart the iPhone",
}


async def _install_staged(proxy, package: AppPackage, remote: str, progress: ProgressFn | None) -> None:
    """Install the staged package, following installation_proxy's status stream.

    (Read here rather than through `send_package`, whose own progress bar would fight ours.)
    """
    label = f"install {package.bundle_id}"
    await proxy.service.send_plist({"Command": "Install", "PackagePath": remote,
                                    "ClientOptions": {"CFBundleIdentifier": package.bundle_id}})
    while True:
        response = await proxy.service.recv_plist()
        if not response:
            raise AppInstallFailed(f"installing {package.bundle_id} ended without a status",
                                   hint="unlock the iPhone and run `gemmaios deploy` again")
        error = response.get("Error")
        if error:
            detail = response.get("ErrorDescription") or ""
            raise AppInstallFailed(f"the device refused {package.path.name}: {error} {detail}".strip(),
                                   hint=INSTALL_HINTS.get(error, "check the app is signed for this device and run again"))
        if isinstance(response.get("PercentComplete"), (int, float)) and progress:
            progress(label, int(response["PercentComplete"]), 100)
        if response.get("Status") == "Complete":
            if progress:
                progress(label, 100, 100)
            return


@dataclass
class DeployResult:
    udid: str
    bundle_id: str
    installed: bool
    push: PushReport
    warnings: list[str] = field(default_factory=list)


_DISCONNECTS: tuple[type[BaseException], ...] = (ConnectionError, asyncio.IncompleteReadError, EOFError)


def _disconnect_types() -> tuple[type[BaseException], ...]:
    from pymobiledevice3.exceptions import ConnectionTerminatedError, MuxException

    return (*_DISCONNECTS, ConnectionTerminatedError, MuxException)


def quiet_disconnects() -> None:
    """After an unplug, AFC leaves a future holding the same ConnectionTerminatedError we already
    report; keep asyncio from printing it a second time as "never retrieved"."""
    loop = asyncio.get_running_loop()
    disconnects = _disconnect_types()

    def handler(loop, context):
        if isinstance(context.get("exception"), disconnects) and "never retrieved" in context.get("message", ""):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def _deploy(build_dir: Path, udid: str | None, ipa: Path | None, arch: str | None, verify: bool,
                  chunk: int, progress: ProgressFn | None) -> DeployResult:
    from pymobiledevice3.services.house_arrest import HouseArrestService

    quiet_disconnects()

    files = local_files(build_dir)
    if not files:
        raise NothingToDeploy(f"{build_dir} has no bundle or tables to push",
                              hint="run `gemmaios build` first (or pass the build folder with --out)")
    app_path = Path(ipa) if ipa else find_app_package(build_dir)
    package = read_app_package(app_path) if app_path else None
    async with open_device(udid) as client:
        report = await run_preflight(client, arch=arch)
        bundle_id = package.bundle_id if package else step_details(build_dir, "app").get("bundle_id")
        if not bundle_id:
            raise NothingToDeploy(f"{build_dir} has no signed app to install",
                                  hint="build it on a Mac (the app step) or pass the signed .ipa with --ipa")
        installed = bool((await installed_apps(client, [bundle_id])).get(bundle_id))
        manifest = _empty_manifest()
        if installed:
            async with await HouseArrestService.create(client, bundle_id, documents_only=True) as afc:
                manifest = await read_device_manifest(afc)
        reinstall = package is not None and (not installed or manifest["app"].get("sha256") != package.sha256)
        if not installed and package is None:
            raise AppMissing(f"{bundle_id} is not installed on {client.udid} and there is no .ipa to install",
                             hint="pass the signed .ipa with --ipa")
        pending = sum(f.size for f in files if (manifest["files"].get(f.rel) or {}).get("sha256") != f.sha256)
        check_space(report.info, pending + (2 * package.size if reinstall and package else 0))
        if reinstall and package:
            await install_app(client, package, chunk=chunk, progress=progress)
        async with await HouseArrestService.create(client, bundle_id, documents_only=True) as afc:
            manifest = await read_device_manifest(afc)
            if package:
                manifest["app"] = {"bundle_id": bundle_id, "executable": package.executable,
                                   "version": package.version, "sha256": package.sha256}
            else:
                manifest["app"].setdefault("bundle_id", bundle_id)
            manifest["udid"] = client.udid
            pushed = await push_files(afc, files, manifest, chunk=chunk, verify=verify, progress=progress)
            pushed.removed = await prune_files(afc, {f.rel for f in files}, manifest)
            await write_device_manifest(afc, manifest)
        return DeployResult(client.udid, bundle_id, bool(reinstall), pushed, report.warnings)


def deploy(build_dir: Path, udid: str | None = None, ipa: Path | None = None, *, arch: str | None = None,
           verify: bool = True, chunk: int = CHUNK_BYTES, progress: ProgressFn | None = None) -> DeployResult:
    """Install the app (if it changed) and push the bundle + tables into its Documents.

    Re-running after an unplug resumes the file in flight and skips finished ones.
    """
    build_dir = Path(build_dir)
    arch = arch or build_arch(build_dir)
    try:
        return asyncio.run(_deploy(build_dir, udid, ipa, arch, verify, chunk, progress))
    except _disconnect_types() as exc:
        raise DeviceDisconnected(
            f"the connection to the device dropped during deploy ({type(exc).__name__}: {exc})",
            hint="reconnect and unlock the iPhone, then run the same `gemmaios deploy` again: finished files are "
                 "kept and the interrupted one resumes where it stopped",
        ) from exc


def rich_progress(console=None) -> tuple[ProgressFn, Callable[[], None]]:
    """A progress callback drawing one rich bar per label; returns (callback, close)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    class BytesOnly(ProgressColumn):
        def __init__(self, inner: ProgressColumn) -> None:
            super().__init__()
            self.inner = inner

        def render(self, task):
            return self.inner.render(task) if task.fields.get("bytes") else ""

    bars = Progress(TextColumn("  {task.description}"), BarColumn(), TaskProgressColumn(),
                    BytesOnly(DownloadColumn(binary_units=True)), BytesOnly(TransferSpeedColumn()),
                    console=console, transient=False)
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int) -> None:
        if not tasks:
            bars.start()  # lazily, so prompts printed before the first transfer ("tap Trust") stay readable
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total, bytes=not label.startswith("install "))
        bars.update(tasks[label], completed=done, total=total)

    return update, bars.stop
