"""Files into an app's Documents over AFC: the device-side manifest, resumable sha256-verified pushes, pruning."""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .. import contract
from .errors import DeviceError
from .local import LocalFile

AFC_DOCUMENTS = "/Documents"  # house_arrest's documents-only view of the app container
CHUNK_BYTES = 4 << 20
RESUME_CHECK_BYTES = 1 << 20

ProgressFn = Callable[[str, int, int], None]  # (label, done, total)


def empty_manifest() -> dict:
    return {"schema": contract.DEVICE_MANIFEST_SCHEMA, "app": {}, "files": {}, "partial": {}}


async def read_device_manifest(afc) -> dict:
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    try:
        raw = await afc.get_file_contents(f"{AFC_DOCUMENTS}/{contract.DEVICE_MANIFEST_FILE}")
        data = json.loads(raw)
    except AfcFileNotFoundError:
        return empty_manifest()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return empty_manifest()  # damaged: every file gets re-checked and re-sent
    if data.get("schema") != contract.DEVICE_MANIFEST_SCHEMA:
        return empty_manifest()
    for key in ("app", "files", "partial"):
        data.setdefault(key, {})
    return data


async def write_device_manifest(afc, manifest: dict) -> None:
    """Write to a temporary name, then rename: an unplug never leaves a half-written manifest."""
    from pymobiledevice3.exceptions import AfcException

    manifest["updated"] = datetime.now(UTC).isoformat(timespec="seconds")

    final = f"{AFC_DOCUMENTS}/{contract.DEVICE_MANIFEST_FILE}"
    await afc.set_file_contents(final + ".tmp", json.dumps(manifest, indent=1, sort_keys=True).encode())
    try:
        await afc.rename(final + ".tmp", final)
    except AfcException:  # an AFC that will not rename over an existing file
        await afc.rm_single(final, force=True)
        await afc.rename(final + ".tmp", final)


async def _remote_size(afc, remote: str) -> int | None:
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    try:
        return int((await afc.stat(remote))["st_size"])
    except AfcFileNotFoundError:
        return None


async def _read_range(afc, remote: str, offset: int, length: int) -> bytes:
    handle = await afc.fopen(remote, "r")
    try:
        if offset:
            await afc.fseek(handle, offset)
        return await afc.fread(handle, length) if length else b""
    finally:
        await afc.fclose(handle)


async def _remote_sha256(afc, remote: str, size: int, chunk: int, progress: ProgressFn | None, label: str) -> str:
    digest = hashlib.sha256()
    handle = await afc.fopen(remote, "r")
    try:
        done = 0
        while done < size:
            block = await afc.fread(handle, min(chunk, size - done))
            if not block:
                break
            digest.update(block)
            done += len(block)
            if progress:
                progress(label, done, size)
    finally:
        await afc.fclose(handle)
    return digest.hexdigest()


async def _resume_offset(afc, remote: str, local: LocalFile, partial: dict | None, remote_size: int | None) -> int:
    """Where to continue a file an unplug cut short: its current remote size, when that is a
    prefix of this very file (the manifest pins the file's sha256, and the last bytes written
    are read back and compared)."""
    if not partial or partial.get("sha256") != local.sha256 or not remote_size or remote_size > local.size:
        return 0
    window = min(RESUME_CHECK_BYTES, remote_size)
    start = remote_size - window
    remote_tail = await _read_range(afc, remote, start, window)
    with open(local.path, "rb") as fh:
        fh.seek(start)
        local_tail = fh.read(window)
    return remote_size if hashlib.sha256(remote_tail).digest() == hashlib.sha256(local_tail).digest() else 0


@dataclass
class PushReport:
    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: dict[str, int] = field(default_factory=dict)  # rel → offset resumed from
    resent: list[str] = field(default_factory=list)  # failed the read-back once, sent again
    removed: list[str] = field(default_factory=list)  # pushed earlier, no longer in the build
    bytes_sent: int = 0


async def _send(afc, local: LocalFile, remote: str, offset: int, chunk: int, progress: ProgressFn | None) -> int:
    """Write `local` from `offset` on (appending to what is there); returns bytes sent."""
    if progress:
        progress(local.rel, offset, local.size)
    handle = await afc.fopen(remote, "a" if offset else "w")
    sent = 0
    try:
        with open(local.path, "rb") as fh:
            fh.seek(offset)
            while block := fh.read(chunk):
                await afc.fwrite(handle, block)
                sent += len(block)
                if progress:
                    progress(local.rel, offset + sent, local.size)
    finally:
        await afc.fclose(handle)
    return sent


async def prune_files(afc, keep: set[str], manifest: dict) -> list[str]:
    """Remove files an earlier deploy pushed that the build no longer has (only manifest-tracked ones:
    what the app wrote itself, such as its run logs, is never touched)."""
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    removed = []
    for rel in sorted(set(manifest["files"]) | set(manifest["partial"])):
        if rel in keep:
            continue
        with contextlib.suppress(AfcFileNotFoundError):
            await afc.rm_single(f"{AFC_DOCUMENTS}/{rel}")
        manifest["files"].pop(rel, None)
        manifest["partial"].pop(rel, None)
        removed.append(rel)
    if removed:
        await write_device_manifest(afc, manifest)
    return removed


async def push_files(afc, files: list[LocalFile], manifest: dict, *, chunk: int = CHUNK_BYTES, verify: bool = True,
                     progress: ProgressFn | None = None) -> PushReport:
    """Push `files` under Documents/, skipping identical ones and resuming partial ones."""
    report = PushReport()
    for local in files:
        remote = f"{AFC_DOCUMENTS}/{local.rel}"
        remote_size = await _remote_size(afc, remote)
        done = manifest["files"].get(local.rel)
        if done and done.get("sha256") == local.sha256 and done.get("size") == local.size == remote_size:
            report.skipped.append(local.rel)
            continue
        offset = await _resume_offset(afc, remote, local, manifest["partial"].get(local.rel), remote_size)
        manifest["files"].pop(local.rel, None)
        manifest["partial"][local.rel] = {"size": local.size, "sha256": local.sha256}
        await write_device_manifest(afc, manifest)
        await afc.makedirs(posixpath.dirname(remote))
        if offset:
            report.resumed[local.rel] = offset
        for attempt in (1, 2):  # a read-back mismatch re-sends the whole file once
            if offset < local.size or remote_size != offset:  # (an empty file still needs creating/truncating)
                report.bytes_sent += await _send(afc, local, remote, offset, chunk, progress)
            final_size = await _remote_size(afc, remote)
            if final_size != local.size:
                raise DeviceError(f"{local.rel}: the device holds {final_size} bytes, expected {local.size}",
                                  hint="run `gemmaios deploy` again; the file is re-sent")
            if not verify or await _remote_sha256(afc, remote, local.size, max(chunk, CHUNK_BYTES), progress,
                                                  f"verify {local.rel}") == local.sha256:
                break
            if attempt == 2:
                manifest["partial"].pop(local.rel, None)
                await write_device_manifest(afc, manifest)
                raise DeviceError(f"{local.rel}: sha256 on the device differs from the build's, twice",
                                  hint="check the cable and run `gemmaios deploy` again")
            report.resent.append(local.rel)
            offset, remote_size = 0, None
        manifest["partial"].pop(local.rel, None)
        manifest["files"][local.rel] = {"size": local.size, "sha256": local.sha256,
                                        "pushed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        await write_device_manifest(afc, manifest)
        report.pushed.append(local.rel)
    return report
