"""devices / deploy / bench against the loopback device simulator, through the real pymobiledevice3 client.

The builds are the tiny model built for real (tests/devicebuild.py): deploy pushes the
contract's payload, and the simulator's app stand-in reads it from the contract's paths and
runs the bundle through Core AI's runtime, so each bench here really ran the bundle.
"""

from __future__ import annotations

import hashlib
import json
import plistlib
import sys
from pathlib import Path

import pytest
from device_helpers import (
    CHUNK,
    PAYLOAD,
    TABLE_I8,
    TABLE_SCALE,
    UDID,
    Events,
    add_device,
    deploy,
    deployed,
    flat,
    make_build,
    on_device,
    payload,
    records,
)
from devicebuild import BUNDLE_ID, copy_build, shrink_prompt_set
from devicesim import SimApp
from devicesim.appbuild import package_app
from typer.testing import CliRunner

from gemmaios import contract
from gemmaios import device as dev
from gemmaios import devicebench as bench_mod
from gemmaios.archs import arch_for_product_type
from gemmaios.cli import app as cli_app
from gemmaios.payload import payload_plan

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


def test_deploy_pushes_exactly_the_payload_plan_and_records_the_install(sim, build):
    device = add_device(sim)
    events = Events()
    result = deploy(build, progress=events)
    assert result.installed and device.installs == [BUNDLE_ID] and result.location == contract.PUSHED_TO_DOCUMENTS
    plan = payload_plan(build, contract.PUSHED_TO_DOCUMENTS).documents_files()
    expected = payload(build)
    assert sorted(expected) == sorted(dest for _, dest in plan) and sorted(result.push.pushed) == sorted(expected)
    assert all(rel.startswith(f"{PAYLOAD}/") for rel in expected)
    assert f"{PAYLOAD}/{contract.PROMPT_SET_FILE}" in expected and TABLE_I8 in expected
    for rel, data in expected.items():
        assert on_device(device, rel).read_bytes() == data
        assert events.last[rel] == (len(data), len(data))
    # nothing else of the build lands in Documents (no sidecar, no oracle, no metadata.mac.json)
    landed = {p.relative_to(on_device(device, "")).as_posix() for p in on_device(device, "").rglob("*") if p.is_file()}
    assert landed == set(expected) | {contract.DEVICE_MANIFEST_FILE}
    assert events.last[f"install {BUNDLE_ID}"] == (100, 100)
    manifest = json.loads(on_device(device, contract.DEVICE_MANIFEST_FILE).read_text())
    assert manifest["partial"] == {} and manifest["bundle_location"] == contract.PUSHED_TO_DOCUMENTS
    assert {rel: m["sha256"] for rel, m in manifest["files"].items()} == {
        rel: hashlib.sha256(data).hexdigest() for rel, data in expected.items()}
    assert manifest["app"]["bundle_id"] == BUNDLE_ID
    record = json.loads((build / dev.DEPLOY_RECORD).read_text())["devices"][UDID]
    ipa = build / "ipa" / "GemmaBench.ipa"
    assert record["bundle_id"] == BUNDLE_ID and record["bundle_location"] == contract.PUSHED_TO_DOCUMENTS
    assert record["package"] == {"path": "ipa/GemmaBench.ipa", "sha256": hashlib.sha256(ipa.read_bytes()).hexdigest(),
                                 "version": "0.1.0", "executable": "GemmaBench"}
    assert record["payload"] == {rel: m["sha256"] for rel, m in manifest["files"].items()}
    assert not any((device.root / "media" / "PublicStaging" / "gemmaios").iterdir())


def test_bundled_deploy_pushes_nothing_and_removes_an_earlier_pushed_payload(sim, build, bundled_build):
    device = add_device(sim)
    deploy(build)  # the documents app first: its payload goes into Documents
    assert on_device(device, TABLE_I8).is_file()
    result = deploy(bundled_build)
    assert result.location == contract.BUNDLED and result.installed
    assert dev.local_files(bundled_build) == [] and result.push.pushed == [] and result.push.bytes_sent == 0
    assert sorted(result.push.removed) == sorted(payload(build))
    assert not [p for p in on_device(device, PAYLOAD).rglob("*") if p.is_file()]
    app = device.app_bundle(BUNDLE_ID)  # the .app carries the payload instead, in the same layout
    plan = payload_plan(bundled_build, contract.BUNDLED)
    assert sorted(p.relative_to(app).as_posix() for p in (app / PAYLOAD).rglob("*") if p.is_file()) == sorted(
        dest for _, dest in plan.app_files())
    assert not any(name.endswith(".aimodelc") for _, name in plan.app_files())  # never both model assets
    with pytest.raises(dev.NothingToDeploy, match="reads its payload from bundled"):  # the other build's app
        bench_mod.bench(build, trials=1, timeout=5, poll=0.05)


def test_redeploy_skips_identical_files_and_app_only_change_pushes_nothing(sim, build):
    device = add_device(sim)
    deploy(build)
    written = dict(device.written)

    again = deploy(build)
    assert not again.installed and again.push.pushed == [] and again.push.bytes_sent == 0
    assert sorted(again.push.skipped) == sorted(payload(build))
    assert device.installs == [BUNDLE_ID]
    assert {k: v for k, v in device.written.items() if "manifest" not in k} == {
        k: v for k, v in written.items() if "manifest" not in k}

    package_app(build, version="1.1")  # app-only change
    changed = deploy(build)
    assert changed.installed and device.installs == [BUNDLE_ID, BUNDLE_ID]
    assert changed.push.pushed == [] and changed.push.bytes_sent == 0
    assert json.loads((build / dev.DEPLOY_RECORD).read_text())["devices"][UDID]["package"]["version"] == "1.1"

    size = (build / "tables" / contract.TABLE_SCALE_FILE).stat().st_size
    (build / "tables" / contract.TABLE_SCALE_FILE).write_bytes(b"\x01" * size)  # one table changed
    one = deploy(build)
    assert one.push.pushed == [TABLE_SCALE] and one.push.bytes_sent == size
    assert on_device(device, TABLE_SCALE).read_bytes() == b"\x01" * size


