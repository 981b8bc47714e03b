"""devices / deploy / bench against the loopback device simulator, through the real pymobiledevice3 client."""

from __future__ import annotations

import hashlib
import json
import plistlib
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from devicesim import DeviceSim, SimApp, SimDevice
from typer.testing import CliRunner

from gemmaios import bench as bench_mod
from gemmaios import device as dev
from gemmaios.archs import arch_for_product_type
from gemmaios.cli import app as cli_app

UDID = "00008150-000A1B2C3D4E5F60"
BUNDLE_ID = "dev.gemmaios.bench"
BUNDLE = "bundle/gemma4_tiny_decode_int4"
CHUNK = 64 << 10


@pytest.fixture
def sim(monkeypatch):
    # a short folder: UNIX socket paths are limited to ~100 characters
    folder = Path(tempfile.mkdtemp(prefix="gsim", dir="/tmp"))
    simulator = DeviceSim(folder / "mux.sock").start()
    simulator.folder = folder
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(folder / "mux.sock"))
    monkeypatch.setenv(dev.TRANSPORT_ENV, "lockdown")
    monkeypatch.setenv(dev.PAIR_TIMEOUT_ENV, "0")  # an untrusted device fails at once
    yield simulator
    simulator.stop()
    shutil.rmtree(folder, ignore_errors=True)


def add_device(sim: DeviceSim, udid: str = UDID, **kw) -> SimDevice:
    return sim.add(SimDevice(udid=udid, root=sim.folder / udid, **kw))


def make_ipa(path: Path, version: str = "1.0") -> Path:
    info = {"CFBundleIdentifier": BUNDLE_ID, "CFBundleExecutable": "GemmaBench", "CFBundleShortVersionString": version}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Payload/GemmaBench.app/Info.plist", plistlib.dumps(info, fmt=plistlib.FMT_BINARY))
        archive.writestr("Payload/GemmaBench.app/GemmaBench", b"\xcf\xfa\xed\xfe" + version.encode() * 100)
    return path


@pytest.fixture
def build(tmp_path) -> Path:
    """A build folder shaped like docs/contracts.md: bundle (compiled), tables, build.json, an .ipa."""
    rng = __import__("random").Random(7)
    out = tmp_path / "build"
    files = {
        f"{BUNDLE}/metadata.json": json.dumps({"assets": {"main": "gemma4_tiny_decode_int4.aimodelc"}}).encode(),
        f"{BUNDLE}/gemma4_tiny_decode_int4.aimodel/model.bin": rng.randbytes(50_000),  # superseded by the .aimodelc
        f"{BUNDLE}/gemma4_tiny_decode_int4.aimodelc/weights.bin": rng.randbytes(300_000),
        f"{BUNDLE}/gemma4_tiny_decode_int4.aimodelc/model.mil": b"program" * 100,
        f"{BUNDLE}/tokenizer/tokenizer.json": b'{"model": {}}',
        f"{BUNDLE}/tokenizer/empty.txt": b"",
        "tables/embed_per_layer.i8": rng.randbytes(200_000),
        "tables/embed_per_layer.scale.f32": rng.randbytes(4_000),
        "tables/embed_per_layer.json": b'{"shape": [1000, 200]}',
    }
    for rel, data in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    manifest = {"schema": 1, "options": {"arch": "h18p"}, "steps": {
        "convert": {"details": {"bundle_dir": BUNDLE}},
        "tables": {"details": {"i8": "tables/embed_per_layer.i8", "scale": "tables/embed_per_layer.scale.f32",
                               "sidecar": "tables/embed_per_layer.json"}}}}
    (out / "build.json").write_text(json.dumps(manifest))
    (out / "app").mkdir()
    make_ipa(out / "app" / "GemmaBench.ipa")
    return out


def payload(build: Path) -> dict[str, bytes]:
    return {f.rel: f.path.read_bytes() for f in dev.local_files(build)}


