"""Apple GPU architecture names accepted by `--arch` (the AOT compile target).

`xcrun coreai-build compile --architecture <name>` writes one `<model>.<name>.aimodelc` per
name. The names follow Metal's GPU architecture name with `g` → `h` (a Mac whose
`MTLDevice.architecture.name` is `applegpu_g16s` takes `h16s`), and on the device the
runtime reports its own name as `AIModel.deviceArchitectureName`. The compiler accepts any
listed name and exits 0, so only a load on the device proves the choice: entries say
which were device-validated and where every figure comes from (`source`). Figures not
established publicly are None.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .errors import RegistryError

# The zoo's record of one real `coreai-build compile` run per platform (Xcode 27A5194q,
# 2026-06-10): every architecture the compiler emitted when none was named.
_ZOO_AOT = "coreai-model-zoo knowledge/aot-and-specialization.md"
_IOS_LIST = f"{_ZOO_AOT}: `--platform iOS` emitted .aimodelc for h13g h14g h15g h16g h16p h17g h17p h18p"
_MAC_LIST = f"{_ZOO_AOT}: `--platform macOS` emitted 20 .aimodelc, h13c … h17s"


@dataclass(frozen=True)
class Arch:
    name: str
    platform: str  # the `--platform` of `xcrun coreai-build compile` for this target
    devices: tuple[str, ...]  # ProductType identifiers established to map here
    memory_gb: float | None  # physical memory of the device class
    entitled_limit_gb: float | None  # what one app may use (jetsam limit, with increased-memory-limit)
    bandwidth_gbps: float | None  # peak memory bandwidth, for the report's roofline
    source: str
    also_platforms: tuple[str, ...] = ()  # other platforms whose compile emits this name
    device_validated: bool = False  # an .aimodelc for it is known to load on such a device
    observed_bandwidth_gbps: float | None = None  # measured effective decode bandwidth
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def platforms(self) -> tuple[str, ...]:
        return (self.platform, *self.also_platforms)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "platform": self.platform, "platforms": list(self.platforms),
            "devices": list(self.devices), "memory_gb": self.memory_gb,
            "entitled_limit_gb": self.entitled_limit_gb, "bandwidth_gbps": self.bandwidth_gbps,
            "observed_bandwidth_gbps": self.observed_bandwidth_gbps,
            "device_validated": self.device_validated, "source": self.source, "notes": list(self.notes),
        }


def _listed_only(name: str, platform: str, listed_in: str, *, also: tuple[str, ...] = (), notes=()) -> Arch:
    """An architecture the compiler is known to emit, with no device facts established."""
    return Arch(
        name=name, platform=platform, devices=(), memory_gb=None, entitled_limit_gb=None,
        bandwidth_gbps=None, also_platforms=also, notes=tuple(notes),
        source=f"{listed_in}; devices, memory and bandwidth not established publicly",
    )


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
            observed_bandwidth_gbps=60.9,
            device_validated=True,
            source=(
                "seed 002 (mlboydaisuke/gemma-4-E4B-CoreAI card): `--architecture h18p` = iPhone 17 Pro class, "
                "~6.4 GB entitled limit; zoo knowledge/aot-and-specialization.md: iPhone 17 Pro = iPhone18,1 → h18p, "
                "device-validated load; iPhone18,2 (17 Pro Max) assumed same class (same A19 Pro chip). "
                "zoo knowledge/pipelined-engine.md: 'a 12 GB iPhone 17 Pro gives an entitled app ~6.4 GB' "
                "(Apple does not publish iPhone RAM). Peak bandwidth: Apple publishes none; "
                "60.9 GB/s is the zoo's measured effective decode bandwidth "
                "(knowledge/ssm-hybrid-decode-int4-prefill-findings.md), not a peak"
            ),
            notes=("AOT is mandatory for E4B here: the 3.7 GB-constants graph crashes the on-device specializer",),
        ),
        _listed_only("h17p", "iOS", _IOS_LIST, notes=(
            "not iPhone 17 Pro: an h17p .aimodelc fails there with invalidCompiledModel (zoo, device-tested)",)),
        _listed_only("h17g", "iOS", _IOS_LIST),
        _listed_only("h16p", "iOS", _IOS_LIST),
        _listed_only("h16g", "iOS", f"{_IOS_LIST}; also among the macOS names ({_ZOO_AOT})", also=("macOS",)),
        _listed_only("h15g", "iOS", _IOS_LIST),
        _listed_only("h14g", "iOS", _IOS_LIST),
        _listed_only("h13g", "iOS", _IOS_LIST),
        Arch(
            name="h16c",
            platform="macOS",
            devices=("Mac16,5",),
            memory_gb=None,
            entitled_limit_gb=None,
            bandwidth_gbps=546.0,
            device_validated=True,
            source=(
                f"{_ZOO_AOT}: M4 Max Mac (Mac16,x, e.g. Mac16,5) → h16c, the only one of the 20 macOS names "
                "that loads there; PORTING.md: M-series Macs → h16c. 546 GB/s: M4 Max peak quoted in "
                "knowledge/performance-ceiling.md (Apple's figure for the 40-core-GPU M4 Max; the 32-core bin "
                "has 410 GB/s). Memory is per configuration, so None"
            ),
        ),
        _listed_only("h16s", "macOS", f"{_MAC_LIST}; zoo apps/CoreAIChatMac SpecDecodeEngine.swift maps Metal "
                                      "applegpu_g16s → h16s"),
        _listed_only("h13c", "macOS", _MAC_LIST),
        _listed_only("h17s", "macOS", _MAC_LIST),
    ]
}


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        valid = ", ".join(sorted(ARCHS))
        close = difflib.get_close_matches(name, list(ARCHS), n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise RegistryError(
            f"unknown architecture {name!r}",
            hint=f"{guess}valid --arch values: {valid} (h18p = iPhone 17 Pro class; see `gemmaios archs`)",
        ) from None


def arch_for_product_type(product_type: str) -> Arch | None:
    """The architecture a device (ProductType such as `iPhone18,1`) needs, when established."""
    for arch in ARCHS.values():
        if product_type in arch.devices:
            return arch
    return None
