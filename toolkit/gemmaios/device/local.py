"""The host side of a deploy: the payload files the app reads from Documents (with cached
sha256s), the signed app package, and the record of what was installed where."""

from __future__ import annotations

import hashlib
import json
import plistlib
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .. import contract
from ..buildlayout import CACHE_DIR, DEPLOY_RECORD, FASTLANE_IPA_DIR
from ..payload import PayloadPlan, payload_plan
from ..pipeline import finished_details, recorded_options, sha256_file, write_json_atomic
from .errors import NothingToDeploy

DEPLOY_RECORD_SCHEMA = "gemmaios.deploy-record/1"


@dataclass
class LocalFile:
    rel: str  # destination relative to the app's Documents (contract.PAYLOAD_DIR/...)
    path: Path  # the build's file
    size: int
    sha256: str


@dataclass
class AppPackage:
    path: Path
    bundle_id: str
    executable: str
    version: str
    sha256: str
    size: int


def build_arch(build_dir: Path) -> str | None:
    return recorded_options(build_dir).get("arch")


def signed_bundle_id(build_dir: Path) -> str | None:
    """The bundle id the sign step recorded for the build's .ipa (None before it has signed one)."""
    sign = finished_details(build_dir, "sign")
    return sign.bundle_id if sign is not None else None


def bundle_location(build_dir: Path) -> str:
    """Where the rendered app reads its payload (the app step's choice; `bundled` by default)."""
    app = finished_details(Path(build_dir), "app")
    return app.bundle_location if app is not None else contract.BUNDLED


def deploy_plan(build_dir: Path, location: str | None = None) -> PayloadPlan:
    """The contract's payload plan for the build (what the app reads, and from where)."""
    return payload_plan(Path(build_dir), location or bundle_location(build_dir))


def _hash_cache_path(build_dir: Path) -> Path:
    return build_dir / CACHE_DIR / "hashes.json"


def local_files(build_dir: Path, plan: PayloadPlan | None = None) -> list[LocalFile]:
    """What deploy pushes into Documents: exactly `payload_plan(...).documents_files()` (nothing
    when the app is `bundled`), with sizes and sha256s cached by size + mtime so a re-deploy does
    not re-hash GBs."""
    build_dir = Path(build_dir).resolve()
    plan = plan or deploy_plan(build_dir)
    cache_path = _hash_cache_path(build_dir)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    files, changed = [], False
    for source, dest in plan.documents_files():
        source = Path(source).resolve()
        key = source.relative_to(build_dir).as_posix() if source.is_relative_to(build_dir) else str(source)
        stat = source.stat()
        hit = cache.get(key)
        if not hit or hit["size"] != stat.st_size or hit["mtime_ns"] != stat.st_mtime_ns:
            hit = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(source)}
            cache[key], changed = hit, True
        files.append(LocalFile(dest, source, stat.st_size, hit["sha256"]))
    if changed:
        write_json_atomic(cache_path, cache)
    return files


def read_app_package(path: Path) -> AppPackage:
    """Bundle id, executable and version of an .ipa or .app, from its Info.plist."""
    path = Path(path)
    try:
        if path.is_dir():
            info = plistlib.loads((path / "Info.plist").read_bytes())
            digest = hashlib.sha256()
            size = 0
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                digest.update(f.relative_to(path).as_posix().encode() + b"\0" + bytes.fromhex(sha256_file(f)))
                size += f.stat().st_size
            sha = digest.hexdigest()
        else:
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist()
                            if n.startswith("Payload/") and n.endswith(".app/Info.plist") and n.count("/") == 2)
                info = plistlib.loads(archive.read(name))
            sha, size = sha256_file(path), path.stat().st_size
    except (OSError, StopIteration, zipfile.BadZipFile, plistlib.InvalidFileException, KeyError) as exc:
        raise NothingToDeploy(f"{path} is not a readable .ipa or .app ({exc})",
                              hint="pass the signed .ipa exported by Xcode (or the .app from the build) with --ipa") from exc
    if "CFBundleIdentifier" not in info:
        raise NothingToDeploy(f"{path}: Info.plist has no CFBundleIdentifier", hint="pass a built, signed app")
    return AppPackage(path, info["CFBundleIdentifier"], info.get("CFBundleExecutable", ""),
                      str(info.get("CFBundleShortVersionString", "")), sha, size)


def find_app_package(build_dir: Path) -> Path | None:
    """The signed app for the build, if any: the sign step's .ipa, fastlane's `ipa/*.ipa` (newest),
    then `app/**/*.ipa`, then an `.app` xcodebuild left under `app/`."""
    build_dir = Path(build_dir)
    sign = finished_details(build_dir, "sign")
    if sign is not None and (build_dir / sign.ipa).exists():
        return build_dir / sign.ipa
    fastlane = sorted((build_dir / FASTLANE_IPA_DIR).glob("*.ipa"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    if fastlane:
        return fastlane[-1]
    for pattern in ("app/**/*.ipa", "app/**/Build/Products/*-iphoneos/*.app"):
        found = sorted(build_dir.glob(pattern))
        if found:
            return found[0]
    return None


# ---- the deploy record: what was installed on which device (bench reads it) ----------------------

def read_deploy_record(build_dir: Path) -> dict:
    try:
        data = json.loads((Path(build_dir) / DEPLOY_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return {"schema": DEPLOY_RECORD_SCHEMA, "last_udid": None, "devices": {}}
    if not isinstance(data, dict) or data.get("schema") != DEPLOY_RECORD_SCHEMA:
        return {"schema": DEPLOY_RECORD_SCHEMA, "last_udid": None, "devices": {}}
    data.setdefault("devices", {})
    return data


def deployed_app(build_dir: Path, udid: str | None = None) -> dict | None:
    """The record of the last deploy to `udid` (default: the last deploy to any device)."""
    record = read_deploy_record(build_dir)
    return record["devices"].get(udid or record.get("last_udid") or "")


def write_deploy_record(build_dir: Path, udid: str, bundle_id: str, package: AppPackage | None, location: str,
                        files: list[LocalFile]) -> dict:
    """Record in the build folder what deploy installed on `udid`: bundle id, package path + sha256,
    app version, bundle location and the payload files pushed."""
    build_dir = Path(build_dir)
    record = read_deploy_record(build_dir)
    previous = record["devices"].get(udid) or {}
    app = previous.get("package") if package is None and previous.get("bundle_id") == bundle_id else None
    if package is not None:
        path = package.path.resolve()
        shown = path.relative_to(build_dir.resolve()).as_posix() if path.is_relative_to(build_dir.resolve()) else str(path)
        app = {"path": shown, "sha256": package.sha256, "version": package.version, "executable": package.executable}
    entry = {"udid": udid, "bundle_id": bundle_id, "package": app, "bundle_location": location,
             "payload": {f.rel: f.sha256 for f in files},
             "deployed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    record["devices"][udid] = entry
    record["last_udid"] = udid
    write_json_atomic(build_dir / DEPLOY_RECORD, record)
    return entry