def on_device(device: SimDevice, rel: str) -> Path:
    return device.container(BUNDLE_ID) / "Documents" / rel


class Events:
    def __init__(self):
        self.last: dict[str, tuple[int, int]] = {}

    def __call__(self, label, done, total):
        self.last[label] = (done, total)


# ---------------------------------------------------------------------------------------- devices


def test_arch_for_product_type():
    assert arch_for_product_type("iPhone18,2").name == "h18p"
    assert arch_for_product_type("iPhone1,1") is None


def test_devices_lists_the_simulated_iphone(sim):
    add_device(sim, battery=64, charging=True, free_bytes=20 << 30)
    add_device(sim, udid="00008150-0000000000000BAD", trusted=False)
    listed = {d.udid: d for d in dev.list_devices()}
    good = listed[UDID]
    assert (good.name, good.product_type, good.ios_version, good.arch) == ("Sim iPhone", "iPhone18,2", "27.0", "h18p")
    assert good.paired and good.developer_mode is True
    assert (good.free_bytes, good.battery_level, good.charging) == (20 << 30, 64, True)
    untrusted = listed["00008150-0000000000000BAD"]
    assert not untrusted.paired and untrusted.developer_mode is None and "Trust" in untrusted.problem

    result = CliRunner().invoke(cli_app, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["udid"]: row for row in json.loads(result.stdout)}
    assert rows[UDID]["arch"] == "h18p" and rows[UDID]["free_bytes"] == 20 << 30


def test_devices_without_usbmuxd_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(tmp_path / "nothing.sock"))
    with pytest.raises(dev.UsbmuxdUnavailable, match="cannot reach usbmuxd") as err:
        dev.list_devices()
    assert "usbmuxd" in err.value.hint


# ---------------------------------------------------------------------------------------- deploy


def test_deploy_installs_pushes_and_records_a_manifest(sim, build):
    device = add_device(sim)
    events = Events()
    result = dev.deploy(build, chunk=CHUNK, progress=events)
    assert result.installed and device.installs == [BUNDLE_ID]
    expected = payload(build)
    assert f"{BUNDLE}/gemma4_tiny_decode_int4.aimodel/model.bin" not in expected  # uncompiled model not shipped
    assert sorted(result.push.pushed) == sorted(expected)
    for rel, data in expected.items():
        assert on_device(device, rel).read_bytes() == data
        assert events.last[rel] == (len(data), len(data))
    assert events.last[f"install {BUNDLE_ID}"] == (100, 100)
    manifest = json.loads(on_device(device, dev.DEVICE_MANIFEST).read_text())
    assert manifest["partial"] == {}
    assert {rel: m["sha256"] for rel, m in manifest["files"].items()} == {
        rel: hashlib.sha256(data).hexdigest() for rel, data in expected.items()}
    assert manifest["app"]["bundle_id"] == BUNDLE_ID
    # nothing left behind in the staging area
    assert not any((device.root / "media" / "PublicStaging" / "gemmaios").iterdir())


def test_redeploy_skips_identical_files_and_app_only_change_pushes_nothing(sim, build):
    device = add_device(sim)
    dev.deploy(build, chunk=CHUNK)
    written = dict(device.written)

    again = dev.deploy(build, chunk=CHUNK)
    assert not again.installed and again.push.pushed == [] and again.push.bytes_sent == 0
    assert sorted(again.push.skipped) == sorted(payload(build))
    assert device.installs == [BUNDLE_ID]
    assert {k: v for k, v in device.written.items() if "manifest" not in k} == {
        k: v for k, v in written.items() if "manifest" not in k}

    make_ipa(build / "app" / "GemmaBench.ipa", version="1.1")  # app-only change
    changed = dev.deploy(build, chunk=CHUNK)
    assert changed.installed and device.installs == [BUNDLE_ID, BUNDLE_ID]
    assert changed.push.pushed == [] and changed.push.bytes_sent == 0

    (build / "tables/embed_per_layer.scale.f32").write_bytes(b"\x01" * 4_000)  # one table changed
    one = dev.deploy(build, chunk=CHUNK)
    assert one.push.pushed == ["tables/embed_per_layer.scale.f32"] and one.push.bytes_sent == 4_000
    assert on_device(device, "tables/embed_per_layer.scale.f32").read_bytes() == b"\x01" * 4_000


