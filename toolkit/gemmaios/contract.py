"""The device contract: every fact the iOS app and the Python side (app rendering, deploy, bench,
the device simulator) both use, in one place.

Python reads the constants below; the app reads them from `Contract.swift`, which
`render_swift()` generates into the GemmaiosCore package (tests check the committed copy is
current, and that no Swift source spells one of these values as its own literal).
docs/contracts.md carries the generated table between its `contract` markers.

Regenerate both after a change: `python -m gemmaios.contract --write`.

Payload: what the app reads (the bundle's metadata.json, tokenizer/ and the one model asset
`assets.main` names; the PLE tables; the bench prompt set) lives under one folder,
`PAYLOAD_DIR`, whose root is the .app itself (`bundled`) or the app's Documents
(`documents`). Inside it the layout is the same for both. `payload.py` turns a build folder
into the (local file, destination) pairs app rendering and deploy both use.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .swift_text import swift_string

CONTRACT_VERSION = 3

# ---- bundle locations ---------------------------------------------------------------------------
BUNDLED = "bundled"  # the .app holds the payload; deploy pushes none of it
PUSHED_TO_DOCUMENTS = "documents"  # the .app holds none; deploy pushes the payload into Documents
BUNDLE_LOCATIONS = (BUNDLED, PUSHED_TO_DOCUMENTS)

# ---- the payload folder (same layout in the .app and in Documents) -----------------------------
PAYLOAD_DIR = "gemmaios-payload"
PAYLOAD_BUNDLES_DIR = "bundle"  # <payload>/bundle/<bundle name>/
PAYLOAD_TABLES_DIR = "tables"  # <payload>/tables/<table files>
PROMPT_SET_FILE = "prompts.json"  # <payload>/prompts.json: the bench prompt set (token ids)
BUNDLE_METADATA_FILE = "metadata.json"  # the LanguageBundle's; assets.main → the model asset
BUNDLE_TOKENIZER_DIR = "tokenizer"
TABLE_I8_FILE = "embed_per_layer.i8"  # int8 [V, L*D], row-major
TABLE_SCALE_FILE = "embed_per_layer.scale.f32"  # float32 LE [V]
# bench image prompts (issue 17): <payload>/images/<name>.safetensors, named by a prompt's `image` field
PAYLOAD_IMAGES_DIR = "images"
PROMPT_IMAGE_FIELD = "image"  # prompt set prompt and transcript prompt record: the payload-relative picture file
BENCH_IMAGE_TENSOR = "image"  # that safetensors file's one tensor: uint8 [H, W, 3] RGB, the oracle's source picture
# bench audio prompts (issue 28): <payload>/clips/<name>.safetensors, named by a prompt's `audio` field
PAYLOAD_CLIPS_DIR = "clips"
PROMPT_AUDIO_FIELD = "audio"  # prompt set prompt and transcript prompt record: the payload-relative clip file
BENCH_AUDIO_TENSOR = "samples"  # that file's one tensor: float32 [N] mono at AUDIO_SAMPLE_RATE, the oracle's clip

# ---- Documents (the app's container, read/written over house_arrest) --------------------------
APP_RUNS_DIR = "gemmaios-runs"  # Documents/gemmaios-runs/<run_id>.jsonl: the app's transcripts
TRANSCRIPT_SUFFIX = ".jsonl"
DEVICE_MANIFEST_FILE = "gemmaios-manifest.json"  # Documents/gemmaios-manifest.json, the toolkit's only
DEVICE_MANIFEST_SCHEMA = "gemmaios.device-manifest/1"

# ---- schemas ------------------------------------------------------------------------------------
TRANSCRIPT_SCHEMA = "gemmaios.transcript/1"
PROMPT_SET_SCHEMA = "gemmaios.prompt-set/1"

# ---- launch (devicectl / DVT process control): argument or environment --------------------------
LAUNCH_ARG_PREFIX = "-gemmaios-"
TRUE_VALUES = ("1", "true", "yes")


@dataclass(frozen=True)
class LaunchSetting:
    key: str  # Swift name
    env: str
    arg: str  # `-gemmaios-<name>`: a flag, or followed by its value
    kind: str  # "flag" | "int" | "string"
    meaning: str


LAUNCH_SETTINGS = (
    LaunchSetting("bench", "GEMMAIOS_BENCH", LAUNCH_ARG_PREFIX + "bench", "flag",
                  "run the bench unattended and write a transcript"),
    LaunchSetting("trials", "GEMMAIOS_TRIALS", LAUNCH_ARG_PREFIX + "trials", "int",
                  "trials over the prompt set (default: the rendered app's)"),
    LaunchSetting("runId", "GEMMAIOS_RUN_ID", LAUNCH_ARG_PREFIX + "run-id", "string",
                  "names the transcript <run_id>.jsonl (no '/'; default: a UTC timestamp)"),
    LaunchSetting("udid", "GEMMAIOS_UDID", LAUNCH_ARG_PREFIX + "udid", "string",
                  "the device's UDID, written to the transcript header (apps cannot read it)"),
    LaunchSetting("clearSpecCache", "GEMMAIOS_CLEAR_SPEC_CACHE", LAUNCH_ARG_PREFIX + "clear-spec-cache", "flag",
                  "remove Library/Caches/coreai-cache before loading (a cold specialization)"),
    LaunchSetting("prefillOff", "GEMMAIOS_PREFILL_OFF", LAUNCH_ARG_PREFIX + "prefill-off", "flag",
                  "prefill through `main` only, even when the bundle has a prefill function (A/B in one build)"),
    LaunchSetting("abPrefill", "GEMMAIOS_AB_PREFILL", LAUNCH_ARG_PREFIX + "ab-prefill", "flag",
                  "bench: alternate the prefill function on (even trials) and off (odd trials), one run"),
    # ---- long contexts (issue 27, apple/coreai-models#124) -------------------------------------------
    LaunchSetting("kv384", "GEMMAIOS_KV_384", LAUNCH_ARG_PREFIX + "kv-384", "flag",
                  "start the KV cache at 384 positions so it never binds 2048 or 4096 (context capped at the largest "
                  "384·2^k within the bundle's)"),
    LaunchSetting("abKV", "GEMMAIOS_AB_KV", LAUNCH_ARG_PREFIX + "ab-kv", "flag",
                  "bench: alternate the KV cache's start, 256 (even trials) and 384 (odd trials), one run"),
    # ---- bench protocol (issue 16): cold launches, sustained decode ---------------------------------
    LaunchSetting("launchIndex", "GEMMAIOS_LAUNCH_INDEX", LAUNCH_ARG_PREFIX + "launch-index", "int",
                  "bench: this launch's number in a multi-launch run (0 starts the transcript, later launches "
                  "append to it; default 0)"),
    LaunchSetting("launches", "GEMMAIOS_LAUNCHES", LAUNCH_ARG_PREFIX + "launches", "int",
                  "bench: launches in the run; the last one writes the footer (default 1)"),
    LaunchSetting("coldLaunch", "GEMMAIOS_COLD_LAUNCH", LAUNCH_ARG_PREFIX + "cold-launch", "flag",
                  "bench: this launch is one cold trial (time to first token counted from process start, model "
                  "load included)"),
    LaunchSetting("firstTrial", "GEMMAIOS_FIRST_TRIAL", LAUNCH_ARG_PREFIX + "first-trial", "int",
                  "bench: the number of this launch's first trial (trial numbers stay unique across launches; "
                  "default 0)"),
    LaunchSetting("duration", "GEMMAIOS_DURATION", LAUNCH_ARG_PREFIX + "duration", "int",
                  "bench: after the trials, decode continuously for this many seconds (sustained mode; default 0 "
                  "= off)"),
    LaunchSetting("sampleInterval", "GEMMAIOS_SAMPLE_INTERVAL", LAUNCH_ARG_PREFIX + "sample-interval", "int",
                  "bench: sustained mode's seconds between tok/s samples (default 10)"),
)
ENV = {s.key: s.env for s in LAUNCH_SETTINGS}
BENCH_ARG = LAUNCH_ARG_PREFIX + "bench"

# ---- bench protocol records (issue 16) -------------------------------------------------------------
SUSTAINED_SAMPLE_INTERVAL = 10  # default seconds between sustained tok/s samples
LAUNCH_KIND_COLD = "cold"  # a launch running one trial, timed from process start
LAUNCH_KIND_WARM = "warm"  # a launch running its trials back to back in one process
RECORD_LAUNCH = "launch"  # transcript record opening each launch (kind, thermal and battery at its start)
RECORD_LAUNCH_END = "launch_end"  # transcript record closing each launch (thermal and battery at its end)
RECORD_THERMAL = "thermal"  # transcript record: the thermal state changed
RECORD_SAMPLE = "sample"  # transcript record: one sustained-mode tok/s sample
# transcript record: the bench failed (the app's reason, the prompt it was on); the run's last record, no footer
RECORD_FAILURE = "failure"

# ---- decode rule (must match gemmaios.oracle: greedy, exactly N tokens, no EOS stop) -----------
DECODE_METHOD = "greedy"
BENCH_STOP_AT_EOS = False  # the bench decodes exactly the prompt set's max_new_tokens
CHAT_STOP_AT_EOS = True  # interactive chat ends a reply at an EOS id
CHAT_MAX_NEW_TOKENS = 256
# ---- chat framing (Gemma 4): the reasoning channel a reply may open, routed apart from the answer --
CHAT_CHANNEL_START = "<|channel>"
CHAT_CHANNEL_END = "<channel|>"
CHAT_THOUGHT_NAME = "thought\n"  # the line that opens the reasoning channel (not shown)
CHAT_THINKING_ARGUMENT = "enable_thinking"  # the chat template's switch for thinking

# ---- graph I/O the app binds (convert's decode graph) -------------------------------------------
PLE_TOKENS_INPUT = "ple_tokens"  # provider: fp16 [1,1,L,D] per token
PLE_TABLE_INPUT = "ple_table"  # tbl: int8 [V, L*D], bound once
PLE_SCALE_INPUT = "ple_scale"  # tbl: float32 [V], bound once
MAIN_FUNCTION = "main"
PREFILL_ROLE = "prefill"  # metadata.json language.function_map role of the prefill_C functions
PROMPT_PREFILL_FUNCTION = "prefill_function"  # transcript prompt record: the function that prefilled, or null

# ---- image input (E2B/E4B): the vision asset and the id-space splice ----------------------------
# metadata.json `gemmaios.vision` describes the vision asset (absent: a text-only bundle). The app
# runs the vision asset once per image, binds its output as `main`'s static `image_embeds` input,
# rewrites the k-th image soft token of the expanded prompt to id V + k (V: language.vocab_size),
# and feeds the prompt token by token. The PLE provider gives every id >= V the row of the token
# id stored under `gemmaios.vision[SPLICED_PLE_ROW_KEY]` (HF: the pad token's per-layer row).
VISION_METADATA_KEY = "vision"  # metadata.json gemmaios.<it>
VISION_ASSET_FIELD = "asset"  # gemmaios.vision.<it>: the vision .aimodel (…c after AOT), in the bundle folder
VISION_PIXELS_INPUT = "pixel_values"  # vision asset: fp16 [1, P, 3*p*p], values in [0,1], padding rows 0
VISION_POSITIONS_INPUT = "pixel_position_ids"  # vision asset: int32 [1, P, 2] (x, y); padding (-1, -1)
VISION_OUTPUT = "image_embeds"  # vision asset: fp16 [N, hidden], the first num_soft_tokens rows real
IMAGE_EMBEDS_INPUT = "image_embeds"  # main: fp16 [N, hidden], static (zeros when the prompt has no image)
SPLICED_PLE_ROW_KEY = "pad_token_id"  # gemmaios.vision.<it>: the PLE row every id >= V takes


# ---- audio input (E2B/E4B, issue 28): the audio asset -------------------------------------------
# metadata.json `gemmaios.audio` describes the audio asset (absent: the bundle takes no audio). The
# app computes HF's log-mel features (128 bins, 16 kHz), pads them to the asset's static frame
# count with a 0/1 frame mask, and runs the asset once per clip; its first num_soft_tokens rows
# are the clip's soft tokens in HF's order.
AUDIO_METADATA_KEY = "audio"  # metadata.json gemmaios.<it>
AUDIO_ASSET_FIELD = "asset"  # gemmaios.audio.<it>: the audio .aimodel (…c after AOT), in the bundle folder
AUDIO_FEATURES_INPUT = "input_features"  # audio asset: fp16 [1, F, 128] log-mel, padding rows 0
AUDIO_MASK_INPUT = "input_features_mask"  # audio asset: int32 [1, F], 1 for a real frame
AUDIO_OUTPUT = "audio_embeds"  # audio asset: fp16 [T, hidden], T = F after two stride-2 convolutions
# The splice: audio soft tokens take the image tokens' id space and `main` input. The k-th audio
# soft token of a prompt becomes id V + k, and the audio asset's output is bound as `main`'s static
# soft-token rows (a prompt holds one clip or one picture; the rows are max(image, audio) tokens).
# The PLE provider gives them the pad row (ple_row), as HF does for every multimodal position.
AUDIO_EMBEDS_INPUT = IMAGE_EMBEDS_INPUT


# ---- the 12B's multimodal bundle (gemma4_unified, issue 29): one asset, four functions ---------------
# metadata.json `gemmaios.multimodal` holds the token ids, sizes and stop ids (from the checkpoint) and
# `functions` (each function's I/O as the asset declares it); absent: not the multi-function bundle.
# The app (UnifiedEngine.swift) runs a prompt with pictures / clips as `gemmaios run` does
# (gemmaios.hostrun.multimodal): embed_vision / embed_audio per item, one prefill_multimodal over the
# whole prompt (positions 0..S-1, both boolean masks [S, S]), then `main` one token per call, both
# functions on the same KV states.
MULTIMODAL_METADATA_KEY = "multimodal"  # metadata.json gemmaios.<it>
MULTIMODAL_FUNCTIONS_FIELD = "functions"  # gemmaios.multimodal.<it>: {function name: its I/O}
PREFILL_MULTIMODAL_FUNCTION = "prefill_multimodal"
EMBED_VISION_FUNCTION = "embed_vision"
EMBED_AUDIO_FUNCTION = "embed_audio"
INPUT_IDS_INPUT = "input_ids"  # main and prefill_multimodal: int32 [1, S]
POSITION_IDS_INPUT = "position_ids"  # main and prefill_multimodal: int32 [1, P], 0..P-1
LOGITS_OUTPUT = "logits"  # main and prefill_multimodal: [1, 1, V] (the last row)
KEY_CACHE_STATE, VALUE_CACHE_STATE = "keyCache", "valueCache"  # the KV states both functions share
MM_EMBEDS_INPUT = "mm_embeds"  # prefill_multimodal: fp16 [1, S, hidden], the embedders' rows where mm_mask is set
MM_MASK_INPUT = "mm_mask"  # prefill_multimodal: bool [1, S], true at soft tokens
MASK_SLIDING_INPUT = "mask_sliding"  # prefill_multimodal: bool [1, 1, S, P], true = attend (sliding layers)
MASK_GLOBAL_INPUT = "mask_global"  # prefill_multimodal: bool [1, 1, S, P], true = attend (global layers)
PREFILL_MULTIMODAL_INPUTS = (INPUT_IDS_INPUT, MM_EMBEDS_INPUT, MM_MASK_INPUT, POSITION_IDS_INPUT, MASK_SLIDING_INPUT,
                             MASK_GLOBAL_INPUT)
EMBED_PIXELS_INPUT = "pixel_values"  # embed_vision: fp16 [1, N, patch_dim], one picture's real rows
EMBED_POSITIONS_INPUT = "image_position_ids"  # embed_vision: int32 [1, N, 2] (x, y)
EMBED_VISION_INPUTS = (EMBED_PIXELS_INPUT, EMBED_POSITIONS_INPUT)
EMBED_FRAMES_INPUT = "input_features"  # embed_audio: fp16 [1, T, samples_per_token], raw 16 kHz frames
EMBED_AUDIO_INPUTS = (EMBED_FRAMES_INPUT,)
EMBEDS_OUTPUT = "embeds"  # embed_vision / embed_audio: [1, N or T, hidden]
IMAGE_MARKER, AUDIO_MARKER = "<image>", "<audio>"  # in a rendered prompt's text: where a picture / a clip goes


def ple_row(token: int, vocab_size: int, pad_token_id: int) -> int:
    """The PLE table row the provider gathers for a graph token id (ids >= V: spliced image tokens)."""
    return pad_token_id if token >= vocab_size else token


def splice_soft_tokens(ids, soft_token_id: int, vocab_size: int) -> tuple[list[int], int]:
    """The splice (image and audio): HF ids → graph ids, the k-th `soft_token_id` (0-based, in prompt
    order) becoming vocab_size + k; returns (the graph ids, how many soft tokens there were)."""
    out, k = [], 0
    for t in ids:
        if int(t) == soft_token_id:
            out.append(vocab_size + k)
            k += 1
        else:
            out.append(int(t))
    return out, k


# ---- KV capacity and the iOS guard (issue 27; apple/coreai-models#124) ---------------------------
# The pinned engine's growing KV cache (GrowingKVCache, the pipelined engine) starts at 256
# positions and doubles until it holds prompt + new tokens (capped at the bundle's
# max_context_length); it never shrinks while the engine lives (reset(to:) keeps the buffers).
# On iPhone 17 Pro / iOS 27 beta an on-device-compiled pipelined decode bundle whose KV state is
# bound at 2048 or 4096 positions decodes garbage from the first token; <= 1024 is token-exact
# (macOS is correct at every size). Until a phone says otherwise, an iOS binding above
# IOS_KV_SAFE_CAPACITY carries the named warning below in the app, the transcript and the report.
KV_INITIAL_CAPACITY = 256
IOS_KV_SAFE_CAPACITY = 1024
KV_FAULT_ISSUE = "apple/coreai-models#124"
KV_FAULT_WARNING = "ios-kv-capacity-above-1024"  # the warning's name (app status, transcript, report)
PROMPT_KV_CAPACITY = "kv_capacity"  # transcript prompt record: KV positions the engine had bound for it
# The candidate workaround, with no engine patch: start the growing KV cache at 384 positions
# (EngineOptions.kvCacheSize) so its doubling binds 384, 768, 1536, 3072, 6144, … — never 2048 or 4096 —
# and cap the context at the largest such size within the bundle's (3072 of 4096). Unverified on a phone:
# `bench --ab-kv` alternates it with upstream's start (256) trial by trial, so the first phone run
# measures both and says whether #124 follows the bound size or the context length.
KV_ALT_INITIAL_CAPACITY = 384
KV_GROWTH_DOUBLING, KV_GROWTH_ALT = "from-256", "from-384"  # the kv_growth values: the KV cache's first size
PROMPT_KV_GROWTH = "kv_growth"  # transcript prompt/load record: KV_GROWTH_DOUBLING (upstream) or KV_GROWTH_ALT
PROMPT_WARNINGS = "warnings"  # transcript prompt record: named warnings that applied to it
KV_GUARD_METADATA_KEY = "kv_guard"  # metadata.json gemmaios.<it>: what an iOS build allows (convert)


def kv_alt_max_context(max_context: int) -> int:
    """The context the 384-start allows within a bundle's: the largest 384·2^k not above it (3072 of 4096),
    so the doubling never binds past the graph's own limit."""
    capacity = KV_ALT_INITIAL_CAPACITY
    while capacity * 2 <= max_context:
        capacity *= 2
    return min(capacity, max_context)


