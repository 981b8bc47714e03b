"""A benchmark run on AWS Device Farm: plan (costs up front) → upload → schedule → follow → fetch → report.

The run is recorded in the build folder as soon as it is scheduled
(`<build>/farm/<name>/farm.json`, and `<build>/farm/last`), so an interrupted follow (Ctrl-C),
a lost network or a closed laptop loses nothing: `gemmaios farm status` and `gemmaios farm fetch`
pick the run up by its record. Artifacts land in `<build>/farm/<name>/devices/<device>/`
(the zip as Device Farm served it, and every transcript found in it), the report in
`<build>/farm/<name>/report/` — one report, one run per device, side by side.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..buildlayout import FARM_DIR
from ..files import write_json_atomic
from .errors import (
    DevicePoolNotFound,
    FarmDeviceNotFound,
    FarmError,
    FarmInterrupted,
    FarmRunFailed,
    FarmRunRecordMissing,
)
from .service import DeviceFarm
from .testspec import render_testspec

RECORD = "farm.json"
LAST = "last"
PROJECT_NAME = "gemmaios"
TEST_TYPE = "XCTEST_UI"  # Device Farm's XCTest type that takes a custom test spec (ours runs test-without-building)
# Device Farm's metered price for a public device, per device minute, as its pricing page
# (https://aws.amazon.com/device-farm/pricing/) states it; AWS may change it, private devices are billed by contract.
PRICE_PER_DEVICE_MINUTE_USD = 0.17
JOB_TIMEOUT_LIMIT_MINUTES = 150  # the service's limit on one automated job
DEFAULT_CONCURRENCY = 5  # devices Device Farm runs at once for a metered account, unless raised on request
UPLOAD_LIMIT_BYTES = 4 * 1024**3  # the largest app Device Farm takes
DONE = "COMPLETED"


@dataclass
class FarmInputs:
    ipa: Path
    test_package: Path
    bundle_id: str
    payload: Path | None = None  # a zip Device Farm extracts into the app's sandbox (documents builds)


@dataclass
class CostEstimate:
    devices: int | None  # None: a pool, whose size Device Farm settles when it schedules
    job_timeout_minutes: int
    price_per_minute: float = PRICE_PER_DEVICE_MINUTE_USD

    @property
    def per_device_usd(self) -> float:
        return round(self.job_timeout_minutes * self.price_per_minute, 2)

    @property
    def worst_case_usd(self) -> float | None:
        return None if self.devices is None else round(self.devices * self.per_device_usd, 2)

    def describe(self) -> str:
        what = (f"at most ${self.per_device_usd:.2f} per device in the pool" if self.devices is None
                else f"at most ${self.worst_case_usd:.2f}: {self.devices} device(s)")
        return (f"{what} ({self.job_timeout_minutes} min job timeout × "
                f"${self.price_per_minute:.2f} per device minute; Device Farm's metered price on its pricing page, "
                "it may change, free-trial minutes and unmetered slots cost less, private devices are billed by "
                f"their own contract). Limits: {JOB_TIMEOUT_LIMIT_MINUTES} min per job, {DEFAULT_CONCURRENCY} devices at once "
                "by default, 4 GB per upload, us-west-2 only.")


@dataclass
class RunRecord:
    name: str
    run_arn: str
    project_arn: str
    region: str
    created_at: str
    devices: str  # how they were chosen (pool name/ARN, or device ARNs)
    uploads: dict[str, str] = field(default_factory=dict)  # role → upload ARN
    status: str = "SCHEDULING"
    result: str = "PENDING"
    fetched: list[str] = field(default_factory=list)  # device folders with transcripts
    report: str | None = None

    def save(self, build_dir: Path) -> Path:
        folder = run_folder(build_dir, self.name)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / RECORD, asdict(self))
        (Path(build_dir) / FARM_DIR / LAST).write_text(self.name + "\n")
        return folder / RECORD


def run_folder(build_dir: Path, name: str) -> Path:
    return Path(build_dir) / FARM_DIR / name


def load_record(build_dir: Path, name: str | None = None) -> RunRecord:
    """The recorded run `name` (default: the last one scheduled from this build folder)."""
    build_dir = Path(build_dir)
    if name is None:
        last = build_dir / FARM_DIR / LAST
        if not last.is_file():
            raise FarmRunRecordMissing(f"{build_dir} has no recorded farm run",
                                       hint=f"start one with `gemmaios farm run --build {build_dir} --pool NAME`")
        name = last.read_text().strip()
    path = run_folder(build_dir, name) / RECORD
    try:
        return RunRecord(**json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise FarmRunRecordMissing(f"cannot read the farm run record {path} ({exc})",
                                   hint=f"list the recorded runs: ls {build_dir / FARM_DIR}") from exc


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "device"


# -- choosing the project and the devices ---------------------------------------------------------
def find_project(farm: DeviceFarm, name: str = PROJECT_NAME, *, create: bool = True) -> str:
    for project in farm.pages("ListProjects", "projects"):
        if project.get("name") == name or project.get("arn") == name:
            return project["arn"]
    if not create or name.startswith("arn:"):
        raise FarmError(f"no Device Farm project {name!r}", hint="pass --project NAME (created if missing) or an existing ARN")
    return farm.call("CreateProject", name=name)["project"]["arn"]


def find_pool(farm: DeviceFarm, project_arn: str, pool: str) -> str:
    """A device pool's ARN from its name or ARN (the project's private pools and the curated ones)."""
    if pool.startswith("arn:"):
        try:
            return farm.call("GetDevicePool", arn=pool)["devicePool"]["arn"]
        except FarmError as exc:
            raise DevicePoolNotFound(f"no device pool {pool}", hint="list the pools: "
                                     f"aws devicefarm list-device-pools --arn {project_arn} --region us-west-2") from exc
    pools = farm.pages("ListDevicePools", "devicePools", arn=project_arn)
    for p in pools:
        if p.get("name") == pool:
            return p["arn"]
    names = ", ".join(sorted(p.get("name", "?") for p in pools)) or "none"
    raise DevicePoolNotFound(f"no device pool named {pool!r} in the project (it has: {names})",
                             hint="pass --pool with one of those names or an ARN, or create one in the Device Farm console")


def find_devices(farm: DeviceFarm, devices: list[str]) -> list[str]:
    """Device ARNs for names (model name or device name) or ARNs; private devices by their ARN."""
    found, fleet = [], None
    for wanted in devices:
        if wanted.startswith("arn:"):
            found.append(wanted)
            continue
        if fleet is None:
            fleet = farm.pages("ListDevices", "devices",
                               filters=[{"attribute": "PLATFORM", "operator": "EQUALS", "values": ["IOS"]}])
        match = [d for d in fleet if wanted in (d.get("name"), d.get("model"), d.get("modelId"))]
        if not match:
            names = ", ".join(sorted({d.get("name", "?") for d in fleet})[:20]) or "none"
            raise FarmDeviceNotFound(f"no iOS device named {wanted!r} in the fleet (some: {names})",
                                     hint="pass --device with a listed name, or a private device's ARN")
        found.append(match[0]["arn"])
    return found


# -- the run --------------------------------------------------------------------------------------
def upload(farm: DeviceFarm, project_arn: str, path: Path, kind: str, *, name: str | None = None) -> str:
    path = Path(path)
    if not path.is_file():
        raise FarmError(f"{path} does not exist", hint="run `gemmaios sign` first (it writes the .ipa and the test package)")
    if path.stat().st_size > UPLOAD_LIMIT_BYTES:
        raise FarmError(f"{path.name} is {path.stat().st_size / 1024**3:.1f} GB; Device Farm takes at most 4 GB",
                        hint="use a smaller quantization, or --bundle-location documents with the payload as extra data")
    answer = farm.call("CreateUpload", projectArn=project_arn, name=name or path.name, type=kind,
                       contentType="application/octet-stream")["upload"]
    farm.put_file(answer["url"], path)
    farm.wait_upload(answer["arn"])
    return answer["arn"]


def submit(farm: DeviceFarm, build_dir: Path, inputs: FarmInputs, *, pool: str | None = None,
           devices: list[str] | None = None, trials: int = 3, job_timeout_minutes: int = 60,
           project: str = PROJECT_NAME, name: str | None = None, ios_test_host: str | None = None,
           say: Callable[[str], None] = print) -> RunRecord:
    """Upload the .ipa, the test package, the payload (if any) and the test spec; schedule the run; record it."""
    if bool(pool) == bool(devices):
        raise FarmError("choose the devices with --pool NAME|ARN or with --device NAME|ARN (one of them)",
                        hint="gemmaios farm run --pool 'iPhone 17 Pro'  or  --device 'Apple iPhone 16 Pro' --device ...")
    if not 1 <= job_timeout_minutes <= JOB_TIMEOUT_LIMIT_MINUTES:
        raise FarmError(f"--job-timeout {job_timeout_minutes} is outside 1..{JOB_TIMEOUT_LIMIT_MINUTES} minutes",
                        hint="Device Farm stops a job after 150 minutes")
    name = name or "gemmaios-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    project_arn = find_project(farm, project)
    selection: dict = {}
    if pool:
        selection["devicePoolArn"] = find_pool(farm, project_arn, pool)
        chosen = pool
    else:
        arns = find_devices(farm, list(devices or []))
        selection["deviceSelectionConfiguration"] = {
            "filters": [{"attribute": "ARN", "operator": "IN", "values": arns}], "maxDevices": len(arns)}
        chosen = ", ".join(arns)

    folder = run_folder(build_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "testspec.yml"
    spec_path.write_text(render_testspec(run_name=name, bundle_id=inputs.bundle_id, trials=trials,
                                         ios_test_host=ios_test_host))
    uploads = {}
    for role, path, kind in (("app", inputs.ipa, "IOS_APP"), ("test_package", inputs.test_package, "XCTEST_UI_TEST_PACKAGE"),
                             ("test_spec", spec_path, "XCTEST_UI_TEST_SPEC"), ("payload", inputs.payload, "EXTERNAL_DATA")):
        if path is None:
            continue
        say(f"uploading {Path(path).name} ({role}) …")
        uploads[role] = upload(farm, project_arn, Path(path), kind)
    params = {"projectArn": project_arn, "appArn": uploads["app"], "name": name, **selection,
              "test": {"type": TEST_TYPE, "testPackageArn": uploads["test_package"], "testSpecArn": uploads["test_spec"]},
              "executionConfiguration": {"jobTimeoutMinutes": job_timeout_minutes}}
    if "payload" in uploads:
        params["configuration"] = {"extraDataPackageArn": uploads["payload"]}
    run = farm.call("ScheduleRun", **params)["run"]
    record = RunRecord(name=name, run_arn=run["arn"], project_arn=project_arn, region=farm.region,
                       created_at=datetime.now(UTC).isoformat(timespec="seconds"), devices=chosen, uploads=uploads,
                       status=run.get("status", "SCHEDULING"), result=run.get("result", "PENDING"))
    record.save(build_dir)
    return record


def status(farm: DeviceFarm, build_dir: Path, record: RunRecord) -> tuple[dict, list[dict]]:
    """The run and its jobs (one per device) as Device Farm reports them now; the record is updated."""
    run = farm.call("GetRun", arn=record.run_arn)["run"]
    jobs = farm.pages("ListJobs", "jobs", arn=record.run_arn)
    record.status, record.result = run.get("status", record.status), run.get("result", record.result)
    record.save(build_dir)
    return run, jobs


def follow(farm: DeviceFarm, build_dir: Path, record: RunRecord, *, poll: float = 30.0,
           on_update: Callable[[dict, list[dict]], None] | None = None, timeout: float | None = None) -> dict:
    """Poll until the run completes. Ctrl-C (KeyboardInterrupt) becomes FarmInterrupted: the remote run
    goes on, its record stays, `farm status/fetch` resume."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            run, jobs = status(farm, build_dir, record)
            if on_update:
                on_update(run, jobs)
            if run.get("status") == DONE:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise FarmInterrupted(f"{record.name} still {run.get('status')} after {timeout:.0f}s of following",
                                      hint=_resume_hint(build_dir, record))
            time.sleep(poll)
    except KeyboardInterrupt:
        raise FarmInterrupted(f"stopped following {record.name}; the run goes on on Device Farm ({record.run_arn})",
                              hint=_resume_hint(build_dir, record)) from None


