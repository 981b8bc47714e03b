"""`deploy`: install the app if it changed and push exactly the payload the app reads from Documents.

What is pushed is the contract's payload plan (`gemmaios.payload`): for `documents` its files
go to `Documents/<contract.PAYLOAD_DIR>/...`; for `bundled` the .app carries them and nothing
is pushed (and whatever an earlier deploy pushed is removed). For an iPhone, the build's bundle
must be an AOT `.aimodelc` for its architecture and a tbl bundle must fit the entitled memory
(`--allow-uncompiled` / `--allow-tbl` override). What was installed is recorded in
`<build>/deploy.json`, which bench reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import contract
from ..archs import get_arch
from ..payload import PayloadPlan, check_ios_bundle, check_tbl_memory
from ..pipeline import finished_details
from .checks import check_space, run_preflight
from .connect import disconnect_types, open_device, quiet_disconnects
from .devicectl import Devicectl, devicectl_for, phone_only_on_the_mac
from .errors import (
    AppMissing,
    DeviceDisconnected,
    DeviceNotFound,
    NoDevice,
    NothingToDeploy,
    UsbmuxdUnavailable,
)
from .install import install_app, installed_apps
from .local import (
    DEPLOY_RECORD,
    build_arch,
    deploy_plan,
    find_app_package,
    local_files,
    read_app_package,
    signed_bundle_id,
    write_deploy_record,
)
from .transfer import (
    CHUNK_BYTES,
    ProgressFn,
    PushReport,
    empty_manifest,
    prune_files,
    push_files,
    read_device_manifest,
    write_device_manifest,
)


@dataclass
class DeployResult:
    udid: str
    bundle_id: str
    installed: bool
    push: PushReport
    warnings: list[str] = field(default_factory=list)
    location: str = contract.BUNDLED
    record: Path | None = None  # <build>/deploy.json


def ios_checks(build_dir: Path, plan: PayloadPlan, arch: str | None, *, allow_uncompiled: bool = False,
               allow_tbl: bool = False) -> list[str]:
    """The contract's iPhone refusals for what this deploy gives the app (the same as `gemmaios app`'s):
    an un-compiled bundle (UncompiledBundle) and an E4B-size tbl bundle (TablesExceedMemory).
    Returns the warnings of overridden checks."""
    if not arch:
        return []
    target = get_arch(arch)
    convert = finished_details(build_dir, "convert")
    ple = convert.ple if convert is not None else "none"
    tables = [f.source for f in plan.files if f.dest.startswith(contract.PAYLOAD_TABLES_DIR + "/")]
    found = [check_ios_bundle(plan.bundle_dir, target, allow_uncompiled=allow_uncompiled),
             check_tbl_memory(plan.bundle_dir, tables, target, ple, allow_tbl=allow_tbl)]
    return [w for w in found if w]


async def _deploy(build_dir: Path, udid: str | None, ipa: Path | None, arch: str | None, verify: bool,
                  chunk: int, progress: ProgressFn | None, allow_uncompiled: bool, allow_tbl: bool,
                  control: Devicectl | None = None) -> DeployResult:
    from pymobiledevice3.services.house_arrest import HouseArrestService

    quiet_disconnects()

    plan = deploy_plan(build_dir)
    warnings = ios_checks(build_dir, plan, arch, allow_uncompiled=allow_uncompiled, allow_tbl=allow_tbl)
    app_path = Path(ipa) if ipa else find_app_package(build_dir)
    package = read_app_package(app_path) if app_path else None
    bundle_id = package.bundle_id if package else signed_bundle_id(build_dir)
    if not bundle_id:
        raise NothingToDeploy(f"{build_dir} has no signed app to install",
                              hint="build it on a Mac (`fastlane ios dev_build` writes <build>/ipa/) "
                                   "or pass the signed .ipa with --ipa")
    files = local_files(build_dir, plan)  # empty when the app is bundled: it carries the payload
    async with open_device(udid) as client:
        if control is not None:  # the Mac's devicectl installs: it must see this phone, paired, in Developer Mode
            await asyncio.to_thread(control.select, client.udid)
        report = await run_preflight(client, arch=arch)
        installed = bool((await installed_apps(client, [bundle_id])).get(bundle_id))
        manifest = empty_manifest()
        if installed:
            async with await HouseArrestService.create(client, bundle_id, documents_only=True) as afc:
                manifest = await read_device_manifest(afc)
        reinstall = package is not None and (not installed or manifest["app"].get("sha256") != package.sha256)
        if not installed and package is None:
            raise AppMissing(f"{bundle_id} is not installed on {client.udid} and there is no .ipa to install",
                             hint="pass the signed .ipa with --ipa")
        pending = sum(f.size for f in files if (manifest["files"].get(f.rel) or {}).get("sha256") != f.sha256)
        check_space(report.info, pending + (2 * package.size if reinstall and package else 0))
        if reinstall and package and control is not None:
            await asyncio.to_thread(control.app(client.udid).install, package.path, package.bundle_id)
        elif reinstall and package:
            await install_app(client, package, chunk=chunk, progress=progress)
        async with await HouseArrestService.create(client, bundle_id, documents_only=True) as afc:
            manifest = await read_device_manifest(afc)
            if package:
                manifest["app"] = {"bundle_id": bundle_id, "executable": package.executable,
                                   "version": package.version, "sha256": package.sha256}
            else:
                manifest["app"].setdefault("bundle_id", bundle_id)
            manifest["udid"] = client.udid
            manifest["bundle_location"] = plan.location
            pushed = await push_files(afc, files, manifest, chunk=chunk, verify=verify, progress=progress)
            pushed.removed = await prune_files(afc, {f.rel for f in files}, manifest)
            await write_device_manifest(afc, manifest)
        write_deploy_record(build_dir, client.udid, bundle_id, package, plan.location, files)
        return DeployResult(client.udid, bundle_id, bool(reinstall), pushed, [*warnings, *report.warnings],
                            plan.location, build_dir / DEPLOY_RECORD)


def deploy(build_dir: Path, udid: str | None = None, ipa: Path | None = None, *, arch: str | None = None,
           verify: bool = True, chunk: int = CHUNK_BYTES, progress: ProgressFn | None = None,
           allow_uncompiled: bool = False, allow_tbl: bool = False, mac: str | None = None,
           ssh_options: Sequence[str] = ()) -> DeployResult:
    """Install the app (if it changed) and push the payload the app reads from Documents (none when bundled).

    Re-running after an unplug resumes the file in flight and skips finished ones. On macOS (or with
    `mac`, see devicectl.device_transport) the app is installed with `xcrun devicectl`.
    """
    build_dir = Path(build_dir)
    arch = arch or build_arch(build_dir)
    control = devicectl_for(mac, ssh_options)
    try:
        return asyncio.run(_deploy(build_dir, udid, ipa, arch, verify, chunk, progress, allow_uncompiled, allow_tbl,
                                   control))
    except (NoDevice, DeviceNotFound, UsbmuxdUnavailable) as exc:
        better = None if control is None else phone_only_on_the_mac(control, udid, exc)
        if better is None or better is exc:
            raise
        raise better from exc
    except disconnect_types() as exc:
        raise DeviceDisconnected(
            f"the connection to the device dropped during deploy ({type(exc).__name__}: {exc})",
            hint="reconnect and unlock the iPhone, then run the same `gemmaios deploy` again: finished files are "
                 "kept and the interrupted one resumes where it stopped",
        ) from exc
    finally:
        if control is not None:
            control.close()
