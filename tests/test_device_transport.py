"""The Linux device transport and pymobiledevice3's failure modes (issue 16).

What the loopback simulator can serve runs through it with the real pymobiledevice3 client
(lock state, AlreadyMounted-free DDI checks over lockdown, installation_proxy errors,
house_arrest errors, crash reports, power assertions, DVT refusals). What it cannot (the iOS
17+ QUIC/RemoteXPC tunnel: tunneld's RSD, the userspace tunnel, cryptexd, CoreDevice) is
tested at pymobiledevice3's own entry points gemmaios calls, patched to answer as a real
device or a stale tunneld does.
"""

from __future__ import annotations

import asyncio
import json
import os
import plistlib
import socket
import sys
import tracemalloc
from pathlib import Path

import pytest
from devicebuild import BUNDLE_ID, copy_build, shrink_prompt_set
from devicesim import DeviceSim, SimApp, SimDevice
from devicesim.appbuild import package_app
from typer.testing import CliRunner

from gemmaios import contract
from gemmaios import device as dev
from gemmaios import devicebench as bench_mod
from gemmaios.cli import app as cli_app

UDID = "00008150-000A1B2C3D4E5F61"
CHUNK = 64 << 10

# FrontBoard's refusals, as DVT's process control relays them (FBSOpenApplicationErrorDomain)
LOCKED_TEXT = ('The request to open "dev.gemmaios.bench" failed. The request was denied by service delegate '
               '(SBMainWorkspace) for reason: Locked ("Unable to launch dev.gemmaios.bench because the device '
               'was not, or could not be, unlocked").')
UNTRUSTED_TEXT = ('The request to open "dev.gemmaios.bench" failed. The request was denied by service delegate '
                  '(SBMainWorkspace) for reason: Security ("Unable to launch dev.gemmaios.bench because it has an '
                  'invalid code signature, inadequate entitlements or its profile has not been explicitly '
                  'trusted by the user").')




def add_device(sim: DeviceSim, **kw) -> SimDevice:
    return sim.add(SimDevice(udid=UDID, root=sim.folder / UDID, **kw))