def test_deploy_resumes_after_an_unplug_without_resending_finished_files(sim, build):
    device = add_device(sim)
    files = dev.local_files(build)
    big = max(files, key=lambda f: f.size)
    before_big = sum(f.size for f in files[: files.index(big)])
    cut = before_big + 100_000 + 123  # part-way through the model asset, not on a chunk boundary
    device.unplug_after_bytes = cut
    with pytest.raises(dev.DeviceDisconnected) as err:
        deploy(build)
    assert "run the same `gemmaios deploy` again" in err.value.hint
    assert device.unplugs == 1
    partial = on_device(device, big.rel).stat().st_size
    assert 0 < partial < big.size
    finished = {f.rel for f in files[: files.index(big)]}
    written_before = {rel: device.written.get(f"/Documents/{rel}", 0) for rel in finished}

    resumed = deploy(build)
    assert resumed.push.resumed == {big.rel: partial}
    assert set(resumed.push.skipped) == finished
    assert resumed.push.bytes_sent == sum(f.size for f in files) - before_big - partial
    assert {rel: device.written.get(f"/Documents/{rel}", 0) for rel in finished} == written_before
    for rel, data in payload(build).items():
        assert on_device(device, rel).read_bytes() == data


def test_resume_refuses_a_partial_file_that_does_not_match(sim, build):
    device = add_device(sim)
    files = dev.local_files(build)
    big = max(files, key=lambda f: f.size)
    device.unplug_after_bytes = sum(f.size for f in files[: files.index(big)]) + 70_000
    with pytest.raises(dev.DeviceDisconnected):
        deploy(build)
    target = on_device(device, big.rel)
    target.write_bytes(b"\0" * target.stat().st_size)  # the partial bytes got damaged
    again = deploy(build)
    assert big.rel not in again.push.resumed and big.rel in again.push.pushed
    assert target.read_bytes() == big.path.read_bytes()


def test_deploy_without_an_app_says_what_to_do(sim, build):
    add_device(sim)
    (build / "ipa" / "GemmaBench.ipa").unlink()
    with pytest.raises(dev.NothingToDeploy, match="no signed app") as err:
        deploy(build)
    assert "--ipa" in err.value.hint and "fastlane ios dev_build" in err.value.hint


def test_a_corrupted_transfer_is_caught_by_the_read_back_and_re_sent(sim, build):
    device = add_device(sim)
    device.corrupt_writes[f"/Documents/{TABLE_I8}"] = 1
    result = deploy(build)
    assert result.push.resent == [TABLE_I8]
    assert on_device(device, TABLE_I8).read_bytes() == (build / "tables" / contract.TABLE_I8_FILE).read_bytes()
    device.corrupt_writes[f"/Documents/{TABLE_I8}"] = 2  # corrupted twice: give up, say so
    (build / "tables" / contract.TABLE_I8_FILE).write_bytes(b"\x07" * 1000)
    with pytest.raises(dev.DeviceError, match="differs from the build's, twice"):
        deploy(build)


def test_files_dropped_from_the_payload_are_removed_from_the_device_but_app_files_are_kept(sim, build):
    device = add_device(sim)
    deploy(build)
    app_log = on_device(device, f"{contract.APP_RUNS_DIR}/old.jsonl")
    app_log.parent.mkdir(parents=True)
    app_log.write_text("{}\n")
    bundle = payload_plan(build, contract.PUSHED_TO_DOCUMENTS).bundle_dir
    dropped = bundle / contract.BUNDLE_TOKENIZER_DIR / "special_tokens_map.json"
    dropped.unlink()
    rel = f"{PAYLOAD}/{contract.PAYLOAD_BUNDLES_DIR}/{bundle.name}/{contract.BUNDLE_TOKENIZER_DIR}/{dropped.name}"
    result = deploy(build)
    assert result.push.removed == [rel] and result.push.pushed == []
    assert not on_device(device, rel).exists() and app_log.exists()


# ---------------------------------------------------------------------------------------- iOS refusals


def test_deploy_refuses_an_uncompiled_bundle_for_an_iphone(sim, build):
    device = add_device(sim)
    from gemmaios.payload import UncompiledBundle

    with pytest.raises(UncompiledBundle) as err:
        dev.deploy(build, chunk=CHUNK)
    assert "not an AOT .aimodelc for h18p" in str(err.value)
    assert "xcrun coreai-build compile" in err.value.hint and "--allow-uncompiled" in err.value.hint
    assert device.installs == [] and not on_device(device, PAYLOAD).exists()
    ran = CliRunner().invoke(cli_app, ["deploy", "--out", str(build)])
    assert ran.exit_code == 2 and "xcrun coreai-build compile" in flat(ran.output)
    allowed = CliRunner().invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled"])
    assert allowed.exit_code == 0, allowed.output
    assert "shipping it anyway (--allow-uncompiled)" in flat(allowed.output)


def _sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)  # a hole: E4B's sizes without E4B's disk use
    return path


