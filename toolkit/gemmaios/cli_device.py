"""`gemmaios devices`, `deploy` and `bench`: the iPhone side of the CLI (gemmaios.device, gemmaios.devicebench)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .buildlayout import MANIFEST_NAME
from .cli_console import interrupted
from .cli_options import (
    AbKvOpt,
    AbOpt,
    AbPrefillOpt,
    AllowTblOpt,
    AllowUncompiledOpt,
    ArchOpt,
    AudioOpt,
    BenchTimeoutOpt,
    BuildDirOpt,
    BundleLocationOpt,
    CalibrationOpt,
    ColdOpt,
    ConfigOpt,
    DeviceMacOpt,
    DurationOpt,
    HeadQuantOpt,
    JsonOpt,
    KernelOpt,
    MacOpt,
    MaxContextOpt,
    ModelOpt,
    MountDdiOpt,
    PleOpt,
    PrefillChunkOpt,
    QuantOpt,
    RecipeOpt,
    SampleIntervalOpt,
    TargetOpt,
    TeamIdOpt,
    UdidOpt,
    VisionOpt,
)
from .errors import GemmaiosError


def _ssh_options() -> list[str]:
    from .config import load_config

    return list(load_config().ssh_options or [])


def _build_dir(out: Path | None) -> Path:
    """An existing build folder: --out, or the only one under ./build (buildfolder.the_only_build)."""
    from .buildfolder import is_build_folder, the_only_build
    from .pipeline import Manifest

    if out is not None:
        if out.is_file():
            raise typer.BadParameter(f"{out} is a file, not a build folder (one with build.json)", param_hint="--out")
        if not is_build_folder(out):
            raise typer.BadParameter(f"{out} has no build.json; run `gemmaios build --out {out}` first", param_hint="--out")
        Manifest(out)  # a damaged build.json is named here, not misread later as an empty build
        return out
    found = the_only_build()
    Manifest(found)
    return found


def _check_ab(ab: Path | None, ab_kv: bool, ab_prefill: bool, build_dir: Path | None, *, bench: bool = True,
              bundle_id: str | None = None, deploying: bool = False) -> None:
    """`--ab`'s option mistakes, before any build or device work: one A/B at a time, each build its own app."""
    if ab is None:
        return
    if not bench:
        raise typer.BadParameter("--ab compares two builds' benches; add --bench", param_hint="--ab")
    if ab_kv or ab_prefill:
        raise typer.BadParameter(f"--ab compares two builds; {'--ab-kv' if ab_kv else '--ab-prefill'} alternates a "
                                 "setting within one: run one A/B at a time", param_hint="--ab")
    if bundle_id is not None:
        raise typer.BadParameter("--ab runs each build's deployed app; --bundle-id names one app", param_hint="--ab")
    from .abbench import check_folders, check_other, recorded_checkpoint

    if build_dir is not None and (Path(build_dir) / MANIFEST_NAME).is_file() and (
            not deploying or recorded_checkpoint(Path(build_dir))[0]):
        check_folders(Path(build_dir), ab)
    else:  # deploy making its build: the pair is checked once the build is done, before the bench
        check_other(ab)