def on_device(coro_fn):
    """Run `coro_fn(client)` inside gemmaios' open_device (where pymobiledevice3 errors get their names)."""
    async def go():
        async with dev.open_device(UDID) as client:
            return await coro_fn(client)
    return asyncio.run(go())


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_app(folder: Path, bundle_id: str = "dev.gemmaios.transport", *, blob_bytes: int = 0) -> Path:
    app = folder / "Transport.app"
    app.mkdir(parents=True)
    (app / "Info.plist").write_bytes(plistlib.dumps({"CFBundleIdentifier": bundle_id,
                                                     "CFBundleExecutable": "Transport",
                                                     "CFBundleShortVersionString": "1.0"}))
    (app / "Transport").write_text("#!/bin/sh\n")
    if blob_bytes:
        (app / "model").mkdir()
        with open(app / "model" / "weights.bin", "wb") as fh:
            for _ in range(blob_bytes // (1 << 20)):
                fh.write(os.urandom(1 << 20))  # incompressible, as weights are
    return app


class FakeRsd:
    """Stands in for the RemoteServiceDiscoveryService of a tunnel (the one thing not simulated):
    it offers no service unless a test patches pymobiledevice3's service class."""

    def __init__(self, udid: str = UDID, product_version: str = "27.0"):
        self.udid, self.product_version, self.closed = udid, product_version, 0

    def start_remote_service(self, name):
        from pymobiledevice3.exceptions import InvalidServiceError

        raise InvalidServiceError(f"The device does not offer the {name} service.", self.udid, self.product_version)

    async def close(self):
        self.closed += 1


# ------------------------------------------------------------------------------------ tunnel choice


def test_the_tunneld_hint_runs_this_environments_python_not_the_systems():
    assert dev.TUNNELD_COMMAND == f"sudo {sys.executable} -m pymobiledevice3 remote tunneld"
    assert "python3 -m" not in dev.TUNNELD_COMMAND.replace(sys.executable, "")
    assert dev.DDI_COMMAND.startswith(f"{sys.executable} -m pymobiledevice3 ")


def test_stale_tunneld_entry_is_no_raw_indexerror(sim, monkeypatch):
    """tunneld lists a tunnel whose address no longer answers (replug, sleep): pymobiledevice3's own
    get_tunneld_device_by_udid skips it and indexes an empty list. gemmaios falls back to the
    in-process tunnel, which the simulated phone (like iOS < 17.4) cannot serve: a named error."""
    from pymobiledevice3.tunneld import api

    add_device(sim)
    stale = {UDID: [{"tunnel-address": "127.0.0.1", "tunnel-port": closed_port(), "interface": "utun7"}]}
    monkeypatch.setattr(api, "_list_tunnels", lambda address=None: stale)
    with pytest.raises(IndexError):  # what pymobiledevice3 itself does with it
        asyncio.run(api.get_tunneld_device_by_udid(UDID))
    monkeypatch.setenv(dev.TRANSPORT_ENV, "tunnel")
    with pytest.raises(dev.TunnelNotRunning) as err:
        asyncio.run(dev.tunnel_provider(UDID))
    assert "no longer answers (stale after a replug or sleep)" in str(err.value)
    assert "in-process tunnel cannot serve" in str(err.value)
    assert dev.TUNNELD_COMMAND in err.value.hint and sys.executable in err.value.hint


def test_without_tunneld_the_userspace_tunnel_is_opened_and_closed_with_its_rsd(monkeypatch):
    from pymobiledevice3.exceptions import TunneldConnectionError
    from pymobiledevice3.remote import userspace_tunnel
    from pymobiledevice3.tunneld import api

    rsd, opened, closed = FakeRsd(), [], []

    async def no_tunneld(udid, address=None, bridge=None):
        raise TunneldConnectionError()

    async def aopen(self):
        opened.append((self.serial, self.autopair, self.remotepairing_fallback))
        return rsd

    async def aclose(self):
        closed.append(self.serial)

    monkeypatch.setattr(api, "get_tunneld_device_by_udid", no_tunneld)
    monkeypatch.setattr(userspace_tunnel.UserspaceRsdTunnel, "aopen", aopen)
    monkeypatch.setattr(userspace_tunnel.UserspaceRsdTunnel, "aclose", aclose)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "auto")

    async def go():
        got = await dev.tunnel_provider(UDID)
        assert got is rsd and opened == [(UDID, False, False)] and closed == []
        await got.close()  # as bench / preflight close tunneld's RSD
        assert closed == [UDID]
    asyncio.run(go())


def test_tunneld_is_used_when_it_serves_the_device(monkeypatch):
    from pymobiledevice3.remote import userspace_tunnel
    from pymobiledevice3.tunneld import api

    rsd = FakeRsd()

    async def served(udid, address=None, bridge=None):
        return rsd if udid == UDID else None

    async def must_not_open(self):
        raise AssertionError("the userspace tunnel was opened although tunneld serves the device")

    monkeypatch.setattr(api, "get_tunneld_device_by_udid", served)
    monkeypatch.setattr(userspace_tunnel.UserspaceRsdTunnel, "aopen", must_not_open)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "tunnel")
    assert asyncio.run(dev.tunnel_provider(UDID)) is rsd


@pytest.mark.parametrize("setting", ["tunneld", "userspace"])
def test_transport_setting_forces_one_tunnel(monkeypatch, setting):
    from pymobiledevice3.exceptions import PyMobileDevice3Exception
    from pymobiledevice3.remote import userspace_tunnel
    from pymobiledevice3.tunneld import api

    asked = []

    async def tunneld(udid, address=None, bridge=None):
        asked.append("tunneld")
        return None

    async def userspace(self):
        asked.append("userspace")
        raise PyMobileDevice3Exception("CoreDeviceProxy handshake failed")

    monkeypatch.setattr(api, "get_tunneld_device_by_udid", tunneld)
    monkeypatch.setattr(userspace_tunnel.UserspaceRsdTunnel, "aopen", userspace)
    monkeypatch.setenv(dev.TRANSPORT_ENV, setting)
    expected = dev.TunnelNotRunning if setting == "tunneld" else dev.TunnelFailed
    with pytest.raises(expected) as err:
        asyncio.run(dev.tunnel_provider(UDID))
    assert asked == [setting]
    assert dev.TUNNELD_COMMAND in err.value.hint