def test_deploy_refuses_an_e4b_tbl_bundle_for_an_iphone_with_the_memory_arithmetic(sim, tmp_path):
    """E4B-sized tbl bundle (graph 3.9 GB + owned tables 2.9 GB > h18p's 6.4 GB entitled limit)."""
    from gemmaios.payload import TablesExceedMemory

    device = add_device(sim)
    out = tmp_path / "e4b"
    name = "gemma4_e4b_qat_decode_int4_tbl"
    bundle = out / "bundle" / name
    _sparse(bundle / f"{name}.aimodel" / "main.mlirb", 3_900_000_000)
    (bundle / contract.BUNDLE_METADATA_FILE).write_text(json.dumps({"assets": {"main": f"{name}.aimodel"}}))
    (bundle / contract.BUNDLE_TOKENIZER_DIR / "tokenizer.json").parent.mkdir(parents=True)
    (bundle / contract.BUNDLE_TOKENIZER_DIR / "tokenizer.json").write_text("{}")
    _sparse(out / "tables" / contract.TABLE_I8_FILE, 262144 * 42 * 256)
    _sparse(out / "tables" / contract.TABLE_SCALE_FILE, 262144 * 4)
    (out / "app").mkdir()
    (out / "app" / contract.PROMPT_SET_FILE).write_text("{}")
    from gemmaios.pipeline import Manifest, StepRecord
    from gemmaios.steprecords import AppDetails, ConvertDetails, EngineDetails, TablesDetails

    manifest = Manifest(out)  # the records the pipeline would write, with what deploy reads
    manifest.set_meta("options", {"arch": "h18p"})
    for step, details in (
        ("convert", ConvertDetails(bundle_dir=f"bundle/{name}", name=name, aimodel=f"bundle/{name}/{name}.aimodel",
                                   metadata=f"bundle/{name}/metadata.json", quant="int4", head_quant="int4",
                                   ple="tbl", max_context=4096)),
        ("tables", TablesDetails(i8=f"tables/{contract.TABLE_I8_FILE}", scale=f"tables/{contract.TABLE_SCALE_FILE}",
                                 sidecar="tables/embed_per_layer.json", shape=[262144, 42 * 256], num_layers=42,
                                 dim=256, embed_scale=16.0, source_tensor="embed_tokens_per_layer.weight")),
        ("app", AppDetails(project="app/GemmaBench", xcodeproj="app/GemmaBench/GemmaBench.xcodeproj",
                           engine=EngineDetails("ready", "engine/coreai-models"), bundle_location=contract.PUSHED_TO_DOCUMENTS)),
    ):
        manifest.record(step, StepRecord(status="done", fingerprint="fp", inputs={}, details=details))
    with pytest.raises(TablesExceedMemory) as err:
        dev.deploy(out, allow_uncompiled=True)
    assert "does not fit an iPhone" in str(err.value) and "graph 3.90 GB + owned PLE tables 2.82 GB" in str(err.value)
    assert "6.40 GB" in str(err.value) and "--ple provider" in err.value.hint and "--allow-tbl" in err.value.hint
    assert device.installs == []
    ran = CliRunner().invoke(cli_app, ["deploy", "--out", str(out), "--allow-uncompiled"])
    assert ran.exit_code == 2 and "does not fit an iPhone" in flat(ran.output)
    with pytest.raises(dev.NothingToDeploy, match="no signed app"):  # past both checks: only the app is missing
        dev.deploy(out, allow_uncompiled=True, allow_tbl=True)


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
    assert f"sudo {sys.executable} -m pymobiledevice3 remote tunneld" in str(err.value)  # this venv's Python


def test_cli_prints_the_preflight_message(sim, build):
    add_device(sim, developer_mode=False)
    result = CliRunner().invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled"])
    assert result.exit_code == 2
    assert "Developer Mode is off" in flat(result.output) and "Settings → Privacy & Security" in flat(result.output)


# ---------------------------------------------------------------------------------------- bench




def test_bench_sends_the_contract_launch_settings_and_pulls_the_log_into_runs(sim, build):
    device = deployed(sim, build, app=SimApp(memory_interval=0.05))
    result = bench_mod.bench(build, trials=2, timeout=120, poll=0.1)
    assert result.status == bench_mod.COMPLETED
    launch = device.launches[-1]
    run_id = launch["environment"][contract.ENV["runId"]]
    assert launch["environment"] == {contract.ENV["bench"]: "1", contract.ENV["trials"]: "2",
                                     contract.ENV["runId"]: run_id, contract.ENV["udid"]: UDID}
    assert "GEMMAIOS_PROMPT_SET" not in launch["environment"]
    assert result.run_dir == build / "runs" / f"{run_id}-{UDID}"
    log = result.transcript
    assert log == result.run_dir / f"{run_id}{contract.TRANSCRIPT_SUFFIX}"
    assert log.read_bytes() == on_device(device, f"{contract.APP_RUNS_DIR}/{run_id}{contract.TRANSCRIPT_SUFFIX}").read_bytes()
    lines = records(log)
    assert lines[0]["type"] == "header" and lines[-1]["type"] == "footer"
    assert lines[0]["device"]["udid"] == UDID and lines[0]["trials"] == 2
    assert lines[0]["prompt_set"]["name"] == "short" and lines[0]["max_new_tokens"] == 3
    prompts = [ln for ln in lines if ln["type"] == "prompt"]
    assert len(prompts) == 4 and all(len(p["generated_ids"]) == 3 for p in prompts)  # exactly N, no EOS stop
    memory = [ln for ln in lines if ln["type"] == "memory"]
    assert memory and all(m["phys_footprint_bytes"] > 10 << 20 for m in memory)  # the stand-in's own footprint
    assert all(p["peak_phys_footprint_bytes"] >= 10 << 20 for p in prompts)
    assert result.validation == "ok" and result.prompts == 4
    summary = json.loads((result.run_dir / "run.json").read_text())
    assert summary["status"] == "completed" and summary["device"]["arch"] == "h18p"
    assert summary["bundle_id"] == BUNDLE_ID and summary["environment"] == launch["environment"]
    assert result.warnings == []