def test_deploy_resumes_after_an_unplug_without_resending_finished_files(sim, build):
    device = add_device(sim)
    files = dev.local_files(build)
    big = next(f for f in files if f.rel.endswith("weights.bin"))
    before_big = sum(f.size for f in files[: files.index(big)])
    cut = before_big + 100_000 + 123  # part-way through weights.bin, not on a chunk boundary
    device.unplug_after_bytes = cut
    with pytest.raises(dev.DeviceDisconnected) as err:
        dev.deploy(build, chunk=CHUNK)
    assert "run the same `gemmaios deploy` again" in err.value.hint
    assert device.unplugs == 1
    partial = on_device(device, big.rel).stat().st_size
    assert 0 < partial < big.size
    finished = {f.rel for f in files[: files.index(big)]}
    written_before = {rel: device.written.get(f"/Documents/{rel}", 0) for rel in finished}

    resumed = dev.deploy(build, chunk=CHUNK)
    assert resumed.push.resumed == {big.rel: partial}
    assert set(resumed.push.skipped) == finished
    assert resumed.push.bytes_sent == sum(f.size for f in files) - before_big - partial
    assert {rel: device.written.get(f"/Documents/{rel}", 0) for rel in finished} == written_before
    for rel, data in payload(build).items():
        assert on_device(device, rel).read_bytes() == data


def test_resume_refuses_a_partial_file_that_does_not_match(sim, build):
    device = add_device(sim)
    files = dev.local_files(build)
    big = next(f for f in files if f.rel.endswith("weights.bin"))
    device.unplug_after_bytes = sum(f.size for f in files[: files.index(big)]) + 70_000
    with pytest.raises(dev.DeviceDisconnected):
        dev.deploy(build, chunk=CHUNK)
    target = on_device(device, big.rel)
    target.write_bytes(b"\0" * target.stat().st_size)  # the partial bytes got damaged
    again = dev.deploy(build, chunk=CHUNK)
    assert big.rel not in again.push.resumed and big.rel in again.push.pushed
    assert target.read_bytes() == big.path.read_bytes()


def test_deploy_without_an_app_says_what_to_do(sim, build):
    add_device(sim)
    (build / "app" / "GemmaBench.ipa").unlink()
    with pytest.raises(dev.NothingToDeploy, match="no signed app") as err:
        dev.deploy(build)
    assert "--ipa" in err.value.hint


# ---------------------------------------------------------------------------------------- preflight


PREFLIGHT_CASES = {
    "untrusted": ({"trusted": False}, {}, dev.DeviceNotTrusted, "tap Trust"),
    "locked": ({"locked": True}, {}, dev.DeviceLocked, "unlock the iPhone"),
    "developer mode off": ({"developer_mode": False}, {}, dev.DeveloperModeOff, "Developer Mode → On"),
    "ios too old": ({"ios": "26.4"}, {}, dev.IOSTooOld, "Software Update"),
    "wrong arch": ({"product_type": "iPhone18,2"}, {"arch": "h17p"}, dev.ArchMismatch, "gemmaios build --arch h18p"),
    "no space": ({"free_bytes": 2 << 30}, {"need_bytes": 3 << 30}, dev.NotEnoughSpace, "iPhone Storage"),
    "ddi missing": ({"ddi_mounted": False}, {"bench": True}, dev.DeveloperImageNotMounted, "--mount-ddi"),
}


@pytest.mark.parametrize("case", PREFLIGHT_CASES)
def test_each_preflight_failure_has_its_own_actionable_message(sim, case):
    state, kwargs, error, advice = PREFLIGHT_CASES[case]
    add_device(sim, **state)
    with pytest.raises(error) as err:
        dev.preflight(UDID, **kwargs)
    assert advice in err.value.hint