def kv_bound_capacity(needed: int, max_context: int, current: int = KV_INITIAL_CAPACITY) -> int:
    """The KV capacity the pinned engine binds for `needed` positions (prompt + new tokens),
    growing from `current` (its allocation so far; the first is EngineOptions.kvCacheSize, default
    256): the engine asks for min(needed, max_context) and GrowingKVCache doubles until that fits
    (no cap of its own on a dynamic sequence dim)."""
    target = min(needed, max_context)
    capacity = max(current, 1)
    while capacity < target:
        capacity *= 2
    return capacity


def kv_guard(max_context: int) -> dict:
    """What an iOS build records under metadata.json gemmaios[KV_GUARD_METADATA_KEY]: the context it
    allows, the largest KV binding that context can reach, and whether that stays known-good."""
    largest = kv_bound_capacity(max_context, max_context)
    return {"allowed_context": max_context, "largest_kv_capacity": largest,
            "safe_kv_capacity": IOS_KV_SAFE_CAPACITY, "within_safe": largest <= IOS_KV_SAFE_CAPACITY,
            "issue": KV_FAULT_ISSUE, "warning": KV_FAULT_WARNING}


def kv_fault_warning(capacity: int, platform: str) -> str | None:
    """The #124 warning's text when an iOS engine binds its KV above the safe capacity, else None."""
    if platform != "iOS" or capacity <= IOS_KV_SAFE_CAPACITY:
        return None
    return (f"{KV_FAULT_WARNING}: the KV cache is bound at {capacity} positions; on iOS 27 beta an on-device "
            f"compiled pipelined bundle decodes wrong tokens at 2048 or 4096 ({KV_FAULT_ISSUE}); "
            f"stay within {IOS_KV_SAFE_CAPACITY} tokens of context until a phone run shows it fixed")


