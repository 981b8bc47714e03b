"""`gemmaios farm run|status|fetch`: the XCTest bench on AWS Device Farm (optional extra: boto3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .buildlayout import SIGNED_PRODUCTS
from .errors import GemmaiosError

BuildOpt = Annotated[Path, typer.Option("--build", "-b", help="build folder (its .ipa, test package and farm records)")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="AWS profile (default: AWS_PROFILE / the environment)")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region (Device Farm: us-west-2)")]
RunNameOpt = Annotated[str | None, typer.Option("--run", help="recorded run name (default: the last one)")]


def _jobs_line(run: dict, jobs: list[dict]) -> str:
    parts = [f"{(j.get('device') or {}).get('name', j.get('name'))}: {j.get('status')}"
             + (f"/{j.get('result')}" if j.get("result") not in (None, "PENDING") else "") for j in jobs]
    return f"{run.get('status')} ({run.get('completedJobs', 0)}/{run.get('totalJobs', len(jobs))} done) · " + " · ".join(parts)


class _Follow:
    """The progress display while a run is followed: a bar of jobs done (rich), and one line each
    time a device's state changes."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.task = None
        self.last = ""

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, run: dict, jobs: list[dict]) -> None:
        total = run.get("totalJobs") or len(jobs) or 1
        if self.task is None:
            self.task = self.progress.add_task("Device Farm", total=total)
        self.progress.update(self.task, total=total, completed=run.get("completedJobs", 0),
                             description=f"Device Farm: {run.get('status', '?')}")
        line = _jobs_line(run, jobs)
        if line != self.last:
            self.console.print(escape(line))
            self.last = line


