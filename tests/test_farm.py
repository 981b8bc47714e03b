"""`gemmaios farm` against the labelled Device Farm stand-in (tests/farm_standin.py): boto3's real
serialization and signing to a local endpoint, every request checked by botocore's ParamValidator
against the devicefarm service model on both ends."""

from __future__ import annotations

import json
import plistlib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("boto3")

from farm_standin import ACCESS_KEY, SECRET_KEY, FarmStandIn  # noqa: E402
from transcript_fakes import build_folder, records  # noqa: E402

from gemmaios.cli import app  # noqa: E402
from gemmaios.farm import flow  # noqa: E402
from gemmaios.farm.errors import FarmRequestInvalid, TestSpecInvalid  # noqa: E402
from gemmaios.farm.service import DeviceFarm  # noqa: E402
from gemmaios.farm.testspec import render_testspec, validate_testspec  # noqa: E402
from gemmaios.transcript import write_transcript  # noqa: E402

BUNDLE_ID = "dev.gemmaios.bench"
POOL = "Pro phones"


def transcript_for(tmp: Path):
    """What the app's XCTest would leave on the device: a transcript named by the run id it was given."""
    def produce(device: dict, job: dict) -> dict[str, bytes]:
        run_id = job["env"]["TEST_RUNNER_GEMMAIOS_RUN_ID"]
        dev = {"product_type": "iPhone18,1", "name": device["name"], "os_version": device["os"], "arch": "h18p",
               "udid": job["udid"]}
        path = write_transcript(tmp / f"{run_id}.jsonl", records(run_id=run_id, device=dev))
        return {path.name: path.read_bytes()}
    return produce


@pytest.fixture
def standin(tmp_path, monkeypatch):
    farm = FarmStandIn(transcript_for(tmp_path / "device-side")).start()
    (tmp_path / "device-side").mkdir()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DEVICE_FARM", farm.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    yield farm
    farm.stop()


@pytest.fixture
def farm_build(tmp_path) -> Path:
    """A build folder (what the report reads) with a signed-looking .ipa and a zipped test package."""
    build = build_folder(tmp_path)
    with zipfile.ZipFile(build / "Gemmaios.ipa", "w") as ipa:
        ipa.writestr("Payload/Gemmaios.app/Info.plist", plistlib.dumps(
            {"CFBundleIdentifier": BUNDLE_ID, "CFBundleExecutable": "Gemmaios", "CFBundleShortVersionString": "0.1.0"}))
        ipa.writestr("Payload/Gemmaios.app/Gemmaios", b"stand-in executable")
    (build / "xctest").mkdir()
    with zipfile.ZipFile(build / "xctest" / "GemmaiosBenchTests.zip", "w") as pkg:
        pkg.writestr("Payload/Gemmaios.app/PlugIns/GemmaiosBenchTests.xctest/Info.plist", b"stand-in")
    return build


def invoke(*args: str):
    """The CLI's result, its output with rich's line wrapping undone (`.text`)."""
    result = CliRunner().invoke(app, list(args))
    result.text = " ".join(result.output.split())
    return result


def farm_run(build: Path, *extra: str):
    return invoke("farm", "run", "--build", str(build), "--ipa", str(build / "Gemmaios.ipa"), "--yes", "--poll", "0", *extra)


def with_pool(standin: FarmStandIn, *names: str) -> None:
    standin.add_pool(POOL, list(names) or ["Apple iPhone 17 Pro", "Apple iPhone 16 Pro"])


def test_farm_run_uploads_schedules_follows_fetches_and_reports_two_devices(standin, farm_build):
    with_pool(standin)
    result = farm_run(farm_build, "--pool", POOL)
    assert result.exit_code == 0, result.output
    assert "cost:" in result.text and "$0.17 per device minute" in result.text
    # followed: one line each time the devices' states change
    assert "RUNNING (0/2 done)" in result.text and "COMPLETED (2/2 done)" in result.text
    assert "Apple iPhone 17 Pro: COMPLETED/PASSED" in result.text
    ops = [op for op, _ in standin.requests]
    assert ops.count("CreateUpload") == 3 and "ScheduleRun" in ops and ops[-1] in ("ListArtifacts", "ListJobs")
    assert standin.rejected == []  # every request passed botocore's validator on the service side too
    schedule = next(p for op, p in standin.requests if op == "ScheduleRun")
    assert schedule["test"]["type"] == "XCTEST_UI" and schedule["executionConfiguration"] == {"jobTimeoutMinutes": 60}

    record = flow.load_record(farm_build)
    assert record.status == "COMPLETED" and record.result == "PASSED" and len(record.fetched) == 2
    report = json.loads((farm_build / record.report / "report.json").read_text())
    assert len(report["runs"]) == 2
    text = (farm_build / record.report / "report.md").read_text()
    assert "Apple iPhone 17 Pro" in text and "Apple iPhone 16 Pro" in text
    side = text[text.index("## Devices side by side"):].splitlines()
    assert "Apple iPhone 17 Pro" in side[2] and "Apple iPhone 16 Pro" in side[2]  # one column per device
    assert any(line.startswith("| decode") for line in side[4:])
    spec = (farm_build / "farm" / record.name / "testspec.yml").read_text()
    assert "xcodebuild test-without-building" in spec