# ---- engine environment the app sets before creating the engine --------------------------------
# S=1 decode graphs must prefill as one-token steps (the pipelined engine reads it at planning).
ENGINE_ENVIRONMENT = {"COREAI_CHUNK_THRESHOLD": "1"}


# ---- image input (issue 17): the app's preprocessing = HF's Gemma 4 image processor -------------
# transformers 5.24 `Gemma4ImageProcessorPil` defaults (the PIL backend, which AutoProcessor picks
# when torchvision is absent): aspect-preserving resize to sides that are multiples of
# patch*kernel within the patch budget, PIL bicubic (antialiased, 8-bit), x * (1/255) (no
# normalisation), 16x16 patches in (row, col, channel) order, positions (x=col, y=row), padded to
# the static grid of budget*kernel^2 patches with zero pixels and position -1.
IMAGE_PATCH_SIZE = 16
IMAGE_POOLING_KERNEL = 3  # 3x3 patches pool into one soft token
IMAGE_MAX_SOFT_TOKENS = 280  # the processor's default budget (= the static grid the vision asset takes)
IMAGE_SUPPORTED_SOFT_TOKENS = (70, 140, 280, 560, 1120)  # budgets HF accepts
IMAGE_CHANNELS = 3  # RGB
IMAGE_RESCALE_DIVISOR = 255  # pixel_values = float32(float64(u8) * (1/255))
IMAGE_PAD_POSITION = -1  # pixel_position_ids of the padding patches
# The id splice (the vision block above): the k-th image soft token of a prompt (0-based, in
# prompt order) is rewritten host-side to vocab_size + k; boi/eoi stay plain text ids.