def test_unknown_transport_setting_is_refused(monkeypatch):
    monkeypatch.setenv(dev.TRANSPORT_ENV, "wifi")
    with pytest.raises(dev.DeviceError, match="not one of auto, lockdown, tunnel, tunneld, userspace"):
        dev.developer_transport("27.0")


# ------------------------------------------------------------------------------------ developer disk image


def test_already_mounted_is_success(sim, monkeypatch):
    from pymobiledevice3.exceptions import AlreadyMountedError
    from pymobiledevice3.services import mobile_image_mounter

    add_device(sim)
    calls = []

    async def auto_mount(provider, *a, **kw):
        calls.append(provider)
        raise AlreadyMountedError("The com.apple.MobileAsset.DDI 27.0 cryptex is already installed.")

    monkeypatch.setattr(mobile_image_mounter, "auto_mount", auto_mount)
    on_device(lambda client: dev.mount_developer_image(client))  # no DeveloperImageNotMounted
    assert len(calls) == 1


def test_ddi_installed_as_a_cryptex_counts_as_mounted(sim, monkeypatch):
    """The image mounter lists no image (LookupImage and CopyDevices empty), but cryptexd, asked
    through the tunnel, has the DDI cryptex installed: the bench preflight passes."""
    from pymobiledevice3.services import cryptexd
    from pymobiledevice3.tunneld import api

    add_device(sim, ddi_mounted=False)
    rsd = FakeRsd()

    async def served(udid, address=None, bridge=None):
        return rsd

    async def copy_installed(self):
        assert self.rsd is rsd
        return [cryptexd.InstalledCryptex(identifier=cryptexd.DDI_CRYPTEX_IDENTIFIER, version="27.0")]

    monkeypatch.setattr(api, "get_tunneld_device_by_udid", served)
    monkeypatch.setattr(cryptexd.CryptexdService, "copy_installed", copy_installed)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "tunnel")
    dev.preflight(UDID, bench=True)
    assert rsd.closed == 1

    async def nothing_installed(self):
        return []

    monkeypatch.setattr(cryptexd.CryptexdService, "copy_installed", nothing_installed)
    with pytest.raises(dev.DeveloperImageNotMounted, match="not mounted"):
        dev.preflight(UDID, bench=True)
    assert rsd.closed == 2


def test_dvt_refused_is_named_developer_image_not_mounted(sim):
    """DVT over lockdown on a phone that does not offer it (no DDI, or iOS 17+ asked over lockdown):
    pymobiledevice3 raises InvalidServiceError; gemmaios names it."""
    from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider

    add_device(sim, lockdown_dvt=False)

    async def open_dvt(client):
        async with DvtProvider(client):
            pass

    with pytest.raises(dev.DeveloperImageNotMounted) as err:
        on_device(open_dvt)
    assert "--mount-ddi" in err.value.hint and dev.TRANSPORT_ENV in err.value.hint


# ------------------------------------------------------------------------------------ lock state, awake


def test_a_locked_phone_is_caught_although_it_serves_installation_proxy(sim):
    add_device(sim, locked=True)
    assert on_device(lambda client: dev.installed_apps(client, ["com.apple.Preferences"])) == {}  # as a real one
    with pytest.raises(dev.DeviceLocked, match="is locked") as err:
        dev.preflight(UDID)
    assert "unlock the iPhone" in err.value.hint


