"""Preflight: is this device fit for a build (iOS, Developer Mode, lock, architecture, space, DDI)?"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .connect import (
    DDI_COMMAND,
    MIN_IOS_MAJOR,
    TRANSPORT_ENV,
    TUNNELD_COMMAND,
    DeviceInfo,
    describe_device,
    developer_services,
    ios_major,
    open_device,
)
from .errors import (
    ArchMismatch,
    DeveloperImageNotMounted,
    DeveloperModeOff,
    DeviceLocked,
    IOSTooOld,
    NotEnoughSpace,
)

RESERVE_BYTES = 1 << 30  # leave this much free: iOS misbehaves on a full disk


@dataclass
class Preflight:
    info: DeviceInfo
    warnings: list[str] = field(default_factory=list)


LOCKED_HINT = "unlock the iPhone and keep it awake, then run again"


async def _check_locked(client, rsd=None) -> None:
    """Refuse a locked phone. A real iPhone still serves installation_proxy and AFC while locked,
    so ask for the lock state itself: lockdown's PasswordProtected (reported by libimobiledevice and
    tidevice users to read true while the phone is locked and false once unlocked, a passcode still
    set) and, over the iOS 17+ tunnel, CoreDevice's lock state (passcodeRequired, as devicectl shows)."""
    from pymobiledevice3.exceptions import PasswordRequiredError, PyMobileDevice3Exception

    try:
        locked = await client.get_value(key="PasswordProtected")
    except PasswordRequiredError:
        locked = True
    except PyMobileDevice3Exception:
        locked = None
    if not locked and rsd is not None and rsd is not client:
        locked = await _coredevice_locked(rsd)
    if locked:
        raise DeviceLocked(f"{client.udid} is locked", hint=LOCKED_HINT)


async def _coredevice_locked(rsd) -> bool | None:
    """CoreDevice's lock state (what `devicectl device info lockState` prints), or None if unavailable."""
    from pymobiledevice3.exceptions import PyMobileDevice3Exception
    from pymobiledevice3.remote.core_device.device_info import DeviceInfoService

    try:
        async with DeviceInfoService(rsd) as service:
            state = await service.get_lockstate()
    except (TimeoutError, PyMobileDevice3Exception, OSError):
        return None
    return bool(state.get("passcodeRequired")) if isinstance(state, dict) else None


async def _ddi_mounted(client, rsd=None) -> bool:
    """Whether the developer disk image is there: the image mounter's view (LookupImage, then
    CopyDevices, for the personalized image), and on iOS 17+ through the tunnel cryptexd's, where
    iOS 26.4+ installs the DDI as a cryptex the image mounter does not list."""
    from pymobiledevice3.services.mobile_image_mounter import MobileImageMounterService, image_type_for_device

    async with MobileImageMounterService(client) as mounter:
        if await mounter.is_image_mounted(image_type_for_device(client)):
            return True
    if rsd is None or rsd is client:
        return False
    return await _ddi_cryptex_installed(rsd)


async def _ddi_cryptex_installed(rsd) -> bool:
    from pymobiledevice3.exceptions import PyMobileDevice3Exception
    from pymobiledevice3.services.cryptexd import DDI_CRYPTEX_IDENTIFIER, CryptexdService

    try:
        installed = await CryptexdService(rsd).copy_installed()
    except (PyMobileDevice3Exception, OSError):
        return False
    return any(cryptex.identifier == DDI_CRYPTEX_IDENTIFIER for cryptex in installed)


async def mount_developer_image(client, rsd=None) -> None:
    """Download (if needed) and mount the developer disk image, as `pymobiledevice3 mounter auto-mount`
    (iOS 27 installs it as a cryptex, which needs the tunnel's `rsd`). Already mounted is success."""
    from pymobiledevice3.exceptions import AlreadyMountedError, PyMobileDevice3Exception, RSDRequiredError
    from pymobiledevice3.services.mobile_image_mounter import auto_mount

    try:
        await auto_mount(rsd or client)
    except AlreadyMountedError:
        return  # the image (or the DDI cryptex) is there: what we wanted
    except RSDRequiredError as exc:
        raise DeveloperImageNotMounted(
            f"mounting the developer disk image on iOS {client.product_version} needs the tunnel",
            hint=f"unset {TRANSPORT_ENV} (gemmaios then opens pymobiledevice3's in-process tunnel, or uses "
                 f"`{TUNNELD_COMMAND}` when it runs), and run again",
        ) from exc
    except (PyMobileDevice3Exception, OSError) as exc:
        raise DeveloperImageNotMounted(f"could not mount the developer disk image: {exc}",
                                       hint=f"run `{DDI_COMMAND}` to see the full error (it needs internet once)") from exc


async def run_preflight(client, *, arch: str | None = None, need_bytes: int = 0, bench: bool = False,
                        mount: bool = False) -> Preflight:
    info = await describe_device(client, client.udid or "?")
    report = Preflight(info)
    if ios_major(info.ios_version) < MIN_IOS_MAJOR:
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
        async with developer_services(client, info.ios_version) as provider:
            rsd = None if provider is client else provider
            await _check_locked(client, rsd)
            if not await _ddi_mounted(client, rsd):
                if not mount:
                    raise DeveloperImageNotMounted(
                        f"the developer disk image is not mounted on {info.name or info.udid}",
                        hint=f"mount it with `gemmaios bench --mount-ddi` or `{DDI_COMMAND}` (downloads it on first use)",
                    )
                await mount_developer_image(client, rsd)
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


def preflight(udid: str | None = None, *, arch: str | None = None, need_bytes: int = 0,
              bench: bool = False, mount: bool = False) -> Preflight:
    async def _go():
        async with open_device(udid) as client:
            return await run_preflight(client, arch=arch, need_bytes=need_bytes, bench=bench, mount=mount)
    return asyncio.run(_go())
