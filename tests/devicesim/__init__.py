"""Loopback simulator of an iPhone's device side, for driving the real pymobiledevice3 client."""

from .sim import DeviceSim, SimApp, SimDevice

__all__ = ["DeviceSim", "SimApp", "SimDevice"]
