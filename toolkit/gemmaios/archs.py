"""Apple GPU architecture names accepted by `--arch` (the AOT compile target)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RegistryError


@dataclass(frozen=True)
class Arch:
    name: str
    platform: str  # "iOS" or "macOS": the `--platform` of `xcrun coreai-build compile`
    devices: tuple[str, ...]  # ProductType identifiers
    memory_gb: float | None
    entitled_limit_gb: float | None
    bandwidth_gbps: float | None
    source: str


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in [
        Arch(
            name="h18p",
            platform="iOS",
            devices=("iPhone18,1", "iPhone18,2"),
            memory_gb=12.0,
            entitled_limit_gb=6.4,
            bandwidth_gbps=None,
            source="seed 002: `--architecture h18p` is the iPhone 17 Pro class; ~6.4 GB entitled limit",
        ),
    ]
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        valid = ", ".join(sorted(ARCHS))
        raise RegistryError(f"unknown architecture {name!r}", hint=f"valid --arch values: {valid}") from None


def arch_for_product_type(product_type: str) -> str | None:
    """The `--arch` class of a device ProductType (e.g. iPhone18,2 → h18p), or None if not registered."""
    return next((a.name for a in ARCHS.values() if product_type in a.devices), None)
