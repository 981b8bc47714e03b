"""`xcrun devicectl` as the device transport: the transport choice, devicectl's JSON and its
failures → named errors, the labelled stand-in's argument checks, and deploy → bench → score
through devicectl on the loopback SSH "Mac".

The stand-in (tests/standin_bin/devicectl_standin.py, NOT Apple's tool) does the work through
pymobiledevice3 against the loopback device simulator, so an install really lands on the
simulated phone and a launch really runs the app stand-in on the real bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from devicebuild import BUNDLE_ID
from devicesim import DeviceSim, SimApp, SimDevice
from loopback_sshd import STANDIN_BIN, start_loopback_mac

from gemmaios import contract
from gemmaios import device as dev
from gemmaios import devicebench as bench_mod
from gemmaios.device import devicectl as dctl
from gemmaios.device.devicectl_errors import DevicectlFailed
from gemmaios.device.errors import AppIdentifierMismatch, DeveloperNotTrusted
from gemmaios.errors import NeedsMacOS
from gemmaios.runners import LocalRunner, SSHRunner

UDID = "00008150-000A1B2C3D4E5F60"
STANDIN = STANDIN_BIN / "devicectl_standin.py"


# ---------------------------------------------------------------------------------------- transport choice


@pytest.mark.parametrize("env,platform,mac,local,expected", [
    (None, "linux", None, True, "pymobiledevice3"),        # Linux: everything on pymobiledevice3
    (None, "darwin", None, True, "devicectl"),             # macOS: CoreDevice, no root
    (None, "linux", "me@mac", False, "devicectl"),         # --mac and the phone is not here: it hangs off the Mac
    (None, "linux", "me@mac", True, "pymobiledevice3"),    # --mac only builds: the phone is attached here
    ("devicectl", "linux", None, True, "devicectl"),       # forced
    ("lockdown", "darwin", None, True, "pymobiledevice3"),  # forced the other way (e.g. the simulator on a Mac)
    ("tunnel", "darwin", "me@mac", False, "pymobiledevice3"),
    ("auto", "darwin", None, True, "devicectl"),
])
def test_transport_choice(monkeypatch, env, platform, mac, local, expected):
    if env is None:
        monkeypatch.delenv(dev.TRANSPORT_ENV, raising=False)
    else:
        monkeypatch.setenv(dev.TRANSPORT_ENV, env)
    asked = []

    def phone_is_local():
        asked.append(True)
        return local

    assert dctl.device_transport(mac=mac, platform=platform, phone_is_local=phone_is_local) == expected
    assert bool(asked) == (env in (None, "auto") and platform == "linux" and mac is not None)


def test_a_bad_transport_setting_is_named(monkeypatch):
    monkeypatch.setenv(dev.TRANSPORT_ENV, "usb")
    with pytest.raises(dev.DeviceError, match="devicectl") as err:
        dctl.device_transport(platform="darwin")
    assert dev.TRANSPORT_ENV in err.value.hint


def test_forcing_devicectl_on_linux_without_a_mac_names_the_command(monkeypatch):
    monkeypatch.setenv(dev.TRANSPORT_ENV, "devicectl")
    with pytest.raises(NeedsMacOS) as err:
        dctl.devicectl_for(None, platform="linux")
    assert err.value.command == "xcrun devicectl list devices" and "--mac" in str(err.value)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "lockdown")
    assert dctl.devicectl_for("me@mac", platform="linux") is None


# ---------------------------------------------------------------------------------------- JSON


def _info(outcome="success", command="devicectl.list.devices"):
    return {"arguments": [], "commandType": command, "jsonVersion": 5, "outcome": outcome, "version": "x"}


LISTING = {"info": _info(), "result": {"devices": [
    {  # Xcode 27: `properties` first (the deprecated trio disagrees on purpose)
        "identifier": "ID-1",
        "deviceProperties": {"name": "Stale", "osVersionNumber": "26.5"},
        "hardwareProperties": {"udid": UDID, "productType": "iPhone17,1"},
        "properties": {"hardware": {"udid": UDID, "productType": "iPhone18,2", "reality": "physical"},
                       "software": {"osVersionNumber": {"stringValue": "27.0"}},
                       "connection": {"pairingState": "paired", "transportType": "wired"},
                       "state": {"name": "My iPhone", "developerModeStatus": {"enabled": {"mode": 1}}}}},
    {  # an older listing: only the deprecated trio
        "identifier": "ID-2",
        "connectionProperties": {"pairingState": "unpaired", "transportType": "localNetwork"},
        "deviceProperties": {"name": "Old", "osVersionNumber": "27.1", "developerModeStatus": "disabled"},
        "hardwareProperties": {"udid": "00008150-0000000000000002", "productType": "iPhone18,2"}},
    {  # Xcode 27 lists simulators too
        "identifier": "SIM", "properties": {"hardware": {"udid": "SIM-UDID", "reality": "simulated"}}},
]}}


def test_parse_devices_reads_both_shapes_and_drops_simulators():
    new, old = dctl.parse_devices(LISTING)
    assert (new.udid, new.name, new.product_type, new.ios_version, new.arch) == (UDID, "My iPhone", "iPhone18,2",
                                                                               "27.0", "h18p")
    assert new.paired and new.developer_mode is True and new.connection == "USB" and new.problem is None
    assert (old.name, old.ios_version, old.developer_mode, old.paired, old.connection) == ("Old", "27.1", False, False,
                                                                                        "Network")
    assert "Trust" in old.problem


def test_launch_and_process_results():
    launched = {"info": _info(), "result": {"process": {"processIdentifier": 4321, "auditToken": []}}}
    assert dctl.launched_pid(launched) == 4321
    assert dctl.launched_pid({"result": {"process": {"processIdentifier": 0}}}) is None
    listing = {"result": {"runningProcesses": [{"processIdentifier": 1, "executable": "file:///sbin/launchd"},
                                               {"processIdentifier": 4321}, {"executable": "no pid"}]}}
    assert dctl.running_pids(listing) == {1, 4321}


def _error(code, domain, text, underlying=None, **fields):
    error = {"code": code, "domain": domain,
             "userInfo": {"NSLocalizedDescription": {"string": text}, **{k: {"string": v} for k, v in fields.items()}}}
    if underlying:
        error["userInfo"]["NSUnderlyingError"] = {"error": underlying}
    return {"error": error, "info": _info("failed")}


CORE = dctl.CORE_DEVICE_ERROR
FBS = "FBSOpenApplicationServiceErrorDomain"
LAUNCH, INSTALL, COPY = ["device", "process", "launch"], ["device", "install", "app"], ["device", "copy", "from"]
# Shapes and texts from public reports of devicectl's output (not captured here from a real phone).
FAILURES = {
    "untrusted developer": (LAUNCH, _error(10002, CORE, "The application failed to launch.", _error(
        1, FBS, "The request to open \"dev.gemmaios.bench\" failed.", BSErrorCodeDescription="Security",
        NSLocalizedFailureReason="Unable to launch dev.gemmaios.bench because it has an invalid code signature, "
                                 "inadequate entitlements or its profile has not been explicitly trusted by the user"
    )["error"]), DeveloperNotTrusted, "VPN & Device Management"),
    "locked at launch": (LAUNCH, _error(10002, CORE, "The application failed to launch.", _error(
        1, FBS, "The request to open \"x\" failed.", BSErrorCodeDescription="Locked")["error"]),
        dev.DeviceLocked, "unlock the iPhone"),
    "device not found": (["list", "devices"], _error(1000, CORE, "The specified device was not found. (Name: X)"),
                         dev.DeviceNotFound, "xcrun devicectl list devices"),
    "developer mode off": (LAUNCH, _error(1, CORE, "Developer Mode is disabled on this device."),
                           dev.DeveloperModeOff, "Developer Mode → On"),
    "install verification": (INSTALL, _error(3002, CORE, "Failed to install the app on the device.", _error(
        14, "IXUserPresentableErrorDomain", "Unable to Install “GemmaBench”",
        NSLocalizedFailureReason="This app cannot be installed because its integrity could not be verified.",
        LegacyErrorString="ApplicationVerificationFailed")["error"]), dev.AppInstallFailed, "provisioning profile"),
    "mismatched app id": (INSTALL, _error(3002, CORE, "Failed to install the app on the device.", _error(
        14, "IXUserPresentableErrorDomain", "Unable to Install “GemmaBench”",
        LegacyErrorString="MismatchedApplicationIdentifierEntitlement")["error"]), AppIdentifierMismatch,
        "delete it from the iPhone"),
    "disk image": (LAUNCH, _error(12040, CORE, "The developer disk image could not be mounted on this device."),
                   dev.DeveloperImageNotMounted, "unlocked and attached"),
    "connection dropped": (COPY, _error(4000, CORE, "A connection to this device could not be established."),
                           dev.DeviceDisconnected, "reconnect"),
    "app missing": (COPY, _error(7000, CORE, "The app with bundle identifier x is not installed."), dev.AppMissing,
                    "gemmaios deploy"),
    "unknown": (["device", "info", "processes"], _error(42, "SomethingNew", "Something new went wrong."),
                DevicectlFailed, "on the Mac"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_each_devicectl_failure_maps_to_a_named_error(case):
    command, data, error, advice = FAILURES[case]
    found = dctl.devicectl_error(command, data, "", device=UDID, bundle_id=BUNDLE_ID)
    assert type(found) is error, found
    assert advice in found.hint
    assert data["error"]["userInfo"]["NSLocalizedDescription"]["string"].rstrip(".") in str(found)


def test_without_json_the_stderr_says_what_happened():
    stderr = ("ERROR: The application failed to launch. (com.apple.dt.CoreDeviceError error 10002 (0x2712))\n"
              "       NSLocalizedFailureReason = ... its profile has not been explicitly trusted by the user\n")
    found = dctl.devicectl_error(LAUNCH, None, stderr, device=UDID)
    assert isinstance(found, DeveloperNotTrusted) and "The application failed to launch" in str(found)


def test_a_missing_file_is_told_apart_from_other_copy_failures():
    missing = _error(7000, CORE, "The file could not be copied.",
                     _error(2, "NSPOSIXErrorDomain", "No such file or directory")["error"])
    assert dctl.file_missing(missing)
    assert not dctl.file_missing(FAILURES["connection dropped"][1])


# ---------------------------------------------------------------------------------------- the stand-in


def _standin(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, str(STANDIN), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=tmp_path)


@pytest.mark.parametrize("args,complaint", [
    (["list", "devices"], "needs --json-output"),
    (["device", "process", "launch", "--json-output", "o.json", "dev.x"], "--device is required"),
    (["device", "process", "launch", "--device", UDID, "--json-output", "o.json", "--env", "{}", "dev.x"],
     "unknown option '--env'"),
    (["device", "process", "launch", "--device", UDID, "--json-output", "o.json", "--environment-variables", "A=1",
      "dev.x"], "must be a JSON object"),
    (["device", "copy", "from", "--device", UDID, "--json-output", "o.json", "--domain-type", "systemCrashLogs",
      "--domain-identifier", "x", "--source", "a", "--destination", "."], "only within appDataContainer"),
    (["device", "uninstall", "app", "--device", UDID, "--json-output", "o.json", "dev.x"], "unsupported command"),
])
def test_the_stand_in_refuses_command_lines_gemmaios_must_not_build(tmp_path, args, complaint):
    ran = _standin(tmp_path, *args)
    assert ran.returncode == 64 and complaint in ran.stderr and "(stand-in)" in ran.stderr
    assert not (tmp_path / "o.json").exists()


@pytest.fixture
def sim(monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="gsim", dir="/tmp"))  # UNIX socket paths are short
    simulator = DeviceSim(folder / "mux.sock").start()
    simulator.folder = folder
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(folder / "mux.sock"))
    monkeypatch.setenv(dev.PAIR_TIMEOUT_ENV, "0")
    yield simulator
    simulator.stop()
    shutil.rmtree(folder, ignore_errors=True)


def add_device(sim, udid=UDID, **kw) -> SimDevice:
    return sim.add(SimDevice(udid=udid, root=sim.folder / udid, **kw))


@pytest.fixture
def local_devicectl(sim, monkeypatch):
    """devicectl on "this Mac": LocalRunner runs the stand-in xcrun from PATH."""
    monkeypatch.setenv("PATH", f"{STANDIN_BIN}:{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_PYTHON", sys.executable)
    return dctl.Devicectl(LocalRunner())


def test_listing_through_the_stand_in_is_the_simulators_phones(sim, local_devicectl):
    add_device(sim)
    add_device(sim, udid="00008150-0000000000000BAD", trusted=False)
    add_device(sim, udid="00008150-00000000000000FF", developer_mode=False)
    found = {d.udid: d for d in local_devicectl.devices()}
    assert found[UDID].arch == "h18p" and found[UDID].paired and found[UDID].developer_mode is True
    assert not found["00008150-0000000000000BAD"].paired
    with pytest.raises(dev.SeveralDevices):
        local_devicectl.select(None)
    assert local_devicectl.select(UDID).name == "Sim iPhone"
    with pytest.raises(dev.DeviceNotTrusted):
        local_devicectl.select("00008150-0000000000000BAD")
    with pytest.raises(dev.DeveloperModeOff):
        local_devicectl.select("00008150-00000000000000FF")
    with pytest.raises(dev.DeviceNotFound, match="no device with UDID 1234"):
        local_devicectl.select("1234")


def test_launch_failures_from_the_phone_reach_the_user_as_named_errors(sim, local_devicectl, tiny_app_builds,
                                                                       tmp_path):
    from devicebuild import copy_build
    from devicesim.appbuild import package_app

    build = copy_build(tiny_app_builds[contract.BUNDLED], tmp_path / "build")
    ipa = package_app(build)
    device = add_device(sim, install_error="MismatchedApplicationIdentifierEntitlement")
    app = local_devicectl.app(UDID)
    with pytest.raises(AppIdentifierMismatch) as err:
        app.install(ipa, BUNDLE_ID)
    assert "MismatchedApplicationIdentifierEntitlement" in str(err.value) and device.installs == []
    device.install_error = None
    app.install(ipa, BUNDLE_ID)
    assert device.installs == [BUNDLE_ID]
    device.refuse_launch = ("Unable to launch dev.gemmaios.bench because it has an invalid code signature, inadequate "
                            "entitlements or its profile has not been explicitly trusted by the user")
    with pytest.raises(DeveloperNotTrusted) as err:
        app.launch(BUNDLE_ID, {"A": "1"})
    assert "Settings → General → VPN & Device Management" in err.value.hint and device.launches == []
    device.refuse_launch = None
    device.locked = True
    with pytest.raises(dev.DeviceLocked):
        app.launch(BUNDLE_ID, {"A": "1"})
    # a real phone serves the app's container over AFC while locked (as the simulator now does)
    assert app.read(BUNDLE_ID, "/Documents/nothing-here.jsonl") is None
    device.locked = False
    assert app.read(BUNDLE_ID, "/Documents/nothing-here.jsonl") is None  # missing → None, not an error
    device.app = SimApp(outcome="hang")
    pid = app.launch(BUNDLE_ID, {contract.ENV["bench"]: "1", contract.ENV["udid"]: UDID})
    assert device.launches[-1]["environment"] == {contract.ENV["bench"]: "1", contract.ENV["udid"]: UDID}
    assert app.running(pid) and not app.running(pid + 100_000)
    app.kill(pid)
    assert not app.running(pid) and device.running == {}


# ---------------------------------------------------------------------------------------- end to end


@pytest.fixture
def mac_with_phone(sim, tmp_path):
    """The loopback SSH "Mac" with the simulated phone attached: its devicectl stand-in reaches the
    simulator's usbmuxd."""
    proc, mac = start_loopback_mac(tmp_path / "sshd", {"USBMUXD_SOCKET_ADDRESS": str(sim.folder / "mux.sock")})
    yield mac
    proc.terminate()
    proc.wait(timeout=10)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.full