def test_preflight_passes_a_ready_device_and_warns_on_low_battery(sim):
    add_device(sim, battery=12)
    report = dev.preflight(UDID, arch="h18p", need_bytes=1 << 30, bench=True)
    assert report.info.arch == "h18p" and any("battery at 12%" in w for w in report.warnings)


def test_device_selection_errors(sim):
    with pytest.raises(dev.NoDevice, match="no iPhone is attached"):
        dev.preflight()
    add_device(sim)
    add_device(sim, udid="00008150-0000000000000002")
    with pytest.raises(dev.SeveralDevices) as err:
        dev.preflight()
    assert "--udid" in err.value.hint
    with pytest.raises(dev.DeviceNotFound, match="no device with UDID 1234"):
        dev.preflight("1234")
    assert dev.preflight("00008150-0000000000000002").info.udid == "00008150-0000000000000002"


def test_ios17_tunnel_missing_says_how_to_start_it(sim, monkeypatch):
    add_device(sim)
    monkeypatch.setenv(dev.TRANSPORT_ENV, "auto")
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(dev.TUNNELD_ENV, f"127.0.0.1:{port}")
    with pytest.raises(dev.TunnelNotRunning) as err:
        dev.preflight(UDID, bench=True)
    assert dev.TUNNELD_COMMAND in err.value.hint
    assert "sudo python3 -m pymobiledevice3 remote tunneld" in str(err.value)


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


def test_cli_prints_the_preflight_message(sim, build):
    add_device(sim, developer_mode=False)
    result = CliRunner().invoke(cli_app, ["deploy", "--out", str(build)])
    assert result.exit_code == 2
    assert "Developer Mode is off" in flat(result.output) and "Settings → Privacy & Security" in flat(result.output)


# ---------------------------------------------------------------------------------------- bench


def deployed(sim, build, **device_state) -> SimDevice:
    device = add_device(sim, **device_state)
    dev.deploy(build, chunk=CHUNK, verify=False)
    return device


def test_bench_launches_in_bench_mode_and_pulls_the_log_into_runs(sim, build):
    device = deployed(sim, build)
    result = bench_mod.bench(build, trials=2, timeout=20, poll=0.05)
    assert result.status == bench_mod.COMPLETED
    launch = device.launches[-1]
    assert launch["environment"]["GEMMAIOS_BENCH"] == "1" and launch["environment"]["GEMMAIOS_TRIALS"] == "2"
    run_id = launch["environment"]["GEMMAIOS_RUN_ID"]
    assert result.run_dir == build / "runs" / f"{run_id}-{UDID}"
    log = result.transcript
    assert log == result.run_dir / f"{run_id}.jsonl"
    assert log.read_bytes() == (device.container(BUNDLE_ID) / "Documents/gemmaios-runs" / f"{run_id}.jsonl").read_bytes()
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[-1]["type"] == "footer"
    assert sum(1 for ln in lines if ln["type"] == "prompt") == 2 * device.app.prompts
    try:
        import gemmaios.transcript  # noqa: F401
    except ImportError:
        assert result.validation.startswith("not validated")
    else:
        assert result.validation == "ok" and result.prompts == 4
    summary = json.loads((result.run_dir / "run.json").read_text())
    assert summary["status"] == "completed" and summary["device"]["arch"] == "h18p"
    assert result.warnings == []


def test_bench_records_settled_device_warnings(sim, build):
    deployed(sim, build, charging=True, app=SimApp(thermal_state="serious", seconds_since_unlock=45))
    result = bench_mod.bench(build, trials=1, timeout=20, poll=0.05)
    text = " | ".join(result.warnings)
    assert "thermal state above nominal" in text and "serious" in text
    assert "charging" in text and "45s after unlock" in text


