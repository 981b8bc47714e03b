"""The XCTest bench on the Mac runner: `gemmaios sign` also runs `build-for-testing` (the test
products come back to `<build>/sign/xctest/`, zipped as the farm's test package), and
`gemmaios bench --xctest --destination id=UDID ...` runs `xcodebuild test-without-building`
against every destination at once (one xcodebuild per phone, in parallel, in one runner job on
the Mac the phones hang off), then copies each phone's transcript back with devicectl.

Each destination's run lands in `<build>/runs/<run_id>-<udid>/` (transcript, run.json, the
xcodebuild log, the .xcresult) like `gemmaios bench`'s, and one report over all of them in
`<build>/reports/xctest-<run_id>/`, the devices side by side. Without a Mac (Linux, no --mac) it
stops with NeedsMacOS naming the exact command.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import contract, xctest
from .buildlayout import BUILD_RUNS_DIR, REPORTS_DIR, SIGNED_PRODUCTS, XCTEST_RUNS_DIR
from .errors import GemmaiosError
from .files import write_json_atomic
from .runners import In, Out, runner_for


class XCTestBenchError(GemmaiosError):
    """The XCTest bench could not run, or a destination's test did not pass (its log was still pulled)."""


def find_xctestrun(products: Path) -> Path:
    runs = sorted(Path(products).glob("*.xctestrun"))
    if not runs:
        raise XCTestBenchError(f"{products} holds no .xctestrun",
                               hint="run `gemmaios sign` (it also runs xcodebuild build-for-testing)")
    return runs[-1]


def host_bundle_id(xctestrun: Path) -> str:
    import plistlib

    entry = plistlib.loads(xctestrun.read_bytes()).get(xctest.TARGET) or {}
    if not entry.get("TestHostBundleIdentifier"):
        raise XCTestBenchError(f"{xctestrun.name} names no host app for {xctest.TARGET}",
                               hint="re-render the app (`gemmaios app`) and re-sign")
    return entry["TestHostBundleIdentifier"]


def test_argv(xctestrun: str, udid: str, result_bundle: str) -> list[str]:
    return ["xcodebuild", "test-without-building", "-xctestrun", xctestrun, "-destination", f"id={udid}",
            f"-only-testing:{xctest.TEST_IDENTIFIER}", "-resultBundlePath", result_bundle]


def job_command(products: Path, xctestrun: str, udids: Sequence[str], run_id: str, trials: int, bundle_id: str) -> list:
    """One runner job: every destination's xcodebuild in parallel, then each transcript copied back.
    A destination that fails leaves its exit status in <udid>/status; the job itself exits 0 so that
    every log comes back."""
    lines = ["set -u", 'cd "$2"']
    for udid in udids:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in xctest.runner_environment(run_id, trials, udid).items())
        argv = test_argv(f'"$1"/{xctestrun}', udid, f"{udid}/bench.xcresult")
        cmd = " ".join(a if a.startswith('"$1"') else shlex.quote(a) for a in argv)
        lines += [f"mkdir -p {shlex.quote(udid)}",
                  f"( {env} {cmd} > {shlex.quote(udid)}/xcodebuild.log 2>&1; echo $? > {shlex.quote(udid)}/status ) &"]
    lines.append("wait")
    name = f"{run_id}{contract.TRANSCRIPT_SUFFIX}"
    for udid in udids:
        q = shlex.quote(udid)
        lines.append(shlex.join(["xcrun", "devicectl", "device", "copy", "from", "--device", udid,
                                 "--json-output", f"{udid}/copy.json", "--domain-type", "appDataContainer",
                                 "--domain-identifier", bundle_id, "--source", f"Documents/{contract.APP_RUNS_DIR}/{name}",
                                 "--destination", f"{udid}/{name}"]) + f" > {q}/copy.log 2>&1 || true")
    lines.append("exit 0")
    return ["/bin/sh", "-c", "\n".join(lines), "gemmaios-xctest", In(products), Out(XCTEST_RUNS_DIR, folder=True)]