def test_devices_by_name_use_an_arn_selection(standin, farm_build):
    result = farm_run(farm_build, "--device", "Apple iPhone 15 Pro", "--device", "Apple iPhone 17 Pro")
    assert result.exit_code == 0, result.output
    schedule = next(p for op, p in standin.requests if op == "ScheduleRun")
    selection = schedule["deviceSelectionConfiguration"]
    assert selection["maxDevices"] == 2 and selection["filters"][0]["attribute"] == "ARN"
    assert len(flow.load_record(farm_build).fetched) == 2


def test_bad_credentials_are_named_and_nothing_is_scheduled(standin, farm_build, monkeypatch):
    with_pool(standin)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    result = farm_run(farm_build, "--pool", POOL)
    assert result.exit_code == 2
    assert "AWS refused the credentials" in result.text and "UnrecognizedClientException" in result.text
    assert "aws configure" in result.text
    assert standin.runs == {} and not (farm_build / "farm" / "last").exists()


def test_no_credentials_at_all_are_named(standin, farm_build, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = farm_run(farm_build, "--pool", POOL)
    assert result.exit_code == 2 and "no usable AWS credentials" in result.text, result.output
    assert standin.requests == []


def test_missing_pool_is_named_with_the_pools_there_are(standin, farm_build):
    with_pool(standin)
    result = farm_run(farm_build, "--pool", "No such pool")
    assert result.exit_code == 2
    assert "no device pool named 'No such pool'" in result.text and POOL in result.text
    assert "ScheduleRun" not in [op for op, _ in standin.requests]
    arn = "arn:aws:devicefarm:us-west-2:000000000000:devicepool:no-such-pool"
    by_arn = farm_run(farm_build, "--pool", arn)
    assert by_arn.exit_code == 2 and f"no device pool {arn}" in by_arn.text and "list-device-pools" in by_arn.text
    assert standin.runs == {}


def test_failed_run_is_named_and_its_artifacts_are_still_fetched(standin, farm_build):
    with_pool(standin)
    standin.outcome = "FAILED"
    result = farm_run(farm_build, "--pool", POOL)
    assert result.exit_code == 2
    assert "finished FAILED" in result.text and "the test command failed" in result.text
    record = flow.load_record(farm_build)
    assert record.result == "FAILED"
    outputs = list((farm_build / "farm" / record.name / "devices").rglob("*.txt"))
    assert len(outputs) == 2  # each job's TESTSPEC_OUTPUT came home


def test_interrupted_follow_keeps_the_run_and_status_fetch_resume(standin, farm_build, monkeypatch):
    with_pool(standin)

    def ctrl_c(_seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(flow.time, "sleep", ctrl_c)
    result = farm_run(farm_build, "--pool", POOL, "--poll", "1")
    assert result.exit_code == 2
    assert "stopped following" in result.text and "gemmaios farm fetch" in result.text
    record = flow.load_record(farm_build)
    assert record.run_arn in standin.runs and record.status != "COMPLETED"
    monkeypatch.undo()  # the stand-in's env is kept by re-setting it below
    monkeypatch.setenv("AWS_ENDPOINT_URL_DEVICE_FARM", standin.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent-aws-credentials")

    status = invoke("farm", "status", "--build", str(farm_build))
    assert status.exit_code == 0 and record.name in status.text, status.output
    fetched = invoke("farm", "fetch", "--build", str(farm_build), "--poll", "0")
    assert fetched.exit_code == 0, fetched.output
    record = flow.load_record(farm_build)
    assert record.status == "COMPLETED" and len(record.fetched) == 2
    assert (farm_build / record.report / "report.md").is_file()
    assert [op for op, _ in standin.requests].count("ScheduleRun") == 1  # resumed, not re-run


def test_status_without_a_recorded_run_is_named(farm_build):
    result = invoke("farm", "status", "--build", str(farm_build))
    assert result.exit_code == 2 and "has no recorded farm run" in result.text


def test_the_client_validates_against_botocores_service_model(standin):
    farm = DeviceFarm()
    with pytest.raises(FarmRequestInvalid, match="test.testPackageArn"):
        farm.validate("ScheduleRun", {"projectArn": "arn:aws:devicefarm:us-west-2:000000000000:project:x", "test": {"type": "XCTEST_UI", "testPackageArn": 7}})
    with pytest.raises(FarmRequestInvalid, match="Missing required parameter"):
        farm.validate("CreateUpload", {"name": "a.ipa", "type": "IOS_APP"})


def test_testspec_follows_the_documented_schema():
    spec = validate_testspec(render_testspec(run_name="r1", bundle_id=BUNDLE_ID, trials=3, ios_test_host="macos_sequoia"))
    assert spec["version"] == 0.1 and list(spec["phases"]) == ["install", "pre_test", "test", "post_test"]
    assert spec["artifacts"] == ["$DEVICEFARM_LOG_DIR"] and spec["ios_test_host"] == "macos_sequoia"
    test = spec["phases"]["test"]["commands"][0]
    assert "TEST_RUNNER_GEMMAIOS_BENCH=1" in test and "TEST_RUNNER_GEMMAIOS_TRIALS=3" in test
    copy = spec["phases"]["post_test"]["commands"][0]
    assert '--source "Documents/gemmaios-runs/r1-$DEVICEFARM_DEVICE_UDID.jsonl"' in copy
    assert "TEST_RUNNER_GEMMAIOS_RUN_ID=r1-$DEVICEFARM_DEVICE_UDID" in test
    good = "version: 0.1\nphases:\n  test:\n    commands:\n      - echo hi\nartifacts:\n  - $DEVICEFARM_LOG_DIR\n"
    validate_testspec(good)
    for bad, problem in [(good.replace("0.1", "'0.1'"), "version"), (good.replace("test:", "run:"), "unknown phase"),
                         (good.replace("$DEVICEFARM_LOG_DIR", "logs/*.jsonl"), "wildcards"),
                         (good.replace("  test", "\ttest"), "tabs"), (good + "extra: 1\n", "unknown top-level")]:
        with pytest.raises(TestSpecInvalid, match=problem):
            validate_testspec(bad)


def test_cost_is_stated_from_devices_and_timeout():
    estimate = flow.CostEstimate(devices=3, job_timeout_minutes=30)
    assert estimate.worst_case_usd == pytest.approx(3 * 30 * 0.17)
    assert "may change" in estimate.describe() and "150 min per job" in estimate.describe()
    pool = flow.CostEstimate(devices=None, job_timeout_minutes=60)
    assert pool.worst_case_usd is None and "$10.20 per device in the pool" in pool.describe()


def test_a_documents_build_needs_its_payload_and_sends_it_as_extra_data(standin, farm_build, tmp_path):
    from gemmaios.pipeline import Manifest, StepRecord
    from gemmaios.steprecords import AppDetails, EngineDetails

    app = AppDetails(project="app/GemmaBench", xcodeproj="app/GemmaBench/GemmaBench.xcodeproj",  # an app step's record
                     engine=EngineDetails("ready", "engine/coreai-models"), bundle_location="documents")
    Manifest(farm_build).record("app", StepRecord(status="done", fingerprint="app-fp", inputs={}, details=app))
    with_pool(standin)
    refused = farm_run(farm_build, "--pool", POOL)
    assert refused.exit_code == 2 and "is a `documents` build" in refused.text and "--payload" in refused.text
    assert standin.requests == []

    payload = tmp_path / "payload.zip"
    with zipfile.ZipFile(payload, "w") as z:
        z.writestr("gemmaios-payload/metadata.json", "{}")
    result = farm_run(farm_build, "--pool", POOL, "--payload", str(payload))
    assert result.exit_code == 0, result.output
    kinds = [p["type"] for op, p in standin.requests if op == "CreateUpload"]
    assert kinds == ["IOS_APP", "XCTEST_UI_TEST_PACKAGE", "XCTEST_UI_TEST_SPEC", "EXTERNAL_DATA"]
    schedule = next(p for op, p in standin.requests if op == "ScheduleRun")
    assert schedule["configuration"]["extraDataPackageArn"] == flow.load_record(farm_build).uploads["payload"]
