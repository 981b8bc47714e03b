"""Recipes of the session's shared builds (the fixtures in tests/conftest.py make each once).

Every recipe runs the real pipeline with its gates on, and fails the session's users loudly if a
step fails, so a broken build is reported once, where it is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from devicebuild import BUNDLE_ID

from gemmaios import contract
from gemmaios.pipeline import BuildOptions
from gemmaios.steps import BUNDLE_STEPS, run_build


def run_without_failures(options: BuildOptions, out: Path, only=None) -> list:
    """The step reports of `run_build`, none of them failed."""
    _, reports = run_build(options, out, only=only)
    failed = [r for r in reports if r.status == "failed"]
    assert not failed, failed[0].message
    return reports


def built(options: BuildOptions, out: Path, only=BUNDLE_STEPS) -> Path:
    run_without_failures(options, out, only)
    return out


@dataclass(frozen=True)
class DemoBuild:
    path: Path
    statuses: dict[str, str]  # step → status of the first run
    messages: dict[str, str]
    commands: dict[str, str]  # step → the command a pending step names


def demo_build(out: Path) -> DemoBuild:
    """`gemmaios build --model tiny` (every step of the build, defaults throughout)."""
    reports = run_without_failures(BuildOptions(model="tiny"), out)
    return DemoBuild(out, {r.name: r.status for r in reports}, {r.name: r.message for r in reports},
                     {r.name: r.command for r in reports})


def gated_bundle_build(out: Path, quant: str, ple: str) -> Path:
    """`gemmaios build --model tiny --quant Q --ple P` up to the bundle (every gate)."""
    return built(BuildOptions(model="tiny", quant=quant, ple=ple), out)


def mac_bundle_build(out: Path, checkpoint: Path) -> Path:
    """A Mac build of a 12B/31B-shaped checkpoint folder (the flash-decode kernel in its full layers)."""
    _, reports = run_build(BuildOptions(model=str(checkpoint), quant="int8", max_context=64, target="mac"), out,
                           only=BUNDLE_STEPS)
    # no PLE tables for a 12B-shaped model: that step is not applicable
    assert [r.status for r in reports] == ["done", "n/a", "done", "done"], [r.message for r in reports]
    return out


def prefill_ladder_bundle_build(out: Path) -> Path:
    built(BuildOptions(model="tiny", quant="int4", prefill_chunk="16,8", max_context=256), out)
    gates = json.loads((out / "build.json").read_text())["steps"]["convert"]["details"]["gates"]
    assert gates["bundle_run"]["exact"] == 8, gates["bundle_run"]["summary"]  # a two-function bundle still runs main
    return out


def with_prefill_chunk(build: Path) -> Path:
    """A tiny app build (devicebuild) converted again with --prefill-chunk 8 and its app re-rendered."""
    from devicebuild import tiny_options

    options = tiny_options(contract.PUSHED_TO_DOCUMENTS)
    options.prefill_chunk = "8"
    _, reports = run_build(options, build, only={"convert", "app"})
    assert {r.name: r.status for r in reports} == {"convert": "done", "app": "done"}, [r.message for r in reports]
    return build


def vision_bundle_build(out: Path) -> Path:
    # the default int4: the shipped tiny-vision describes all 8 pictures on the int4 grid (docs/images.md)
    return built(BuildOptions(model="tiny-vision", quant="int4", vision=True), out)


def render_vision_app(build: Path) -> Path:
    """The app step on a vision build, for the `documents` bundle location."""
    options = BuildOptions(model="tiny-vision", quant="int4", vision=True)
    options.extra["app"] = {"allow_uncompiled": True, "allow_clone": False, "bundle_location": contract.PUSHED_TO_DOCUMENTS,
                            "bundle_id": BUNDLE_ID}
    _, reports = run_build(options, build, only={"checkpoint", "app"})
    status = {r.name: (r.status, r.message) for r in reports}
    assert status["app"][0] == "done", status
    return build


def recipe_bundle_build(out: Path, recipe: str) -> Path:
    """`gemmaios build --model tiny --recipe R` up to the bundle (every gate, the runtime gate by KL/top-1)."""
    return built(BuildOptions(model="tiny", recipe=recipe), out)


def unified_mm_bundle_build(out: Path) -> Path:
    """The 12B as its seed ships it, at toy size (main, prefill_multimodal, embed_vision, embed_audio in one asset):
    `build --model <tiny 12b-unified> --target mac --kernel stock --vision --audio --quant int4 --max-context 256`,
    its oracle at 16 tokens (as `gemmaios oracle --tokens 16` writes it).

    With the trained tiny unified model in the package (gemmaios/data/tiny-unified) it is the real pipeline,
    every gate on: the oracle, the text parity and bundle-run gates, and the multimodal gate under Core AI's
    runtime (build.json: convert's gates.multimodal_run). Without it (random weights, whose greedy tokens under
    the f16 runtime are noise) it is convert_checkpoint without the text gates; tests/test_unified_bundle.py runs
    the functions themselves. The build folder is `out` (the checkpoint at out/12b_unified). Returns the bundle."""
    from gemmaios.checkpoint import load_checkpoint
    from gemmaios.convert import convert_checkpoint
    from gemmaios.tiny import TINY_UNIFIED, generate_tiny_checkpoint, tiny_unified_trained

    path = generate_tiny_checkpoint(out / "12b_unified", TINY_UNIFIED)
    if tiny_unified_trained():
        # 16 oracle tokens: this graph is slow under Core AI's CPU runtime (the text gate at 32 tokens took
        # 427 s and the multimodal gate 464 s on a loaded machine), and the multimodal gate is what it is for
        options = BuildOptions(model=str(path), quant="int4", max_context=256, target="mac", kernel="stock",
                               vision=True, audio=True, oracle_tokens=16)
        ctx, reports = run_build(options, out, only=BUNDLE_STEPS)
        assert [r.status for r in reports] == ["done", "n/a", "done", "done"], [r.message for r in reports]
        return out / ctx.manifest.steps["convert"]["details"]["bundle_dir"]
    checkpoint = load_checkpoint(path, model_id="tiny")
    result = convert_checkpoint(checkpoint, out / "bundle", quant="int4", max_context=256, target="mac",
                                kernel="stock", vision=True, audio=True, gates=False)
    return result.bundle_dir


def seeded_audio_checkpoint(out: Path):
    """The tiny config with an audio tower: the trained tiny decoder and a seeded (untrained) audio
    tower, written as an HF checkpoint folder and loaded as gemmaios.checkpoint.Checkpoint."""
    from gemmaios.audio import tinymodel as tm
    from gemmaios.checkpoint import load_checkpoint
    from gemmaios.tiny import SHIPPED_DIR as TEXT_DIR

    tok = tm.tokenizer_with_markers(TEXT_DIR / "tokenizer.json")
    tm.initial_model(tm.model_config(tok), TEXT_DIR / "model.safetensors").save_pretrained(out / "raw")
    tok.save(str(out / "tokenizer.json"))
    path = tm.write_checkpoint(out / "tiny-audio-seeded", out / "raw" / "model.safetensors", out / "tokenizer.json",
                               {"weights": "seeded"})
    return load_checkpoint(path, model_id="tiny")


def seeded_audio_bundle(out: Path) -> tuple[Path, Path, object]:
    """convert --audio (fp16, so the splice is measured against HF without int4's error) of the
    seeded audio checkpoint, with its PLE tables: (bundle dir, tables dir, checkpoint)."""
    from gemmaios.convert.converter import convert_checkpoint
    from gemmaios.tables.writer import write_tables

    checkpoint = seeded_audio_checkpoint(out / "checkpoint")
    result = convert_checkpoint(checkpoint, out / "bundles", "fp16", "provider", 128, audio=True, gates=False)
    write_tables(checkpoint, out / "tables")
    return result.bundle_dir, out / "tables", checkpoint


def audio_app_build(out: Path) -> Path:
    """`gemmaios build --model tiny-audio --audio` at the default int4 (every step, every gate: the oracle with its
    audio prompts, convert with the audio gate under Core AI's runtime), its app rendered for the `documents` bundle
    location: the build the audio bench tests deploy and the audio gate's full-tier test reads. ~85 s on this
    machine (oracle 5 s, convert with its gates most of it)."""
    from devicebuild import BUNDLE_ID

    options = BuildOptions(model="tiny-audio", quant="int4", audio=True)
    options.extra["app"] = {"allow_uncompiled": True, "allow_clone": False, "bundle_location": contract.PUSHED_TO_DOCUMENTS,
                            "bundle_id": BUNDLE_ID}
    _, reports = run_build(options, out / "build")
    status = {r.name: (r.status, r.message) for r in reports}
    assert all(s in ("done", "pending") for s, _ in status.values()), status
    assert status["convert"][0] == "done" and status["app"][0] == "done", status
    return out / "build"
