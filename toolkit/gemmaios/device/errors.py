"""Device errors: each names what went wrong; its hint says what to do on the phone or here."""

from ..errors import GemmaiosError


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


class TunnelFailed(DeviceError):
    """Neither tunneld nor the in-process userspace tunnel could reach the device's developer services."""


class DeviceDisconnected(DeviceError):
    """The connection dropped mid-transfer (unplugged, locked, or slept)."""


class NothingToDeploy(DeviceError):
    """The build folder has no bundle/tables, or no app to install."""


class AppMissing(DeviceError):
    """The app is not installed on the device."""


class AppNotDebuggable(DeviceError):
    """The app is installed but the device will not open its container (house_arrest
    InstallationLookupFailed): not a development-signed build (no get-task-allow)."""


class AppInstallFailed(DeviceError):
    """installation_proxy refused the app (signing, iOS version, ...)."""


class AppIdentifierMismatch(AppInstallFailed):
    """installation_proxy's MismatchedApplicationIdentifierEntitlement: an app with this bundle id,
    signed by another team, is already installed."""


class LaunchFailed(DeviceError):
    """The device would not launch the app."""


class DeveloperNotTrusted(LaunchFailed):
    """iOS refused the launch because this developer's profile is not trusted on the phone yet."""