def image_max_patches(max_soft_tokens: int = IMAGE_MAX_SOFT_TOKENS) -> int:
    """Rows of the static patch grid (pixel_values [1, it, patch*patch*3])."""
    return max_soft_tokens * IMAGE_POOLING_KERNEL**2


# ---- audio input (issue 28): the app's log-mel front end = HF's Gemma 4 audio feature extractor ---
# transformers 5.x `Gemma4AudioFeatureExtractor` defaults (tests/test_swift_audio.py checks each
# against HF): 16 kHz mono float PCM; a clip longer than AUDIO_MAX_SAMPLES is cut, then zero-padded
# to a multiple of AUDIO_PAD_MULTIPLE samples; semicausal framing (frame_length // 2 zeros in
# front), frames of AUDIO_FRAME_LENGTH samples every AUDIO_HOP_LENGTH; periodic Hann window; |rfft|
# over AUDIO_FFT_LENGTH points (magnitude, not power); AUDIO_MEL_BINS triangular HTK-mel filters
# from AUDIO_MIN_FREQUENCY to AUDIO_MAX_FREQUENCY (no area norm); log(mel + AUDIO_MEL_FLOOR); no
# preemphasis, dither or per-bin normalisation. Frame i is real when its whole window is audio
# (sample i*hop + frame_length//2 lies inside the clip); features of the other frames are 0.
AUDIO_SAMPLE_RATE = 16_000
AUDIO_MEL_BINS = 128
AUDIO_FRAME_LENGTH = 320  # 20 ms
AUDIO_HOP_LENGTH = 160  # 10 ms
AUDIO_FFT_LENGTH = 512
AUDIO_MIN_FREQUENCY = 0.0
AUDIO_MAX_FREQUENCY = 8000.0
AUDIO_MEL_FLOOR = 0.001
AUDIO_MAX_SAMPLES = 480_000  # 30 s: HF's truncation (max_length)
AUDIO_PAD_MULTIPLE = 128  # HF's pad_to_multiple_of


