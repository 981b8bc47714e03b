"""`gemmaios run`: chat with, generate from, or bench a built bundle on this machine (gemmaios.hostrun)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .buildlayout import MANIFEST_NAME, TABLES_DIR
from .cli_console import INTERRUPTED, interrupted, terminal
from .cli_options import AbOpt, BuildDirOpt, JsonOpt
from .contract import CHAT_MAX_NEW_TOKENS
from .errors import GemmaiosError


def _resolve(out: Path | None, bundle: Path | None) -> tuple[Path | None, Path]:
    """(build folder or None, bundle folder) from --out / --bundle."""
    from . import hostrun

    if bundle is not None:
        build = bundle.parent.parent if (bundle.parent.parent / MANIFEST_NAME).is_file() else None
        return build, bundle
    if out is None:
        from .buildfolder import the_only_build

        out = the_only_build()
    if not (Path(out) / MANIFEST_NAME).is_file():
        raise hostrun.HostRunError(f"{out} is not a gemmaios build folder (no build.json)",
                                   hint=f"run `gemmaios build --out {out}` first, or pass --bundle")
    return Path(out), hostrun.find_bundle(Path(out))


class CtrlC:
    """SIGINT as a request, not an exception: Core AI's runtime is native (Swift/C++) code, and a
    KeyboardInterrupt raised while it runs aborts the process ("C++ exception handling detected but
    the Swift runtime was compiled with exceptions disabled", exit 134). The handler only records
    the request; generation checks it between tokens. While `raise_now` is set (waiting on stdin,
    pure Python) it raises as usual."""

    def __init__(self) -> None:
        self.requested = False
        self.raise_now = False
        self._previous = None

    def __call__(self, signum, frame) -> None:
        self.requested = True
        if self.raise_now:
            raise KeyboardInterrupt

    def __enter__(self) -> CtrlC:
        self._previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def stop(self) -> bool:
        return self.requested


def register(app: typer.Typer, console: Console, fail) -> None:
    @app.command()
    def run(
        out: BuildDirOpt = None,
        bundle: Annotated[Path | None, typer.Option("--bundle", help="a bundle folder (default: the build's)")] = None,
        tables: Annotated[Path | None, typer.Option("--tables", help="PLE tables folder (default: <build>/tables)")] = None,
        prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="one prompt; without it, chat on stdin "
                                                    "(the conversation is kept; /reset forgets it, /exit ends)")] = None,
        tokens: Annotated[int, typer.Option("--tokens", "-n", min=1, help="most new tokens per reply (a reply cut "
                                            "there says so)")] = DEFAULT_REPLY_TOKENS,
        system: Annotated[str | None, typer.Option("--system", help="a system instruction opening the chat")] = None,
        think: Annotated[bool, typer.Option("--think", help="thinking on (the template's enable_thinking): the "
                                            "reasoning is shown apart from the answer")] = False,
        raw: Annotated[bool, typer.Option("--raw", help="feed the text as is (BOS + text), no chat template")] = False,
        bench: Annotated[bool, typer.Option("--bench", help="run the oracle's prompt set and write <build>/runs/")] = False,
        trials: Annotated[int, typer.Option("--trials", min=1, help="with --bench: passes over the prompt set")] = 1,
        ab: AbOpt = None,
        image: Annotated[Path | None, typer.Option("--image", help="a picture for the prompt (bundles built with "
                                                    "--vision); `<image>` in the prompt marks its place, else it "
                                                    "goes first")] = None,
        audio: Annotated[Path | None, typer.Option("--audio", help="a PCM .wav clip for the prompt (bundles built "
                                                    "with --audio: E2B/E4B's audio asset, or the 12B's multimodal "
                                                    "bundle); `<audio>` in the prompt marks its "
                                                    "place, else it goes first")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Run a built bundle through Core AI's runtime on this machine: chat, one prompt, or a host bench.

        On Linux this is Core AI's CPU runtime (f16 accumulation): a correctness tool for small
        models, not a speed figure for the iPhone. `--bench` writes a transcript that
        `gemmaios score` and `gemmaios report` read like a device run.
        """
        from . import hostrun, quiet

        try:
            if ab is not None:  # --ab's mistakes first, before any bundle is read
                if not bench:
                    raise typer.BadParameter("--ab compares two builds' benches; add --bench", param_hint="--ab")
                if bundle is not None:
                    raise typer.BadParameter("--ab runs each build's own bundle; drop --bundle", param_hint="--ab")
                if trials < 2:
                    raise typer.BadParameter(f"--ab takes turns trial by trial (A then B, then B then A), and {trials} "
                                             "trial would always run A first; pass --trials 2 or more",
                                             param_hint="--trials")
                from .abbench import check_folders
                from .buildfolder import the_only_build

                check_folders(out if out is not None else the_only_build(), ab)
            build, bundle_dir = _resolve(out, bundle)
            info = hostrun.BundleInfo.load(bundle_dir)
            step = hostrun.estimate_step_seconds(info)
            if step > 5:
                console.print(f"[yellow]note:[/yellow] {info.name} is {hostrun.asset_weight_bytes(info) / 1e9:.1f} GB; "
                              f"Core AI's CPU runtime needs roughly {step / 60:.0f} min per token on this machine "
                              "(a correctness tool for small models; use a Mac or the phone for speed)")
            if bench and build is None:
                raise hostrun.HostRunError("--bench needs a build folder (its oracle and runs/)",
                                           hint="pass --out build/<name>")
            out_console = terminal(highlight=False)  # the answer, on stdout
            log = (build or bundle_dir) / quiet.LOG_NAME  # the native runtime's loader lines go here
            with CtrlC() as ctrl_c, quiet.to_log(log, "run", {1: [out_console], 2: [console]}):
                if bench and ab is not None:
                    _ab_bench(build, ab, trials, console, out_console if as_json else None, ctrl_c)
                    return
                if bench:
                    _bench(hostrun, build, bundle_dir, trials, console, out_console if as_json else None, ctrl_c)
                    return
                if info.facts.get("multimodal"):
                    _run_multimodal(bundle_dir, info, prompt, image, audio, tokens, not raw, console, out_console,
                                    as_json)
                    return
                if audio is not None and not info.audio:
                    raise hostrun.HostRunError(f"{info.name} takes no audio",
                                               hint="convert an E2B/E4B checkpoint that has an audio tower with --audio "
                                                    "(or the 12B, gemma4_unified, with --target mac --audio)")
                if audio is not None and image is not None:
                    raise hostrun.HostRunError("a prompt takes one picture or one clip on E2B/E4B bundles",
                                               hint="pass --image or --audio")
                tables_dir = tables or (build / TABLES_DIR if build else None)
                with hostrun.BundleRunner(bundle_dir, tables_dir if tables_dir and tables_dir.is_dir() else tables) as runner:
                    tok = hostrun.BundleTokenizer(info)
                    console.print(f"[dim]{info.name} loaded by Core AI's runtime in {runner.load_seconds:.2f}s[/dim]")
                    picture = _prepare_image(runner, image) if image is not None else None
                    if audio is not None:
                        picture = _prepare_audio(runner, audio)
                    texts = [prompt] if prompt is not None else _stdin_prompts(console, ctrl_c)
                    if raw or picture is not None:  # one message at a time: no conversation is kept
                        if prompt is None:
                            console.print("[dim]" + ("--raw" if raw else "--image") + ": each line is answered "
                                          "on its own (no conversation is kept)[/dim]")
                        for text in texts:
                            if ctrl_c.requested:
                                break
                            _answer(runner, tok, text, tokens, not raw, console, out_console, picture, ctrl_c,
                                    as_json)
                    else:
                        _chat(hostrun, runner, tok, texts, tokens, system, think, console, out_console, ctrl_c,
                              as_json)
                if ctrl_c.requested:
                    interrupted(console, "stopped at the next token")
        except KeyboardInterrupt:  # Ctrl-C at the chat prompt
            console.print()
            raise typer.Exit(INTERRUPTED) from None
        except GemmaiosError as exc:
            fail(exc)


DEFAULT_REPLY_TOKENS = CHAT_MAX_NEW_TOKENS  # the cap on one reply (the app's too); --tokens changes it
CHAT_COMMANDS = {"/reset": "forget the conversation", "/exit": "end the chat (as does Ctrl-D)"}


def _chat(hostrun, runner, tok, texts, tokens: int, system: str | None, think: bool, console: Console,
          out: Console, ctrl_c: CtrlC, as_json: bool) -> None:
    """The conversation: each turn prefills only its new tokens on top of the kept KV cache."""
    from .chat import ContextFull
    from .hostrun.chat import ChatSession

    context = runner.bundle.max_context
    budget = min(tokens, context - 1)
    session = ChatSession(runner, tok, system=system, thinking=think, max_new_tokens=budget)
    if budget < tokens:
        console.print(f"[yellow]note:[/yellow] --tokens {tokens} is more than the bundle's context of {context}; "
                      f"replies stop at {budget} tokens")
    if sys.stdin.isatty() and not isinstance(texts, list):  # chatting on a terminal
        console.print(f"[dim]chat with {runner.bundle.name} ({context}-token context): "
                      + ", ".join(f"{c} {what}" for c, what in CHAT_COMMANDS.items()) + "[/dim]")
    for text in texts:
        if ctrl_c.requested:
            break
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            console.print("[dim]conversation forgotten: the next message starts a new one[/dim]")
            continue
        _chat_turn(session, text, console, out, ctrl_c, as_json, ContextFull)


def _chat_turn(session, text: str, console: Console, out: Console, ctrl_c: CtrlC, as_json: bool, context_full) -> None:
    tok = session.tok
    shown = {"thought": [], "answer": []}
    printed = {"thought": "", "answer": ""}
    state = {"open": None}

    def on_token(token: int, where: str) -> None:
        if where not in shown:
            return
        shown[where].append(token)
        text_now = tok.decode(shown[where])
        if where == "thought":
            from .chat import THOUGHT_CHANNEL_NAME

            if THOUGHT_CHANNEL_NAME.startswith(text_now):  # the channel's name line, still arriving
                return
            text_now = text_now.removeprefix(THOUGHT_CHANNEL_NAME)
        if text_now.endswith("\ufffd"):  # a UTF-8 sequence split across tokens: wait for the rest
            return
        if not as_json:
            if state["open"] != where:
                if where == "thought":
                    console.print("[dim]thinking:[/dim] ", end="")
                elif state["open"] == "thought":
                    console.print()
                state["open"] = where
            piece = text_now[len(printed[where]):]
            if where == "thought" and piece:
                console.print(piece, end="", style="dim", markup=False, highlight=False)
            elif piece:
                out.print(piece, end="", markup=False)
        printed[where] = text_now

    try:
        turn = session.ask(text, on_token=on_token, should_stop=ctrl_c.stop)
    except context_full as exc:
        console.print(f"[yellow]not sent:[/yellow] {exc.args[0]} ({exc.hint})")
        return
    if as_json:
        out.print(json.dumps({"prompt": text, "text": turn.answer, "thought": turn.thought,
                              "prefilled_tokens": turn.prefilled, "reused_tokens": turn.kept,
                              "rolled_back_tokens": turn.rolled_back,
                              "new_tokens": len(turn.generated_ids), "cut": turn.cut, "dropped_turns": turn.dropped,
                              "interrupted": turn.stopped}), markup=False, highlight=False)
        return
    out.print()
    if turn.dropped:
        console.print(f"[yellow]note:[/yellow] the context of {session.context} tokens was full: the oldest "
                      f"{turn.dropped} exchange(s) were dropped and the conversation read again "
                      f"({turn.prefilled} tokens)")
    if turn.stopped:
        return
    if turn.cut:
        console.print(f"[yellow]note:[/yellow] reply cut at {len(turn.generated_ids)} tokens "
                      "(--tokens sets the cap)")
    def at(tokens: int, seconds: float) -> str:  # a rate only where one was measured
        return f" at {tokens / seconds:.1f} tok/s" if seconds > 0 and tokens > 0 else ""

    console.print(f"[dim]{turn.prefilled} new prompt tokens ({turn.kept} kept from earlier turns)"
                  f"{at(turn.prefilled, turn.prefill_seconds)}, {len(turn.generated_ids)} new"
                  f"{at(len(turn.generated_ids) - 1, turn.decode_seconds)}[/dim]")


def _progress(console: Console, ctrl_c: CtrlC, label: str = "host bench"):
    """A progress bar factory for the host benches: Ctrl-C is acted on between prompts (Python, safe to unwind)."""
    def bar(total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn(f"  {label}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
        progress.start()
        task = progress.add_task("bench", total=total)

        def advance(n: int = 1) -> None:
            progress.advance(task, n)
            if progress.finished or ctrl_c.requested:
                progress.stop()
            if ctrl_c.requested:
                raise KeyboardInterrupt

        return advance

    return bar


def ab_table(report) -> Table:
    """The A/B comparison as a terminal table (`run --bench --ab`, `bench --ab`, `deploy --bench --ab`)."""
    table = Table(title=f"A/B ({report.where}): turns {' '.join(report.order)}")
    table.add_column("metric", overflow="fold")
    for col in (f"A: {report.a.build.name} ({report.a.storage})", f"B: {report.b.build.name} ({report.b.storage})",
                "B vs A"):
        table.add_column(col, overflow="fold", justify="right")
    for row in report.rows:
        table.add_row(row.metric, row.a, row.b, row.change)
    return table


def _ab_bench(build: Path, other: Path, trials: int, console: Console, json_out: Console | None,
              ctrl_c: CtrlC) -> None:
    """`run --bench --ab OTHER`: transcripts are written only once both sides are complete."""
    from .abbench import AB_MD, host_ab

    try:
        report = host_ab(build, other, trials=trials, progress_factory=_progress(console, ctrl_c, "host A/B bench"))
    except KeyboardInterrupt:
        interrupted(console, "no transcript written; run the same command again for a complete one")
    if json_out is not None:
        json_out.print(json.dumps(report.as_dict(), indent=2), markup=False, highlight=False)
    console.print(ab_table(report))
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"wrote {report.transcripts['a'][0].parent / AB_MD}", markup=False)
    for side in ("a", "b"):
        console.print(f"transcript {side.upper()}: {report.transcripts[side][0]}", markup=False)


def _bench(hostrun, build: Path, bundle_dir: Path, trials: int, console: Console, json_out: Console | None,
           ctrl_c: CtrlC) -> None:
    """`run --bench`: the transcript is written only once complete, so Ctrl-C leaves nothing half done."""
    try:
        result = hostrun.host_bench(build, bundle_dir, trials=trials, progress_factory=_progress(console, ctrl_c))
    except KeyboardInterrupt:
        interrupted(console, "no transcript written; run the same command again for a complete one")
    if json_out is not None:  # --json, on stdout (the terminal's: fd 1 is the log meanwhile)
        json_out.print(json.dumps({"transcript": str(result.transcript), "run_dir": str(result.run_dir),
                                   "oracle": result.score, "passed": result.passed, "skipped": result.skipped},
                                  indent=2),
                       markup=False, highlight=False)
    console.print(f"transcript: {result.transcript}", markup=False)
    if result.skipped:
        console.print(f"left out (past the bundle's context): {', '.join(result.skipped)}", markup=False)
    console.print(f"oracle: {result.score}", markup=False)
    if result.passed is False:
        raise typer.Exit(1)


def _stdin_prompts(console: Console, ctrl_c: CtrlC):
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            console.print("[bold]you>[/bold] ", end="")
        ctrl_c.raise_now = True  # waiting for the user, in Python: Ctrl-C ends the chat at once
        try:
            line = sys.stdin.readline()
        finally:
            ctrl_c.raise_now = False
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


def _prepare_audio(runner, path: Path):
    """The clip through the bundle's audio asset, once (an EncodedAudio every prompt reuses)."""
    from .audio.clipset import read_wav
    from .audio.preprocess import AudioSpec, prepare

    return runner.encode_audio(prepare(read_wav(path), AudioSpec.from_bundle(runner.audio)))


def _run_multimodal(bundle_dir: Path, info, prompt: str | None, image: Path | None, audio: Path | None, tokens: int,
                    chat: bool, console: Console, out: Console, as_json: bool) -> None:
    """The 12B's multimodal bundle: the embedders, one prefill_multimodal call, then main (hostrun.multimodal)."""
    from . import hostrun
    from .hostrun.multimodal import MultimodalRunner
    from .unified_inputs import (
        AUDIO_MARKER,
        IMAGE_MARKER,
        UnifiedSpec,
        encode_prompt,
        frame_audio,
        load_wav,
        prepare_image,
    )
    from .vision.preprocess import load_image

    if prompt is None:
        raise hostrun.HostRunError(f"{info.name} runs one prompt at a time", hint="pass --prompt (and --image / --audio)")
    spec = UnifiedSpec.from_bundle(info.facts["multimodal"])
    images = [prepare_image(load_image(image), spec)] if image is not None else []
    clips = [frame_audio(load_wav(audio, spec), spec)] if audio is not None else []
    text = prompt
    for marker, items in ((AUDIO_MARKER, clips), (IMAGE_MARKER, images)):
        if items and marker not in text:
            text = f"{marker}\n{text}"
    tok = hostrun.BundleTokenizer(info)
    rendered = (tok.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True) if chat
                else (tok.tokenizer.bos_token or "") + text)
    ids = encode_prompt(rendered, lambda piece: tok.tokenizer(piece, add_special_tokens=False)["input_ids"], spec,
                        [im.num_soft_tokens for im in images], [len(c) for c in clips])
    with MultimodalRunner(bundle_dir) as runner:
        console.print(f"[dim]{info.name} loaded by Core AI's runtime in {runner.load_seconds:.2f}s[/dim]")
        gen = runner.generate_multimodal(spec, ids, images, clips, tokens)
    answer = tok.decode([t for t in gen.generated_ids if t not in spec.stop_token_ids])
    if as_json:
        out.print(json.dumps({"prompt": prompt, "text": answer, "prompt_tokens": len(ids),
                              "new_tokens": len(gen.generated_ids), "generated_ids": gen.generated_ids}),
                  markup=False, highlight=False)
        return
    out.print(answer, markup=False)
    console.print(f"[dim]{len(ids)} prompt tokens ({len(images)} picture, {len(clips)} clip) in one prefill_multimodal "
                  f"call ({gen.prefill_seconds:.2f}s, embedders {gen.embed_seconds:.2f}s), {len(gen.generated_ids)} new "
                  f"tokens ({gen.decode_seconds:.2f}s)[/dim]")


def _encode_with_image(tok, runner, text: str, chat: bool, picture) -> list[int]:
    """The prompt with its picture's (or clip's: an EncodedAudio) soft tokens expanded, HF ids."""
    from .hostrun import EncodedAudio

    if isinstance(picture, EncodedAudio):
        from .audio.preprocess import AUDIO_PLACEHOLDER as placeholder
        from .audio.preprocess import AudioSpec
        from .audio.preprocess import expand_prompt as expand

        spec = AudioSpec.from_bundle(runner.audio)
    else:
        from .vision.preprocess import IMAGE_PLACEHOLDER as placeholder
        from .vision.preprocess import ImageSpec
        from .vision.preprocess import expand_prompt as expand

        spec = ImageSpec.from_bundle(runner.vision)
    if placeholder not in text:
        text = f"{placeholder}\n{text}"
    rendered = (tok.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True) if chat
                else (tok.tokenizer.bos_token or "") + text)
    return expand(rendered, spec, tok.tokenizer, picture.num_soft_tokens)