def manual_command(build_dir: Path, udids: Sequence[str], run_id: str, trials: int) -> str:
    products = Path(build_dir) / SIGNED_PRODUCTS
    env = " ".join(f"{k}={v}" for k, v in xctest.runner_environment(run_id, trials, "<udid>").items())
    one = shlex.join(test_argv(f"{products}/<scheme>.xctestrun", "<udid>", "<udid>/bench.xcresult"))
    return f"for each of {', '.join(udids)}: {env} {one}"


@dataclass
class DestinationRun:
    udid: str
    status: str  # "completed" | "failed"
    run_dir: Path
    transcript: Path | None
    exit_code: int | None


@dataclass
class XCTestBenchResult:
    run_id: str
    destinations: list[DestinationRun] = field(default_factory=list)
    report_dir: Path | None = None


def bench_xctest(build_dir: Path, udids: Sequence[str], *, trials: int = 3, mac: str | None = None,
                 ssh_options: Sequence[str] = (), workdir: str = "~/gemmaios-remote", timeout: float = 3600,
                 status_fn: Callable[[str], None] = print) -> XCTestBenchResult:
    build_dir = Path(build_dir).resolve()
    udids = [u.removeprefix("id=") for u in udids]
    if not udids:
        raise XCTestBenchError("no destination given", hint="pass --destination id=<udid> (repeatable)")
    if len(set(udids)) != len(udids):
        raise XCTestBenchError(f"a destination is named twice: {udids}", hint="name each phone once")
    products = build_dir / SIGNED_PRODUCTS
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    command = manual_command(build_dir, udids, run_id, trials)
    runner = runner_for(mac, ssh_options, workdir, pending_command=command,
                        resume="copy each <udid>/ folder's transcript into build/runs/ and run `gemmaios report`")
    xctestrun = find_xctestrun(products)
    bundle_id = host_bundle_id(xctestrun)
    staging = build_dir / XCTEST_RUNS_DIR
    try:
        status_fn(f"xcodebuild test-without-building on {len(udids)} destination(s) on {runner.describe()}")
        runner.run(job_command(products, xctestrun.name, udids, run_id, trials, bundle_id),
                   build_dir, timeout=timeout)
    finally:
        runner.close()
    result = XCTestBenchResult(run_id)
    for udid in udids:
        got = staging / udid
        run_dir = build_dir / BUILD_RUNS_DIR / f"{run_id}-{udid}"
        run_dir.mkdir(parents=True, exist_ok=True)
        for item in got.iterdir() if got.is_dir() else []:
            shutil.move(str(item), run_dir / item.name)
        status_file = run_dir / "status"
        code = int(status_file.read_text().strip()) if status_file.is_file() else None
        status_file.unlink(missing_ok=True)
        transcript = run_dir / f"{run_id}{contract.TRANSCRIPT_SUFFIX}"
        ok = code == 0 and transcript.is_file()
        write_json_atomic(run_dir / "run.json", {"status": "completed" if ok else "failed", "run_id": run_id,
                                                 "udid": udid, "transport": "xctest", "xcodebuild_exit": code,
                                                 "trials": trials, "bundle_id": bundle_id})
        result.destinations.append(DestinationRun(udid, "completed" if ok else "failed", run_dir,
                                                  transcript if transcript.is_file() else None, code))
    shutil.rmtree(staging, ignore_errors=True)
    pulled = [d.run_dir for d in result.destinations if d.transcript]
    if pulled:
        from . import report as rep

        result.report_dir = build_dir / REPORTS_DIR / f"xctest-{run_id}"
        rep.write_report(rep.build_report(rep.load_runs(pulled)), result.report_dir)
    failed = [d for d in result.destinations if d.status != "completed"]
    if failed:
        raise XCTestBenchError(
            "the bench test did not pass on " + ", ".join(f"{d.udid} (xcodebuild exit {d.exit_code})" for d in failed),
            hint="read <run dir>/xcodebuild.log: " + ", ".join(str(d.run_dir) for d in failed)
                 + (f"; the report of the others is in {result.report_dir}" if result.report_dir else ""))
    return result