def test_a_bundled_app_benches_from_its_own_payload_with_nothing_in_documents(sim, bundled_build):
    device = deployed(sim, bundled_build)
    assert not on_device(device, PAYLOAD).exists()  # no dead payload to push, none to check
    result = bench_mod.bench(bundled_build, trials=1, timeout=120, poll=0.1)
    assert result.status == bench_mod.COMPLETED and result.prompts == 2
    assert records(result.transcript)[0]["device"]["udid"] == UDID


def test_bench_records_settled_device_warnings(sim, build):
    deployed(sim, build, charging=True, app=SimApp(thermal_state="serious", seconds_since_unlock=45))
    result = bench_mod.bench(build, trials=1, timeout=120, poll=0.1)
    text = " | ".join(result.warnings)
    assert "thermal state above nominal" in text and "serious" in text
    assert "charging" in text and "s after unlock" in text


@pytest.mark.parametrize("outcome,status,report_prefix", [("crash", "crashed", "GemmaBench-"),
                                                          ("jetsam", "jetsam", "JetsamEvent-")])
def test_bench_detects_crashes_and_jetsam_kills(sim, build, outcome, status, report_prefix):
    deployed(sim, build, app=SimApp(outcome=outcome))
    with pytest.raises(bench_mod.BenchFailed) as err:
        bench_mod.bench(build, trials=1, timeout=120, poll=0.1, report_wait=2)
    result = err.value.result
    assert result.status == status
    assert [p.name[: len(report_prefix)] for p in result.crash_reports] == [report_prefix]
    assert result.transcript.is_file() and "footer" not in result.transcript.read_text()
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == status


def test_bench_times_out_and_stops_the_app(sim, build):
    device = deployed(sim, build, app=SimApp(outcome="hang"))
    with pytest.raises(bench_mod.BenchFailed, match="no footer after 5s") as err:
        bench_mod.bench(build, trials=1, timeout=5, poll=0.1)
    assert err.value.result.status == "timeout" and device.running == {}


def test_bench_before_deploy_says_to_deploy(sim, build):
    add_device(sim)
    with pytest.raises(dev.AppMissing) as err:
        bench_mod.bench(build, trials=1, timeout=5, poll=0.05)
    assert "gemmaios deploy" in err.value.hint


def test_bench_finds_the_app_from_the_deploy_record_fastlane_ipa_or_bundle_id(sim, build):
    device = deployed(sim, build)
    record = json.loads((build / dev.DEPLOY_RECORD).read_text())
    assert bench_mod.deployed_bundle_id(build, UDID) == BUNDLE_ID
    (build / dev.DEPLOY_RECORD).unlink()  # no record: fastlane's <build>/ipa/ names the app
    assert dev.find_app_package(build) == build / "ipa" / "GemmaBench.ipa"
    assert bench_mod.deployed_bundle_id(build) == BUNDLE_ID
    (build / "ipa" / "GemmaBench.ipa").unlink()
    assert bench_mod.deployed_bundle_id(build) is None  # nothing left that names it ...
    with pytest.raises(dev.NothingToDeploy, match="names no app") as err:
        bench_mod.bench(build, trials=1, timeout=5, poll=0.05)
    assert "--bundle-id" in err.value.hint
    result = bench_mod.bench(build, trials=1, timeout=120, poll=0.1, bundle_id=BUNDLE_ID)  # ... but --bundle-id does
    assert result.status == bench_mod.COMPLETED and device.launches[-1]["bundle_id"] == BUNDLE_ID
    (build / dev.DEPLOY_RECORD).write_text(json.dumps(record))
    with pytest.raises(dev.AppMissing, match="com.example.other is not installed"):
        bench_mod.bench(build, trials=1, timeout=5, poll=0.05, bundle_id="com.example.other")


def test_cli_deploy_then_bench_end_to_end(sim, build, monkeypatch):
    device = add_device(sim)
    runner = CliRunner()
    first = runner.invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled"])
    assert first.exit_code == 0, first.output
    assert "app installed" in flat(first.output) and f"{len(payload(build))} files pushed" in flat(first.output)
    second = runner.invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled"])
    assert "app unchanged, 0 files pushed (0.0 MiB)" in flat(second.output)
    assert f"{len(payload(build))} already there" in flat(second.output)
    real_bench = bench_mod.bench  # the CLI polls every 2 s; poll faster here
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.1}))
    ran = runner.invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "120",
                                  "--bundle-id", BUNDLE_ID])
    assert ran.exit_code == 0, ran.output
    assert "2 prompt records" in flat(ran.output) and "validation: ok" in flat(ran.output)
    assert len(list((build / "runs").glob(f"*-{UDID}/*.jsonl"))) == 1
    assert device.launches[-1]["environment"][contract.ENV["trials"]] == "1"


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


def test_cli_bench_fails_on_a_damaged_log(sim, build, monkeypatch):
    deployed(sim, build, app=SimApp(corrupt_line=3))
    real_bench = bench_mod.bench
    monkeypatch.setattr(bench_mod, "bench", lambda *a, **kw: real_bench(*a, **{**kw, "poll": 0.1}))
    ran = CliRunner().invoke(cli_app, ["bench", "--out", str(build), "--trials", "1", "--timeout", "120"])
    assert ran.exit_code == 1
    assert "is not valid" in flat(ran.output) and ".jsonl:4" in flat(ran.output)


