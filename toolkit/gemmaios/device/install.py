"""Installing the app: stage the .ipa over AFC, then installation_proxy."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from .connect import MIN_IOS_MAJOR, PYMOBILEDEVICE3
from .errors import AppIdentifierMismatch, AppInstallFailed
from .local import AppPackage
from .transfer import CHUNK_BYTES, ProgressFn

STAGING_DIR = "/PublicStaging/gemmaios"


async def installed_apps(client, bundle_ids: list[str]) -> dict[str, dict]:
    from pymobiledevice3.services.installation_proxy import InstallationProxyService

    async with InstallationProxyService(client) as proxy:
        return await proxy.lookup({"BundleIDs": bundle_ids}) or {}


async def install_app(client, package: AppPackage, *, chunk: int = CHUNK_BYTES, progress: ProgressFn | None = None) -> None:
    """Stage the .ipa over AFC (with progress), then have installation_proxy install it."""
    from pymobiledevice3.services.afc import AfcService
    from pymobiledevice3.services.installation_proxy import InstallationProxyService

    remote = f"{STAGING_DIR}/{package.bundle_id}.ipa"
    # next to the package, not in /tmp (often a small tmpfs): an app with its model is several GB
    with tempfile.TemporaryDirectory(prefix=".gemmaios-ipa-", dir=package.path.parent) as tmp:
        ipa = package.path
        if ipa.is_dir():  # an .app from xcodebuild: pack it as an .ipa on disk, a block at a time
            ipa = pack_app(package.path, Path(tmp) / f"{package.path.stem}.ipa", chunk=chunk, progress=progress)
        size = ipa.stat().st_size
        async with AfcService(client) as afc:
            await afc.makedirs(STAGING_DIR)
            handle = await afc.fopen(remote, "w")
            try:
                with open(ipa, "rb") as fh:
                    sent = 0
                    while block := fh.read(chunk):
                        await afc.fwrite(handle, block)
                        sent += len(block)
                        if progress:
                            progress(f"upload {ipa.name}", sent, size)
            finally:
                await afc.fclose(handle)
            try:
                async with InstallationProxyService(client) as proxy:
                    await _install_staged(proxy, package, remote, progress)
            finally:
                await afc.rm_single(remote, force=True)


def pack_app(app: Path, ipa: Path, *, chunk: int = CHUNK_BYTES, progress: ProgressFn | None = None) -> Path:
    """Write `app` (an .app folder) as an .ipa (Payload/<App>.app/...) at `ipa`, streaming each file
    from disk in `chunk`-byte blocks: memory stays flat however large the bundled model is. Stored,
    not deflated (weights do not compress, and installd unpacks it faster); zip64 where a file
    needs it (zipfile decides from its size)."""
    app = Path(app)
    files = sorted(p for p in app.rglob("*") if p.is_file())
    total = sum(f.stat().st_size for f in files)
    done = 0
    label = f"pack {app.name}"
    with zipfile.ZipFile(ipa, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in files:
            info = zipfile.ZipInfo.from_file(path, f"Payload/{app.name}/{path.relative_to(app).as_posix()}")
            info.compress_type = zipfile.ZIP_STORED
            with open(path, "rb") as src, archive.open(info, "w") as dst:
                while block := src.read(chunk):
                    dst.write(block)
                    done += len(block)
                    if progress:
                        progress(label, done, total)
    os.chmod(ipa, 0o600)
    return ipa


# installation_proxy errors with a known cause → what to do
INSTALL_HINTS = {
    "ApplicationVerificationFailed": "the app is not signed for this device: add its UDID to the provisioning "
                                     "profile (or use automatic signing) and rebuild the app on the Mac",
    "DeviceOSVersionTooLow": f"the app needs a newer iOS: update the iPhone to iOS {MIN_IOS_MAJOR}+",
    "APIInternalError": "unlock the iPhone and run again; if it repeats, restart the iPhone",
}
MISMATCHED_TEAM = "MismatchedApplicationIdentifierEntitlement"


async def _install_staged(proxy, package: AppPackage, remote: str, progress: ProgressFn | None) -> None:
    """Install the staged package, following installation_proxy's status stream.

    (Read here rather than through `send_package`, whose own progress bar would fight ours.)
    """
    label = f"install {package.bundle_id}"
    await proxy.service.send_plist({"Command": "Install", "PackagePath": remote,
                                    "ClientOptions": {"CFBundleIdentifier": package.bundle_id}})
    while True:
        response = await proxy.service.recv_plist()
        if not response:
            raise AppInstallFailed(f"installing {package.bundle_id} ended without a status",
                                   hint="unlock the iPhone and run `gemmaios deploy` again")
        error = response.get("Error")
        if error:
            detail = response.get("ErrorDescription") or ""
            if error == MISMATCHED_TEAM:
                raise AppIdentifierMismatch(
                    f"the device refused {package.path.name}: an app with bundle id {package.bundle_id}, signed by "
                    f"another team, is already installed ({error} {detail})".strip(),
                    hint=f"delete the installed {package.bundle_id} from the iPhone (touch and hold its icon → Remove "
                         f"App, or `{PYMOBILEDEVICE3} apps uninstall {package.bundle_id}`) — its Documents go with "
                         f"it — then run `gemmaios deploy` again; or give this build its own bundle id")
            raise AppInstallFailed(f"the device refused {package.path.name}: {error} {detail}".strip(),
                                   hint=INSTALL_HINTS.get(error, "check the app is signed for this device and run again"))
        if isinstance(response.get("PercentComplete"), (int, float)) and progress:
            progress(label, int(response["PercentComplete"]), 100)
        if response.get("Status") == "Complete":
            if progress:
                progress(label, 100, 100)
            return
