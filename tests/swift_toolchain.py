"""Finding a real Swift compiler for the tests (issue 15).

Order: $GEMMAIOS_SWIFT (a toolchain bin folder; when set, the only candidate), PATH, /opt/swift/usr/bin (these machines),
Xcode's (`xcrun --find`, macOS), then the Debian-sid chroot that scripts/swift-toolchain.sh
makes. Upstream coreai-models needs Swift 6.2 syntax (`unsafe` expressions, `@_lifetime`),
so an older compiler counts as none.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "ios_template" / "GemmaiosCore"
CHROOT_SCRIPT = REPO / "scripts" / "swift-toolchain.sh"
MIN_VERSION = (6, 2)
REQUIRE_ENV = "GEMMAIOS_REQUIRE_SWIFT"


@dataclass(frozen=True)
class SwiftToolchain:
    swiftc: Path
    swift: Path
    version: str  # first line of `swiftc --version`
    source: str  # where it was found

    def describe(self) -> str:
        return f"{self.swiftc} ({self.version}; {self.source})"


def chroot_bin() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("GEMMAIOS_SWIFT_CHROOT") or cache / "gemmaios" / "swift-sid") / "bin"


def _candidates() -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if os.environ.get("GEMMAIOS_SWIFT"):  # an explicit choice: that toolchain or none
        return [(Path(os.environ["GEMMAIOS_SWIFT"]) / "swiftc", "$GEMMAIOS_SWIFT")]
    found = shutil.which("swiftc")
    if found:
        out.append((Path(found), "PATH"))
    out.append((Path("/opt/swift/usr/bin/swiftc"), "/opt/swift"))
    if platform.system() == "Darwin" and shutil.which("xcrun"):
        result = subprocess.run(["xcrun", "--find", "swiftc"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            out.append((Path(result.stdout.strip()), "Xcode (xcrun)"))
    out.append((chroot_bin() / "swiftc", f"Debian sid chroot ({CHROOT_SCRIPT.relative_to(REPO)})"))
    return out


def _version(swiftc: Path) -> tuple[str, tuple[int, int]] | None:
    try:
        result = subprocess.run([str(swiftc), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout + result.stderr).strip()
    match = re.search(r"Swift version (\d+)\.(\d+)", text)
    if result.returncode != 0 or not match:
        return None
    return text.splitlines()[0], (int(match.group(1)), int(match.group(2)))


def find_swift() -> tuple[SwiftToolchain | None, list[str]]:
    """The first usable toolchain, and what was tried (for the skip/fail message)."""
    tried = []
    for swiftc, source in _candidates():
        if not swiftc.is_file():
            tried.append(f"{source}: no {swiftc}")
            continue
        found = _version(swiftc)
        if found is None:
            tried.append(f"{source}: {swiftc} does not run")
            continue
        line, version = found
        if version < MIN_VERSION:
            tried.append(f"{source}: {line} is older than {MIN_VERSION[0]}.{MIN_VERSION[1]}")
            continue
        swift = swiftc.with_name("swift")
        if not swift.is_file():
            tried.append(f"{source}: {swiftc} has no `swift` (package manager) next to it")
            continue
        return SwiftToolchain(swiftc, swift, line, source), tried
    return None, tried


def missing_message(tried: list[str]) -> str:
    how = (f"run `sudo bash {CHROOT_SCRIPT.relative_to(REPO)}` (Debian sid's swiftlang in a debootstrap chroot, "
           "~1 minute and 4 GB, cached)" if platform.system() == "Linux"
           else "install Xcode 27 (macOS) or a Swift 6.2+ toolchain from swift.org")
    return (f"no Swift {MIN_VERSION[0]}.{MIN_VERSION[1]}+ toolchain found ({'; '.join(tried)}); {how}, "
            "or set GEMMAIOS_SWIFT to a toolchain's bin folder")


# ---- running the toolchain -------------------------------------------------------------------

def swift_cache(name: str) -> Path:
    root = Path(os.environ.get("GEMMAIOS_SWIFT_CACHE") or Path.home() / ".cache" / "gemmaios" / "swiftpm")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(argv: list, *, cwd: Path | None = None, timeout: int = 900, env: dict | None = None) -> str:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, argv[:4]))} … failed ({result.returncode}):\n{output[-6000:]}"
    return output


def swift_parse(toolchain, files: list[Path]) -> None:
    """`swiftc -parse -wmo` (syntax only, no imports needed; one frontend per call, ~20x faster
    than a job per file), batched: at most 100 files a call, and never two with one name
    (swiftc tells private declarations apart by file name)."""
    assert files
    batches: list[list[Path]] = []
    for path in files:
        batch = next((b for b in batches if len(b) < 100 and all(p.name != path.name for p in b)), None)
        if batch is None:
            batch = []
            batches.append(batch)
        batch.append(path)
    for batch in batches:
        run([toolchain.swiftc, "-parse", "-wmo", *batch])


def vectors(core_build: Path, *args, env: dict | None = None) -> str:
    return run([core_build / "gemmaios-core-vectors", *args], env=env)
