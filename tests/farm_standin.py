"""TEST STAND-IN for AWS Device Farm -- NOT Amazon's service. A local HTTP endpoint that boto3 talks
to through `AWS_ENDPOINT_URL_DEVICE_FARM`, so every request goes through boto3's real serialization
(the JSON protocol, SigV4 signing) and is checked here again by botocore's `ParamValidator` against
the `devicefarm` service model. It keeps projects, uploads (pre-signed PUT URLs served here), device
pools, devices, runs and jobs in memory; a run moves SCHEDULING → PREPARING → RUNNING → COMPLETED one
step per GetRun. It does NOT run tests: when a run completes, each job's CUSTOMER_ARTIFACT zip holds
what `produce(device, run)` returns (the tests write transcripts the way the app would) after the
stand-in has checked the uploaded test spec runs `xcodebuild test-without-building` on the job's
device with the bench settings. Credentials: only `ACCESS_KEY` is accepted (anything else gets
UnrecognizedClientException, as AWS answers a key it does not know).
"""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml
from botocore.session import get_session
from botocore.validate import ParamValidator

ACCESS_KEY = "AKIASTANDINFARM00000"
SECRET_KEY = "standin-secret-not-a-real-key"
TARGET_PREFIX = "DeviceFarm_20150623."
STATUSES = ("SCHEDULING", "PREPARING", "RUNNING", "COMPLETED")
ARN = "arn:aws:devicefarm:us-west-2:000000000000"


