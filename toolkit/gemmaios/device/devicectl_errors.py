"""Errors only the devicectl transport raises (the shared ones live in device/errors.py)."""

from .errors import AppInstallFailed, DeviceError, LaunchFailed


class DevicectlFailed(DeviceError):
    """`xcrun devicectl` failed in a way no more specific error names."""


class UntrustedDeveloper(LaunchFailed):
    """iOS refused to launch a development-signed app whose developer the user has not trusted yet."""


class AppIdentifierMismatch(AppInstallFailed):
    """An app with the same bundle id, signed with another team's application identifier, is installed."""


class PhoneOnlyOnTheMac(DeviceError):
    """devicectl on the Mac sees the phone, but this machine's usbmuxd does not (payload push, preflight)."""