def test_deploy_bench_score_through_devicectl_on_the_loopback_mac(sim, mac_with_phone, tiny_app_builds, tmp_path,
                                                                  monkeypatch):
    """`gemmaios deploy --mac` / `bench --mac` with the transport forced to devicectl: the Mac's devicectl
    installs, launches with the contract's environment, watches the pid and copies the transcript
    back; the payload goes over this machine's usbmuxd (pymobiledevice3). The run scores like the
    pymobiledevice3 path's (tests/test_device.py)."""
    from devicebuild import copy_build
    from devicesim.appbuild import package_app
    from typer.testing import CliRunner

    from gemmaios.cli import app as cli_app

    mac = mac_with_phone
    build = copy_build(tiny_app_builds[contract.PUSHED_TO_DOCUMENTS], tmp_path / "build")
    package_app(build)
    device = add_device(sim)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "devicectl")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemmaios.yaml").write_text(json.dumps({"ssh_options": mac.ssh_options}))
    runner = CliRunner()

    deployed = runner.invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled", "--mac", mac.target])
    assert deployed.exit_code == 0, deployed.output
    assert device.installs == [BUNDLE_ID]
    devicectl_calls = [c["argv"] for c in mac.calls() if c["argv"][:1] == ["devicectl"]]
    assert [a[1:4] for a in devicectl_calls] == [["list", "devices", "--json-output"], ["device", "install", "app"]]
    install = devicectl_calls[-1]
    assert install[install.index("--device") + 1] == UDID and install[-1].endswith("/GemmaBench.ipa")
    assert "/job-" in install[-1]  # the .ipa was sent to the Mac and installed from there
    for f in dev.local_files(build):  # the payload went over usbmuxd, into the app's Documents
        assert (device.container(BUNDLE_ID) / "Documents" / f.rel).read_bytes() == f.path.read_bytes()

    benched = runner.invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "600",
                                      "--mac", mac.target])
    assert benched.exit_code == 0, benched.output + device.app_log()
    assert "with devicectl on" in _flat(benched.output)
    launch = device.launches[-1]
    run_id = launch["environment"][contract.ENV["runId"]]
    assert launch["environment"] == bench_mod.launch_environment(run_id, 1, UDID)
    calls = [c["argv"][1:4] for c in mac.calls() if c["argv"][:1] == ["devicectl"]][2:]
    assert ["device", "process", "launch"] in calls and ["device", "info", "processes"] in calls
    assert ["device", "copy", "from"] in calls
    launched = next(c["argv"] for c in mac.calls() if c["argv"][1:4] == ["device", "process", "launch"])
    assert "--terminate-existing" in launched and launched[-1] == BUNDLE_ID
    assert json.loads(launched[launched.index("--environment-variables") + 1]) == launch["environment"]

    run_dir = build / "runs" / f"{run_id}-{UDID}"
    transcript = run_dir / f"{run_id}{contract.TRANSCRIPT_SUFFIX}"
    on_phone = device.container(BUNDLE_ID) / "Documents" / contract.APP_RUNS_DIR / transcript.name
    assert transcript.read_bytes() == on_phone.read_bytes()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"

    scored = runner.invoke(cli_app, ["score", str(transcript), "--build", str(build)])
    assert "8/8 exact" in _flat(scored.output), scored.output
    reported = runner.invoke(cli_app, ["report", str(run_dir), "--oracle", str(build / "oracle" / "oracle.json"),
                                       "--json"])
    report = json.loads(reported.stdout[reported.stdout.index("{"):reported.stdout.rindex("}") + 1])
    assert report["runs"][0]["oracle"]["label"] == "8/8" and reported.exit_code == 0


