"""Stand-in for `fastlane ios dev_build` (xcodebuild + export): the rendered Xcode project → an .ipa
the simulator installs and its app stand-in runs.

What goes in is what Xcode would put in the .app: the rendered Info.plist (build settings
resolved from the project), the payload folder the app step staged into the project
(`contract.PAYLOAD_DIR`, a folder reference: present only for `bundled`), and as the
executable the Swift source of the values the real binary compiles in: the rendered
`AppConfig.swift` and the generated `Contract.swift` (the project's GemmaiosCore copy when the
app step made one, else ios_template's). The .ipa goes where fastlane exports it:
`<build>/ipa/<App>.ipa`.
"""

from __future__ import annotations

import json
import plistlib
import re
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTRACT_SWIFT = "GemmaiosCore/Sources/GemmaiosCore/Contract.swift"


def _app_details(build_dir: Path) -> dict:
    manifest = json.loads((build_dir / "build.json").read_text())
    return manifest["steps"]["app"]["details"]


def app_entries(project: Path, payload: list[str], *, bundle_id: str | None = None,
                version: str | None = None) -> list[tuple[str, bytes | Path]]:
    """What Xcode puts in `<App>.app` for the rendered `project` (app/<App>/): (path inside the .app,
    bytes or a local file). `payload` lists the staged payload files (paths relative to the project)
    that the project's folder reference copies in."""
    project = Path(project)
    name = project.name
    if bundle_id is None:
        pbxproj = (project / f"{name}.xcodeproj" / "project.pbxproj").read_text()
        bundle_id = re.search(r"PRODUCT_BUNDLE_IDENTIFIER = \"?([^\";]+)\"?;", pbxproj).group(1)
    settings = {"EXECUTABLE_NAME": name, "PRODUCT_NAME": name, "TARGET_NAME": name,
                "PRODUCT_BUNDLE_IDENTIFIER": bundle_id}
    info = plistlib.loads((project / name / "Info.plist").read_bytes())
    info = {k: (re.sub(r"\$\((\w+)\)", lambda m: settings[m.group(1)], v) if isinstance(v, str) else v)
            for k, v in info.items()}
    if version:
        info["CFBundleShortVersionString"] = version
    contract = project / CONTRACT_SWIFT
    if not contract.is_file():
        contract = REPO / "ios_template" / CONTRACT_SWIFT
    executable = ("// devicesim: the values this app compiles in (AppConfig.swift + Contract.swift)\n"
                  + (project / name / "AppConfig.swift").read_text() + "\n" + contract.read_text())
    entries: list[tuple[str, bytes | Path]] = [("Info.plist", plistlib.dumps(info, fmt=plistlib.FMT_BINARY)),
                                               (name, executable.encode())]
    entries += [(dest, project / dest) for dest in sorted(payload)]  # Xcode copies the staged folder reference
    return entries


def package_app(build_dir: Path, out: Path | None = None, *, version: str | None = None) -> Path:
    build_dir = Path(build_dir)
    details = _app_details(build_dir)
    project = build_dir / details["project"]
    name = project.name
    out = Path(out) if out else build_dir / "ipa" / f"{name}.ipa"
    out.parent.mkdir(parents=True, exist_ok=True)
    root = f"Payload/{name}.app"
    with zipfile.ZipFile(out, "w") as archive:
        for rel, content in app_entries(project, list(details.get("app_payload") or {}), version=version):
            if isinstance(content, Path):
                archive.write(content, f"{root}/{rel}")
            else:
                archive.writestr(f"{root}/{rel}", content)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m devicesim.appbuild", description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="a build folder whose app step has run")
    parser.add_argument("--out", type=Path, help="the .ipa (default: <build>/ipa/<App>.ipa)")
    args = parser.parse_args(argv)
    print(package_app(args.build, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
