"""`gemmaios run`: chat with, generate from, or bench a built bundle on this machine (gemmaios.hostrun)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .errors import GemmaiosError


def _resolve(out: Path | None, bundle: Path | None) -> tuple[Path | None, Path]:
    """(build folder or None, bundle folder) from --out / --bundle."""
    from . import hostrun

    if bundle is not None:
        build = bundle.parent.parent if (bundle.parent.parent / "build.json").is_file() else None
        return build, bundle
    if out is None:
        found = sorted(p.parent for p in Path("build").glob("*/build.json"))
        if len(found) != 1:
            raise hostrun.HostRunError(
                "no build folder given" + (f" and {len(found)} found under ./build" if found else ""),
                hint="pass --out build/<name> (or --bundle <folder>)")
        out = found[0]
    if not (Path(out) / "build.json").is_file():
        raise hostrun.HostRunError(f"{out} is not a gemmaios build folder (no build.json)",
                                   hint=f"run `gemmaios build --out {out}` first, or pass --bundle")
    return Path(out), hostrun.find_bundle(Path(out))


def register(app: typer.Typer, console: Console, fail) -> None:
    @app.command()
    def run(
        out: Annotated[Path | None, typer.Option("--out", "-o", help="build folder (default: the only one under ./build)")] = None,
        bundle: Annotated[Path | None, typer.Option("--bundle", help="a bundle folder (default: the build's)")] = None,
        tables: Annotated[Path | None, typer.Option("--tables", help="PLE tables folder (default: <build>/tables)")] = None,
        prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="one prompt; without it, chat on stdin")] = None,
        tokens: Annotated[int, typer.Option("--tokens", "-n", min=1, help="most new tokens per answer")] = 64,
        raw: Annotated[bool, typer.Option("--raw", help="feed the text as is (BOS + text), no chat template")] = False,
        bench: Annotated[bool, typer.Option("--bench", help="run the oracle's prompt set and write <build>/runs/")] = False,
        trials: Annotated[int, typer.Option("--trials", min=1, help="with --bench: passes over the prompt set")] = 1,
        image: Annotated[Path | None, typer.Option("--image", help="a picture for the prompt (bundles built with "
                                                    "--vision); `<image>` in the prompt marks its place, else it "
                                                    "goes first")] = None,
    ) -> None:
        """Run a built bundle through Core AI's runtime on this machine: chat, one prompt, or a host bench.

        On Linux this is Core AI's CPU runtime (f16 accumulation): a correctness tool for small
        models, not a speed figure for the iPhone. `--bench` writes a transcript that
        `gemmaios score` and `gemmaios report` read like a device run.
        """
        from . import hostrun

        try:
            build, bundle_dir = _resolve(out, bundle)
            info = hostrun.BundleInfo.load(bundle_dir)
            step = hostrun.estimate_step_seconds(info)
            if step > 5:
                console.print(f"[yellow]note:[/yellow] {info.name} is {hostrun.asset_weight_bytes(info) / 1e9:.1f} GB; "
                              f"Core AI's CPU runtime needs roughly {step / 60:.0f} min per token on this machine "
                              "(a correctness tool for small models; use a Mac or the phone for speed)")
            if bench:
                if build is None:
                    raise hostrun.HostRunError("--bench needs a build folder (its oracle and runs/)",
                                               hint="pass --out build/<name>")

                def bar(total: int):
                    from rich.progress import (
                        BarColumn,
                        MofNCompleteColumn,
                        Progress,
                        TextColumn,
                        TimeElapsedColumn,
                    )

                    progress = Progress(TextColumn("  host bench"), BarColumn(), MofNCompleteColumn(),
                                        TimeElapsedColumn(), console=console, transient=True)
                    progress.start()
                    task = progress.add_task("bench", total=total)

                    def advance(n: int = 1) -> None:
                        progress.advance(task, n)
                        if progress.finished:
                            progress.stop()

                    return advance

                result = hostrun.host_bench(build, bundle_dir, trials=trials, progress_factory=bar)
                console.print(f"transcript: {result.transcript}")
                console.print(f"oracle: {result.score}")
                if result.passed is False:
                    raise typer.Exit(1)
                return
            tables_dir = tables or (build / "tables" if build else None)
            with hostrun.BundleRunner(bundle_dir, tables_dir if tables_dir and tables_dir.is_dir() else tables) as runner:
                tok = hostrun.BundleTokenizer(info)
                console.print(f"[dim]{info.name} loaded by Core AI's runtime in {runner.load_seconds:.2f}s[/dim]")
                texts = [prompt] if prompt is not None else _stdin_prompts(console)
                picture = _prepare_image(runner, image) if image is not None else None
                for text in texts:
                    _answer(runner, tok, text, tokens, not raw, console, picture)
        except GemmaiosError as exc:
            fail(exc)


def _stdin_prompts(console: Console):
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            console.print("[bold]you>[/bold] ", end="")
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def _prepare_image(runner, path: Path):
    """The picture through the bundle's vision asset, once (an EncodedImage every prompt reuses)."""
    from . import hostrun
    from .vision.preprocess import ImageSpec, load_image, preprocess

    if not runner.vision:
        raise hostrun.HostRunError(f"{runner.bundle.name} takes no images", hint="convert with --vision (E2B/E4B)")
    return runner.encode_image(preprocess(load_image(path), ImageSpec.from_bundle(runner.vision)))


def _encode_with_image(tok, runner, text: str, chat: bool, picture) -> list[int]:
    from .vision.preprocess import IMAGE_PLACEHOLDER, ImageSpec, expand_prompt

    if IMAGE_PLACEHOLDER not in text:
        text = f"{IMAGE_PLACEHOLDER}\n{text}"
    rendered = (tok.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True) if chat
                else (tok.tokenizer.bos_token or "") + text)
    return expand_prompt(rendered, ImageSpec.from_bundle(runner.vision), tok.tokenizer, picture.num_soft_tokens)


def _answer(runner, tok, text: str, tokens: int, chat: bool, console: Console, picture=None) -> None:
    ids = tok.encode(text, chat=chat) if picture is None else _encode_with_image(tok, runner, text, chat, picture)
    shown: list[int] = []
    printed = ""
    out = Console(highlight=False)

    def on_token(token: int) -> None:
        nonlocal printed
        shown.append(token)
        text_now = tok.decode(shown)
        if text_now.endswith("\ufffd"):  # a UTF-8 sequence split across tokens: wait for the rest
            return
        out.print(text_now[len(printed):], end="", markup=False)
        printed = text_now

    started = time.perf_counter()
    gen = runner.generate(ids, tokens, stop_ids=tok.eos_ids, on_token=on_token, image=picture)
    out.print()
    prefill = len(ids) / gen.prefill_seconds if gen.prefill_seconds > 0 else float("nan")
    decode = gen.decode_tokens / gen.decode_seconds if gen.decode_seconds > 0 else float("nan")
    console.print(f"[dim]{len(ids)} prompt tokens at {prefill:.1f} tok/s, {len(gen.generated_ids)} new at "
                  f"{decode:.1f} tok/s ({time.perf_counter() - started:.2f}s)[/dim]")
