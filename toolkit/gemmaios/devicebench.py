"""Run the app's bench mode on the device and bring the transcript home.

Launch: DVT process control (`ProcessControl.launch`) with exactly the contract's launch
settings (`gemmaios.contract.ENV`: bench flag, trials, run id, and the device's UDID, which an
app cannot read itself). The app writes `Documents/<contract.APP_RUNS_DIR>/<run_id>.jsonl`; we poll
it over house_arrest/AFC until the footer appears, the app's failure record appears (its bench
failed: the reason and the prompt it was on; the app stays on screen, so it is ended and the bench
stops at once with that reason), the process is gone, or the timeout passes. A process gone
without a footer is classified from the device's crash reports (a JetsamEvent that killed the
pid we launched → jetsam kill; a crash report, bug_type 309, of that pid → crash; resource
reports do not count). The phone is kept awake (a power assertion) for the run. Logs and any
reports land in `<build>/runs/<UTC timestamp>-<udid>/` with a `run.json` summary.

Protocol (issue 16): `--cold N` runs N cold launches first — each its own app launch (the
previous process terminated), one trial, time to first token counted from process start so
it includes the model load — then one warm launch running `--trials` back to back; all of
them append to one transcript whose `launch` records say which kind each trial is.
`--duration S` adds a sustained phase to the last launch: S seconds of continuous decode with
a tok/s sample every `--sample-interval` seconds. Thermal state and battery are recorded at
every launch's start and end; the battery's capacity is read from the phone's IORegistry
(diagnostics_relay) when it answers, so the report can turn a battery drop into mWh.

Which app: `--bundle-id`, else what `gemmaios deploy` recorded for this device
(`<build>/deploy.json`), else the build's package (fastlane's `ipa/`, `app/`), else the app
step's bundle id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import contract
from . import device as dev
from .buildlayout import BUILD_RUNS_DIR
from .device.devicectl import Devicectl, devicectl_for, phone_only_on_the_mac, wait_for_run
from .device.runs import (
    COMPLETED,
    CRASHED,
    EXITED,
    FAILED,
    JETSAM,
    TIMEOUT,
    launch_ended,
    run_failure,
    run_footer,
    status_at_exit,
)
from .errors import GemmaiosError
from .files import write_json_atomic

DEVICE_RUNS = f"{dev.AFC_DOCUMENTS}/{contract.APP_RUNS_DIR}"
UNLOCK_SETTLE_SECONDS = 300  # a just-unlocked iPhone under-reads ~35% (seed note)
LOW_BATTERY = 0.3
AWAKE_MARGIN_SECONDS = 300  # the phone is kept awake for the bench's timeout plus this (preflight, pulls)


class BenchFailed(dev.DeviceError):
    """The bench run did not finish (crash, jetsam kill, timeout); its partial log was still pulled."""


class AppBenchFailed(BenchFailed):
    """The app's bench failed and said why (its failure record: the reason, the prompt it was on), e.g. a
    picture or clip in the payload it cannot read; the bench stopped at once."""


class BenchSettingsError(dev.DeviceError):
    """The bench options cannot give what was asked (e.g. an A/B run of one trial)."""


@dataclass
class BenchResult:
    status: str
    run_id: str
    run_dir: Path
    udid: str
    transcript: Path | None
    crash_reports: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    validation: str | None = None  # "ok", the validator's error, or why it was not run
    prompts: int = 0
    notes: list[str] = field(default_factory=list)  # about the figures, not the device (e.g. short prompts)
    failure: dict | None = None  # the app's failure record when its bench failed (status FAILED)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["transcript"] = str(self.transcript) if self.transcript else None
        data["crash_reports"] = [str(p) for p in self.crash_reports]
        return data


def _run_id(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def deployed_bundle_id(build_dir: Path, udid: str | None = None) -> str | None:
    """The app to run: what deploy recorded for `udid` (or last), else the build's .ipa/.app
    (fastlane's `ipa/` included), else what the app step recorded."""
    record = dev.deployed_app(build_dir, udid)
    if record and record.get("bundle_id"):
        return record["bundle_id"]
    path = dev.find_app_package(build_dir)
    if path:
        return dev.read_app_package(path).bundle_id
    return dev.signed_bundle_id(build_dir)


@dataclass(frozen=True)
class Launch:
    """One app launch of a bench run: its number, kind, the trials it runs and its sustained phase."""

    index: int
    kind: str  # contract.LAUNCH_KIND_COLD | LAUNCH_KIND_WARM
    first_trial: int
    trials: int
    duration: int = 0  # seconds of sustained decode after the trials (0: none)


def launch_plan(trials: int, *, cold: int = 0, duration: int = 0) -> list[Launch]:
    """`cold` one-trial cold launches, then one warm launch of `trials` (none when 0); the last
    launch carries the sustained phase."""
    plan = [Launch(i, contract.LAUNCH_KIND_COLD, i, 1) for i in range(cold)]
    if trials > 0:
        plan.append(Launch(cold, contract.LAUNCH_KIND_WARM, cold, trials))
    if not plan:
        raise BenchSettingsError("nothing to run: no cold launches and no warm trials",
                                 hint="pass --trials 1 or more, or --cold 1 or more")
    if duration:
        last = plan[-1]
        plan[-1] = Launch(last.index, last.kind, last.first_trial, last.trials, duration)
    return plan


def launch_environment(run_id: str, trials: int, udid: str, *, ab_prefill: bool = False,
                       launch: Launch | None = None, launches: int = 1,
                       sample_interval: int | None = None, ab_kv: bool = False) -> dict[str, str]:
    """Exactly the contract's bench launch settings (names from gemmaios.contract.ENV); `ab_prefill`
    makes the app alternate its prefill function on (even trials) and off (odd trials). `launch`
    (one of `launch_plan`'s) adds the multi-launch and sustained settings when they differ from
    the app's defaults (one warm launch, no sustained phase)."""
    env = {contract.ENV["bench"]: "1", contract.ENV["trials"]: str(launch.trials if launch else trials),
           contract.ENV["runId"]: run_id, contract.ENV["udid"]: udid}
    if ab_prefill:
        env[contract.ENV["abPrefill"]] = "1"
    if ab_kv:  # issue 27: the KV cache starting at 256 (even trials) and at 384 (odd trials: never 2048/4096)
        env[contract.ENV["abKV"]] = "1"
    if launch is not None and launches > 1:
        env[contract.ENV["launchIndex"]] = str(launch.index)
        env[contract.ENV["launches"]] = str(launches)
        env[contract.ENV["firstTrial"]] = str(launch.first_trial)
        if launch.kind == contract.LAUNCH_KIND_COLD:
            env[contract.ENV["coldLaunch"]] = "1"
    if launch is not None and launch.duration:
        env[contract.ENV["duration"]] = str(launch.duration)
        env[contract.ENV["sampleInterval"]] = str(sample_interval or contract.SUSTAINED_SAMPLE_INTERVAL)
    return env


async def _read_log(afc, remote: str) -> bytes | None:
    from pymobiledevice3.exceptions import AfcFileNotFoundError

    try:
        return await afc.get_file_contents(remote)
    except AfcFileNotFoundError:
        return None


async def _crash_reports(client) -> set[str]:
    from pymobiledevice3.services.crash_reports import CrashReportsManager

    async with CrashReportsManager(client) as reports:
        return set(await reports.ls("/", depth=1))


# .ips bug_type (the header line's): what iOS filed. Resource reports (cpu_resource, wakeups,
# disk writes, ...) are filed for processes that carry on running: not a crash.
CRASH_BUG_TYPES = frozenset({"109", "309"})  # crash report: legacy text, JSON (iOS 15+)
JETSAM_BUG_TYPE = "298"  # JetsamEvent
KERNEL_NAME_MAX = 16  # MAXCOMLEN: the kernel keeps this much of a process name (JetsamEvent "name")


def _ips(report: bytes) -> tuple[dict, dict]:
    """An .ips report's JSON header line and JSON body ({} where either is not JSON)."""
    head, _, body = report.partition(b"\n")
    parsed = []
    for part in (head, body):
        try:
            value = json.loads(part)
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        parsed.append(value if isinstance(value, dict) else {})
    return parsed[0], parsed[1]


async def battery_capacity(client, wait: float = 10.0) -> dict:
    """The battery's capacity from the phone's IORegistry (diagnostics_relay, IOPMPowerSource), for
    turning a battery-level drop into mWh: {"capacity_mah", "capacity_source", "voltage_v"}, or
    {"unavailable": why}. The level UIDevice reports is a share of the current full charge, so
    NominalChargeCapacity is preferred over DesignCapacity."""
    from pymobiledevice3.services.diagnostics import DiagnosticsService

    try:
        async with asyncio.timeout(wait):
            async with DiagnosticsService(client) as diagnostics:
                registry = await diagnostics.get_battery() or {}
    except Exception as exc:  # noqa: BLE001 - any failure only means no mWh figure; the report says why
        return {"unavailable": f"diagnostics_relay did not answer ({type(exc).__name__}: {exc})".strip()}
    for key in ("NominalChargeCapacity", "AppleRawMaxCapacity", "DesignCapacity"):
        value = registry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            voltage = registry.get("Voltage")
            return {"capacity_mah": float(value), "capacity_source": f"IORegistry {key}",
                    "voltage_v": voltage / 1000 if isinstance(voltage, int | float) and voltage > 0 else None}
    return {"unavailable": "the IORegistry power source names no capacity"}


def jetsam_killed(report: bytes, executable: str, pid: int | None = None) -> bool:
    """Whether a JetsamEvent report says iOS killed our process: the one with `pid` (the pid we
    launched) when known, else the one named `executable` (as the kernel truncates it).

    The report (.ips: a JSON header line, then a JSON body) lists every process in memory;
    killed ones carry a `reason` (per-process-limit, vm-pageshortage, ...). Merely being
    listed is not being killed; another process with the same truncated name is not ours.
    """
    _header, data = _ips(report)
    processes = data.get("processes")
    if not isinstance(processes, list):
        return False
    if pid is not None:
        return any(isinstance(p, dict) and p.get("pid") == pid and p.get("reason") for p in processes)
    name = executable[:KERNEL_NAME_MAX]
    return any(isinstance(p, dict) and p.get("name") in (executable, name) and p.get("reason") for p in processes)


def crash_report_kind(name: str, report: bytes, executable: str, pid: int | None = None) -> str | None:
    """JETSAM when `report` (file `name`) is a JetsamEvent that killed our process, CRASHED when it is
    a crash report of our process (bug_type 109/309, its pid ours when known), else None:
    resource reports (cpu_resource, wakeups, ...) and other processes' reports do not count."""
    header, body = _ips(report)
    bug_type = str(header.get("bug_type", ""))
    if bug_type == JETSAM_BUG_TYPE or (not bug_type and name.startswith("JetsamEvent")):
        return JETSAM if jetsam_killed(report, executable, pid) else None
    if bug_type not in CRASH_BUG_TYPES:
        return None
    if pid is not None and isinstance(body.get("pid"), int):
        return CRASHED if body["pid"] == pid else None
    names = {header.get("name"), header.get("app_name"), body.get("procName")}
    return CRASHED if executable and executable in names else None


async def _pull_new_reports(client, before: set[str], executable: str, out: Path,
                            wait: float, pid: int | None = None) -> tuple[list[Path], str | None]:
    """Pull the crash / jetsam reports about our process (`pid`) that appeared since launch, and
    classify the exit.

    ReportCrash writes a report a few seconds after the process dies, so the mover is flushed
    and the folder re-listed for up to `wait` seconds until one about the app shows up.
    """
    from pymobiledevice3.services.crash_reports import CrashReportsManager

    pulled, kind, seen = [], None, set(before)
    deadline = time.monotonic() + wait
    async with CrashReportsManager(client) as reports:
        while True:
            await reports.flush()
            for entry in sorted(set(await reports.ls("/", depth=1)) - seen):
                seen.add(entry)
                name = entry.rsplit("/", 1)[-1]
                if not name.endswith(".ips"):
                    continue
                data = await reports.afc.get_file_contents(entry)
                found = crash_report_kind(name, data, executable, pid)
                if found is None:
                    continue  # another process's report, or a resource report
                out.mkdir(parents=True, exist_ok=True)
                (out / name).write_bytes(data)
                pulled.append(out / name)
                kind = JETSAM if found == JETSAM else (kind or CRASHED)
            if kind or time.monotonic() >= deadline:
                return pulled, kind
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def settled_warnings(pre: dev.DeviceInfo, footer: dict | None, thermal: list[str]) -> list[str]:
    """The settled-device rules: warn about conditions that skew the figures."""
    warnings = []
    hot = sorted({t for t in thermal if t and t != "nominal"})
    if hot:
        warnings.append(f"thermal state above nominal during the run ({', '.join(hot)}): let the iPhone cool and re-run")
    if pre.charging:
        warnings.append("the iPhone was charging at launch: charging heats it, figures may read low, and no energy "
                        "figure can be taken from the battery")
    if pre.battery_level is not None and pre.battery_level < LOW_BATTERY * 100:
        warnings.append(f"battery at {pre.battery_level}% at launch: low battery can throttle")
    if footer:
        since_unlock = footer.get("seconds_since_unlock")
        if isinstance(since_unlock, (int, float)) and since_unlock < UNLOCK_SETTLE_SECONDS:
            warnings.append(f"the run started {since_unlock:.0f}s after unlock: a just-unlocked iPhone under-reads "
                            f"~35%; wait {UNLOCK_SETTLE_SECONDS // 60} minutes after unlocking")
        if footer.get("battery_state") in ("charging", "full") and not pre.charging:
            warnings.append(f"battery state at the end: {footer['battery_state']}")
    return warnings


def prompt_set_warning(build_dir: Path) -> str | None:
    """A warning when the build's bench prompt set has no prompt long enough for a prefill figure
    (the app benches exactly that set; the report lists each prompt's length)."""
    from .payload import PROMPT_SET_BUILD_REL
    from .transcript import SHORT_PREFILL_TOKENS

    try:
        prompts = json.loads((Path(build_dir) / PROMPT_SET_BUILD_REL).read_text()).get("prompts") or []
        longest = max(len(p.get("prompt_ids") or []) for p in prompts)
    except (OSError, ValueError, AttributeError, TypeError):
        return None  # no readable prompt set here: deploy's checks say so where it matters
    if longest >= SHORT_PREFILL_TOKENS:
        return None
    return (f"the bench prompt set's longest prompt has {longest} tokens (< {SHORT_PREFILL_TOKENS}): prefill tok/s "
            "will say little about long prompts; for prefill figures bench a long-prompt set too "
            "(`gemmaios oracle --prompts long-prefill`, then `gemmaios app` and `gemmaios deploy`)")


def left_out_prompts(build_dir: Path, transcript: Path, *, ab_kv: bool = False) -> list[str]:
    """The prompts of the build's bench set that the app left out as past its engine's context.

    The app (BenchRunner.swift) skips a prompt whose ids plus max_new_tokens pass the engine's
    context, names it on screen and in its log, and writes no record of it: here each such prompt
    of a finished run is named as the host bench names its own, `id (n + m tokens)`, with the
    trials it was left out of when it ran in others (`--ab-kv`: the 384 start caps the context at
    `contract.kv_alt_max_context`, so a prompt can fit one setting only). Image and audio prompts
    are counted by their folded ids (their expanded length is the app's to know)."""
    from .payload import PROMPT_SET_BUILD_REL
    from .pipeline import finished_details
    from .transcript import read_transcript

    try:
        prompt_set = json.loads((Path(build_dir) / PROMPT_SET_BUILD_REL).read_text())
        convert = finished_details(build_dir, "convert")
        metadata = json.loads((Path(build_dir) / convert.bundle_dir / contract.BUNDLE_METADATA_FILE).read_text())
        context = int(metadata["language"]["max_context_length"])
        run = read_transcript(transcript, require_complete=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, GemmaiosError):
        return []  # no finished run or no readable build facts: nothing can be said about what was left out
    max_new = int(prompt_set.get("max_new_tokens") or run.header.get("max_new_tokens") or 0)
    trials = sorted({p.trial for p in run.prompts}) or list(range(int(run.header.get("trials") or 1)))
    ran = {(p.trial, p.prompt_id) for p in run.prompts}
    named = []
    for prompt in prompt_set.get("prompts") or []:
        length = len(prompt.get("prompt_ids") or [])
        missing = [t for t in trials if (t, prompt.get("id")) not in ran and length + max_new >
                   (contract.kv_alt_max_context(context) if ab_kv and t % 2 == 1 else context)]
        if missing:
            where = "" if len(missing) == len(trials) else f"; trial{'s' if len(missing) > 1 else ''} " + ", ".join(
                map(str, missing))
            named.append(f"{prompt['id']} ({length} + {max_new} tokens{where})")
    return named


def validate(path: Path) -> tuple[str, list[str], int]:
    """Check the transcript with the shared validator. Returns (verdict, thermal states, prompt count)."""
    # Integration point: gemmaios.transcript is written by the oracle/report work; it is used
    # when present. Without it only the footer check above has been made.
    try:
        from .transcript import read_transcript
    except ImportError:
        return "not validated: gemmaios.transcript is not available", _thermal_from_lines(path), -1
    try:
        transcript = read_transcript(path)
    except GemmaiosError as exc:
        return str(exc).splitlines()[0], _thermal_from_lines(path), -1
    return "ok", [state for _t, state in transcript.thermal_states()], len(transcript.prompts)


def _thermal_from_lines(path: Path) -> list[str]:
    states = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("thermal_state"):
            states.append(record["thermal_state"])
    return states


async def _launch(control, bundle_id: str, env: dict[str, str]) -> int:
    from pymobiledevice3.dtx.exceptions import DTXNsError
    from pymobiledevice3.exceptions import PyMobileDevice3Exception

    try:
        pid = await control.launch(bundle_id, environment=env, kill_existing=True)
    except (DTXNsError, PyMobileDevice3Exception, AssertionError) as exc:  # pymobiledevice3 asserts the pid is non-zero
        text = str(exc) or "no process id returned"
        raise dev.launch_refusal(bundle_id, text) from exc  # locked / untrusted developer / other
    if not pid:
        raise dev.LaunchFailed(f"the device would not launch {bundle_id}: no process id returned",
                               hint="open the app once by hand, then run again")
    return pid


def _launch_done(launch: Launch, last: bool) -> Callable[[bytes | None], bool]:
    """When a launch is over: the last one at the run's footer, the others at their launch_end record."""
    def done(raw: bytes | None) -> bool:
        return bool(raw) and (run_footer(raw) is not None if last else launch_ended(raw, launch.index))
    return done


async def _run_launch(control, client, bundle_id: str, env: dict[str, str], remote_log: str, launch: Launch, *,
                      last: bool, deadline: float, poll: float,
                      say: Callable[[str], None]) -> tuple[int, str, bytes | None]:
    """One launch of the run: start the app (terminating the running one), follow the transcript until
    this launch is done (its launch_end record, or the footer for the last launch), the process is
    gone, or the deadline passes. A non-final launch's process is then terminated, so the next
    launch starts cold. Returns (the pid launched, status, the transcript as read last)."""
    from pymobiledevice3.services.house_arrest import HouseArrestService

    done = _launch_done(launch, last)
    pid = await _launch(control, bundle_id, env)
    say(f"launched {bundle_id} (pid {pid}), launch {launch.index + 1} ({launch.kind}, "
        f"{launch.trials} trial{'s' if launch.trials != 1 else ''}"
        + (f", {launch.duration} s sustained" if launch.duration else "") + f"), run {env[contract.ENV['runId']]}")
    status, text, lines_seen = None, None, 0
    async with await HouseArrestService.create(client, bundle_id, documents_only=True) as afc:
        while status is None:
            await asyncio.sleep(poll)
            text = await _read_log(afc, remote_log)
            if done(text):
                status = COMPLETED
            elif text and run_failure(text):
                await control.kill(pid)  # the app stays on screen after saying why it failed
                status = FAILED
            elif not await control.process_identifier_for_bundle_identifier(bundle_id):
                text = await _read_log(afc, remote_log)  # the last record may have landed just before exit
                status = status_at_exit(text, done)
            elif time.monotonic() > deadline:
                await control.kill(pid)
                text = await _read_log(afc, remote_log)
                status = TIMEOUT
            elif text and text.count(b"\n") != lines_seen:
                lines_seen = text.count(b"\n")
                say(f"{lines_seen} log lines so far")
    if status == COMPLETED and not last:
        await control.kill(pid)  # the app stays on screen after its launch: end it before the next, cold one
    return pid, status, text


async def _bench(build_dir: Path, udid: str | None, trials: int, timeout: float, poll: float, mount_ddi: bool,
                 status_fn: Callable[[str], None] | None, report_wait: float, bundle_id: str | None,
                 ab_prefill: bool = False, cold: int = 0, duration: int = 0,
                 sample_interval: int | None = None, devicectl: Devicectl | None = None,
                 ab_kv: bool = False) -> BenchResult:
    from pymobiledevice3.services.dvt.instruments.dvt_provider import DvtProvider
    from pymobiledevice3.services.dvt.instruments.process_control import ProcessControl
    from pymobiledevice3.services.house_arrest import HouseArrestService

    dev.quiet_disconnects()
    say = status_fn or (lambda _msg: None)
    async with dev.open_device(udid, awake_seconds=timeout + AWAKE_MARGIN_SECONDS) as client:
        bundle_id = bundle_id or deployed_bundle_id(build_dir, client.udid)
        if not bundle_id:
            raise dev.NothingToDeploy(f"{build_dir} names no app to run",
                                      hint="run `gemmaios deploy` (with --ipa) first, or pass --bundle-id")
        if devicectl is not None:  # it must see this phone; CoreDevice mounts the DDI itself
            await asyncio.to_thread(devicectl.select, client.udid)
        pre = await dev.run_preflight(client, arch=dev.build_arch(build_dir), bench=devicectl is None, mount=mount_ddi)
        info = pre.info
        if not (await dev.installed_apps(client, [bundle_id])).get(bundle_id):
            raise dev.AppMissing(f"{bundle_id} is not installed on {info.udid}",
                                 hint=f"run `gemmaios deploy --out {build_dir}` first")
        async with await HouseArrestService.create(client, bundle_id, documents_only=True) as afc:
            manifest = await dev.read_device_manifest(afc)
        warnings = list(pre.warnings)
        notes = [note for note in [prompt_set_warning(build_dir)] if note]
        location = dev.bundle_location(build_dir)
        if manifest.get("bundle_location") not in (None, location):
            raise dev.NothingToDeploy(f"the app on {info.udid} reads its payload from {manifest['bundle_location']}, "
                                      f"{build_dir}'s from {location}: it was deployed from another build",
                                      hint=f"run `gemmaios deploy --out {build_dir}` first")
        # Only what the app reads from Documents can be stale (nothing when the app is bundled).
        expected = {f.rel: f.sha256 for f in dev.local_files(build_dir)}
        stale = sorted(rel for rel, sha in expected.items() if (manifest["files"].get(rel) or {}).get("sha256") != sha)
        if stale:
            raise dev.NothingToDeploy(f"the device holds a different payload than {build_dir} ({len(stale)} files differ, "
                                      f"e.g. {stale[0]})", hint=f"run `gemmaios deploy --out {build_dir}` first")
        record = dev.deployed_app(build_dir, info.udid) or {}
        executable = manifest["app"].get("executable") or (record.get("package") or {}).get("executable") or ""
        started = datetime.now(UTC)
        run_id = _run_id(started)
        run_dir = Path(build_dir) / BUILD_RUNS_DIR / f"{run_id}-{info.udid}"
        remote_log = f"{DEVICE_RUNS}/{run_id}{contract.TRANSCRIPT_SUFFIX}"
        plan = launch_plan(trials, cold=cold, duration=duration)
        environments: list[dict[str, str]] = []
        reports_before = await _crash_reports(client)

        battery = await battery_capacity(client)
        provider = None if devicectl is not None else (
            client if dev.developer_transport(info.ios_version) == "lockdown" else await dev.tunnel_provider(info.udid))
        status, text, pid = None, None, None
        deadline = time.monotonic() + timeout + sum(launch.duration for launch in plan)

        def environment(launch: Launch) -> dict[str, str]:
            env = launch_environment(run_id, trials, info.udid, ab_prefill=ab_prefill, launch=launch,
                                     launches=len(plan), sample_interval=sample_interval, ab_kv=ab_kv)
            environments.append(env)
            return env

        if devicectl is not None:  # launch, wait and pull with xcrun devicectl (macOS, or the phone on --mac)
            app = devicectl.app(info.udid)
            for launch in plan:
                last = launch is plan[-1]
                pid, status, text = await asyncio.to_thread(
                    wait_for_run, app, bundle_id, environment(launch), remote_log,
                    timeout=max(deadline - time.monotonic(), 0.0), poll=poll, say=say,
                    done=_launch_done(launch, last))
                if status != COMPLETED:
                    break
                if not last:
                    await asyncio.to_thread(app.kill, pid)  # the next launch starts cold
        else:
            try:
                async with DvtProvider(provider) as dvt, ProcessControl(dvt) as control:
                    for launch in plan:
                        pid, status, text = await _run_launch(control, client, bundle_id, environment(launch),
                                                              remote_log, launch, last=launch is plan[-1],
                                                              deadline=deadline, poll=poll, say=say)
                        if status != COMPLETED:
                            break
            finally:
                if provider is not client:
                    await provider.close()

        run_dir.mkdir(parents=True, exist_ok=True)
        transcript = None
        if text is not None:
            transcript = run_dir / f"{run_id}{contract.TRANSCRIPT_SUFFIX}"
            transcript.write_bytes(text)
        reports: list[Path] = []
        if status == EXITED:
            reports, kind = await _pull_new_reports(client, reports_before, executable, run_dir / "crash-reports",
                                                    report_wait, pid)
            status = kind or EXITED

    footer = run_footer(text) if text else None
    failure = run_failure(text) if text and status == FAILED else None
    verdict, thermal, prompts = validate(transcript) if transcript else ("no log was written", [], 0)
    warnings += settled_warnings(info, footer, thermal)
    skipped = left_out_prompts(build_dir, transcript, ab_kv=ab_kv) if transcript and footer else []
    if skipped:
        notes.append(f"left out (past the bundle's context): {', '.join(skipped)}")
    result = BenchResult(status, run_id, run_dir, info.udid, transcript, reports, warnings, verdict, max(prompts, 0),
                         notes, failure)
    write_json_atomic(run_dir / "run.json", {**result.as_dict(), "bundle_id": bundle_id, "trials": trials,
                                             "skipped_prompts": skipped,
                                             "device": info.as_dict(), "started_at": started.isoformat(timespec="seconds"),
                                             "environment": environments[-1] if environments else {},
                                             "launches": [{**asdict(launch), "environment": env}
                                                          for launch, env in zip(plan, environments, strict=False)],
                                             "battery": battery})
    return result


def bench(build_dir: Path, udid: str | None = None, *, trials: int = 3, timeout: float = 1800.0, poll: float = 2.0,
          mount_ddi: bool = False, status_fn: Callable[[str], None] | None = None,
          report_wait: float = 15.0, bundle_id: str | None = None, ab_prefill: bool = False,
          cold: int = 0, duration: int = 0, sample_interval: int | None = None,
          mac: str | None = None, ssh_options: Sequence[str] = (), ab_kv: bool = False) -> BenchResult:
    """Launch the bench, wait for it, pull its log into runs/. Raises BenchFailed when it did not finish.

    `ab_prefill`: one run alternates the bundle's prefill function on and off trial by trial
    (`gemmaios report` then prints both medians and their ratio); needs at least 2 trials.
    `ab_kv`: one run alternates the KV cache's start, 256 (upstream) and 384 (doubling from it never binds
    2048 or 4096: the candidate workaround for apple/coreai-models#124), trial by trial; the report splits
    oracle agreement by setting.
    `cold`: that many cold launches (one trial each, its own process) before the warm trials.
    `duration`: seconds of sustained decode after the trials, sampled every `sample_interval` s.
    `timeout` bounds the whole run on top of the sustained phase."""
    build_dir = Path(build_dir)
    if cold < 0 or duration < 0 or (sample_interval is not None and sample_interval < 1):
        raise BenchSettingsError(f"--cold {cold}, --duration {duration}, --sample-interval {sample_interval}: "
                                 "counts must not be negative and the interval at least 1 s",
                                 hint="e.g. --cold 3 --duration 600 --sample-interval 10")
    if duration and sample_interval and sample_interval > duration:
        raise BenchSettingsError(f"--sample-interval {sample_interval} is longer than --duration {duration}: "
                                 "no full sample would be taken", hint="use an interval well below the duration")
    launch_plan(trials, cold=cold, duration=duration)  # refuses an empty run before touching the phone
    if ab_kv and trials < 2:
        raise BenchSettingsError(f"--ab-kv alternates the KV growth per trial, and {trials} trial runs only one "
                                 "setting", hint="pass --trials 2 or more (one per setting at least)")
    if ab_prefill and trials < 2:
        raise BenchSettingsError(f"--ab-prefill alternates the prefill setting per trial, and {trials} trial "
                                 "runs only one setting", hint="pass --trials 4 or more (2 per setting at least)")
    devicectl = devicectl_for(mac, ssh_options)  # on macOS / with --mac: launch, wait, pull through devicectl
    try:
        result = asyncio.run(_bench(build_dir, udid, trials, timeout, poll, mount_ddi, status_fn, report_wait,
                                    bundle_id, ab_prefill, cold, duration, sample_interval, devicectl,
                                    ab_kv=ab_kv))
    except (dev.NoDevice, dev.DeviceNotFound, dev.UsbmuxdUnavailable) as exc:
        better = None if devicectl is None else phone_only_on_the_mac(devicectl, udid, exc)
        if better is None or better is exc:
            raise
        raise better from exc
    except dev.disconnect_types() as exc:
        raise dev.DeviceDisconnected(f"the connection to the device dropped during the bench ({type(exc).__name__})",
                                     hint="reconnect and unlock the iPhone, then run `gemmaios bench` again") from exc
    finally:
        if devicectl is not None:
            devicectl.close()
    if result.status == FAILED:
        raise app_failure(result, build_dir)
    if result.status != COMPLETED:
        what = {CRASHED: "the app crashed", JETSAM: "iOS killed the app for memory (jetsam)",
                EXITED: "the app exited without finishing its log", TIMEOUT: f"no footer after {timeout:.0f}s"}
        hint = {JETSAM: "the model does not fit the memory limit: use a smaller context or quantization; "
                        "crash reports are in the run folder",
                TIMEOUT: "raise --timeout, or check the app on the phone"}.get(
            result.status, "see the crash report in the run folder; the partial log was pulled too")
        err = BenchFailed(f"{what[result.status]} (run {result.run_id}; log and reports in {result.run_dir})", hint=hint)
        err.result = result
        raise err
    return result


def app_failure(result: BenchResult, build_dir: Path) -> AppBenchFailed:
    """The named error for a bench the app said it failed: its reason and the prompt it was on, and the fix."""
    record = result.failure or {}
    prompt, trial = record.get("prompt_id"), record.get("trial")
    where = (f" at prompt {prompt}" + (f" (trial {trial + 1})" if isinstance(trial, int) else "")) if prompt else ""
    err = AppBenchFailed(
        f"the app's bench failed{where}: {record.get('reason') or 'no reason given'} (run {result.run_id}; "
        f"the partial log is in {result.run_dir})",
        hint=f"a payload file missing or damaged on the phone is pushed again by `gemmaios deploy --out {build_dir}`; "
             "else fix what the app names in the build and deploy it; then run `gemmaios bench` again")
    err.result = result
    return err
