"""`gemmaios report` and `gemmaios score`: judging and summarising bench transcripts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_options import JsonOpt
from .errors import GemmaiosError


def register(app: typer.Typer, console: Console, fail) -> None:
    """Add the commands to the CLI's app; `fail` prints a named error and exits 2."""
    @app.command()
    def report(
        runs: Annotated[list[Path] | None, typer.Argument(help="run folders (build/<name>/runs/<stamp>-<udid>/) or .jsonl")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="report folder (default: <build>/reports)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the JSON report on stdout")] = False,
        junit: Annotated[Path | None, typer.Option("--junit", help="also write JUnit XML here (one testcase per gate)")] = None,
        fail_under: Annotated[str | None, typer.Option("--fail-under", help="e.g. decode=12.5,prefill=18,headroom=1")] = None,
        require_oracle: Annotated[str | None, typer.Option("--require-oracle", help="exact | near-tie")] = None,
        compare_runs: Annotated[tuple[Path, Path] | None, typer.Option("--compare", help="A B: side by side, B vs A")] = None,
        allow_different: Annotated[bool, typer.Option("--allow-different", help="compare different bundles/prompts")] = False,
        bandwidth: Annotated[float | None, typer.Option("--bandwidth", help="memory bandwidth GB/s for the roofline")] = None,
        bundle: Annotated[Path | None, typer.Option("--bundle", help="bundle folder the runs used (bandwidth facts)")] = None,
        oracle: Annotated[Path | None, typer.Option("--oracle", help="oracle.json to score the runs against")] = None,
        include_warmup: Annotated[bool, typer.Option("--include-warmup", help="count trial 0 in the tok/s figures")] = False,
    ) -> None:
        """Bench logs → Markdown + HTML (plots) + JSON report, JUnit gates; exit 1 when a gate fails."""
        from . import report as rep

        try:
            paths = list(runs or []) + list(compare_runs or [])
            if not paths:
                paths = [_latest_run(rep)]
            for p in paths:  # a folder with several transcripts would shift the --compare indices
                if compare_runs and p in compare_runs and len(rep.transcript_paths(p)) != 1:
                    raise rep.ReportError(f"--compare needs one transcript per side; {p} holds several",
                                          hint="pass the .jsonl files themselves")
            gates = rep.parse_fail_under(fail_under)  # option mistakes first, before any file is read
            if bandwidth is not None and not bandwidth > 0:
                raise typer.BadParameter(f"{bandwidth:g} GB/s; give the memory bandwidth as a positive number",
                                         param_hint="--bandwidth")
            if oracle is not None:  # named explicitly: a missing or damaged one is an error, not a warning
                from .oracle import load_oracle

                load_oracle(oracle)
            data = rep.load_runs(paths, bundle_dir=bundle, oracle_path=oracle)
            pair = (len(data) - 2, len(data) - 1) if compare_runs else None  # the compared pair is appended last
            result = rep.build_report(data, scorer=rep.default_scorer(), bandwidth_gbps=bandwidth,
                                      include_warmup=include_warmup, fail_under=gates,
                                      require_oracle=require_oracle, compare_pair=pair, allow_different=allow_different)
            files = rep.write_report(result, out or rep.default_out_dir(data), junit=junit)
        except GemmaiosError as exc:
            fail(exc)
        if as_json:
            print(files["json"].read_text())
        table = Table(title="gemmaios report")
        for col in ("run", "prefill tok/s", "decode tok/s", "TTFT s", "peak GB", "roofline", "gates"):
            table.add_column(col, overflow="fold")
        for s in result.runs:
            failed = [g.name for g in s.gates if not g.passed]
            eff = s.roofline.efficiency if s.roofline else None
            table.add_row(s.label, rep.fmt(s.prefill_tok_s.median if s.prefill_tok_s else None),
                          rep.fmt(s.decode_tok_s.median if s.decode_tok_s else None),
                          rep.fmt(s.ttft_s.median if s.ttft_s else None, 3),
                          rep.fmt(s.peak_footprint_bytes / 1e9 if s.peak_footprint_bytes else None, 2),
                          f"{eff:.0%}" if eff is not None else "—",
                          "[green]pass[/]" if not failed else f"[red]FAIL: {', '.join(failed)}[/]")
        console.print(table)
        for s in result.runs:
            if s.prefill_ab is not None:
                console.print(f"{escape(s.label)}: prefill A/B: {escape(s.prefill_ab.line)}")
            # the bench protocol's figures (cold launches, thermal, energy, sustained), when the run has them
            lines = []
            if s.cold and s.cold.ttft_since_launch_s:
                lines.append(f"cold launches: {s.cold.launches}, time to first token from process start "
                             f"{s.cold.ttft_since_launch_s.median:.2f} s (median)")
            for name, part in (("thermal", s.thermal), ("energy", s.energy), ("sustained", s.sustained)):
                if part is not None:
                    lines.append(f"{name}: {part.line}")
            # issue 27: a run whose prompts passed 1024 tokens of context (the long-context probe), by bucket
            lines += [f"oracle by context: {probe.line}" for probe in s.context_probes]
            for line in lines:
                console.print(f"{escape(s.label)}: {escape(line)}")
        console.print("wrote " + ", ".join(str(p) for p in files.values()))
        for s in result.runs:  # why each gate failed, so a damaged log is not only a "FAIL" in a table cell
            for gate in (g for g in s.gates if not g.passed):
                console.print(f"[red]✗[/red] {escape(s.label)}: {escape(gate.name)}: {escape(gate.detail)}")
            if not s.valid:
                console.print("  → the transcript is damaged or is not a `gemmaios bench` log; pass the .jsonl that "
                              "`gemmaios bench` pulled into <build>/runs/, or run the bench again")
        if not result.passed:
            raise typer.Exit(1)



    def _latest_run(rep) -> Path:
        """No runs named: the newest run of the only build folder under ./build."""
        from .buildfolder import builds_found, latest_run
        from .buildlayout import BUILD_RUNS_DIR

        found = builds_found()
        if len(found) != 1:
            raise rep.ReportError("no runs given" + (f" and {len(found)} build folders under ./build" if found else ""),
                                  hint="gemmaios report <run-dir>... (or --compare A B)")
        newest = latest_run(found[0])
        if newest is None:
            raise rep.ReportError(f"no runs given, and {found[0]}/{BUILD_RUNS_DIR} holds none",
                                  hint="bench first: `gemmaios run --bench` (this machine) or `gemmaios bench` (iPhone)")
        console.print(f"[dim]report of {newest}[/dim]")
        return newest

    @app.command()
    def score(
        transcript: Annotated[Path, typer.Argument(help="device transcript (JSON lines)")],
        against: Annotated[Path | None, typer.Option("--against", help="second transcript: run-vs-run determinism")] = None,
        build_dir: Annotated[Path | None, typer.Option(
            "--out", "-o", "--build", help="build folder whose oracle/oracle.json to score against (--build: the "
                                           "earlier spelling)")] = None,
        oracle_file: Annotated[Path | None, typer.Option("--oracle", help="an oracle.json (instead of --out)")] = None,
        near_tie: Annotated[float, typer.Option("--near-tie", min=0.0, help="oracle top-1/top-2 margin below which a flip is a near-tie")] = 0.1,
        model: Annotated[str | None, typer.Option("--model", "-m", help="checkpoint to teacher-force diverged runs through")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Score a device transcript: exact match vs the fp32 oracle, and/or token identity vs another run.

        With neither --out/--oracle nor --against, the transcript's trials are compared with its first trial.
        """
        from .oracle import (
            ORACLE_FILE,
            ReferenceModel,
            compare_runs,
            compare_trials,
            explain_divergences,
            load_oracle,
            score_against_oracle,
        )
        from .transcript import read_transcript

        if build_dir and oracle_file:
            raise typer.BadParameter("give either --out/--build or --oracle, not both (--out reads "
                                     "<build>/oracle/oracle.json)", param_hint="--oracle")
        if model and not (build_dir or oracle_file):
            raise typer.BadParameter("--model explains divergences from the oracle: add --out (the build folder) or --oracle",
                                     param_hint="--model")
        try:
            run = read_transcript(transcript)
            passed = True
            out = Console(quiet=as_json)  # --json: no tables; stdout carries the one JSON object
            result = {"transcript": str(transcript), "oracle": None, "images": None, "audio": None,
                      "determinism": None}
            if build_dir or oracle_file:
                text_oracle = load_oracle(oracle_file or build_dir / ORACLE_FILE)
                score = score_against_oracle(run, text_oracle, near_tie_margin=near_tie)
                if model and score.failures + score.near_ties:
                    explain_divergences(score, run, ReferenceModel.load(model))
                _print_score(out, console, score, f"{transcript.name} vs fp32 oracle")
                if not as_json:
                    print(score.summary)
                result["oracle"] = _score_json(score)
                passed &= score.passed
                images = _score_images(out, console, run, build_dir, oracle_file, near_tie,
                                       text_oracle.prompt_set.get("sha256"), quiet=as_json)
                if images is not None:
                    result["images"] = _score_json(images) if not isinstance(images, str) else {"error": images}
                    passed &= not isinstance(images, str) and images.passed
                clips = _score_audio(out, console, run, build_dir, oracle_file, near_tie,
                                     text_oracle.prompt_set.get("sha256"), quiet=as_json)
                if clips is not None:
                    result["audio"] = _score_json(clips) if not isinstance(clips, str) else {"error": clips}
                    passed &= not isinstance(clips, str) and clips.passed
            if against or not (build_dir or oracle_file):
                det = (compare_runs(run, read_transcript(against), labels=(transcript.name, against.name))
                       if against else compare_trials(run))
                if not det.total:
                    console.print(f"[yellow]{transcript.name} has a single trial: nothing to compare it with[/yellow]")
                else:
                    if not as_json:
                        print(det.summary)
                    result["determinism"] = {
                        "summary": det.summary, "passed": det.passed, "identical": det.identical, "total": det.total,
                        "labels": list(det.labels), "pairs": [asdict(p) for p in det.pairs]}
                    passed &= det.passed
        except GemmaiosError as exc:
            fail(exc)
        if as_json:
            print(json.dumps({**result, "passed": passed}, indent=2))
        if not passed:
            raise typer.Exit(1)


def _print_score(out: Console, console: Console, result, title: str) -> None:
    table = Table(title=title)
    for col in ("trial", "#", "prompt", "verdict", "at", "oracle→run", "margin", "rank", "top-1 after"):
        table.add_column(col, no_wrap=col in ("verdict", "margin"), overflow="fold")
    for p in result.prompts:
        style = {"exact": "green", "near-tie": "yellow"}.get(p.verdict, "red")
        swap = f"{p.expected}→{p.got}" if p.expected is not None else ""
        table.add_row(str(p.trial), str(p.index), p.prompt_id, f"[{style}]{p.verdict}[/]",
                      "" if p.divergence is None else str(p.divergence), swap,
                      "" if p.margin is None else f"{p.margin:.3g}",
                      "" if p.got_rank is None else str(p.got_rank + 1),
                      "" if p.after_divergence is None else "{}/{}".format(*p.after_divergence))
    out.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _score_json(score) -> dict:
    """An OracleScore as --json prints it: the counts, the verdict and every prompt's score."""
    return {"summary": score.summary, "passed": score.passed, "exact": score.exact, "total": score.total,
            "near_ties": len(score.near_ties), "hard_divergences": len(score.failures),
            "max_new_tokens": score.max_new_tokens, "near_tie_margin": score.near_tie_margin,
            "warnings": list(score.warnings), "prompts": [asdict(p) for p in score.prompts]}


def _score_images(out: Console, console: Console, run, build_dir: Path | None, oracle_file: Path | None, near_tie: float,
                  text_sha: str | None, *, quiet: bool = False):
    """A transcript's image prompts against the image oracle (<build>/oracle/images/, or images/ beside
    --oracle): None when there are none, the OracleScore, or what stopped them being scored (text)."""
    from .vision.imagebench import image_oracle_folders, image_oracle_path, score_image_prompts

    count = sum(1 for p in run.prompts if p.image)
    if not count:
        return None
    [folder] = image_oracle_folders(oracle_file, build_dir)  # --out and --oracle are exclusive: one place
    if not image_oracle_path(folder).is_file():
        missing = f"{count} image prompt record(s) not scored: no image oracle at {image_oracle_path(folder)}"
        console.print(f"[red]{escape(missing)}[/red]")
        return missing
    result = score_image_prompts(run, folder, text_prompt_set_sha256=text_sha, near_tie_margin=near_tie)
    _print_score(out, console, result, f"{run.path.name} image prompts vs fp32 image oracle")
    if not quiet:
        print(f"image prompts: {result.summary}")
    return result


def _score_audio(out: Console, console: Console, run, build_dir: Path | None, oracle_file: Path | None, near_tie: float,
                 text_sha: str | None, *, quiet: bool = False):
    """A transcript's audio prompts against the audio oracle (<build>/oracle/audio/, or audio/ beside
    --oracle): None when there are none, the OracleScore, or what stopped them being scored (text)."""
    from .audio.audiobench import audio_oracle_folders, audio_oracle_path, score_audio_prompts
    from .vision.imagebench import image_oracle_folders, image_oracle_path, mixed_prompt_set

    count = sum(1 for p in run.prompts if p.audio)
    if not count:
        return None
    [folder] = audio_oracle_folders(oracle_file, build_dir)  # --out and --oracle are exclusive: one place
    if not audio_oracle_path(folder).is_file():
        missing = f"{count} audio prompt record(s) not scored: no audio oracle at {audio_oracle_path(folder)}"
        console.print(f"[red]{escape(missing)}[/red]")
        return missing
    before = text_sha
    if text_sha is not None and any(p.image for p in run.prompts):  # the set holds the image prompts first
        [images] = image_oracle_folders(oracle_file, build_dir)
        if image_oracle_path(images).is_file():
            _, before = mixed_prompt_set("", text_sha, images)
    result = score_audio_prompts(run, folder, prompt_set_sha256=before, near_tie_margin=near_tie)
    _print_score(out, console, result, f"{run.path.name} audio prompts vs fp32 audio oracle")
    if not quiet:
        print(f"audio prompts: {result.summary}")
    return result