def _answer(runner, tok, text: str, tokens: int, chat: bool, console: Console, out: Console, picture=None,
            ctrl_c: CtrlC | None = None, as_json: bool = False) -> None:
    ids = tok.encode(text, chat=chat) if picture is None else _encode_with_image(tok, runner, text, chat, picture)
    shown: list[int] = []
    printed = ""

    def on_token(token: int) -> None:
        nonlocal printed
        shown.append(token)
        text_now = tok.decode(shown)
        if text_now.endswith("\ufffd"):  # a UTF-8 sequence split across tokens: wait for the rest
            return
        if not as_json:  # --json: one record at the end instead of the streamed text
            out.print(text_now[len(printed):], end="", markup=False)
        printed = text_now

    started = time.perf_counter()
    gen = runner.generate(ids, tokens, stop_ids=tok.eos_ids, on_token=on_token, image=picture,
                          should_stop=ctrl_c.stop if ctrl_c else None)
    stopped = bool(ctrl_c and ctrl_c.requested)
    prefill = len(ids) / gen.prefill_seconds if gen.prefill_seconds > 0 else float("nan")
    decode = gen.decode_tokens / gen.decode_seconds if gen.decode_seconds > 0 else float("nan")
    if as_json:
        out.print(json.dumps({"prompt": text, "text": tok.decode(shown), "prompt_tokens": len(ids),
                              "new_tokens": len(gen.generated_ids), "prefill_tok_s": round(prefill, 2),
                              "decode_tok_s": round(decode, 2), "interrupted": stopped}),
                  markup=False, highlight=False)
        return
    out.print()
    if stopped:  # the partial answer is already on screen
        return
    if len(gen.generated_ids) == tokens and gen.generated_ids[-1] not in tok.eos_ids:
        console.print(f"[yellow]note:[/yellow] reply cut at {tokens} tokens (--tokens sets the cap)")
    console.print(f"[dim]{len(ids)} prompt tokens at {prefill:.1f} tok/s, {len(gen.generated_ids)} new at "
                  f"{decode:.1f} tok/s ({time.perf_counter() - started:.2f}s)[/dim]")