def audio_padded_samples(num_samples: int) -> int:
    """The samples HF's extractor frames for a clip: cut at AUDIO_MAX_SAMPLES, padded up to a multiple
    of AUDIO_PAD_MULTIPLE (a static pad: pass AUDIO_MAX_SAMPLES or the asset's clip length)."""
    n = min(num_samples, AUDIO_MAX_SAMPLES)
    return -(-n // AUDIO_PAD_MULTIPLE) * AUDIO_PAD_MULTIPLE


def audio_mel_frames(padded_samples: int) -> int:
    """Mel frames over `padded_samples` (semicausal: frame_length // 2 zeros in front, windows of
    frame_length + 1 samples every hop, the last sample unused without preemphasis)."""
    return max(0, (padded_samples + AUDIO_FRAME_LENGTH // 2 - (AUDIO_FRAME_LENGTH + 1)) // AUDIO_HOP_LENGTH + 1)


def audio_real_frames(num_samples: int, frames: int) -> int:
    """How many of the first `frames` frames are real audio for a clip of `num_samples` (the mask's
    ones: frame i needs sample i*hop + frame_length//2 inside the clip, after the cut)."""
    n = min(num_samples, AUDIO_MAX_SAMPLES)
    if n <= AUDIO_FRAME_LENGTH // 2:
        return 0
    return min(frames, (n - AUDIO_FRAME_LENGTH // 2 - 1) // AUDIO_HOP_LENGTH + 1)


# ---- the facts, for Swift and the docs -----------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    swift: str  # name inside `enum Contract`
    value: object
    meaning: str
    python: str  # where Python reads it


def facts() -> list[Fact]:
    """Every fact, in the order of the generated Swift file and docs table."""
    m = "gemmaios.contract"
    items = [
        Fact("version", CONTRACT_VERSION, "contract version (bump on any change the other side must follow)",
             f"{m}.CONTRACT_VERSION"),
        Fact("payloadFolder", PAYLOAD_DIR, "payload root: <App>.app/<it> (bundled) or Documents/<it> (documents)",
             f"{m}.PAYLOAD_DIR"),
        Fact("bundlesFolder", PAYLOAD_BUNDLES_DIR, "<payload>/<it>/<bundle name>/: the LanguageBundle",
             f"{m}.PAYLOAD_BUNDLES_DIR"),
        Fact("tablesFolder", PAYLOAD_TABLES_DIR, "<payload>/<it>/: the PLE table files", f"{m}.PAYLOAD_TABLES_DIR"),
        Fact("promptSetFile", PROMPT_SET_FILE, "<payload>/<it>: the bench prompt set (token ids)",
             f"{m}.PROMPT_SET_FILE"),
        Fact("imagesFolder", PAYLOAD_IMAGES_DIR, "<payload>/<it>/<name>.safetensors: bench image prompts' pictures",
             f"{m}.PAYLOAD_IMAGES_DIR"),
        Fact("promptImageField", PROMPT_IMAGE_FIELD, "prompt-set prompt / transcript prompt record: its picture "
             "(payload-relative; absent: a text prompt)", f"{m}.PROMPT_IMAGE_FIELD"),
        Fact("benchImageTensor", BENCH_IMAGE_TENSOR, "the picture file's tensor: uint8 [H, W, 3] RGB",
             f"{m}.BENCH_IMAGE_TENSOR"),
        Fact("clipsFolder", PAYLOAD_CLIPS_DIR, "<payload>/<it>/<name>.safetensors: bench audio prompts' clips",
             f"{m}.PAYLOAD_CLIPS_DIR"),
        Fact("promptAudioField", PROMPT_AUDIO_FIELD, "prompt-set prompt / transcript prompt record: its clip "
             "(payload-relative; absent: no clip)", f"{m}.PROMPT_AUDIO_FIELD"),
        Fact("benchAudioTensor", BENCH_AUDIO_TENSOR, "the clip file's tensor: float32 [N] mono samples at audioSampleRate",
             f"{m}.BENCH_AUDIO_TENSOR"),
        Fact("promptSetSchema", PROMPT_SET_SCHEMA, "`schema` of the prompt-set file", f"{m}.PROMPT_SET_SCHEMA"),
        Fact("bundleMetadataFile", BUNDLE_METADATA_FILE, "the bundle's metadata (assets.main → the model asset)",
             f"{m}.BUNDLE_METADATA_FILE"),
        Fact("bundleTokenizerFolder", BUNDLE_TOKENIZER_DIR, "the bundle's tokenizer folder", f"{m}.BUNDLE_TOKENIZER_DIR"),
        Fact("tableI8File", TABLE_I8_FILE, "int8 [V, L*D] PLE table", f"{m}.TABLE_I8_FILE (tables.I8_NAME)"),
        Fact("tableScaleFile", TABLE_SCALE_FILE, "float32 [V] PLE row scales", f"{m}.TABLE_SCALE_FILE (tables.SCALE_NAME)"),
        Fact("runsFolder", APP_RUNS_DIR, "Documents/<it>/<run_id>.jsonl: bench transcripts", f"{m}.APP_RUNS_DIR"),
        Fact("transcriptSuffix", TRANSCRIPT_SUFFIX, "transcript file suffix", f"{m}.TRANSCRIPT_SUFFIX"),
        Fact("deviceManifestFile", DEVICE_MANIFEST_FILE, "Documents/<it>: deploy's record (the app never writes it)",
             f"{m}.DEVICE_MANIFEST_FILE"),
        Fact("transcriptSchema", TRANSCRIPT_SCHEMA, "transcript header `schema`", "gemmaios.transcript.SCHEMA"),
        Fact("launchArgumentPrefix", LAUNCH_ARG_PREFIX, "launch arguments are <it><name> [value]",
             f"{m}.LAUNCH_ARG_PREFIX"),
        Fact("trueValues", list(TRUE_VALUES), "environment values that turn a flag on", f"{m}.TRUE_VALUES"),
    ]
    for s in LAUNCH_SETTINGS:
        items.append(Fact(f"{s.key}Env", s.env, f"environment: {s.meaning} ({s.kind})", f"{m}.ENV[{s.key!r}]"))
        items.append(Fact(f"{s.key}Argument", s.arg, f"launch argument for {s.env}", f"{m}.LAUNCH_SETTINGS"))
    items += [
        Fact("benchStopsAtEOS", BENCH_STOP_AT_EOS, "bench: exactly max_new_tokens per prompt, no EOS stop (the oracle's rule)",
             f"{m}.BENCH_STOP_AT_EOS (oracle decode.stop_at_eos)"),
        Fact("chatStopsAtEOS", CHAT_STOP_AT_EOS, "chat: a reply ends at an EOS id", f"{m}.CHAT_STOP_AT_EOS"),
        Fact("chatMaxNewTokens", CHAT_MAX_NEW_TOKENS, "chat: reply length cap", f"{m}.CHAT_MAX_NEW_TOKENS"),
        Fact("chatChannelStart", CHAT_CHANNEL_START, "chat: opens a reply's reasoning channel", f"{m}.CHAT_CHANNEL_START"),
        Fact("chatChannelEnd", CHAT_CHANNEL_END, "chat: closes it; the answer follows", f"{m}.CHAT_CHANNEL_END"),
        Fact("chatThoughtName", CHAT_THOUGHT_NAME, "chat: the channel's first line (not shown)", f"{m}.CHAT_THOUGHT_NAME"),
        Fact("chatThinkingArgument", CHAT_THINKING_ARGUMENT, "chat template argument that turns thinking on",
             f"{m}.CHAT_THINKING_ARGUMENT"),
        Fact("pleTokensInput", PLE_TOKENS_INPUT, "provider bundles: fp16 [1,1,L,D] per token", f"{m}.PLE_TOKENS_INPUT"),
        Fact("pleTableInput", PLE_TABLE_INPUT, "tbl bundles: int8 [V, L*D]", f"{m}.PLE_TABLE_INPUT"),
        Fact("pleScaleInput", PLE_SCALE_INPUT, "tbl bundles: float32 [V]", f"{m}.PLE_SCALE_INPUT"),
        Fact("mainFunction", MAIN_FUNCTION, "the graph's function", f"{m}.MAIN_FUNCTION"),
        Fact("prefillRole", PREFILL_ROLE, "function_map role naming the prefill_C functions (input_ids [1,C])",
             f"{m}.PREFILL_ROLE"),
        Fact("promptPrefillFunctionField", PROMPT_PREFILL_FUNCTION,
             "transcript prompt record: the prefill function that ran, or null (main only)",
             f"{m}.PROMPT_PREFILL_FUNCTION"),
        Fact("visionMetadataKey", VISION_METADATA_KEY, "metadata.json gemmaios.<it>: the vision asset's facts "
             "(absent: text-only bundle)", f"{m}.VISION_METADATA_KEY"),
        Fact("visionAssetField", VISION_ASSET_FIELD, "gemmaios.vision.<it>: the vision asset's file in the bundle folder",
             f"{m}.VISION_ASSET_FIELD"),
        Fact("visionPixelsInput", VISION_PIXELS_INPUT, "vision asset: fp16 [1,P,3*p*p] patches in [0,1], padding rows 0",
             f"{m}.VISION_PIXELS_INPUT"),
        Fact("visionPositionsInput", VISION_POSITIONS_INPUT, "vision asset: int32 [1,P,2] (x,y) per patch, padding (-1,-1)",
             f"{m}.VISION_POSITIONS_INPUT"),
        Fact("visionOutput", VISION_OUTPUT, "vision asset output: fp16 [N,hidden], first num_soft_tokens rows real",
             f"{m}.VISION_OUTPUT"),
        Fact("imageEmbedsInput", IMAGE_EMBEDS_INPUT, "main: static fp16 [N,hidden]; ids >= V read row id-V (zeros: no image)",
             f"{m}.IMAGE_EMBEDS_INPUT"),
        Fact("splicedPleRowKey", SPLICED_PLE_ROW_KEY, "PLE provider: ids >= V gather the row gemmaios.vision.<it> names "
             "(the pad token's)", f"{m}.SPLICED_PLE_ROW_KEY ({m}.ple_row)"),
        Fact("audioMetadataKey", AUDIO_METADATA_KEY, "metadata.json gemmaios.<it>: the audio asset's facts "
             "(absent: the bundle takes no audio)", f"{m}.AUDIO_METADATA_KEY"),
        Fact("audioAssetField", AUDIO_ASSET_FIELD, "gemmaios.audio.<it>: the audio asset's file in the bundle folder",
             f"{m}.AUDIO_ASSET_FIELD"),
        Fact("audioFeaturesInput", AUDIO_FEATURES_INPUT, "audio asset: fp16 [1,F,128] log-mel features, padding rows 0",
             f"{m}.AUDIO_FEATURES_INPUT"),
        Fact("audioMaskInput", AUDIO_MASK_INPUT, "audio asset: int32 [1,F] frame mask, 1 for a real frame",
             f"{m}.AUDIO_MASK_INPUT"),
        Fact("audioOutput", AUDIO_OUTPUT, "audio asset output: fp16 [T,hidden], first num_soft_tokens rows real",
             f"{m}.AUDIO_OUTPUT"),
        Fact("audioEmbedsInput", AUDIO_EMBEDS_INPUT, "main: the audio asset's rows bind here; the k-th audio soft "
             "token becomes id V+k and takes the pad PLE row, as image tokens do", f"{m}.AUDIO_EMBEDS_INPUT"),
        Fact("multimodalMetadataKey", MULTIMODAL_METADATA_KEY, "metadata.json gemmaios.<it>: the 12B's multimodal "
             "constants and functions (absent: not the multi-function bundle)", f"{m}.MULTIMODAL_METADATA_KEY"),
        Fact("multimodalFunctionsField", MULTIMODAL_FUNCTIONS_FIELD, "gemmaios.multimodal.<it>: function name → its I/O",
             f"{m}.MULTIMODAL_FUNCTIONS_FIELD"),
        Fact("prefillMultimodalFunction", PREFILL_MULTIMODAL_FUNCTION, "the whole multimodal prompt in one call "
             "(caller-built masks), the KV states filled", f"{m}.PREFILL_MULTIMODAL_FUNCTION"),
        Fact("embedVisionFunction", EMBED_VISION_FUNCTION, "one picture's merged patch rows → its soft-token rows",
             f"{m}.EMBED_VISION_FUNCTION"),
        Fact("embedAudioFunction", EMBED_AUDIO_FUNCTION, "one clip's 16 kHz frames → its soft-token rows",
             f"{m}.EMBED_AUDIO_FUNCTION"),
        Fact("inputIdsInput", INPUT_IDS_INPUT, "main / prefill_multimodal: int32 [1,S] token ids", f"{m}.INPUT_IDS_INPUT"),
        Fact("positionIdsInput", POSITION_IDS_INPUT, "main / prefill_multimodal: int32 [1,P] positions 0..P-1",
             f"{m}.POSITION_IDS_INPUT"),
        Fact("logitsOutput", LOGITS_OUTPUT, "main / prefill_multimodal: logits [1,1,V] of the last row",
             f"{m}.LOGITS_OUTPUT"),
        Fact("keyCacheState", KEY_CACHE_STATE, "the key cache state (main and prefill_multimodal share it)",
             f"{m}.KEY_CACHE_STATE"),
        Fact("valueCacheState", VALUE_CACHE_STATE, "the value cache state", f"{m}.VALUE_CACHE_STATE"),
        Fact("mmEmbedsInput", MM_EMBEDS_INPUT, "prefill_multimodal: fp16 [1,S,hidden], embedder rows where mm_mask is set",
             f"{m}.MM_EMBEDS_INPUT"),
        Fact("mmMaskInput", MM_MASK_INPUT, "prefill_multimodal: bool [1,S], true at soft tokens", f"{m}.MM_MASK_INPUT"),
        Fact("maskSlidingInput", MASK_SLIDING_INPUT, "prefill_multimodal: bool [1,1,S,P] (true = attend), sliding layers",
             f"{m}.MASK_SLIDING_INPUT"),
        Fact("maskGlobalInput", MASK_GLOBAL_INPUT, "prefill_multimodal: bool [1,1,S,P] (true = attend), global layers",
             f"{m}.MASK_GLOBAL_INPUT"),
        Fact("embedPixelsInput", EMBED_PIXELS_INPUT, "embed_vision: fp16 [1,N,patch_dim] merged patch rows",
             f"{m}.EMBED_PIXELS_INPUT"),
        Fact("embedPositionsInput", EMBED_POSITIONS_INPUT, "embed_vision: int32 [1,N,2] (x,y) per row",
             f"{m}.EMBED_POSITIONS_INPUT"),
        Fact("embedFramesInput", EMBED_FRAMES_INPUT, "embed_audio: fp16 [1,T,samples_per_token] raw frames",
             f"{m}.EMBED_FRAMES_INPUT"),
        Fact("embedsOutput", EMBEDS_OUTPUT, "embed_vision / embed_audio output: [1,N,hidden]", f"{m}.EMBEDS_OUTPUT"),
        Fact("imageMarker", IMAGE_MARKER, "rendered prompt text: where a picture goes", f"{m}.IMAGE_MARKER"),
        Fact("audioMarker", AUDIO_MARKER, "rendered prompt text: where a clip goes", f"{m}.AUDIO_MARKER"),
        Fact("sustainedSampleInterval", SUSTAINED_SAMPLE_INTERVAL, "bench: default seconds between sustained samples",
             f"{m}.SUSTAINED_SAMPLE_INTERVAL"),
        Fact("launchKindCold", LAUNCH_KIND_COLD, "launch record kind: one trial timed from process start",
             f"{m}.LAUNCH_KIND_COLD"),
        Fact("launchKindWarm", LAUNCH_KIND_WARM, "launch record kind: trials back to back in one process",
             f"{m}.LAUNCH_KIND_WARM"),
        Fact("launchRecord", RECORD_LAUNCH, "transcript record type opening each launch", f"{m}.RECORD_LAUNCH"),
        Fact("launchEndRecord", RECORD_LAUNCH_END, "transcript record type closing each launch",
             f"{m}.RECORD_LAUNCH_END"),
        Fact("thermalRecord", RECORD_THERMAL, "transcript record type: a thermal state change", f"{m}.RECORD_THERMAL"),
        Fact("sampleRecord", RECORD_SAMPLE, "transcript record type: a sustained tok/s sample", f"{m}.RECORD_SAMPLE"),
        Fact("failureRecord", RECORD_FAILURE, "transcript record type: the bench failed (reason, the prompt it was "
             "on); the last record, no footer follows", f"{m}.RECORD_FAILURE"),
        Fact("kvInitialCapacity", KV_INITIAL_CAPACITY, "KV positions the pinned engine allocates first (it doubles "
             "from there up to max_context, never shrinking)", f"{m}.KV_INITIAL_CAPACITY ({m}.kv_bound_capacity)"),
        Fact("iosKVSafeCapacity", IOS_KV_SAFE_CAPACITY, "iOS: largest KV binding known token-exact on a phone "
             "(apple/coreai-models#124)", f"{m}.IOS_KV_SAFE_CAPACITY"),
        Fact("kvFaultIssue", KV_FAULT_ISSUE, "the upstream issue the iOS KV warning cites", f"{m}.KV_FAULT_ISSUE"),
        Fact("kvFaultWarning", KV_FAULT_WARNING, "name of the warning an iOS KV binding above the safe capacity "
             "carries", f"{m}.KV_FAULT_WARNING ({m}.kv_fault_warning)"),
        Fact("promptKVCapacityField", PROMPT_KV_CAPACITY, "transcript prompt record: KV positions bound for it",
             f"{m}.PROMPT_KV_CAPACITY"),
        Fact("kvAlternateInitialCapacity", KV_ALT_INITIAL_CAPACITY, "the candidate #124 workaround's first KV "
             "size (EngineOptions.kvCacheSize): doubling from it never binds 2048 or 4096",
             f"{m}.KV_ALT_INITIAL_CAPACITY ({m}.kv_alt_max_context)"),
        Fact("kvGrowthDoubling", KV_GROWTH_DOUBLING, "kv_growth value: upstream's start (256)", f"{m}.KV_GROWTH_DOUBLING"),
        Fact("kvGrowthAlternate", KV_GROWTH_ALT, "kv_growth value: the 384 start", f"{m}.KV_GROWTH_ALT"),
        Fact("promptKVGrowthField", PROMPT_KV_GROWTH, "transcript prompt and load records: how the KV cache grew",
             f"{m}.PROMPT_KV_GROWTH"),
        Fact("promptWarningsField", PROMPT_WARNINGS, "transcript prompt record: named warnings that applied",
             f"{m}.PROMPT_WARNINGS"),
        Fact("kvGuardMetadataKey", KV_GUARD_METADATA_KEY, "metadata.json gemmaios.<it>: the context an iOS build "
             "allows and why", f"{m}.KV_GUARD_METADATA_KEY"),
        Fact("chunkThresholdVariable", next(iter(ENGINE_ENVIRONMENT)), "engine environment variable set at load",
             f"{m}.ENGINE_ENVIRONMENT"),
        Fact("chunkThresholdValue", next(iter(ENGINE_ENVIRONMENT.values())), "its value", f"{m}.ENGINE_ENVIRONMENT"),
    ]
    items += [  # image input (issue 17)
        Fact("imagePatchSize", IMAGE_PATCH_SIZE, "image: patch side in pixels", f"{m}.IMAGE_PATCH_SIZE"),
        Fact("imagePoolingKernel", IMAGE_POOLING_KERNEL, "image: k x k patches pool into one soft token",
             f"{m}.IMAGE_POOLING_KERNEL"),
        Fact("imageMaxSoftTokens", IMAGE_MAX_SOFT_TOKENS,
             "image: soft-token budget (static grid = it * kernel^2 patches)", f"{m}.IMAGE_MAX_SOFT_TOKENS"),
        Fact("imageSupportedSoftTokens", list(IMAGE_SUPPORTED_SOFT_TOKENS), "image: budgets HF's processor accepts",
             f"{m}.IMAGE_SUPPORTED_SOFT_TOKENS"),
        Fact("imageChannels", IMAGE_CHANNELS, "image: RGB channels per pixel", f"{m}.IMAGE_CHANNELS"),
        Fact("imageRescaleDivisor", IMAGE_RESCALE_DIVISOR, "image: pixel_values = u8 * (1/it), no normalisation",
             f"{m}.IMAGE_RESCALE_DIVISOR"),
        Fact("imagePadPosition", IMAGE_PAD_POSITION, "image: pixel_position_ids of padding patches",
             f"{m}.IMAGE_PAD_POSITION"),
    ]
    items += [  # audio input (issue 28): the log-mel front end
        Fact("audioSampleRate", AUDIO_SAMPLE_RATE, "audio: the feature extractor's sample rate (Hz, mono)",
             f"{m}.AUDIO_SAMPLE_RATE"),
        Fact("audioMelBins", AUDIO_MEL_BINS, "audio: mel filters (features per frame)", f"{m}.AUDIO_MEL_BINS"),
        Fact("audioFrameLength", AUDIO_FRAME_LENGTH, "audio: samples per frame (periodic Hann window)",
             f"{m}.AUDIO_FRAME_LENGTH"),
        Fact("audioHopLength", AUDIO_HOP_LENGTH, "audio: samples between frame starts", f"{m}.AUDIO_HOP_LENGTH"),
        Fact("audioFFTLength", AUDIO_FFT_LENGTH, "audio: rfft points (frames zero-padded to it)", f"{m}.AUDIO_FFT_LENGTH"),
        Fact("audioMinFrequency", AUDIO_MIN_FREQUENCY, "audio: lowest mel filter edge (Hz)", f"{m}.AUDIO_MIN_FREQUENCY"),
        Fact("audioMaxFrequency", AUDIO_MAX_FREQUENCY, "audio: highest mel filter edge (Hz)", f"{m}.AUDIO_MAX_FREQUENCY"),
        Fact("audioMelFloor", AUDIO_MEL_FLOOR, "audio: features = log(mel + it)", f"{m}.AUDIO_MEL_FLOOR"),
        Fact("audioMaxSamples", AUDIO_MAX_SAMPLES, "audio: a clip is cut to this many samples (30 s)",
             f"{m}.AUDIO_MAX_SAMPLES"),
        Fact("audioPadMultiple", AUDIO_PAD_MULTIPLE, "audio: clips are zero-padded to a multiple of it (samples)",
             f"{m}.AUDIO_PAD_MULTIPLE"),
    ]
    return items


def literal_facts() -> set[str]:
    """String values no Swift source may spell itself (they must come from `Contract`)."""
    out: set[str] = set()
    for fact in facts():
        values = fact.value if isinstance(fact.value, list) else [fact.value]
        out.update(v for v in values if isinstance(v, str) and len(v) > 1)
    return out


# ---- generation -----------------------------------------------------------------------------------

SWIFT_RELPATH = "ios_template/GemmaiosCore/Sources/GemmaiosCore/Contract.swift"
DOCS_RELPATH = "docs/contracts.md"
DOCS_BEGIN = "<!-- contract:begin (generated by `python -m gemmaios.contract --write`) -->"
DOCS_END = "<!-- contract:end -->"


def _swift_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # a Swift Double literal ("0.001", "8000.0")
    if isinstance(value, list):
        return "[" + ", ".join(_swift_literal(v) for v in value) + "]"
    return swift_string(value)


def render_swift() -> str:
    lines = [
        "// Generated from toolkit/gemmaios/contract.py by `python -m gemmaios.contract --write`.",
        "// Do not edit: change the Python contract and regenerate (a test checks this copy is current).",
        "",
        "/// Every fact the app shares with the gemmaios toolkit (deploy, bench, the simulator).",
        "public enum Contract {",
    ]
    for fact in facts():
        lines.append(f"    /// {fact.meaning}")
        lines.append(f"    public static let {fact.swift} = {_swift_literal(fact.value)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_docs_table() -> str:
    rows = ["| fact | value | meaning | Python | Swift |", "|---|---|---|---|---|"]
    for fact in facts():
        value = json.dumps(fact.value, ensure_ascii=False)
        rows.append(f"| {fact.swift} | `{value}` | {fact.meaning.replace('|', '/')} | `{fact.python}` "
                    f"| `Contract.{fact.swift}` |")
    return "\n".join([DOCS_BEGIN, *rows, DOCS_END])


def docs_with_table(text: str) -> str:
    """`text` (docs/contracts.md) with the generated block replaced (appended when missing)."""
    block = render_docs_table()
    pattern = re.compile(re.escape(DOCS_BEGIN) + r".*?" + re.escape(DOCS_END), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text)
    return text.rstrip("\n") + "\n\n## Device contract facts\n\n" + block + "\n"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def stale_outputs(root: Path | None = None) -> list[str]:
    """Generated files that differ from what the contract renders now."""
    root = root or repo_root()
    stale = []
    swift = root / SWIFT_RELPATH
    if not swift.is_file() or swift.read_text() != render_swift():
        stale.append(SWIFT_RELPATH)
    docs = root / DOCS_RELPATH
    if not docs.is_file() or docs_with_table(docs.read_text()) != docs.read_text():
        stale.append(DOCS_RELPATH)
    return stale


def write_outputs(root: Path | None = None) -> list[Path]:
    root = root or repo_root()
    swift = root / SWIFT_RELPATH
    swift.parent.mkdir(parents=True, exist_ok=True)
    swift.write_text(render_swift())
    docs = root / DOCS_RELPATH
    docs.write_text(docs_with_table(docs.read_text() if docs.is_file() else "# Contracts\n"))
    return [swift, docs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gemmaios.contract", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate Contract.swift and the docs table")
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated file is stale")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_outputs():
            print(f"wrote {path}")
        return 0
    if args.check:
        stale = stale_outputs()
        if stale:
            print("stale: " + ", ".join(stale) + " (run `python -m gemmaios.contract --write`)", file=sys.stderr)
            return 1
        print("Contract.swift and docs/contracts.md are current")
        return 0
    print(render_swift(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
