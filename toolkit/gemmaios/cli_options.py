"""Every option that several `gemmaios` commands share, declared once (pymobiledevice3's cli_common idea).

A command's signature lists these names; the flag, its help and its choices come from here. The
options that say what a build folder *is* (model, arch, quant, PLE, vision, prefill, context, target,
kernel, lm_head storage) default to None, meaning "the folder's own" (gemmaios.buildfolder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

# Literal types: typer turns them into click choices, listed in --help and checked before any work.
Quant = Literal["int4", "int8", "fp16"]
PleMode = Literal["provider", "tbl"]
Target = Literal["ios", "mac"]
Kernel = Literal["g8", "simple", "stock"]
QUANTS, PLE_MODES, TARGETS, KERNELS = (t.__args__ for t in (Quant, PleMode, Target, Kernel))
BUNDLE_LOCATIONS = ("bundled", "documents")  # contract.BUNDLE_LOCATIONS; validated by app.validate_choice
MIN_CONTEXT = 16  # the converter's floor (convert._check_options); checked here before any work

BUILD = "Build options (default: the build folder's own)"
BENCH = "Bench options"
APP = "App options"

# ---- what the build folder is ----------------------------------------------------------------
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", rich_help_panel=BUILD,
    help="HF id, local checkpoint folder, or a built-in tiny model: `tiny`, `tiny-vision` (images: --vision), "
         "`tiny-audio` (clips: --audio) (default: the build folder's, else E4B)")]
ArchOpt = Annotated[str | None, typer.Option(
    "--arch", rich_help_panel=BUILD, metavar="ARCH",
    help="AOT target architecture: h18p (iPhone 17 Pro class, the default), h17p, h16p, ... (`gemmaios archs`)")]
QuantOpt = Annotated[Quant | None, typer.Option(
    "--quant", rich_help_panel=BUILD, help="weight quantization (default int4)")]
PleOpt = Annotated[PleMode | None, typer.Option(
    "--ple", rich_help_panel=BUILD,
    help="per-layer embeddings: provider (mmap gather, the default) | tbl (in the bundle)")]
HeadQuantOpt = Annotated[Quant | None, typer.Option(
    "--head-quant", rich_help_panel=BUILD,
    help="lm_head storage: int4 | int8 (an untied copy) | fp16 (tied to the embedding); default: --quant")]
TargetOpt = Annotated[Target | None, typer.Option(
    "--target", rich_help_panel=BUILD,
    help="ios (iPhone, the default) | mac (12B/31B: flash-decode Metal kernel on the full layers)")]
KernelOpt = Annotated[Kernel | None, typer.Option(
    "--kernel", rich_help_panel=BUILD,
    help="flash-decode kernel for --target mac builds of 12B/31B (default g8; stock: none, the graph Core AI's "
         "Linux runtime can run)")]
MaxContextOpt = Annotated[int | None, typer.Option(
    "--max-context", min=MIN_CONTEXT, rich_help_panel=BUILD,
    help="longest context the bundle serves (default: 4096, capped at the model's limit). On iOS the engine's KV "
         "grows by doubling from 256, and above 1024 positions an on-device compiled bundle decodes wrong tokens on "
         "iOS 27 beta (apple/coreai-models#124): 1024 is the known-good choice there, longer contexts carry a "
         "warning in the app and the report; E4B's KV holds 96 KiB per position (0.4 GB at 4096)")]
PrefillChunkOpt = Annotated[str | None, typer.Option(
    "--prefill-chunk", rich_help_panel=BUILD,
    help="prompt prefill in static chunks: a prefill_C function beside main (0 = off, the default; 8 | 16, "
         "or a ladder such as 16,8)")]
RecipeOpt = Annotated[str | None, typer.Option(
    "--recipe", rich_help_panel=BUILD, metavar="NAME|YAML",
    help="mixed-bit quantization recipe instead of --quant: a packaged one (`gemmaios recipes`) or a YAML file")]
CalibrationOpt = Annotated[str | None, typer.Option(
    "--calibration", rich_help_panel=BUILD, metavar="PROMPTS",
    help="prompts file (oracle prompts format) for the recipe's AWQ calibration (default: the packaged chat prompts)")]
VisionOpt = Annotated[bool | None, typer.Option(
    "--vision", rich_help_panel=BUILD,
    help="image input (E2B/E4B): the vision asset beside the decoder, image_embeds on main, image prompts in "
         "the oracle and the runtime gate (provider PLE, --target ios); on the 12B as it ships (gemma4_unified, "
         "--target mac): embed_vision and prefill_multimodal beside main in its one asset")]
AudioOpt = Annotated[bool | None, typer.Option(
    "--audio", rich_help_panel=BUILD,
    help="audio input (E2B/E4B with an audio tower): the audio asset beside the decoder, its soft tokens spliced "
         "into image_embeds' id space (provider PLE, --target ios); on the 12B as it ships (gemma4_unified, --target "
         "mac): embed_audio and prefill_multimodal beside main in its one asset")]

# ---- where, with what ------------------------------------------------------------------------
OutOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", help="build folder (default: the only one under ./build, else build/<model>-<arch>-<quant>-<ple>)")]
BuildDirOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", help="build folder (default: the only one under ./build)")]
MacOpt = Annotated[str | None, typer.Option("--mac", help="user@host of a Mac with Xcode 27 for Apple-only steps")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (default: ./gemmaios.yaml)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run the step(s) even if up to date")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout")]
TeamIdOpt = Annotated[str | None, typer.Option(
    "--team-id", rich_help_panel=APP, help="Apple Developer Team ID to sign with (default: team_id in gemmaios.yaml)")]
BundleLocationOpt = Annotated[str | None, typer.Option(
    "--bundle-location", rich_help_panel=APP, metavar="[bundled|documents]",
    help="bundled (the .app carries the model) | documents (pushed beside it)")]
AllowUncompiledOpt = Annotated[bool | None, typer.Option(
    "--allow-uncompiled", rich_help_panel=APP,
    help="iOS: ship a bundle that is not AOT-compiled for --arch (the folder remembers it)")]
AllowTblOpt = Annotated[bool | None, typer.Option(
    "--allow-tbl", rich_help_panel=APP,
    help="iOS: ship a --ple tbl bundle past the entitled-memory arithmetic (the folder remembers it)")]

# ---- the device bench ------------------------------------------------------------------------
UdidOpt = Annotated[str | None, typer.Option("--udid", help="device UDID (needed when several are attached)")]
DeviceMacOpt = Annotated[str | None, typer.Option(
    "--mac", help="user@host of the Mac the iPhone is attached to: install, launch and copy back with its "
                  "`xcrun devicectl` (ssh_options from gemmaios.yaml)")]
BenchTimeoutOpt = Annotated[float, typer.Option(
    "--timeout", min=1.0, rich_help_panel=BENCH, help="seconds to wait for the run to finish (on top of --duration)")]
MountDdiOpt = Annotated[bool, typer.Option(
    "--mount-ddi", rich_help_panel=BENCH, help="mount the developer disk image if it is missing")]
AbPrefillOpt = Annotated[bool, typer.Option(
    "--ab-prefill", rich_help_panel=BENCH,
    help="alternate the bundle's prefill function on (even trials) and off (odd trials) in one run; "
         "`gemmaios report` prints both medians and their ratio")]
AbKvOpt = Annotated[bool, typer.Option(
    "--ab-kv", rich_help_panel=BENCH,
    help="alternate the KV cache's start in one run: 256 as upstream (even trials) and 384 (odd trials: its "
         "doubling binds 768, 1536, 3072 and never 2048 or 4096, the candidate workaround for "
         "apple/coreai-models#124; context capped at 3072 of 4096); bench the "
         "long-context probe (`gemmaios oracle --prompts long-context`) and `gemmaios report` gives each setting's "
         "oracle agreement by context")]
ColdOpt = Annotated[int, typer.Option(
    "--cold", min=0, rich_help_panel=BENCH,
    help="cold launches before the warm trials: each its own app launch running one trial, time to first "
         "token counted from process start (model load included)")]
DurationOpt = Annotated[int, typer.Option(
    "--duration", min=0, rich_help_panel=BENCH,
    help="sustained mode: seconds of continuous decode after the trials (e.g. 600), tok/s sampled over time")]
SampleIntervalOpt = Annotated[int | None, typer.Option(
    "--sample-interval", min=1, rich_help_panel=BENCH, help="sustained mode: seconds between tok/s samples (default 10)")]
AbOpt = Annotated[Path | None, typer.Option(
    "--ab", rich_help_panel=BENCH, metavar="OTHER_BUILD",
    help="A/B against another build folder of the same model (e.g. uniform int4 vs a --recipe build): the two take "
         "turns in ABBA order on the same prompts and decoding, and ab.md / ab.json beside the run compare tok/s, "
         "memory, bytes per token and agreement")]
