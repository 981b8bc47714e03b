"""`gemmaios devices`, `deploy` and `bench`: the iPhone side of the CLI (gemmaios.device, gemmaios.bench)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import GemmaiosError

UdidOpt = Annotated[str | None, typer.Option("--udid", help="device UDID (needed when several are attached)")]
BuildDirOpt = Annotated[Path | None, typer.Option("--out", "-o", help="build folder (default: the only one under ./build)")]
DeviceMacOpt = Annotated[str | None, typer.Option(
    "--mac", help="user@host of the Mac the iPhone is attached to: install, launch and copy back with its "
                  "`xcrun devicectl` (ssh_options from gemmaios.yaml)")]


def _ssh_options() -> list[str]:
    from .config import load_config

    return list(load_config().ssh_options or [])

def _build_dir(out: Path | None) -> Path:
    from .pipeline import Manifest

    if out is not None:
        if out.is_file():
            raise typer.BadParameter(f"{out} is a file, not a build folder (one with build.json)", param_hint="--out")
        if not (out / "build.json").is_file():
            raise typer.BadParameter(f"{out} has no build.json; run `gemmaios build --out {out}` first", param_hint="--out")
        Manifest(out)  # a damaged build.json is named here, not misread later as an empty build
        return out
    found = sorted(p.parent for p in Path("build").glob("*/build.json"))
    if len(found) != 1:
        listed = ", ".join(str(p) for p in found) or "none"
        raise typer.BadParameter(f"choose the build folder (found: {listed})", param_hint="--out")
    Manifest(found[0])
    return found[0]


def register(app: typer.Typer, console: Console, fail) -> None:
    """Add the commands to the CLI's app; `fail` prints a named error and exits 2."""
    @app.command()
    def devices(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
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
        model: Annotated[str | None, typer.Option("--model", "-m", help="build this checkpoint first (HF id, folder "
                                                  "or `tiny`); default: the build folder's own")] = None,
        arch: Annotated[str, typer.Option("--arch", help="AOT architecture, with --model")] = "h18p",
        quant: Annotated[str, typer.Option("--quant", help="int4 | int8 | fp16, with --model")] = "int4",
        ple: Annotated[str, typer.Option("--ple", help="provider | tbl, with --model")] = "provider",
        mac: Annotated[str | None, typer.Option("--mac", help="user@host of a Mac with Xcode 27 (compile, sign)")] = None,
        config: Annotated[Path | None, typer.Option("--config", help="YAML config (default: ./gemmaios.yaml)")] = None,
        team_id: Annotated[str | None, typer.Option("--team-id", help="Apple Developer Team ID to sign with "
                                                    "(default: team_id in gemmaios.yaml)")] = None,
        bundle_location: Annotated[str | None, typer.Option(
            "--bundle-location", help="with a new build: bundled (the .app carries the model) | documents (pushed)")] = None,
        verify: Annotated[bool, typer.Option("--verify/--no-verify", help="read pushed files back and check sha256")] = True,
        allow_uncompiled: Annotated[bool, typer.Option(
            "--allow-uncompiled", help="iOS: deploy a bundle that is not AOT-compiled for the build's --arch")] = False,
        allow_tbl: Annotated[bool, typer.Option(
            "--allow-tbl", help="iOS: deploy a --ple tbl bundle past the entitled-memory arithmetic")] = False,
        run_bench: Annotated[bool, typer.Option("--bench", help="then run the bench and write the report")] = False,
        trials: Annotated[int, typer.Option("--trials", min=1, help="with --bench: passes over the prompt set")] = 3,
        timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="with --bench: seconds to wait")] = 1800.0,
        mount_ddi: Annotated[bool, typer.Option("--mount-ddi", help="with --bench: mount the developer disk image")] = False,
    ) -> None:
        """The whole job: build the missing steps (checkpoint … compile, app), sign the app (xcodebuild, here on a
        Mac or over SSH with --mac), install it and push the payload it reads; with --bench, bench and report."""
        from .bench import BenchFailed
        from .device import rich_progress
        from .fulldeploy import DeployRequest, deploy_all

        try:
            if ipa is not None and team_id:
                raise typer.BadParameter("--ipa installs an app signed elsewhere; drop --team-id (or --ipa to sign "
                                         "here)", param_hint="--team-id")
            from .app import BUNDLE_LOCATIONS, validate_choice, validate_team_id

            validate_team_id(team_id)  # option mistakes first, before any build
            if bundle_location is not None:
                validate_choice("bundle location", bundle_location, BUNDLE_LOCATIONS)
            options = None
            if model is not None:
                from .cli import _options

                options = _options(model, arch, quant, ple, mac, config)
                build_dir = out
            else:
                build_dir = _build_dir(out)
            from .config import load_config

            user = load_config(config)
            request = DeployRequest(build_dir, options, udid=udid, ipa=ipa, team_id=team_id, mac=mac or user.mac,
                                    bundle_location=bundle_location, config=config,
                                    config_extra={"ssh_options": user.ssh_options, "mac_workdir": user.mac_workdir},
                                    verify=verify, allow_uncompiled=allow_uncompiled, allow_tbl=allow_tbl,
                                    bench=run_bench, trials=trials, timeout=timeout, mount_ddi=mount_ddi)
            progress, close = rich_progress(console)
            try:
                result = deploy_all(request, say=lambda line: console.print(escape(line)), console=console,
                                    progress=progress)
            finally:
                close()
        except BenchFailed as exc:
            console.print(f"[red]bench failed:[/red] {exc}")
            raise typer.Exit(1) from None
        except GemmaiosError as exc:
            fail(exc)
        if result.report is not None and not result.report.passed:
            raise typer.Exit(1)

    @app.command()
    def bench(
        udid: UdidOpt = None,
        trials: Annotated[int, typer.Option("--trials", min=0, help="warm passes over the prompt set in one launch "
                                                                    "(trial 0 is the warm-up; 0: cold launches only)")] = 3,
        timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="seconds to wait for the run to finish "
                                                                          "(on top of --duration)")] = 1800.0,
        out: BuildDirOpt = None,
        mount_ddi: Annotated[bool, typer.Option("--mount-ddi", help="mount the developer disk image if it is missing")] = False,
        bundle_id: Annotated[str | None, typer.Option(
            "--bundle-id", help="the installed app to run (default: what `gemmaios deploy` recorded)")] = None,
        ab_prefill: Annotated[bool, typer.Option(
            "--ab-prefill", help="alternate the bundle's prefill function on (even trials) and off (odd trials) in one "
                                 "run; `gemmaios report` prints both medians and their ratio")] = False,
        cold: Annotated[int, typer.Option(
            "--cold", min=0, help="cold launches before the warm trials: each its own app launch running one trial, "
                                  "time to first token counted from process start (model load included)")] = 0,
        duration: Annotated[int, typer.Option(
            "--duration", min=0, help="sustained mode: seconds of continuous decode after the trials (e.g. 600), "
                                      "tok/s sampled over time")] = 0,
        sample_interval: Annotated[int | None, typer.Option(
            "--sample-interval", min=1, help="sustained mode: seconds between tok/s samples (default 10)")] = None,
        mac: DeviceMacOpt = None,
        xctest: Annotated[bool, typer.Option(
            "--xctest", help="run the bench as the app's XCTest: xcodebuild test-without-building on the Mac runner")] = False,
        destination: Annotated[list[str] | None, typer.Option(
            "--destination", help="with --xctest: id=<udid> of a phone on the Mac (repeatable: all at once)")] = None,
    ) -> None:
        """Run the app's bench mode on the device and pull its log into <build>/runs/<timestamp>-<udid>/."""
        from .bench import BenchFailed
        from .bench import bench as run_bench

        if xctest:  # gemmaios.xctestbench: one report over every destination
            from .cli_xctest import bench_xctest_command

            return bench_xctest_command(console, fail, _build_dir(out), destination or [], trials, mac, timeout)
        try:
            build_dir = _build_dir(out)
            result = run_bench(build_dir, udid, trials=trials, timeout=timeout, mount_ddi=mount_ddi, bundle_id=bundle_id,
                               ab_prefill=ab_prefill, cold=cold, duration=duration, sample_interval=sample_interval,
                               status_fn=lambda msg: console.print(f"  {msg}"), mac=mac,
                               ssh_options=_ssh_options() if mac else ())
        except BenchFailed as exc:
            for warning in exc.result.warnings:
                console.print(f"[yellow]warning:[/yellow] {warning}")
            console.print(f"[red]bench failed:[/red] {exc}")
            raise typer.Exit(1) from None
        except GemmaiosError as exc:
            fail(exc)
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        for note in result.notes:
            console.print(f"note: {note}")
        if result.validation != "ok" and not (result.validation or "").startswith("not validated"):
            console.print(f"[red]the log of run {result.run_id} is not valid:[/red] {result.validation}\n  → {result.transcript}")
            raise typer.Exit(1)
        console.print(f"[green]✓[/green] run {result.run_id}: {result.prompts} prompt records, log in {result.transcript} "
                      f"(validation: {result.validation})")