def test_coredevice_lock_state_over_the_tunnel(sim, monkeypatch):
    from pymobiledevice3.remote.core_device import device_info
    from pymobiledevice3.tunneld import api

    add_device(sim)
    rsd = FakeRsd()
    state = {"passcodeRequired": True, "unlockedSinceBoot": True}

    async def served(udid, address=None, bridge=None):
        return rsd

    async def connect(self):
        assert self.rsd is rsd

    async def get_lockstate(self):
        return dict(state)

    monkeypatch.setattr(api, "get_tunneld_device_by_udid", served)
    monkeypatch.setattr(device_info.DeviceInfoService, "connect", connect)
    monkeypatch.setattr(device_info.DeviceInfoService, "get_lockstate", get_lockstate)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "tunnel")
    with pytest.raises(dev.DeviceLocked):
        dev.preflight(UDID, bench=True)
    state["passcodeRequired"] = False
    dev.preflight(UDID, bench=True)


@pytest.mark.parametrize("text,error,advice", [
    (LOCKED_TEXT, dev.DeviceLocked, "unlock the iPhone"),
    (UNTRUSTED_TEXT, dev.DeveloperNotTrusted, "VPN & Device Management"),
    ("Launch blocked by the security policy", dev.LaunchFailed, "open the app once"),
])
def test_launch_refusals_are_named(text, error, advice):
    found = dev.launch_refusal("dev.gemmaios.bench", text)
    assert type(found) is error and advice in found.hint


def test_untrusted_developer_launch_through_dvt(sim, monkeypatch):
    from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
    from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl

    device = add_device(sim, refuse_launch=UNTRUSTED_TEXT)

    async def launch(client):
        async with DvtProvider(client) as dvt, ProcessControl(dvt) as control:
            await bench_mod._launch(control, "dev.gemmaios.bench", {})

    with pytest.raises(dev.DeveloperNotTrusted) as err:
        on_device(launch)
    assert "Settings → General → VPN & Device Management" in err.value.hint
    device.refuse_launch = None
    device.locked = True  # the real phone's answer to a launch while locked
    with pytest.raises(dev.DeviceLocked, match="could not be, unlocked"):
        on_device(launch)


def test_open_device_holds_a_power_assertion_while_asked(sim):
    device = add_device(sim)

    async def inside(client):
        await asyncio.sleep(0.2)
        return device.assertions_held

    async def go():
        async with dev.open_device(UDID, awake_seconds=900) as client:
            return await inside(client)

    assert asyncio.run(go()) == 1
    assert device.assertions_held == 0  # released with the block
    assertion = device.assertions[-1]
    assert assertion["AssertionTypeKey"] == "PreventUserIdleSystemSleep" and assertion["AssertionTimeoutKey"] == 900
    on_device(lambda client: asyncio.sleep(0))
    assert len(device.assertions) == 1  # not asked: none taken


# ------------------------------------------------------------------------------------ install


def test_installing_an_app_folder_streams_it(sim, tmp_path, monkeypatch):
    from pymobiledevice3.services import installation_proxy

    device = add_device(sim)
    app = make_app(tmp_path / "Build", blob_bytes=24 << 20)
    package = dev.read_app_package(app)

    def in_memory(_directory):
        raise AssertionError("the whole .app was zipped into memory")

    monkeypatch.setattr(installation_proxy, "create_ipa_contents_from_directory", in_memory)
    tracemalloc.start()
    try:
        on_device(lambda client: dev.install_app(client, package, chunk=CHUNK))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak Python allocation {peak / 2**20:.1f} MiB for a 24 MiB app"
    assert device.installs == ["dev.gemmaios.transport"]
    installed = device.app_bundle("dev.gemmaios.transport") / "model" / "weights.bin"
    assert installed.read_bytes() == (app / "model" / "weights.bin").read_bytes()
    assert sorted(p.name for p in app.parent.iterdir()) == ["Transport.app"]  # the temporary .ipa is gone


def test_pack_app_lays_out_an_ipa(tmp_path):
    import zipfile

    app = make_app(tmp_path)
    ipa = dev.pack_app(app, tmp_path / "out.ipa")
    with zipfile.ZipFile(ipa) as archive:
        assert sorted(archive.namelist()) == ["Payload/Transport.app/Info.plist", "Payload/Transport.app/Transport"]
    assert dev.read_app_package(ipa).bundle_id == "dev.gemmaios.transport"


