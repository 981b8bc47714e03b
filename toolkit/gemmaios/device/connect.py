"""Finding and talking to an iPhone: usbmuxd, lockdown (with pairing), device facts, the iOS 17+ tunnel."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import asdict, dataclass
from typing import Any

from ..archs import arch_for_product_type
from .errors import (
    DeviceError,
    DeviceLocked,
    DeviceNotFound,
    DeviceNotTrusted,
    NoDevice,
    SeveralDevices,
    TunnelNotRunning,
    UsbmuxdUnavailable,
)

MIN_IOS_MAJOR = 27  # Core AI
TUNNELD_COMMAND = "sudo python3 -m pymobiledevice3 remote tunneld"
DDI_COMMAND = "pymobiledevice3 mounter auto-mount"
# "auto": developer services over the tunnel on iOS 17+ (as Xcode does), over lockdown before.
# "lockdown": always over lockdown (iOS < 17, and the test simulator).
TRANSPORT_ENV = "GEMMAIOS_DEVICE_TRANSPORT"
TUNNELD_ENV = "GEMMAIOS_TUNNELD"  # host:port of tunneld (default 127.0.0.1:49151)
PAIR_TIMEOUT_ENV = "GEMMAIOS_PAIR_TIMEOUT"


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


@contextlib.asynccontextmanager
async def open_device(udid: str | None):
    """A paired lockdown client for the chosen device."""
    mux = await _select(udid)
    client = await _lockdown(mux.serial, pair=True)
    try:
        yield client
    finally:
        await client.close()


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