def test_bench_exit_without_footer_is_not_blamed_on_someone_elses_jetsam(sim, build):
    deployed(sim, build, app=SimApp(outcome="exit"))  # a JetsamEvent lists our app, but killed Safari
    with pytest.raises(bench_mod.BenchFailed, match="exited without finishing its log") as err:
        bench_mod.bench(build, trials=1, timeout=120, poll=0.1, report_wait=0.5)
    assert err.value.result.status == "exited" and err.value.result.crash_reports == []


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


# ---------------------------------------------------------------------------------------- one contract


@pytest.fixture(scope="session")
def direct_runs(tiny_app_builds) -> dict:
    """The tiny bundle run straight through gemmaios.hostrun.BundleRunner on the oracle's prompts."""
    from devicebuild import bundle_dir

    from gemmaios.hostrun import BundleRunner
    from gemmaios.oracle import ORACLE_FILE, load_oracle, score_against_oracle

    build = tiny_app_builds[contract.BUNDLED]
    oracle = load_oracle(build / ORACLE_FILE)
    with BundleRunner(bundle_dir(build), build / "tables") as runner:
        generated = {p.id: runner.generate(p.prompt_ids, oracle.max_new_tokens).generated_ids for p in oracle.prompts}
    score = score_against_oracle([(p.prompt_ids, generated[p.id]) for p in oracle.prompts], oracle)
    return {"generated": generated, "exact": score.exact, "total": score.total}


# documents (deploy pushes the whole payload) is make test's simulator deploy -> bench -> report.
@pytest.mark.parametrize("location", [pytest.param(contract.BUNDLED, marks=pytest.mark.full), contract.PUSHED_TO_DOCUMENTS])
def test_deploy_bench_score_report_runs_the_bundle_against_the_oracle(sim, tiny_app_builds, tmp_path, direct_runs,
                                                                      location):
    build = make_build(tiny_app_builds, tmp_path, location, short=False)
    device = add_device(sim)
    runner = CliRunner()
    deployed_ = runner.invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled"])
    assert deployed_.exit_code == 0, deployed_.output
    plan = payload_plan(build, location)
    pushed = sorted(p.relative_to(on_device(device, "")).as_posix() for p in on_device(device, PAYLOAD).rglob("*")
                    if p.is_file()) if on_device(device, PAYLOAD).exists() else []
    assert pushed == sorted(dest for _, dest in plan.documents_files())  # documents: all of it; bundled: none
    if location == contract.BUNDLED:
        assert pushed == [] and (device.app_bundle(BUNDLE_ID) / PAYLOAD / contract.PROMPT_SET_FILE).is_file()

    result = bench_mod.bench(build, trials=1, timeout=600, poll=0.2)
    assert result.status == bench_mod.COMPLETED and result.validation == "ok", device.app_log()
    lines = records(result.transcript)
    header = lines[0]
    assert header["device"]["udid"] == UDID and header["bundle"]["name"] == plan.bundle_dir.name
    assert [ln["type"] for ln in lines].count("memory") >= 1 and lines[-1]["type"] == "footer"
    # the stand-in really ran the bundle: its tokens are BundleRunner's, prompt by prompt
    generated = {ln["prompt_id"]: ln["generated_ids"] for ln in lines if ln["type"] == "prompt"}
    assert generated == direct_runs["generated"] and len(generated) == 8

    scored = runner.invoke(cli_app, ["score", str(result.transcript), "--build", str(build)])
    assert f"{direct_runs['exact']}/8 exact" in flat(scored.output), scored.output
    reported = runner.invoke(cli_app, ["report", str(result.run_dir), "--oracle", str(build / "oracle" / "oracle.json"),
                                       "--json"])
    report = json.loads(reported.stdout[reported.stdout.index("{"):reported.stdout.rindex("}") + 1])
    run = report["runs"][0]
    assert run["oracle"]["total"] == 8 and run["oracle"]["good"] >= direct_runs["exact"]
    assert run["device"]["udid"] == UDID and run["peak_footprint_bytes"] > 10 << 20
    # the trained tiny: every prompt token-exact against the fp32 oracle, on the "device"
    assert direct_runs["exact"] == 8 and run["oracle"]["label"] == "8/8" and reported.exit_code == 0


MOVABLE = {
    "prompt set": (f"{PAYLOAD}/{contract.PROMPT_SET_FILE}", "the prompt set is missing at"),
    "bundle metadata": ("{bundle}/" + contract.BUNDLE_METADATA_FILE, "is not a LanguageBundle"),
    "PLE table": (TABLE_I8, f"PLE table {contract.TABLE_I8_FILE} not found"),
}


@pytest.mark.parametrize("what", MOVABLE)
def test_a_pushed_file_moved_on_the_device_fails_the_bench(sim, build, what):
    device = deployed(sim, build)
    rel, message = MOVABLE[what]
    bundle = payload_plan(build, contract.PUSHED_TO_DOCUMENTS).bundle_dir.name
    rel = rel.format(bundle=f"{PAYLOAD}/{contract.PAYLOAD_BUNDLES_DIR}/{bundle}")
    moved = on_device(device, rel)
    moved.rename(moved.with_name("moved-" + moved.name))
    with pytest.raises(bench_mod.AppBenchFailed) as err:  # the app says why and the bench stops at once
        bench_mod.bench(build, trials=1, timeout=120, poll=0.1)
    result = err.value.result
    assert result.status == bench_mod.FAILED and message in result.failure["reason"] and "prompt_id" not in result.failure
    assert "the app's bench failed: " in " ".join(str(err.value).split())  # before any prompt: no prompt named
    assert "footer" not in result.transcript.read_text()
    assert message in device.app_log() and "gemmaios bench failed" in device.app_log()