def test_app_signed_by_another_team_says_uninstall_it_first(sim, tmp_path):
    add_device(sim, install_error="MismatchedApplicationIdentifierEntitlement")
    package = dev.read_app_package(make_app(tmp_path))
    with pytest.raises(dev.AppIdentifierMismatch, match="signed by another team") as err:
        on_device(lambda client: dev.install_app(client, package, chunk=CHUNK))
    assert "Remove App" in err.value.hint and f"apps uninstall {package.bundle_id}" in err.value.hint
    assert isinstance(err.value, dev.AppInstallFailed)


# ------------------------------------------------------------------------------------ house_arrest


def _install(sim_device, tmp_path, bundle_id):
    package = dev.read_app_package(make_app(tmp_path / bundle_id, bundle_id))
    on_device(lambda client: dev.install_app(client, package, chunk=CHUNK))


def test_container_refusals_are_named(sim, tmp_path):
    from pymobiledevice3.services.house_arrest import HouseArrestService

    device = add_device(sim)
    _install(device, tmp_path, "dev.gemmaios.transport")

    def open_container(bundle_id):
        async def go(client):
            async with await HouseArrestService.create(client, bundle_id, documents_only=True):
                pass
        return go

    with pytest.raises(dev.AppMissing, match="not installed"):
        on_device(open_container("dev.gemmaios.absent"))
    device.container_error = "InstallationLookupFailed"
    with pytest.raises(dev.AppNotDebuggable, match="InstallationLookupFailed") as err:
        on_device(open_container("dev.gemmaios.transport"))
    assert "development-signed" in err.value.hint


# ------------------------------------------------------------------------------------ crash reports


def _jetsam(processes) -> bytes:
    return (json.dumps({"bug_type": "298"}) + "\n" + json.dumps({"processes": processes})).encode()


def test_jetsam_is_matched_by_the_pid_we_launched():
    long_name = "GemmaBenchAppWithALongName"  # the kernel keeps 16 characters
    ours = {"name": long_name[:16], "pid": 4242, "reason": "per-process-limit"}
    namesake = {"name": long_name[:16], "pid": 5151, "reason": "per-process-limit"}
    assert bench_mod.jetsam_killed(_jetsam([ours]), long_name, 4242)
    assert not bench_mod.jetsam_killed(_jetsam([{**ours, "reason": None}, namesake]), long_name, 4242)
    assert bench_mod.crash_report_kind("JetsamEvent-1.ips", _jetsam([ours]), long_name, 4242) == bench_mod.JETSAM
    assert bench_mod.crash_report_kind("JetsamEvent-1.ips", _jetsam([namesake]), long_name, 4242) is None


def test_only_crash_reports_count_as_crashes():
    def ips(bug_type, pid, name="GemmaBench"):
        return (json.dumps({"bug_type": bug_type, "app_name": name, "name": name}) + "\n"
                + json.dumps({"pid": pid, "procName": name})).encode()

    kind = bench_mod.crash_report_kind
    assert kind("GemmaBench-2026-12-01-030000.ips", ips("309", 77), "GemmaBench", 77) == bench_mod.CRASHED
    assert kind("GemmaBench.cpu_resource-2026-12-01-030000.ips", ips("202", 77), "GemmaBench", 77) is None
    assert kind("GemmaBench.wakeups_resource-2026-12-01.ips", ips("142", 77), "GemmaBench", 77) is None
    assert kind("GemmaBench-2026-12-01-030000.ips", ips("309", 78), "GemmaBench", 77) is None  # an earlier run
    assert kind("GemmaBenchHelper-2026.ips", ips("309", 79, "GemmaBenchHelper"), "GemmaBench", None) is None


# ------------------------------------------------------------------------------------ bench, end to end


@pytest.fixture
def build(tiny_app_builds, tmp_path) -> Path:
    out = copy_build(tiny_app_builds[contract.PUSHED_TO_DOCUMENTS], tmp_path / "build")
    shrink_prompt_set(out)
    package_app(out)
    return out