def test_the_ssh_runner_reaches_the_phone_on_the_loopback_mac(sim, mac_with_phone):
    add_device(sim)
    with SSHRunner(mac_with_phone.target, mac_with_phone.ssh_options, str(sim.folder / "remote")) as runner:
        found = dctl.Devicectl(runner).select(None)
    assert found.udid == UDID and found.arch == "h18p"
    listed = [c["argv"] for c in mac_with_phone.calls()]
    assert listed[-1][:3] == ["devicectl", "list", "devices"] and "/job-" in listed[-1][4]  # ran on the "Mac"


def test_a_phone_attached_only_to_the_mac_is_named(sim, mac_with_phone, tiny_app_builds, tmp_path, monkeypatch):
    """--mac with no phone on this machine's usbmuxd picks devicectl (the phone hangs off the Mac); what
    still needs the phone here says so instead of "cannot reach usbmuxd"."""
    from devicebuild import copy_build
    from devicesim.appbuild import package_app

    from gemmaios.device.devicectl_errors import PhoneOnlyOnTheMac

    build = copy_build(tiny_app_builds[contract.BUNDLED], tmp_path / "build")
    package_app(build)
    add_device(sim)
    monkeypatch.delenv(dev.TRANSPORT_ENV, raising=False)
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(tmp_path / "no-usbmuxd-here.sock"))
    mac = mac_with_phone
    with pytest.raises(PhoneOnlyOnTheMac, match=f"{UDID}.*attached to {mac.target}") as err:
        dev.deploy(build, allow_uncompiled=True, mac=mac.target, ssh_options=mac.ssh_options)
    assert "attach it to this machine" in err.value.hint
    with pytest.raises(PhoneOnlyOnTheMac):
        bench_mod.bench(build, trials=1, timeout=5, mac=mac.target, ssh_options=mac.ssh_options)
    with pytest.raises(dev.UsbmuxdUnavailable):  # without --mac: the plain usbmuxd error, as before
        dev.deploy(build, allow_uncompiled=True)