@pytest.mark.parametrize("name,value", [("PAYLOAD_DIR", "gemmaios-data"), ("PAYLOAD_TABLES_DIR", "ple"),
                                        ("PROMPT_SET_FILE", "bench.json")])
def test_renaming_a_payload_path_in_the_python_contract_only_fails_the_bench(sim, build, monkeypatch, name, value):
    """Python (deploy) follows the renamed fact; the app (its generated Contract.swift) does not."""
    device = add_device(sim)
    monkeypatch.setattr(contract, name, value)
    deploy(build)
    assert any(value in p.as_posix() for p in on_device(device, "").rglob("*"))
    with pytest.raises(bench_mod.AppBenchFailed) as err:  # the app finds nothing where its contract says
        bench_mod.bench(build, trials=1, timeout=120, poll=0.1)
    assert err.value.result.status == bench_mod.FAILED and err.value.result.failure["reason"]
    assert "gemmaios bench failed" in device.app_log()


def test_the_stand_in_reads_every_contract_fact_from_the_generated_swift():
    from devicesim.appbuild import CONTRACT_SWIFT, REPO
    from devicesim.compiledapp import read_swift_constants

    compiled = read_swift_constants((REPO / "ios_template" / CONTRACT_SWIFT).read_text())["Contract"]
    assert compiled == {fact.swift: fact.value for fact in contract.facts()}


def test_the_stand_in_reads_launch_settings_as_the_app_does(tmp_path):
    from devicesim.appbuild import CONTRACT_SWIFT, REPO
    from devicesim.standin import CompiledApp, LaunchSettings

    executable = tmp_path / "App"
    executable.write_text("enum AppConfig {\n    static let defaultTrials = 3\n}\n"
                          + (REPO / "ios_template" / CONTRACT_SWIFT).read_text())
    app = CompiledApp(executable)
    env = contract.ENV
    by_argument = LaunchSettings(app, [contract.BENCH_ARG, f"{contract.LAUNCH_ARG_PREFIX}trials", "2"],
                                 {env["trials"]: "5", env["udid"]: UDID, env["runId"]: "a/b"})
    assert by_argument.bench and by_argument.trials == 2 and by_argument.udid == UDID
    assert by_argument.usable_run_id is None  # a run id that cannot name a file: the app makes its own
    by_environment = LaunchSettings(app, [], {env["bench"]: "YES", env["trials"]: "0", env["clearSpecCache"]: "1"})
    assert by_environment.bench and by_environment.trials == 3 and by_environment.clear_spec_cache
    assert not LaunchSettings(app, [], {env["bench"]: "0"}).bench
    assert not by_environment.prefill_off and not by_environment.ab_prefill
    switches = LaunchSettings(app, [f"{contract.LAUNCH_ARG_PREFIX}prefill-off"], {env["abPrefill"]: "true"})
    assert switches.prefill_off and switches.ab_prefill