def _resume_hint(build_dir: Path, record: RunRecord) -> str:
    return (f"`gemmaios farm status --build {build_dir}` to look, `gemmaios farm fetch --build {build_dir}` to bring "
            f"the results home when it completes; to stop it: aws devicefarm stop-run --arn {record.run_arn} --region {record.region}")


def fetch(farm: DeviceFarm, build_dir: Path, record: RunRecord, *, say: Callable[[str], None] = print) -> list[Path]:
    """Download every job's artifacts (the customer artifacts zip holds $DEVICEFARM_LOG_DIR) and unpack
    the transcripts into devices/<device>/; returns the device folders holding transcripts."""
    folder = run_folder(build_dir, record.name) / "devices"
    found = []
    for job in farm.pages("ListJobs", "jobs", arn=record.run_arn):
        device = job.get("device") or {}
        dest = folder / _slug(f"{device.get('name') or job.get('name', 'device')}-{device.get('os', '')}")
        artifacts = farm.pages("ListArtifacts", "artifacts", arn=job["arn"], type="FILE")
        for art in artifacts:
            if art.get("type") not in ("CUSTOMER_ARTIFACT", "TESTSPEC_OUTPUT") or not art.get("url"):
                continue
            ext = art.get("extension") or "zip"
            path = farm.get_file(art["url"], dest / f"{_slug(art.get('name') or art['type'])}.{ext}")
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    for member in archive.namelist():
                        if member.endswith(".jsonl") and not member.startswith("/") and ".." not in member:
                            (dest / Path(member).name).write_bytes(archive.read(member))
        if list(dest.glob("*.jsonl")):
            found.append(dest)
            say(f"{dest.name}: {len(list(dest.glob('*.jsonl')))} transcript(s)")
        else:
            say(f"{dest.name}: no transcript in its artifacts (job {job.get('result', '?')}: {job.get('message') or '-'})")
    record.fetched = [str(p.relative_to(build_dir)) for p in found]
    record.save(build_dir)
    return found


def write_farm_report(build_dir: Path, record: RunRecord, folders: list[Path]) -> Path | None:
    """One report over every device's transcripts (gemmaios.report), in <run>/report/."""
    from .. import report as rep

    if not folders:
        return None
    runs = rep.load_runs(folders)
    out = run_folder(build_dir, record.name) / "report"
    rep.write_report(rep.build_report(runs), out)
    record.report = str(out.relative_to(build_dir))
    record.save(build_dir)
    return out


def check_result(run: dict, jobs: list[dict], record: RunRecord) -> None:
    if run.get("result") in ("PASSED", "WARNED"):
        return
    failed = [f"{(j.get('device') or {}).get('name', j.get('name'))}: {j.get('result')} ({j.get('message') or 'no message'})"
              for j in jobs if j.get("result") not in ("PASSED", "WARNED")]
    raise FarmRunFailed(f"run {record.name} finished {run.get('result')}: " + "; ".join(failed or [run.get("message") or "?"]),
                        hint="its artifacts were fetched; read the job logs in "
                             f"farm/{record.name}/devices/ (TESTSPEC_OUTPUT holds the test spec's output)")