def register(app: typer.Typer, console: Console, fail) -> None:
    farm_app = typer.Typer(no_args_is_help=True, help="Benchmark on AWS Device Farm (needs the `farm` extra: boto3).")
    app.add_typer(farm_app, name="farm")

    def say(text: str) -> None:
        console.print(escape(text))

    def finish(farm, build: Path, record, run: dict, jobs: list[dict]) -> None:
        from .farm import flow

        folders = flow.fetch(farm, build, record, say=say)
        out = flow.write_farm_report(build, record, folders)
        if out:
            console.print(f"[green]report[/green] {escape(str(out / 'report.md'))} ({len(folders)} device(s))")
        flow.check_result(run, jobs, record)

    @farm_app.command("run")
    def run_cmd(
        build: BuildOpt,
        pool: Annotated[str | None, typer.Option("--pool", help="device pool name or ARN (private pools allowed)")] = None,
        device: Annotated[list[str] | None, typer.Option("--device", help="device name or ARN (repeatable; private device ARNs allowed)")] = None,
        trials: Annotated[int, typer.Option("--trials", help="bench trials per device")] = 3,
        job_timeout: Annotated[int, typer.Option("--job-timeout", help="minutes before Device Farm stops a job (≤150; bounds the cost)")] = 60,
        ipa: Annotated[Path | None, typer.Option("--ipa", help="signed .ipa (default: the build's)")] = None,
        test_package: Annotated[Path | None, typer.Option("--test-package", help="zipped test products (default: <build>/xctest/)")] = None,
        payload: Annotated[Path | None, typer.Option("--payload", help="zip Device Farm extracts into the app's sandbox (documents builds)")] = None,
        project: Annotated[str, typer.Option("--project", help="Device Farm project name (created if missing) or ARN")] = "gemmaios",
        ios_test_host: Annotated[str | None, typer.Option("--ios-test-host", help="the test spec's ios_test_host")] = None,
        poll: Annotated[float, typer.Option("--poll", help="seconds between status polls")] = 30.0,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before spending device minutes")] = False,
        profile: ProfileOpt = None,
        region: RegionOpt = None,
    ) -> None:
        """Upload the .ipa, test package, payload and test spec; schedule; follow; fetch; report."""
        from . import contract, xctest
        from . import device as dev
        from .farm import flow
        from .farm.service import DeviceFarm

        try:
            if ipa is not None and (not ipa.is_file() or ipa.suffix != ".ipa"):
                raise flow.FarmError(f"--ipa {ipa} is not an .ipa file", hint=f"gemmaios sign --build {build}, then "
                                     "drop --ipa (the build's is used) or pass the signed .ipa")
            ipa_path = ipa or dev.find_app_package(build)
            if ipa_path is None or Path(ipa_path).suffix != ".ipa":
                raise flow.FarmError(f"{build} has no signed .ipa", hint=f"gemmaios sign --build {build} (or pass --ipa)")
            inputs = flow.FarmInputs(ipa=Path(ipa_path), test_package=test_package or build / xctest.TEST_PACKAGE_REL,
                                     bundle_id=dev.read_app_package(Path(ipa_path)).bundle_id, payload=payload)
            products = build / SIGNED_PRODUCTS
            if test_package is None and not inputs.test_package.is_file() and products.is_dir():
                from .xctest import package_test_products  # products copied back from a Mac by hand

                package_test_products(build, products)
            if not inputs.test_package.is_file():
                raise flow.FarmError(f"no test package at {inputs.test_package}",
                                     hint=f"gemmaios sign --build {build} --xctest (build-for-testing), or pass --test-package")
            if payload is None and dev.bundle_location(build) == contract.PUSHED_TO_DOCUMENTS:
                raise flow.FarmError(f"{build} is a `documents` build: its app carries no model, and Device Farm "
                                     "delivers one only as extra data",
                                     hint="pass --payload <zip of the payload> (extracted into the app's sandbox), "
                                          "or render the app with --bundle-location bundled and re-sign")
            estimate = flow.CostEstimate(len(device) if device else None, job_timeout)
            console.print(f"[yellow]cost:[/yellow] {escape(estimate.describe())}")
            if not yes and not typer.confirm("schedule the run?", default=False, err=True):
                raise typer.Exit(1)
            farm = DeviceFarm(profile, region)
            record = flow.submit(farm, build, inputs, pool=pool, devices=device, trials=trials,
                                 job_timeout_minutes=job_timeout, project=project, ios_test_host=ios_test_host, say=say)
            console.print(f"scheduled [bold]{escape(record.name)}[/bold] ({escape(record.run_arn)})")
            jobs_seen: list[dict] = []
            with _Follow(console) as show:
                def update(run: dict, jobs: list[dict]) -> None:
                    jobs_seen[:] = jobs
                    show(run, jobs)

                final = flow.follow(farm, build, record, poll=poll, on_update=update)
            finish(farm, build, record, final, jobs_seen)
        except GemmaiosError as exc:
            fail(exc)

    @farm_app.command("status")
    def status_cmd(build: BuildOpt, run: RunNameOpt = None, profile: ProfileOpt = None, region: RegionOpt = None) -> None:
        """Where a recorded run stands now (per device)."""
        from .farm import flow
        from .farm.service import DeviceFarm

        try:
            record = flow.load_record(build, run)
            farm = DeviceFarm(profile, region or record.region)
            state, jobs = flow.status(farm, build, record)
            console.print(f"{escape(record.name)}: {escape(_jobs_line(state, jobs))} result {state.get('result')}")
            if state.get("status") == flow.DONE:
                console.print(f"done: `gemmaios farm fetch --build {escape(str(build))}` brings the results home")
        except GemmaiosError as exc:
            fail(exc)

    @farm_app.command("fetch")
    def fetch_cmd(
        build: BuildOpt, run: RunNameOpt = None,
        follow: Annotated[bool, typer.Option("--follow/--no-follow", help="wait for the run to complete first")] = True,
        poll: Annotated[float, typer.Option("--poll", help="seconds between status polls")] = 30.0,
        profile: ProfileOpt = None, region: RegionOpt = None,
    ) -> None:
        """Download a recorded run's artifacts (following it to the end first) and write its report."""
        from .farm import flow
        from .farm.service import DeviceFarm

        try:
            record = flow.load_record(build, run)
            farm = DeviceFarm(profile, region or record.region)
            state, jobs = flow.status(farm, build, record)
            if state.get("status") != flow.DONE:
                if not follow:
                    raise flow.FarmError(f"{record.name} is {state.get('status')}, not complete",
                                         hint=f"gemmaios farm fetch --build {build} --follow")
                with _Follow(console) as show:
                    state = flow.follow(farm, build, record, poll=poll, on_update=show)
                jobs = farm.pages("ListJobs", "jobs", arn=record.run_arn)
            finish(farm, build, record, state, jobs)
        except GemmaiosError as exc:
            fail(exc)