@pytest.mark.parametrize("outcome,status,report_prefix", [("crash", "crashed", "GemmaBench-"),
                                                          ("jetsam", "jetsam", "JetsamEvent-")])
def test_bench_detects_crashes_and_jetsam_kills(sim, build, outcome, status, report_prefix):
    deployed(sim, build, app=SimApp(outcome=outcome))
    with pytest.raises(bench_mod.BenchFailed) as err:
        bench_mod.bench(build, trials=1, timeout=20, poll=0.05, report_wait=0.5)
    result = err.value.result
    assert result.status == status
    assert [p.name[: len(report_prefix)] for p in result.crash_reports] == [report_prefix]
    assert result.transcript.is_file() and "footer" not in result.transcript.read_text()
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == status


def test_bench_times_out_and_stops_the_app(sim, build):
    device = deployed(sim, build, app=SimApp(outcome="hang"))
    with pytest.raises(bench_mod.BenchFailed, match="no footer after 1s") as err:
        bench_mod.bench(build, trials=1, timeout=1, poll=0.1)
    assert err.value.result.status == "timeout" and device.running == {}


def test_bench_before_deploy_says_to_deploy(sim, build):
    add_device(sim)
    with pytest.raises(dev.AppMissing) as err:
        bench_mod.bench(build, trials=1, timeout=5, poll=0.05)
    assert "gemmaios deploy" in err.value.hint


def test_cli_deploy_then_bench_end_to_end(sim, build, monkeypatch):
    device = add_device(sim)
    runner = CliRunner()
    first = runner.invoke(cli_app, ["deploy", "--out", str(build)])
    assert first.exit_code == 0, first.output
    assert "app installed" in flat(first.output) and f"{len(payload(build))} files pushed" in flat(first.output)
    second = runner.invoke(cli_app, ["deploy", "--out", str(build)])
    assert "app unchanged, 0 files pushed (0.0 MiB)" in flat(second.output)
    assert f"{len(payload(build))} already there" in flat(second.output)
    real_bench = bench_mod.bench  # the CLI polls every 2 s; poll faster here
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.05}))
    ran = runner.invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "30"])
    assert ran.exit_code == 0, ran.output
    assert "2 prompt records" in flat(ran.output) and "validation: ok" in flat(ran.output)
    assert len(list((build / "runs").glob(f"*-{UDID}/*.jsonl"))) == 1
    assert device.launches[-1]["environment"]["GEMMAIOS_TRIALS"] == "1"


def test_doctor_reports_the_attached_device(sim):
    from gemmaios.doctor import check_usbmuxd

    add_device(sim, developer_mode=False)
    checks = {c.name: c for c in check_usbmuxd()}
    device_check = checks[f"device {UDID}"]
    assert "iPhone18,2 (h18p)" in device_check.detail and "Developer Mode" in device_check.fix


def test_tunneld_without_a_tunnel_for_this_device(sim, monkeypatch):
    import http.server
    import threading

    class NoTunnels(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NoTunnels)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        add_device(sim)
        monkeypatch.setenv(dev.TRANSPORT_ENV, "auto")
        monkeypatch.setenv(dev.TUNNELD_ENV, f"127.0.0.1:{server.server_address[1]}")
        with pytest.raises(dev.TunnelNotRunning, match=f"no tunnel to {UDID}") as err:
            dev.preflight(UDID, bench=True)
        assert dev.TUNNELD_COMMAND in err.value.hint
    finally:
        server.shutdown()


def test_install_refusal_names_the_cause_and_the_fix(sim, build):
    add_device(sim, install_error="ApplicationVerificationFailed")
    with pytest.raises(dev.AppInstallFailed, match="ApplicationVerificationFailed") as err:
        dev.deploy(build, chunk=CHUNK)
    assert "provisioning profile" in err.value.hint


