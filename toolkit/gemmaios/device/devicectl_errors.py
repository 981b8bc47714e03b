"""Errors only the devicectl transport raises (the shared ones, e.g. DeveloperNotTrusted and
AppIdentifierMismatch, live in device/errors.py and are raised by both transports)."""

from .errors import DeviceError


class DevicectlFailed(DeviceError):
    """`xcrun devicectl` failed in a way no more specific error names."""


class PhoneOnlyOnTheMac(DeviceError):
    """devicectl on the Mac sees the phone, but this machine's usbmuxd does not (payload push, preflight)."""