def test_the_stand_in_plans_the_prefill_function_as_the_app_does(tmp_path):
    from devicesim.appbuild import CONTRACT_SWIFT, REPO
    from devicesim.standin import AppFailed, CompiledApp, LaunchSettings, PrefillPlan

    executable = tmp_path / "App"
    executable.write_text("enum AppConfig {\n    static let defaultTrials = 4\n}\n"
                          + (REPO / "ios_template" / CONTRACT_SWIFT).read_text())
    app = CompiledApp(executable)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = {"language": {"function_map": {"main": "main", contract.PREFILL_ROLE: ["prefill_16", "prefill_8"]}},
            "gemmaios": {"prefill": {"functions": {"prefill_16": {"chunk": 16}, "prefill_8": {"chunk": 8}}}}}
    (bundle / contract.BUNDLE_METADATA_FILE).write_text(json.dumps(meta))
    env = contract.ENV

    def plan(environment: dict) -> PrefillPlan:
        return PrefillPlan(app, bundle, LaunchSettings(app, [], environment))

    on = plan({})
    assert [on.function_for_trial(t) for t in range(3)] == ["prefill_16"] * 3  # the largest C, by default
    assert on.warmup_length("prefill_16") == 17 and on.warmup_length(None) == 1
    assert [plan({env["prefillOff"]: "1"}).function_for_trial(t) for t in range(2)] == [None, None]
    assert [plan({env["abPrefill"]: "1"}).function_for_trial(t) for t in range(4)] == ["prefill_16", None] * 2
    meta["language"]["function_map"][contract.PREFILL_ROLE] = ["prefill_4"]
    (bundle / contract.BUNDLE_METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(AppFailed, match="prefill_4"):
        plan({})
    del meta["language"]["function_map"][contract.PREFILL_ROLE]
    (bundle / contract.BUNDLE_METADATA_FILE).write_text(json.dumps(meta))
    assert plan({env["abPrefill"]: "1"}).function_for_trial(0) is None  # a main-only bundle: nothing to alternate


# ---------------------------------------------------------------------------------------- prefill A/B

@pytest.mark.full
def test_ab_prefill_bench_alternates_the_prefill_function_and_the_report_gives_the_ratio(sim, prefill_app_build, tmp_path):
    build = copy_build(prefill_app_build, tmp_path / "build")
    prompts = shrink_prompt_set(build, prompts=2, tokens=20, max_new_tokens=3)
    assert all(len(p["prompt_ids"]) > 9 for p in prompts["prompts"])  # at least one full chunk of 8 + main's last
    package_app(build)
    device = deployed(sim, build)
    with pytest.raises(bench_mod.BenchSettingsError, match="--trials"):
        bench_mod.bench(build, trials=1, timeout=5, poll=0.05, ab_prefill=True)
    try:
        result = bench_mod.bench(build, trials=2, timeout=300, poll=0.1, ab_prefill=True)
    except bench_mod.BenchFailed as exc:
        pytest.fail(f"{exc}\n{device.app_log()}")
    assert result.status == bench_mod.COMPLETED and result.validation == "ok", device.app_log()
    assert device.launches[-1]["environment"][contract.ENV["abPrefill"]] == "1"
    lines = records(result.transcript)
    loads = [ln for ln in lines if ln["type"] == "load"]
    assert [ln[contract.PROMPT_PREFILL_FUNCTION] for ln in loads] == ["prefill_8", None]  # a switch reloads
    rows = [ln for ln in lines if ln["type"] == "prompt"]
    assert [(r["trial"], r[contract.PROMPT_PREFILL_FUNCTION]) for r in rows] == [
        (0, "prefill_8"), (0, "prefill_8"), (1, None), (1, None)]
    # the chunked walk is bit-identical to main's: both settings generate the same tokens
    by_trial = {t: [r["generated_ids"] for r in rows if r["trial"] == t] for t in (0, 1)}
    assert by_trial[0] == by_trial[1] and all(len(g) == 3 for g in by_trial[0])

    reported = CliRunner().invoke(cli_app, ["report", str(result.run_dir), "--out", str(tmp_path / "report"),
                                            "--fail-under", "prefill_on=0.001,decode_ratio=0.001"])
    out = flat(reported.output)
    assert reported.exit_code == 0, reported.output
    assert "prefill A/B: prefill" in out and "(prefill_8) vs" in out and "(main only) tok/s =" in out, out
    assert "tokens identical on 2 prompts" in out
    data = json.loads((tmp_path / "report" / "report.json").read_text())["runs"][0]["prefill_ab"]
    on, off = data["on"], data["off"]
    assert on["function"] == "prefill_8" and off["function"] is None
    assert data["prefill_ratio"] == pytest.approx(on["prefill_tok_s"]["median"] / off["prefill_tok_s"]["median"])
    # a run without both settings cannot pass an A/B gate
    plain = bench_mod.bench(build, trials=1, timeout=300, poll=0.1)
    rows = [ln for ln in records(plain.transcript) if ln["type"] == "prompt"]
    assert {r[contract.PROMPT_PREFILL_FUNCTION] for r in rows} == {"prefill_8"}  # the bundle's function, by default
    gated = CliRunner().invoke(cli_app, ["report", str(plain.run_dir), "--out", str(tmp_path / "r2"),
                                         "--fail-under", "prefill_ratio=1"])
    assert gated.exit_code == 1 and "not a `bench --ab-prefill` run" in flat(gated.output)


# ---------------------------------------------------------------------------------------- long contexts

def _doubled_from_256(needed: int) -> int:
    """The KV capacity upstream's GrowingKVCache binds for `needed` positions: 256, doubled until it fits."""
    capacity = 256
    while capacity < needed:
        capacity *= 2
    return capacity


# ~2 min on 2 shared cores (116 s measured), most of it Core AI's CPU runtime prefilling the 1.5k-token ledger (a prefill_8 call
# costs ~0.6 s at 1k positions). The probe's 3350-token ledger (~1.5 s a call, 376 s on its own, KV 4096) was run by
# hand and is left out of this subset for time (docs/app.md).
@pytest.mark.full
def test_the_long_context_probe_runs_on_the_simulated_iphone_and_the_report_shows_the_buckets(sim, prefill_app_build,
                                                                                             tmp_path):
    """Issue 27: `gemmaios oracle --prompts` with the long-context probe's controls, its 1.5k-token ledger and the two
    prompts past the context, `gemmaios app`, deploy, bench, report on the session's chunked-prefill app build (int8,
    context 4096, prefill_8). The prompts that fit the context (the two controls, the ledger) run through the app
    stand-in under Core AI's runtime, each with the KV capacity the engine bound (upstream's doubling from 256); the
    two past it are left out and named (the app's log, `bench`, run.json, the report); the report scores each prompt
    against the fp32 oracle and groups the agreement by context bucket, with the #124 warning for the iOS binding
    above 1024."""
    import yaml

    from gemmaios.contract import IOS_KV_SAFE_CAPACITY, KV_FAULT_ISSUE, KV_FAULT_WARNING, KV_GROWTH_DOUBLING
    from gemmaios.oracle import ORACLE_FILE, load_oracle
    from gemmaios.oracle.prompts import PACKAGED_PROMPT_SETS

    build = copy_build(prefill_app_build, tmp_path / "build")
    # the packaged probe less its 3350-token ledger (it fits the context; run by hand for time), as a prompts file
    probe = yaml.safe_load(PACKAGED_PROMPT_SETS["long-context"].read_text())
    kept = ["short-capital", "short-followup", "ledger-0.6k", "chat-2.5k", "ledger-4.5k"]
    probe["prompts"] = [p for p in probe["prompts"] if p["id"] in kept]
    assert [p["id"] for p in probe["prompts"]] == kept
    subset = tmp_path / "long-context-subset.yaml"
    subset.write_text(yaml.safe_dump(probe, allow_unicode=True, sort_keys=False))
    runner = CliRunner()
    for args in (["oracle", "--out", str(build), "--prompts", str(subset)], ["app", "--out", str(build)]):
        ran = runner.invoke(cli_app, args)
        assert ran.exit_code == 0, ran.output
    oracle = load_oracle(build / ORACLE_FILE)
    max_new = oracle.max_new_tokens
    context = json.loads((payload_plan(build).bundle_dir / contract.BUNDLE_METADATA_FILE).read_text())[
        "language"]["max_context_length"]
    fits = [p for p in oracle.prompts if len(p.prompt_ids) + max_new <= context]
    past = [p for p in oracle.prompts if len(p.prompt_ids) + max_new > context]
    assert oracle.prompt_set["name"] == "long-context" and max_new == 8 and context == 4096
    assert [p.id for p in fits] == ["short-capital", "short-followup", "ledger-0.6k"]
    assert [p.id for p in past] == ["chat-2.5k", "ledger-4.5k"]
    lengths = [len(p.prompt_ids) for p in fits]
    assert lengths[1] < 64 < 1024 < lengths[2] <= 2048  # crossing 1k
    staged = json.loads((build / "app" / contract.PROMPT_SET_FILE).read_text())
    assert [p["id"] for p in staged["prompts"]] == [p.id for p in oracle.prompts]  # the app gets the past ones too

    package_app(build)
    device = deployed(sim, build)
    try:
        result = bench_mod.bench(build, trials=1, timeout=600, poll=0.5)
    except bench_mod.BenchFailed as exc:
        pytest.fail(f"{exc}\n{device.app_log()}")
    assert result.status == bench_mod.COMPLETED and result.validation == "ok", device.app_log()
    named = [f"{p.id} ({len(p.prompt_ids)} + {max_new} tokens)" for p in past]
    for p in past:  # the app's log names each prompt it left out, as BenchRunner.swift does
        assert (f"prompt {p.id} ({len(p.prompt_ids)} + {max_new} tokens) is past the engine's context of {context}: "
                "left out") in device.app_log()
    assert f"left out (past the bundle's context): {', '.join(named)}" in result.notes
    assert json.loads((result.run_dir / "run.json").read_text())["skipped_prompts"] == named

    rows = [ln for ln in records(result.transcript) if ln["type"] == "prompt"]
    assert [(r["index"], r["prompt_id"]) for r in rows] == [(i, p.id) for i, p in enumerate(fits)]
    for row, ref in zip(rows, fits, strict=True):
        assert row["prompt_ids"] == ref.prompt_ids and row["prefill_tokens"] == len(ref.prompt_ids)
        assert row[contract.PROMPT_PREFILL_FUNCTION] == "prefill_8" and len(row["generated_ids"]) == max_new
        # the KV capacity the engine bound for it: upstream's doubling from 256, never shrinking (short to long)
        bound = _doubled_from_256(len(ref.prompt_ids) + max_new)
        assert row[contract.PROMPT_KV_CAPACITY] == bound >= len(ref.prompt_ids) + max_new
        assert row[contract.PROMPT_KV_GROWTH] == KV_GROWTH_DOUBLING
        assert row[contract.PROMPT_WARNINGS] == ([KV_FAULT_WARNING] if bound > IOS_KV_SAFE_CAPACITY else [])
    assert [r[contract.PROMPT_KV_CAPACITY] for r in rows] == [256, 256, 2048]
    exact = [r["generated_ids"] == ref.generated_ids for r, ref in zip(rows, fits, strict=True)]

    reported = runner.invoke(cli_app, ["report", str(result.run_dir), "--out", str(tmp_path / "report")])
    assert reported.exit_code == 0, reported.output
    out = flat(reported.output)
    data = json.loads((tmp_path / "report" / "report.json").read_text())["runs"][0]
    [probe] = data["context_probes"]
    buckets = [(b["label"], b["prompts"], b["exact"], b["capacities"]) for b in probe["buckets"]]
    assert buckets == [("≤ 1024", 2, sum(exact[:2]), [256]), ("1025–2048", 1, int(exact[2]), [2048])]
    assert probe["growth"] == KV_GROWTH_DOUBLING
    assert probe["within_safe"] == [sum(exact[:2]), 2] and probe["above_safe"] == [sum(exact[2:]), 1]
    # the trained tiny model holds its fp32 oracle token for token at every context the probe reached
    assert all(exact), exact
    assert not probe["fault_signature"]
    md = (tmp_path / "report" / "report.md").read_text()
    for label, n, good, capacity in buckets:
        assert f"| {KV_GROWTH_DOUBLING} | {label} | {n} | {good} | {good} | {capacity[0]} |" in md
    lines = " · ".join(f"{label}: {good}/{n} exact ({good} within the margin rule; KV bound {capacity[0]})"
                       for label, n, good, capacity in buckets)
    assert f"oracle by context: [KV cache grown from 256] {lines}" in out  # printed, and in report.md
    assert f"| oracle by context | [KV cache grown from 256] {lines} |" in md
    assert (f"**warning**: {KV_FAULT_WARNING}: 1 prompt record(s) ran with the KV cache bound at 2048 positions"
            in md)
    assert ("**info**: every prompt bound above 1024 KV positions with the KV cache grown from 256 held against the "
            f"fp32 oracle (1/1, bindings 2048) on {device.ios}: {KV_FAULT_ISSUE} did not show there") in md
    assert f"**info**: 2 prompt(s) left out, past the bundle's context: {', '.join(named)}" in md
    assert "of 5 prompts" not in md  # the left-out prompts are named, not reported as missing records
    assert f"| oracle | 3/3 — 3/3 exact vs fp32 oracle ({max_new} tokens) |" in md
