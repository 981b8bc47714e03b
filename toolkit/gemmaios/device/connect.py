"""Finding and talking to an iPhone: usbmuxd, lockdown (with pairing), device facts, the iOS 17+ tunnel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import sys
from dataclasses import asdict, dataclass
from typing import Any

from ..archs import arch_for_product_type
from .errors import (
    AppMissing,
    AppNotDebuggable,
    DeveloperImageNotMounted,
    DeveloperNotTrusted,
    DeviceError,
    DeviceLocked,
    DeviceNotFound,
    DeviceNotTrusted,
    LaunchFailed,
    NoDevice,
    SeveralDevices,
    TunnelFailed,
    TunnelNotRunning,
    UsbmuxdUnavailable,
)

MIN_IOS_MAJOR = 27  # Core AI
# pymobiledevice3 as installed in *this* environment (the venv gemmaios runs from), not the system Python's
PYMOBILEDEVICE3 = f"{shlex.quote(sys.executable)} -m pymobiledevice3"
TUNNELD_COMMAND = f"sudo {PYMOBILEDEVICE3} remote tunneld"
DDI_COMMAND = f"{PYMOBILEDEVICE3} mounter auto-mount"
# "auto": developer services over a tunnel on iOS 17+ (as Xcode does), over lockdown before.
# "tunnel": tunneld when it serves the device, else pymobiledevice3's in-process userspace tunnel.
# "tunneld" / "userspace": only that tunnel. "lockdown": always over lockdown (iOS < 17, the test simulator).
TRANSPORT_ENV = "GEMMAIOS_DEVICE_TRANSPORT"
TRANSPORTS = ("auto", "lockdown", "tunnel", "tunneld", "userspace", "devicectl")
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



def arch_name_for_product(product_type: str | None) -> str | None:
    arch = arch_for_product_type(product_type) if product_type else None
    return arch.name if arch else None

def ios_major(version: str | None) -> int:
    try:
        return int((version or "0").split(".")[0])
    except ValueError:
        return 0


async def mux_devices():
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
    attached = await mux_devices()
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


async def describe_device(client, serial: str, connection: str = "USB") -> DeviceInfo:
    values = client.all_values
    product_type = values.get("ProductType")
    info = DeviceInfo(udid=values.get("UniqueDeviceID") or serial, name=values.get("DeviceName"),
                      product_type=product_type, ios_version=values.get("ProductVersion"),
                      arch=arch_name_for_product(product_type),
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
    for mux in await mux_devices():  # a device on both USB and Wi-Fi is listed twice: keep the cable
        if mux.serial not in attached or mux.is_usb:
            attached[mux.serial] = mux
    for mux in attached.values():
        try:
            client = await _lockdown(mux.serial, pair=False)
        except (DeviceError, PyMobileDevice3Exception, OSError) as exc:
            result.append(DeviceInfo(udid=mux.serial, connection=mux.connection_type, problem=str(exc).splitlines()[0]))
            continue
        try:
            result.append(await describe_device(client, mux.serial, mux.connection_type))
        finally:
            await client.close()
    return result


def developer_transport(ios_version: str | None) -> str:
    """How developer services (launch, DDI) are reached: "lockdown", or a tunnel ("tunnel": tunneld
    else userspace; "tunneld"; "userspace")."""
    setting = os.environ.get(TRANSPORT_ENV, "auto")
    if setting not in TRANSPORTS:
        raise DeviceError(f"{TRANSPORT_ENV}={setting!r} is not one of {', '.join(TRANSPORTS)}",
                          hint=f"unset {TRANSPORT_ENV} or set it to auto")
    if setting not in ("auto", "devicectl"):  # devicectl: pymobiledevice3 still does preflight and crash reports
        return setting
    return "tunnel" if ios_major(ios_version) >= 17 else "lockdown"


def tunneld_address() -> tuple[str, int]:
    raw = os.environ.get(TUNNELD_ENV, "127.0.0.1:49151")
    host, _, port = raw.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _tunneld_rsd(udid: str):
    """(tunneld's RSD for `udid`, None) when tunneld serves it, else (None, why not)."""
    from pymobiledevice3.exceptions import TunneldConnectionError
    from pymobiledevice3.tunneld.api import get_tunneld_device_by_udid

    host, port = tunneld_address()
    try:
        rsd = await get_tunneld_device_by_udid(udid, (host, port))
    except TunneldConnectionError:
        return None, f"no tunneld answers at {host}:{port}"
    except IndexError:
        # pymobiledevice3 lists the tunnel, skips it when it does not connect, then indexes the
        # empty list: a tunnel left over from before a replug or sleep
        return None, f"tunneld lists a tunnel to {udid} that no longer answers (stale after a replug or sleep)"
    if rsd is None:
        return None, f"tunneld is running but has no tunnel to {udid}"
    return rsd, None


async def _userspace_rsd(udid: str, tunneld_problem: str | None):
    """pymobiledevice3's in-process userspace tunnel (iOS 17.4+, no root), as its CLI does by default.
    Closing the returned RSD closes the tunnel too."""
    from pymobiledevice3.exceptions import (
        PasswordRequiredError,
        PyMobileDevice3Exception,
        UserspaceTunnelUnavailableError,
    )
    from pymobiledevice3.remote.userspace_tunnel import UserspaceRsdTunnel

    tunnel = UserspaceRsdTunnel(serial=udid, autopair=False, remotepairing_fallback=False)
    prefix = f"{tunneld_problem}, and " if tunneld_problem else ""
    try:
        rsd = await tunnel.aopen()
    except UserspaceTunnelUnavailableError as exc:
        raise TunnelNotRunning(
            f"iOS 17+ reaches developer services through a tunnel: {prefix}the in-process tunnel cannot "
            f"serve {udid} (it needs iOS 17.4+: {exc})",
            hint=f"start tunneld in another terminal and leave it running: `{TUNNELD_COMMAND}`",
        ) from exc
    except PasswordRequiredError as exc:
        raise DeviceLocked(f"{udid} is locked: the tunnel cannot be opened",
                           hint="unlock the iPhone and keep it awake, then run again") from exc
    except (TimeoutError, PyMobileDevice3Exception, OSError, asyncio.IncompleteReadError) as exc:
        raise TunnelFailed(
            f"{prefix}the in-process tunnel to {udid} failed: {type(exc).__name__}: {exc}".strip(),
            hint=f"unlock the iPhone, replug it and run again; or start `{TUNNELD_COMMAND}` in another "
                 f"terminal and leave it running",
        ) from exc
    rsd.close = tunnel.aclose  # closing the RSD (as for tunneld's) also ends this tunnel (aclose closes the RSD)
    return rsd


async def tunnel_provider(udid: str):
    """The RemoteServiceDiscovery of a tunnel to this device: tunneld's when tunneld serves it, else
    pymobiledevice3's in-process userspace tunnel (GEMMAIOS_DEVICE_TRANSPORT=tunneld|userspace: only
    that one). Close it when done."""
    setting = os.environ.get(TRANSPORT_ENV, "auto")
    problem = None
    if setting != "userspace":
        rsd, problem = await _tunneld_rsd(udid)
        if rsd is not None:
            return rsd
        if setting == "tunneld":
            raise TunnelNotRunning(f"{TRANSPORT_ENV}=tunneld, and {problem}",
                                   hint=f"start it in another terminal and leave it running: `{TUNNELD_COMMAND}` "
                                        f"(after a replug or sleep restart it), or unset {TRANSPORT_ENV}")
    return await _userspace_rsd(udid, problem)


@contextlib.asynccontextmanager
async def developer_services(client, ios_version: str | None = None):
    """What to hand pymobiledevice3's developer services (DVT, cryptexd): the lockdown client, or a
    tunnel's RSD (closed on exit), per developer_transport()."""
    if developer_transport(ios_version or client.product_version) == "lockdown":
        yield client
        return
    rsd = await tunnel_provider(client.udid)
    try:
        yield rsd
    finally:
        with contextlib.suppress(Exception):
            await rsd.close()


KEEP_AWAKE_ASSERTION = "PreventUserIdleSystemSleep"


@contextlib.asynccontextmanager
async def keep_awake(client, seconds: float, reason: str = "gemmaios bench"):
    """Hold a power assertion on the phone (its assertion agent) so it neither sleeps nor auto-locks
    for `seconds` or until the block ends. A phone that refuses only gets a notice."""
    from pymobiledevice3.exceptions import PyMobileDevice3Exception
    from pymobiledevice3.services.power_assertion import PowerAssertionService

    async with contextlib.AsyncExitStack() as stack:
        try:
            service = await stack.enter_async_context(PowerAssertionService(client))
            await stack.enter_async_context(
                service.create_power_assertion(KEEP_AWAKE_ASSERTION, "gemmaios", float(seconds), reason))
        except (PyMobileDevice3Exception, OSError) as exc:
            _notice(f"could not keep the iPhone awake ({type(exc).__name__}: {exc}); "
                    "set Auto-Lock to Never (Settings → Display & Brightness) for long runs")
        yield


# The words iOS (FrontBoard, through DVT's process control) uses when it refuses a launch
# (FBSOpenApplicationErrorDomain "Locked": "... because the device was not, or could not be, unlocked")
LOCKED_LAUNCH = re.compile(r"\b(un)?locked\b|\bpasscode\b", re.IGNORECASE)  # not "blocked"
UNTRUSTED_LAUNCH = ("not been explicitly trusted", "untrusted developer", "invalid code signature, inadequate entitlements")
TRUST_HINT = ("on the iPhone: Settings → General → VPN & Device Management → your developer certificate → "
              "Trust, then run again")


def launch_refusal(bundle_id: str, text: str) -> DeviceError:
    """The named error for iOS refusing to launch `bundle_id` with `text` (locked, untrusted developer, other)."""
    lower = text.lower()
    if any(words in lower for words in UNTRUSTED_LAUNCH):
        return DeveloperNotTrusted(f"iOS refused to launch {bundle_id}: its developer is not trusted on this iPhone "
                                   f"({text})", hint=TRUST_HINT)
    if LOCKED_LAUNCH.search(text):
        return DeviceLocked(f"the device refused to launch {bundle_id} while locked ({text})",
                            hint="unlock the iPhone, keep it awake, and run `gemmaios bench` again")
    return LaunchFailed(f"the device would not launch {bundle_id}: {text}",
                        hint="open the app once by hand (trust the developer in Settings → General → "
                             "VPN & Device Management if asked), then run again")


def named_device_error(exc: BaseException, udid: str | None = None) -> DeviceError | None:
    """The named error for a pymobiledevice3 failure with a known cause and fix, else None."""
    from pymobiledevice3.exceptions import AppNotInstalledError, InvalidServiceError, PyMobileDevice3Exception

    who = udid or "the device"
    if isinstance(exc, InvalidServiceError):
        # installation_proxy, AFC and house_arrest are always there: a refused service is a developer one
        return DeveloperImageNotMounted(
            f"{who} does not offer a developer service ({exc}): the developer disk image is not mounted, "
            "or iOS 17+ is being asked over lockdown instead of the tunnel",
            hint=f"mount it with `gemmaios bench --mount-ddi` or `{DDI_COMMAND}`; on iOS 17+ unset {TRANSPORT_ENV} "
                 "so developer services go through the tunnel")
    if isinstance(exc, AppNotInstalledError):
        return AppMissing(f"the app is not installed on {who} ({exc})", hint="run `gemmaios deploy` first")
    if isinstance(exc, PyMobileDevice3Exception) and "InstallationLookupFailed" in str(exc):
        return AppNotDebuggable(
            f"{who} will not open the app's container ({exc})",
            hint="install a development-signed build (Xcode's Debug configuration / `gemmaios deploy`, "
                 "which exports with development signing): App Store, TestFlight and ad-hoc builds "
                 "cannot receive the payload")
    return None


@contextlib.asynccontextmanager
async def open_device(udid: str | None, *, awake_seconds: float | None = None):
    """A paired lockdown client for the chosen device. pymobiledevice3 failures with a known cause
    that escape the block become their named errors. With `awake_seconds`, the phone is kept awake
    (power assertion) while the block runs."""
    mux = await _select(udid)
    client = await _lockdown(mux.serial, pair=True)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if awake_seconds:
                await stack.enter_async_context(keep_awake(client, awake_seconds))
            yield client
    except DeviceError:
        raise
    except Exception as exc:
        named = named_device_error(exc, client.udid)
        if named is None:
            raise
        raise named from exc
    finally:
        await client.close()


_DISCONNECTS: tuple[type[BaseException], ...] = (ConnectionError, asyncio.IncompleteReadError, EOFError)


def disconnect_types() -> tuple[type[BaseException], ...]:
    from pymobiledevice3.exceptions import ConnectionTerminatedError, MuxException

    return (*_DISCONNECTS, ConnectionTerminatedError, MuxException)


def quiet_disconnects() -> None:
    """After an unplug, AFC leaves a future holding the same ConnectionTerminatedError we already
    report; keep asyncio from printing it a second time as "never retrieved"."""
    loop = asyncio.get_running_loop()
    disconnects = disconnect_types()

    def handler(loop, context):
        if isinstance(context.get("exception"), disconnects) and "never retrieved" in context.get("message", ""):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