def test_devices_on_a_mac_lists_what_devicectl_sees(sim, local_devicectl, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from gemmaios.cli import app as cli_app

    add_device(sim, product_type="iPhone18,1")
    monkeypatch.delenv(dev.TRANSPORT_ENV, raising=False)
    monkeypatch.setenv("STANDIN_XCRUN_LOG", str(tmp_path / "xcrun.jsonl"))
    with monkeypatch.context() as mac:
        mac.setattr(dctl.sys, "platform", "darwin")  # this machine is a Mac, for the transport choice
        listed = CliRunner().invoke(cli_app, ["devices", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["udid"], r["product_type"], r["paired"]) for r in rows] == [(UDID, "iPhone18,1", True)]
    calls = [json.loads(line)["argv"] for line in (tmp_path / "xcrun.jsonl").read_text().splitlines()]
    assert [c[:3] for c in calls] == [["devicectl", "list", "devices"]]


@pytest.mark.parametrize("outcome,status", [("crash", "crashed"), ("hang", "timeout")])
def test_a_crash_or_a_hang_under_devicectl_is_classified_like_under_pymobiledevice3(
        sim, mac_with_phone, tiny_app_builds, tmp_path, monkeypatch, outcome, status):
    """The pid devicectl launched is watched with `info processes`: a crash is classified from the
    phone's crash reports, a hang is killed with `process signal` after --timeout."""
    from devicebuild import copy_build, shrink_prompt_set
    from devicesim.appbuild import package_app

    build = copy_build(tiny_app_builds[contract.BUNDLED], tmp_path / "build")
    shrink_prompt_set(build)
    package_app(build)
    device = add_device(sim, app=SimApp(outcome=outcome))
    monkeypatch.setenv(dev.TRANSPORT_ENV, "devicectl")
    mac = mac_with_phone
    dev.deploy(build, allow_uncompiled=True, mac=mac.target, ssh_options=mac.ssh_options)
    with pytest.raises(bench_mod.BenchFailed) as err:
        bench_mod.bench(build, trials=1, timeout=20, poll=0.2, report_wait=5, mac=mac.target,
                        ssh_options=mac.ssh_options)
    result = err.value.result
    assert result.status == status and device.running == {}
    if outcome == "crash":
        assert [p.name.split("-")[0] for p in result.crash_reports] == ["GemmaBench"]
    else:
        signals = [c["argv"] for c in mac.calls() if c["argv"][1:4] == ["device", "process", "signal"]]
        assert len(signals) == 1 and signals[0][signals[0].index("--pid") + 1] == str(device.launches[-1]["pid"])


def test_a_bench_the_app_fails_under_devicectl_stops_on_its_failure_record(sim, mac_with_phone, tiny_app_builds,
                                                                           tmp_path, monkeypatch):
    """The app's failure record (a PLE table cut short on the phone) stops a devicectl bench at once as it does
    the pymobiledevice3 one: status failed, the reason in the named error, the app ended with `process signal`."""
    from devicebuild import copy_build, shrink_prompt_set
    from devicesim.appbuild import package_app

    build = copy_build(tiny_app_builds[contract.PUSHED_TO_DOCUMENTS], tmp_path / "build")
    shrink_prompt_set(build)
    package_app(build)
    device = add_device(sim)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "devicectl")
    mac = mac_with_phone
    dev.deploy(build, allow_uncompiled=True, mac=mac.target, ssh_options=mac.ssh_options, verify=False)
    table = device.container(BUNDLE_ID) / "Documents" / contract.PAYLOAD_DIR / contract.PAYLOAD_TABLES_DIR / \
        contract.TABLE_I8_FILE
    table.write_bytes(table.read_bytes()[:1000])
    with pytest.raises(bench_mod.AppBenchFailed, match="the app's bench failed: PLE table .* holds 1000 bytes") as err:
        bench_mod.bench(build, trials=1, timeout=120, poll=0.2, report_wait=5, mac=mac.target,
                        ssh_options=mac.ssh_options)  # the timeout a safety net only
    result = err.value.result
    assert result.status == bench_mod.FAILED and result.failure["reason"].startswith("PLE table ")
    assert device.running == {}
    signals = [c["argv"] for c in mac.calls() if c["argv"][1:4] == ["device", "process", "signal"]]
    assert len(signals) == 1 and signals[0][signals[0].index("--pid") + 1] == str(device.launches[-1]["pid"])