def register(app: typer.Typer, console: Console, fail, build_options) -> None:
    """Add the commands to the CLI's app; `fail` prints a named error and exits 2, `build_options` resolves
    a build folder and its options (cli._build_options)."""
    @app.command()
    def devices(as_json: JsonOpt = False) -> None:
        """Attached iPhones: UDID, name, model, iOS, architecture class, Developer Mode, free space, battery."""
        from .device import list_devices
        from .device.devicectl import devicectl_for

        try:
            ctl = devicectl_for()  # on macOS (or GEMMAIOS_DEVICE_TRANSPORT=devicectl): CoreDevice's view
            try:
                found = ctl.devices() if ctl else list_devices()
            finally:
                if ctl:
                    ctl.close()
        except GemmaiosError as exc:
            fail(exc)
        if as_json:
            print(json.dumps([d.as_dict() for d in found], indent=2))
            return
        if not found:
            console.print("no devices attached: connect an iPhone by USB, unlock it and tap Trust")
            return
        table = Table(title="devices")
        for col in ("udid", "name", "model", "iOS", "arch", "dev mode", "free", "battery", "note"):
            table.add_column(col, overflow="fold")
        for d in found:
            free = f"{d.free_bytes / (1 << 30):.1f} GiB" if d.free_bytes is not None else "?"
            battery = f"{d.battery_level}%{' ⚡' if d.charging else ''}" if d.battery_level is not None else "?"
            mode = {True: "on", False: "off", None: "?"}[d.developer_mode]
            table.add_row(d.udid, d.name or "?", d.product_type or "?", d.ios_version or "?", d.arch or "?", mode, free,
                          battery, d.problem or "")
        Console().print(table)

    @app.command()
    def deploy(
        udid: UdidOpt = None,
        ipa: Annotated[Path | None, typer.Option("--ipa", exists=True, help="signed .ipa (or .app) to install; "
                                                 "skips signing")] = None,
        out: BuildDirOpt = None,
        model: ModelOpt = None,
        arch: ArchOpt = None,
        quant: QuantOpt = None,
        ple: PleOpt = None,
        max_context: MaxContextOpt = None,
        target: TargetOpt = None,
        kernel: KernelOpt = None,
        head_quant: HeadQuantOpt = None,
        prefill_chunk: PrefillChunkOpt = None,
        vision: VisionOpt = None,
        recipe: RecipeOpt = None,
        calibration: CalibrationOpt = None,
        audio: AudioOpt = None,
        mac: MacOpt = None,
        config: ConfigOpt = None,
        team_id: TeamIdOpt = None,
        bundle_location: BundleLocationOpt = None,
        verify: Annotated[bool, typer.Option("--verify/--no-verify", help="read pushed files back and check sha256")] = True,
        allow_uncompiled: AllowUncompiledOpt = None,
        allow_tbl: AllowTblOpt = None,
        run_bench: Annotated[bool, typer.Option("--bench", help="then run the bench and write the report")] = False,
        trials: Annotated[int, typer.Option("--trials", min=1, rich_help_panel="Bench options",
                                            help="with --bench: passes over the prompt set")] = 3,
        timeout: BenchTimeoutOpt = 1800.0,
        mount_ddi: MountDdiOpt = False,
        ab_prefill: AbPrefillOpt = False,
        ab_kv: AbKvOpt = False,
        ab: AbOpt = None,
        cold: ColdOpt = 0,
        duration: DurationOpt = 0,
        sample_interval: SampleIntervalOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The whole job: build the missing steps (checkpoint … compile, app), sign the app (xcodebuild, here on a
        Mac or over SSH with --mac), install it and push the payload it reads; with --bench, bench and report.

        With --model (or any build option) the build folder is made or checked like `gemmaios build`'s."""
        from .device import rich_progress
        from .devicebench import BenchFailed
        from .fulldeploy import DeployRequest, deploy_all

        try:
            if ipa is not None and team_id:
                raise typer.BadParameter("--ipa installs an app signed elsewhere; drop --team-id (or --ipa to sign "
                                         "here)", param_hint="--team-id")
            from .app import BUNDLE_LOCATIONS, validate_choice, validate_team_id

            validate_team_id(team_id)  # option mistakes first, before any build
            _check_ab(ab, ab_kv, ab_prefill, None, bench=run_bench)
            if bundle_location is not None:
                validate_choice("bundle location", bundle_location, BUNDLE_LOCATIONS)
            build_given = {"model": model, "arch": arch, "quant": quant, "ple": ple, "max_context": max_context,
                           "target": target, "kernel": kernel, "head_quant": head_quant,
                           "prefill_chunk": prefill_chunk, "vision": vision, "recipe": recipe,
                           "calibration": calibration, "audio": audio}
            options = None
            if any(v is not None for v in build_given.values()):
                build_dir, options = build_options(out, mac=mac, config=config, **build_given)
            else:
                build_dir = _build_dir(out)
            _check_ab(ab, ab_kv, ab_prefill, build_dir, bench=run_bench, deploying=True)  # the pair, before any work on the phone
            from .config import load_config

            user = load_config(config)
            request = DeployRequest(build_dir, options, udid=udid, ipa=ipa, team_id=team_id, mac=mac or user.mac,
                                    bundle_location=bundle_location, config=config,
                                    config_extra={"ssh_options": user.ssh_options, "mac_workdir": user.mac_workdir},
                                    verify=verify, allow_uncompiled=bool(allow_uncompiled), allow_tbl=bool(allow_tbl),
                                    bench=run_bench, trials=trials, timeout=timeout, mount_ddi=mount_ddi,
                                    ab_prefill=ab_prefill, ab_kv=ab_kv, cold=cold, duration=duration,
                                    sample_interval=sample_interval, ab=ab)
            progress, close = rich_progress(console)
            try:
                result = deploy_all(request, say=lambda line: console.print(escape(line)), console=console,
                                    progress=progress)
            finally:
                close()
        except KeyboardInterrupt:  # finished steps, installed app and pushed files are kept
            interrupted(console, "finished build steps and pushed files are kept; run the same `gemmaios deploy` "
                                 "again to resume (pushes resume, an unfinished bench starts over)")
        except BenchFailed as exc:
            console.print(f"[red]bench failed:[/red] {exc}")
            raise typer.Exit(1) from None
        except GemmaiosError as exc:
            fail(exc)
        if as_json:
            print(json.dumps({"build_dir": str(result.build_dir), "ipa": str(result.ipa) if result.ipa else None,
                              "bundle_id": result.deploy.bundle_id, "udid": result.deploy.udid,
                              "bench_run": str(result.bench.run_dir) if result.bench else None,
                              "report": {k: str(v) for k, v in result.report_files.items()},
                              "passed": result.report.passed if result.report is not None else None,
                              "ab": result.ab.as_dict() if result.ab is not None else None}, indent=2))
        if result.ab is not None:
            from .cli_run import ab_table

            console.print(ab_table(result.ab))
        if result.report is not None and not result.report.passed:
            raise typer.Exit(1)

    def _ab_bench(build_dir: Path, other: Path, run_bench, *, udid, trials, mac, as_json, **options) -> None:
        from .abbench import device_ab
        from .cli_run import ab_table

        report, results = device_ab(build_dir, other, run_bench, udid=udid, trials=trials,
                                    say=lambda msg: console.print(f"  {escape(msg)}"),
                                    status_fn=lambda msg: console.print(f"  {escape(msg)}"), mac=mac,
                                    ssh_options=_ssh_options() if mac else (), **options)
        if as_json:
            print(json.dumps(report.as_dict(), indent=2))
        for side in ("a", "b"):
            for result in results[side]:
                for warning in result.warnings:
                    console.print(f"[yellow]warning:[/yellow] {side.upper()} {escape(warning)}")
        console.print(ab_table(report))
        for note in report.notes:
            console.print(f"note: {escape(note)}")
        console.print(f"wrote {escape(str(results['a'][0].run_dir))}/ab.md")

    @app.command()
    def bench(
        udid: UdidOpt = None,
        trials: Annotated[int, typer.Option("--trials", min=0, rich_help_panel="Bench options",
                                            help="warm passes over the prompt set in one launch "
                                                 "(trial 0 is the warm-up; 0: cold launches only)")] = 3,
        timeout: BenchTimeoutOpt = 1800.0,
        out: BuildDirOpt = None,
        mount_ddi: MountDdiOpt = False,
        bundle_id: Annotated[str | None, typer.Option(
            "--bundle-id", help="the installed app to run (default: what `gemmaios deploy` recorded)")] = None,
        ab_prefill: AbPrefillOpt = False,
        ab_kv: AbKvOpt = False,
        ab: AbOpt = None,
        cold: ColdOpt = 0,
        duration: DurationOpt = 0,
        sample_interval: SampleIntervalOpt = None,
        mac: DeviceMacOpt = None,
        as_json: JsonOpt = False,
        xctest: Annotated[bool, typer.Option(
            "--xctest", help="run the bench as the app's XCTest: xcodebuild test-without-building on the Mac runner")] = False,
        destination: Annotated[list[str] | None, typer.Option(
            "--destination", help="with --xctest: id=<udid> of a phone on the Mac (repeatable: all at once)")] = None,
    ) -> None:
        """Run the app's bench mode on the device and pull its log into <build>/runs/<timestamp>-<udid>/."""
        from .devicebench import BenchFailed
        from .devicebench import bench as run_bench

        if xctest and ab is not None:
            fail(GemmaiosError("--ab benches each build's deployed app in turn; --xctest runs one build's test bundle",
                               hint="drop --xctest (or --ab)"))
        if xctest:  # gemmaios.xctestbench: one report over every destination
            from .cli_xctest import bench_xctest_command

            return bench_xctest_command(console, fail, _build_dir(out), destination or [], trials, mac, timeout)
        try:
            build_dir = _build_dir(out)
            _check_ab(ab, ab_kv, ab_prefill, build_dir, bundle_id=bundle_id)
            if ab is not None:
                return _ab_bench(build_dir, ab, run_bench, udid=udid, trials=trials, timeout=timeout,
                                 mount_ddi=mount_ddi, cold=cold, duration=duration, sample_interval=sample_interval,
                                 mac=mac, as_json=as_json)
            result = run_bench(build_dir, udid, trials=trials, timeout=timeout, mount_ddi=mount_ddi, bundle_id=bundle_id,
                               ab_prefill=ab_prefill, cold=cold, duration=duration, sample_interval=sample_interval,
                               status_fn=lambda msg: console.print(f"  {msg}"), mac=mac,
                               ssh_options=_ssh_options() if mac else (), ab_kv=ab_kv)
        except KeyboardInterrupt:
            interrupted(console, "nothing of this run was pulled into runs/; run the same `gemmaios bench` again")
        except BenchFailed as exc:
            for warning in exc.result.warnings:
                console.print(f"[yellow]warning:[/yellow] {warning}")
            console.print(f"[red]bench failed:[/red] {exc}")
            raise typer.Exit(1) from None
        except GemmaiosError as exc:
            fail(exc)
        if as_json:
            print(json.dumps({"run_id": result.run_id, "run_dir": str(result.run_dir),
                              "transcript": str(result.transcript), "prompts": result.prompts,
                              "validation": result.validation, "warnings": list(result.warnings),
                              "notes": list(result.notes)}, indent=2))
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        for note in result.notes:
            console.print(f"note: {note}")
        if result.validation != "ok" and not (result.validation or "").startswith("not validated"):
            console.print(f"[red]the log of run {result.run_id} is not valid:[/red] {result.validation}\n  → {result.transcript}")
            raise typer.Exit(1)
        console.print(f"[green]✓[/green] run {result.run_id}: {result.prompts} prompt records, log in {result.transcript} "
                      f"(validation: {result.validation})")