class FarmStandIn:
    def __init__(self, produce=None) -> None:
        self.model = get_session().get_service_model("devicefarm")
        self.validator = ParamValidator()
        self.produce = produce or (lambda device, run: {})
        self.requests: list[tuple[str, dict]] = []
        self.rejected: list[tuple[str, str]] = []  # requests the validator refused
        self.projects: dict[str, dict] = {}
        self.uploads: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.devices = {f"{ARN}::device:{i}": {"arn": f"{ARN}::device:{i}", "name": name, "model": name,
                                                  "os": os_, "platform": "IOS", "fleetType": "PUBLIC"}
                        for i, (name, os_) in enumerate([("Apple iPhone 17 Pro", "27.0"), ("Apple iPhone 16 Pro", "26.1"),
                                                         ("Apple iPhone 15 Pro", "26.1")])}
        self.pools: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.outcome = "PASSED"  # what the next completed run's jobs result in
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FarmStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_pool(self, name: str, device_names: list[str], project_arn: str | None = None) -> str:
        arn = f"{ARN}:devicepool:{uuid.uuid4()}"
        arns = [a for a, d in self.devices.items() if d["name"] in device_names]
        self.pools[arn] = {"arn": arn, "name": name, "type": "PRIVATE", "devices": arns, "project": project_arn}
        return arn

    # -- operations ------------------------------------------------------------------------------
    def op_ListProjects(self, p):
        return {"projects": list(self.projects.values())}

    def op_CreateProject(self, p):
        arn = f"{ARN}:project:{uuid.uuid4()}"
        self.projects[arn] = {"arn": arn, "name": p["name"]}
        return {"project": self.projects[arn]}

    def op_CreateUpload(self, p):
        self._project(p["projectArn"])
        uid = uuid.uuid4().hex
        arn = f"{ARN}:upload:{uid}"
        self.uploads[arn] = {"arn": arn, "name": p["name"], "type": p["type"], "status": "INITIALIZED",
                             "url": f"{self.url}/upload/{uid}", "_id": uid}
        return {"upload": self._public(self.uploads[arn])}

    def op_GetUpload(self, p):
        up = self.uploads.get(p["arn"])
        if up is None:
            raise Fault("NotFoundException", "upload not found")
        if up["status"] == "PROCESSING":
            up["status"], up["message"] = self._check_upload(up)
        return {"upload": self._public(up)}

    def op_ListDevicePools(self, p):
        pools = [self._public(x) for x in self.pools.values() if x["project"] in (None, p["arn"])]
        return {"devicePools": pools + [{"arn": f"{ARN}:devicepool:curated", "name": "Top Devices", "type": "CURATED"}]}

    def op_GetDevicePool(self, p):
        if p["arn"] not in self.pools:
            raise Fault("NotFoundException", "device pool not found")
        return {"devicePool": self._public(self.pools[p["arn"]])}

    def op_ListDevices(self, p):
        return {"devices": list(self.devices.values())}

    def op_ScheduleRun(self, p):
        self._project(p["projectArn"])
        for key in ("appArn",):
            if self.uploads.get(p.get(key), {}).get("status") != "SUCCEEDED":
                raise Fault("ArgumentException", f"{key} is not a processed upload")
        test = p["test"]
        for key in ("testPackageArn", "testSpecArn"):
            if self.uploads.get(test.get(key), {}).get("status") != "SUCCEEDED":
                raise Fault("ArgumentException", f"test.{key} is not a processed upload")
        if "devicePoolArn" in p:
            if p["devicePoolArn"] not in self.pools:
                raise Fault("NotFoundException", "device pool not found")
            devices = self.pools[p["devicePoolArn"]]["devices"]
        else:
            devices = [v for f in p["deviceSelectionConfiguration"]["filters"] if f["attribute"] == "ARN" for v in f["values"]]
            if unknown := [d for d in devices if d not in self.devices]:
                raise Fault("ArgumentException", f"unknown devices {unknown}")
        arn = f"{ARN}:run:{uuid.uuid4()}"
        spec = yaml.safe_load(self.blobs[self.uploads[test["testSpecArn"]]["_id"]])
        run = {"arn": arn, "name": p.get("name", "run"), "type": test["type"], "platform": "IOS", "status": STATUSES[0],
               "result": "PENDING", "totalJobs": len(devices), "completedJobs": 0, "_step": 0, "_spec": spec,
               "_jobs": [{"arn": f"{arn}/job:{i}", "name": self.devices[d]["name"], "device": self.devices[d],
                          "status": STATUSES[0], "result": "PENDING", "_artifacts": []} for i, d in enumerate(devices)]}
        self.runs[arn] = run
        return {"run": self._public(run)}

    def op_GetRun(self, p):
        run = self._run(p["arn"])
        if run["status"] != "COMPLETED":
            run["_step"] += 1
            run["status"] = STATUSES[min(run["_step"], len(STATUSES) - 1)]
            for job in run["_jobs"]:
                job["status"] = run["status"]
            if run["status"] == "COMPLETED":
                self._complete(run)
        return {"run": self._public(run)}

    def op_ListJobs(self, p):
        return {"jobs": [self._public(j) for j in self._run(p["arn"])["_jobs"]]}

    def op_ListArtifacts(self, p):
        for run in self.runs.values():
            for job in run["_jobs"]:
                if job["arn"] == p["arn"]:
                    return {"artifacts": [a for a in job["_artifacts"] if p["type"] == "FILE"]}
        raise Fault("NotFoundException", "job not found")

    def op_StopRun(self, p):
        run = self._run(p["arn"])
        run["status"], run["result"] = "STOPPING", "STOPPED"
        return {"run": self._public(run)}

    # -- the "device": what a completed job leaves -----------------------------------------------
    def _complete(self, run):
        test = " ".join(run["_spec"]["phases"]["test"]["commands"])
        env = dict(re.findall(r"(TEST_RUNNER_[A-Z_]+)=(\S+)", test))
        results = []
        for job in run["_jobs"]:
            udid = job["device"]["arn"].rsplit(":", 1)[-1].rjust(8, "0")
            problems = [] if "xcodebuild test-without-building" in test and '-destination "id=$DEVICEFARM_DEVICE_UDID"' in test \
                and "$DEVICEFARM_XCUITESTRUN_FILE" in test and env.get("TEST_RUNNER_GEMMAIOS_BENCH") == "1" else ["test spec"]
            expanded = {k: v.replace("$DEVICEFARM_DEVICE_UDID", udid) for k, v in env.items()}
            files = {} if problems or self.outcome != "PASSED" else self.produce(job["device"], {"env": expanded, "udid": udid})
            job["result"] = "PASSED" if files else ("FAILED" if not problems else "ERRORED")
            job["message"] = "" if files else ("the test command failed (stand-in outcome)" if not problems else
                                               "the test spec does not run the bench test")
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as archive:
                for name, data in files.items():
                    archive.writestr(f"Host_Machine_Files/$DEVICEFARM_LOG_DIR/gemmaios-transcripts/{name}", data)
                archive.writestr("Host_Machine_Files/$DEVICEFARM_LOG_DIR/testspec-output.txt", f"stand-in: {job['result']}\n")
            self._artifact(job, "Customer Artifacts", "CUSTOMER_ARTIFACT", "zip", buf.getvalue())
            self._artifact(job, "TestSpec Output", "TESTSPEC_OUTPUT", "txt", f"stand-in job {job['result']}\n".encode())
            results.append(job["result"])
        run["completedJobs"] = len(run["_jobs"])
        run["result"] = "PASSED" if all(r == "PASSED" for r in results) else ("ERRORED" if "ERRORED" in results else "FAILED")

    def _artifact(self, job, name, kind, ext, data):
        aid = uuid.uuid4().hex
        self.blobs[aid] = data
        job["_artifacts"].append({"arn": f"{job['arn']}/artifact:{aid}", "name": name, "type": kind, "extension": ext,
                                  "url": f"{self.url}/artifact/{aid}"})

    def _check_upload(self, up):
        data = self.blobs.get(up["_id"], b"")
        if up["type"] in ("IOS_APP", "XCTEST_UI_TEST_PACKAGE", "EXTERNAL_DATA"):
            try:
                names = zipfile.ZipFile(io.BytesIO(data)).namelist()
            except zipfile.BadZipFile:
                return "FAILED", f"{up['name']} is not a zip archive"
            if up["type"] == "IOS_APP" and not any(re.fullmatch(r"Payload/[^/]+\.app/Info\.plist", n) for n in names):
                return "FAILED", "the .ipa holds no Payload/<App>.app/Info.plist"
        if up["type"] == "XCTEST_UI_TEST_SPEC":
            try:
                spec = yaml.safe_load(data)
                assert isinstance(spec, dict) and spec.get("version") == 0.1
            except Exception:
                return "FAILED", "the test spec is not valid"
        return "SUCCEEDED", ""

    def _project(self, arn):
        if arn not in self.projects:
            raise Fault("NotFoundException", "project not found")

    def _run(self, arn):
        if arn not in self.runs:
            raise Fault("NotFoundException", "run not found")
        return self.runs[arn]

    @staticmethod
    def _public(obj):
        return {k: v for k, v in obj.items() if not k.startswith("_") and k not in ("devices", "project")}

    # -- HTTP ------------------------------------------------------------------------------------
    def _handler(self):
        farm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body: bytes, ctype="application/x-amz-json-1.1"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                uid = self.path.rsplit("/", 1)[-1]
                up = next((u for u in farm.uploads.values() if u["_id"] == uid), None)
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if up is None or not self.path.startswith("/upload/"):
                    return self._send(404, b"no such upload", "text/plain")
                farm.blobs[uid] = data
                up["status"] = "PROCESSING"
                self._send(200, b"")

            def do_GET(self):
                aid = self.path.rsplit("/", 1)[-1]
                if self.path.startswith("/artifact/") and aid in farm.blobs:
                    return self._send(200, farm.blobs[aid], "application/octet-stream")
                self._send(404, b"not found", "text/plain")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                op = target.removeprefix(TARGET_PREFIX)
                key = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
                try:
                    if not key or key.group(1) != ACCESS_KEY:
                        raise Fault("UnrecognizedClientException", "The security token included in the request is invalid.")
                    params = json.loads(body or b"{}")
                    if op not in farm.model.operation_names:
                        raise Fault("UnknownOperationException", op)
                    report = farm.validator.validate(params, farm.model.operation_model(op).input_shape)
                    if report.has_errors():
                        farm.rejected.append((op, report.generate_report()))
                        raise Fault("ValidationException", report.generate_report())
                    farm.requests.append((op, params))
                    answer = getattr(farm, f"op_{op}")(params)
                    self._send(200, json.dumps(answer).encode())
                except Fault as fault:
                    self._send(400, json.dumps({"__type": fault.code, "message": fault.message}).encode())

        return Handler


class Fault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