def deployed(sim, build, **state) -> SimDevice:
    device = add_device(sim, **state)
    dev.deploy(build, chunk=CHUNK, allow_uncompiled=True, verify=False)
    return device


def test_bench_keeps_the_phone_awake_and_ignores_others_reports(sim, build):
    """The app exits without its footer; the phone also files a resource report of the app and a
    JetsamEvent killing a namesake process: the run is "exited", with no report pulled."""
    device = deployed(sim, build, app=SimApp(outcome="exit"), report_noise=True)
    with pytest.raises(bench_mod.BenchFailed, match="exited without finishing its log") as err:
        bench_mod.bench(build, trials=1, timeout=120, poll=0.1, report_wait=0.5)
    assert err.value.result.status == bench_mod.EXITED and err.value.result.crash_reports == []
    assert device.launches[-1]["kept_awake"] is True and device.assertions_held == 0
    assert device.assertions[-1]["AssertionTimeoutKey"] >= 120


def test_a_bench_the_app_fails_stops_at_once_with_its_reason_and_the_fix(sim, build):
    """The app cannot use a payload file (a PLE table cut short on the phone): it writes its failure record (the
    reason; no prompt was under way) and stays on screen. `gemmaios bench` stops on that record at once (status
    failed, not its --timeout), ends the app and names the reason and the fix; deploy then pushes the file again."""
    from device_helpers import TABLE_I8

    device = deployed(sim, build)
    table = device.container(BUNDLE_ID) / "Documents" / TABLE_I8
    table.write_bytes(table.read_bytes()[:1000])
    # --timeout is a safety net only: the stop on the failure record takes seconds (status failed, not timeout)
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "120"])
    said = " ".join(ran.output.split())
    assert ran.exit_code == 1, ran.output
    assert "bench failed: the app's bench failed: PLE table " in said and " holds 1000 bytes, expected " in said, said
    assert f"→ a payload file missing or damaged on the phone is pushed again by `gemmaios deploy --out {build}`" in said
    assert device.running == {}  # ended, not left on screen
    [run_dir] = (build / "runs").iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == bench_mod.FAILED and run["failure"]["reason"].startswith("PLE table ")
    assert "prompt_id" not in run["failure"]  # it failed loading the engine, before any prompt
    lines = [json.loads(line) for line in Path(run["transcript"]).read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[-1] == run["failure"] and "footer" not in {r["type"] for r in lines}
    reported = CliRunner().invoke(cli_app, ["report", str(run_dir), "--out", str(build / "report")])
    md = (build / "report" / "report.md").read_text()
    assert reported.exit_code == 1 and f"| status | INCOMPLETE (the app's bench failed: {run['failure']['reason']}) |" in md
    again = dev.deploy(build, chunk=CHUNK, allow_uncompiled=True, verify=False)
    assert again.push.pushed == [TABLE_I8]  # the hint's fix: the cut file is pushed again


def test_bench_jetsam_of_our_pid_is_found(sim, build):
    deployed(sim, build, app=SimApp(outcome="jetsam"), report_noise=True)
    with pytest.raises(bench_mod.BenchFailed, match="jetsam") as err:
        bench_mod.bench(build, trials=1, timeout=120, poll=0.1, report_wait=5)
    assert err.value.result.status == bench_mod.JETSAM
    assert [p.name.startswith("JetsamEvent") for p in err.value.result.crash_reports] == [True]


def test_cli_names_pymobiledevice3_failures(sim, build):
    """Failures that used to escape the CLI as raw pymobiledevice3 exceptions."""
    device = deployed(sim, build)
    device.lockdown_dvt = False  # iOS 17+: DVT only through the tunnel
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "30"])
    assert ran.exit_code == 2, ran.output
    assert "does not offer a developer service" in ran.output and "InvalidServiceError" not in ran.output
    device.lockdown_dvt = True
    device.container_error = "InstallationLookupFailed"
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "30",
                                       "--bundle-id", BUNDLE_ID])
    assert ran.exit_code == 2, ran.output
    assert "will not open the app's container" in ran.output and "Traceback" not in ran.output