@pytest.mark.parametrize("refusal,error,text", [
    ("no-pid", dev.LaunchFailed, "would not launch dev.gemmaios.bench: no process id"),
    ("Cannot launch: the device is locked", dev.DeviceLocked, "refused to launch dev.gemmaios.bench while locked"),
    ("Security policy denied the launch", dev.LaunchFailed, "Security policy denied"),
])
def test_bench_launch_refused(sim, build, refusal, error, text):
    device = deployed(sim, build)
    device.refuse_launch = refusal
    with pytest.raises(error, match=text):
        bench_mod.bench(build, trials=1, timeout=5, poll=0.05)


def test_mount_ddi_over_lockdown_on_ios27_says_the_tunnel_is_needed(sim):
    add_device(sim, ddi_mounted=False)
    with pytest.raises(dev.DeveloperImageNotMounted, match="needs the tunnel") as err:
        dev.preflight(UDID, bench=True, mount=True)
    assert dev.TUNNELD_COMMAND in err.value.hint


def test_untrusted_device_pairs_once_someone_taps_trust(sim, monkeypatch):
    from pymobiledevice3.common import get_home_folder

    udid = "00008150-00000000000000A7"
    device = add_device(sim, udid=udid, trusted=False, trust_after_requests=2)
    monkeypatch.setenv(dev.PAIR_TIMEOUT_ENV, "10")
    saved = get_home_folder() / f"{udid}.plist"  # pymobiledevice3 keeps the new pair record here
    try:
        report = dev.preflight(udid)
        assert report.info.paired and report.info.developer_mode is True
        assert device.pair_requests == 2 and device.saved_pair_record is not None
        assert plistlib.loads(device.saved_pair_record)["HostID"] in device.host_ids
    finally:
        saved.unlink(missing_ok=True)


def test_cli_bench_fails_on_a_damaged_log(sim, build, monkeypatch):
    deployed(sim, build, app=SimApp(corrupt_line=3))
    real_bench = bench_mod.bench
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.05}))
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "30"])
    assert ran.exit_code == 1
    assert "is not valid" in flat(ran.output) and ".jsonl:4" in flat(ran.output)


def test_bench_exit_without_footer_is_not_blamed_on_someone_elses_jetsam(sim, build):
    deployed(sim, build, app=SimApp(outcome="exit"))  # a JetsamEvent lists our app, but killed Safari
    with pytest.raises(bench_mod.BenchFailed, match="exited without finishing its log") as err:
        bench_mod.bench(build, trials=1, timeout=20, poll=0.05, report_wait=0.3)
    assert err.value.result.status == "exited" and err.value.result.crash_reports == []


def test_a_corrupted_transfer_is_caught_by_the_read_back_and_re_sent(sim, build):
    device = add_device(sim)
    rel = "tables/embed_per_layer.i8"
    device.corrupt_writes[f"/Documents/{rel}"] = 1
    result = dev.deploy(build, chunk=CHUNK)
    assert result.push.resent == [rel]
    assert on_device(device, rel).read_bytes() == (build / rel).read_bytes()
    device.corrupt_writes[f"/Documents/{rel}"] = 2  # corrupted twice: give up, say so
    (build / rel).write_bytes(b"\x07" * 1000)
    with pytest.raises(dev.DeviceError, match="differs from the build's, twice"):
        dev.deploy(build, chunk=CHUNK)


def test_files_dropped_from_the_build_are_removed_from_the_device_but_app_files_are_kept(sim, build):
    device = add_device(sim)
    dev.deploy(build, chunk=CHUNK)
    app_log = on_device(device, "gemmaios-runs/old.jsonl")
    app_log.parent.mkdir(parents=True)
    app_log.write_text("{}\n")
    manifest = json.loads((build / "build.json").read_text())
    del manifest["steps"]["tables"]["details"]["sidecar"]
    (build / "build.json").write_text(json.dumps(manifest))
    result = dev.deploy(build, chunk=CHUNK)
    assert result.push.removed == ["tables/embed_per_layer.json"] and result.push.pushed == []
    assert not on_device(device, "tables/embed_per_layer.json").exists() and app_log.exists()
