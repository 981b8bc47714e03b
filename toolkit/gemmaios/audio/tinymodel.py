"""The tiny model that hears: the trained tiny E4B decoder plus a tiny Gemma 4 audio tower.

`Gemma4ForConditionalGeneration` (model_type `gemma4`, the E2B/E4B layout: Conformer audio
tower, `embed_audio` projector; no vision tower) whose text decoder starts from the shipped
trained tiny weights (`gemmaios/data/tiny`), its vocabulary extended by the same marker tokens
as `tiny-vision` (ids 384..390). The audio tower keeps every structural feature of the real
one (two stride-2 subsampling convolutions over 128 mel bins, chunked local attention with
relative positions, light depthwise convolution, clipped linears, `output_proj`) at toy width.
It is fine-tuned to say what the project's own clips hold (`audio.clipset`: ten spoken words,
a high or low tone, silence, noise; jittered copies, so it generalises to the unjittered
oracle clips it never sees) while text batches keep the decoder's text answers; the last
fifth fake-quantizes the decoder's linears and head on the int4 grid, as tinytrain does.

  python -m gemmaios.audio.tinymodel --device cuda --steps 4000 --out DIR [--clips clips.npz]

`--clips`: a spoken-clip bank for machines without espeak-ng
(`python -m gemmaios.audio.clipset --out clips.npz` where it is installed). The result
(weights, tokenizer, trained.json with sha256s, training facts and margins) ships in
`gemmaios/data/tiny-audio`; `--model tiny-audio` builds them (`ensure_tiny_audio_checkpoint`).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import sha256_file, write_json_atomic
from ..tinytrain import SEEDED_START, TrainingStart
from ..vision.tinymodel import (
    IMAGE_TOKENS,
    OTHER_TOKENS,
    hf_tokenizer,
    int4_grid_off,
    int4_grid_on,
    tokenizer_with_markers,
)
from .clipset import BUILTIN_CLIPS, MAX_SAMPLES, AudioError, ClipCase, load_bank, speech_bank, training_cases
from .preprocess import AUDIO_PLACEHOLDER, AudioSpec, expand_prompt, feature_extractor, prepare

TINY_AUDIO_FORMAT = 1
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "tiny-audio"
WEIGHTS, TOKENIZER, RECORD, CLIPS = "model.safetensors", "tokenizer.json", "trained.json", "clips.npz"
MARKER_FILE = "gemmaios_tiny.json"

# The clip ends the user turn and the answer opens with what it holds (as for tiny-vision).
QUESTION = f"What do you hear?\n{AUDIO_PLACEHOLDER}"
DEFAULT_STEPS, DEFAULT_VARIANTS, DEFAULT_QAT_FRACTION = 4000, 30, 0.2


def audio_config_kwargs() -> dict:
    """The tiny Conformer: 128 mel bins in (the real front end), width 32, two layers."""
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, subsampling_conv_channels=[128, 8],
                conv_kernel_size=5, attention_chunk_size=12, attention_context_left=13, attention_context_right=0,
                attention_logit_cap=50.0, use_clipped_linears=True, output_proj_dims=32, rms_norm_eps=1e-6)


def processor_config() -> dict:
    """preprocessor_config.json: transformers' Gemma 4 feature extractor with its defaults."""
    return {"feature_extractor_type": "Gemma4AudioFeatureExtractor", "feature_size": 128, "sampling_rate": 16000,
            "padding_value": 0.0, "return_attention_mask": True, "frame_length_ms": 20.0, "hop_length_ms": 10.0,
            "min_frequency": 0.0, "max_frequency": 8000.0, "mel_floor": 1e-3, "padding_side": "right"}


def model_config(tok):
    from transformers import Gemma4AudioConfig, Gemma4Config, Gemma4TextConfig

    from ..tiny import tiny_text_config_kwargs

    vocab = tok.get_vocab_size()
    text = Gemma4TextConfig(**{**tiny_text_config_kwargs(), "vocab_size": vocab, "vocab_size_per_layer_input": vocab})
    ids = {k.replace("_token", "_token_id"): tok.token_to_id(v) for k, v in {**IMAGE_TOKENS, **OTHER_TOKENS}.items()}
    return Gemma4Config(text_config=text, vision_config=None, audio_config=Gemma4AudioConfig(**audio_config_kwargs()),
                        boi_token_id=ids["boi_token_id"], eoi_token_id=ids["eoi_token_id"],
                        image_token_id=ids["image_token_id"], video_token_id=ids["video_token_id"],
                        boa_token_id=ids["boa_token_id"], eoa_token_index=ids["eoa_token_id"],
                        eoa_token_id=ids["eoa_token_id"], audio_token_id=ids["audio_token_id"],
                        tie_word_embeddings=True)


def audio_spec(config) -> AudioSpec:
    return AudioSpec.from_config(config.to_dict(), processor_config(), MAX_SAMPLES)


def initial_model(config, text_weights: Path, seed: int = 1234):
    """Seeded init; the text decoder's tensors from the trained tiny weights (new vocab rows: the
    seeded init's)."""
    from safetensors.torch import load_file
    from transformers import Gemma4ForConditionalGeneration

    torch.manual_seed(seed)
    model = Gemma4ForConditionalGeneration(config)
    text = load_file(str(text_weights))
    state = model.model.language_model.state_dict()
    with torch.no_grad():
        for name, tensor in text.items():
            key = name.removeprefix("model.")
            if key not in state:
                continue
            target = state[key]
            if target.shape == tensor.shape:
                target.copy_(tensor)
            else:  # the embedding tables: the first 384 rows are the trained ones
                target[: tensor.shape[0]].copy_(tensor)
    return model


@dataclass
class AudioExample:
    prompt: list[int]
    target: list[int]
    features: torch.Tensor  # [max_frames, 128]
    mask: torch.Tensor  # [max_frames] bool


def clip_examples(spec: AudioSpec, hf_tok, cases: list[ClipCase], speech: dict | None = None,
                  progress=None) -> list[AudioExample]:
    from ..tinycorpus import END, EOS, chat_prompt

    extractor = feature_extractor(spec)
    out = []
    for i, case in enumerate(cases):
        prepared = prepare(case.samples(speech), spec, extractor)
        prompt = expand_prompt(chat_prompt(QUESTION), spec, hf_tok, prepared.num_soft_tokens)
        target = hf_tok(f"{case.answer()}{END}\n" + EOS * 6, add_special_tokens=False)["input_ids"]
        out.append(AudioExample(prompt, target, torch.from_numpy(prepared.input_features),
                                torch.from_numpy(prepared.input_features_mask)))
        if progress:
            progress(i + 1, len(cases))
    return out


@dataclass
class AudioTrainResult:
    model: object
    tokenizer: object  # tokenizers.Tokenizer
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    qat_steps: int = 0
    seed: int = 1234
    device: str = "cpu"
    variants: int = DEFAULT_VARIANTS
    start: dict = field(default_factory=dict)  # TrainingStart.facts(): a continued run's start


def audio_batch(rows: list[AudioExample], pad: int):
    width = max(len(r.prompt) + len(r.target) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, row in enumerate(rows):
        p, t = row.prompt, row.target
        input_ids[r, : len(p) + len(t)] = torch.tensor(p + t)
        labels[r, len(p) : len(p) + len(t)] = torch.tensor(t)
    return input_ids, labels, torch.stack([r.features for r in rows]), torch.stack([r.mask for r in rows])


def train_tiny_audio(steps: int = DEFAULT_STEPS, batch: int = 8, text_every: int = 4,
                     progress=None, seed: int = 1234, device: str = "cpu", variants: int = DEFAULT_VARIANTS,
                     speech: dict | None = None, threads: int = 1,
                     start: TrainingStart = SEEDED_START) -> AudioTrainResult:
    """Fine-tune the tiny model that hears: clip batches (every step but each `text_every`-th)
    and text batches from the tiny corpus (so the decoder keeps its text answers).

    The audio tower and projector learn at 3e-3, the decoder at 3e-4 (lightly tuned). `device`
    "cuda" trains on a GPU (batches are drawn on the CPU either way, so a seed picks the same
    examples); the returned model is on the CPU. `speech`: a clip bank (name -> samples) for
    the spoken training clips, else espeak-ng speaks them. `start`: continue an earlier run's weights,
    scale the learning rates, the int4-grid fraction."""
    from ..tiny import SHIPPED_DIR as TEXT_DIR
    from ..tinycorpus import generate_corpus
    from ..tinytrain import encode_examples, fixed_threads, optimizer_step, pad_batch

    tok = tokenizer_with_markers(TEXT_DIR / "tokenizer.json")
    hf_tok = hf_tokenizer(tok)
    config = model_config(tok)
    spec = audio_spec(config)
    cases = training_cases(variants)
    if speech is None:
        speech = speech_bank(cases)
    examples = clip_examples(spec, hf_tok, cases, speech)
    corpus = generate_corpus()
    text_encoded = encode_examples(tok, corpus)
    text_weights = torch.tensor([ex.weight for ex in corpus], dtype=torch.float64)
    pad = tok.token_to_id("<pad>")
    qat_start = steps - qat_steps(steps, start.qat_fraction)
    started, losses = time.perf_counter(), []
    with fixed_threads(threads):
        dev = torch.device(device)
        model = initial_model(config, TEXT_DIR / "model.safetensors", seed)
        start.load_into(model)
        model.to(dev)
        model.config._attn_implementation = "sdpa"
        model.model.audio_tower.config._attn_implementation = "eager"  # chunked attention: eager only
        model.train()
        audio_params = [p for n, p in model.named_parameters() if not n.startswith("model.language_model.")]
        text_params = list(model.model.language_model.parameters())
        peaks = [3e-3 * start.lr_scale, 3e-4 * start.lr_scale]
        optimizer = torch.optim.AdamW([{"params": audio_params, "lr": peaks[0]}, {"params": text_params, "lr": peaks[1]}],
                                      betas=(0.9, 0.98), weight_decay=0.0)
        draws = torch.Generator().manual_seed(seed)
        hooked: list = []
        for step in range(steps):
            if step == qat_start:  # the converter's int4 grid on the decoder's linears and head
                hooked = int4_grid_on(model)
            scale = min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            for group, peak in zip(optimizer.param_groups, peaks, strict=True):
                group["lr"] = peak * scale
            if text_every and step % text_every == text_every - 1:
                idx = torch.multinomial(text_weights, 16, replacement=True, generator=draws).tolist()
                input_ids, labels = pad_batch(text_encoded, idx, pad)
                logits = model(input_ids=input_ids.to(dev), use_cache=False).logits
            else:
                idx = torch.randint(len(examples), (batch,), generator=draws).tolist()
                input_ids, labels, features, mask = audio_batch([examples[i] for i in idx], pad)
                logits = model(input_ids=input_ids.to(dev), input_features=features.to(dev),
                               input_features_mask=mask.to(dev), use_cache=False).logits
            losses.append(optimizer_step(model, optimizer, logits, labels.to(dev)))
            if progress:
                progress(step + 1, steps, losses[-1])
        int4_grid_off(hooked)
    model.to("cpu").eval()
    return AudioTrainResult(model, tok, losses, time.perf_counter() - started, steps, steps - qat_start, seed, device,
                            variants, start.facts())


def clip_margins(model, tok, cases=BUILTIN_CLIPS, speech: dict | None = None, steps: int = 32, *,
                 int4_grid: bool = False) -> list[dict]:
    """fp32 greedy decode of each clip prompt: the text and top-1/top-2 margins
    (`int4_grid`: with the decoder's weights on the int4 grid, what the int4 bundle computes)."""
    from ..tinycorpus import chat_prompt

    hooked = int4_grid_on(model) if int4_grid else []
    try:
        hf_tok = hf_tokenizer(tok)
        spec = audio_spec(model.config)
        extractor = feature_extractor(spec)
        out = []
        with torch.no_grad():
            for case in cases:
                prepared = prepare(case.samples(speech), spec, extractor)
                ids = expand_prompt(chat_prompt(QUESTION), spec, hf_tok, prepared.num_soft_tokens)
                result = model(input_ids=torch.tensor([ids]),
                               input_features=torch.from_numpy(prepared.input_features)[None],
                               input_features_mask=torch.from_numpy(prepared.input_features_mask)[None], use_cache=True)
                tokens, margins = [], []
                for _ in range(steps):
                    logits = result.logits[0, -1].float()
                    top = torch.topk(logits, 2).values
                    tokens.append(int(logits.argmax()))
                    margins.append(float(top[0] - top[1]))
                    result = model(input_ids=torch.tensor([tokens[-1:]]), past_key_values=result.past_key_values,
                                   use_cache=True)
                out.append({"clip": case.name, "text": tok.decode(tokens, skip_special_tokens=False),
                            "expected": case.answer(), "min_margin": round(min(margins), 4), "margins": margins})
        return out
    finally:
        int4_grid_off(hooked)


def _right(runs: list[dict]) -> int:
    return sum(r["text"].startswith(r["expected"][: len(r["text"])]) for r in runs)


def _summary(runs: list[dict]) -> dict:
    margins = sorted(m for r in runs for m in r["margins"])
    return {"steps": len(margins), "median": round(margins[len(margins) // 2], 4), "min": round(margins[0], 4),
            "below_near_tie": sum(m < 0.1 for m in margins), "answers_right": _right(runs)}


def builtin_speech(shipped_dir: Path = SHIPPED_DIR) -> dict | None:
    """The built-in spoken clips as recorded with the shipped model (None before there are any)."""
    path = Path(shipped_dir) / CLIPS
    return load_bank(path) if path.is_file() else None


def qat_steps(steps: int, qat_fraction: float = DEFAULT_QAT_FRACTION) -> int:
    """How many of `steps` train on the int4 grid (the last ones)."""
    return int(round(steps * qat_fraction))


def write_weights(model, tokenizer, out_dir: Path = SHIPPED_DIR) -> Path:
    """Write the weights and tokenizer, and the built-in spoken clips unless already there."""
    from .clipset import save_bank

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save(str(Path(tmp) / TOKENIZER))
        for name in (WEIGHTS, TOKENIZER):
            shutil.move(str(Path(tmp) / name), out_dir / name)
    if not (out_dir / CLIPS).is_file():
        save_bank(builtin_speech(out_dir) or speech_bank(BUILTIN_CLIPS), out_dir / CLIPS)
    return out_dir


def record_trained(out_dir: Path, model, tokenizer, training: dict) -> dict:
    """Measure (on this machine, fp32) the clip margins fp32 and on the int4 grid and the text
    margins of the weights in `out_dir`, and write trained.json: sha256s, `training` (the
    training facts), the margins."""
    from ..tinytrain import evaluation_prompts, greedy_margins, margin_summary

    out_dir = Path(out_dir)
    speech = load_bank(out_dir / CLIPS)  # what the oracle will read: 16-bit samples
    clips = clip_margins(model, tokenizer, speech=speech)
    clips_int4 = clip_margins(model, tokenizer, speech=speech, int4_grid=True)
    text_runs = greedy_margins(model, tokenizer, evaluation_prompts())
    names = (WEIGHTS, TOKENIZER, CLIPS)
    record = {
        "sha256": {n: sha256_file(out_dir / n) for n in names},
        "bytes": {n: (out_dir / n).stat().st_size for n in names},
        "training": training,
        "clip_margins": _summary(clips),
        "clip_margins_int4_grid": _summary(clips_int4),
        "text_margins": margin_summary(text_runs),
        "clip_answers": {r["clip"]: {"text": r["text"], "expected": r["expected"], "min_margin": r["min_margin"]}
                         for r in clips},
        "clip_answers_right": _right(clips),
    }
    write_json_atomic(out_dir / RECORD, record)
    return record


def tool_versions() -> dict:
    from importlib import metadata

    return {d: metadata.version(d) for d in ("torch", "transformers", "tokenizers")}


def ship(result: AudioTrainResult, out_dir: Path = SHIPPED_DIR) -> dict:
    """Write the weights, tokenizer, the built-in spoken clips and trained.json (sha256s,
    training facts, margins fp32 and on the int4 grid, text margins)."""
    write_weights(result.model, result.tokenizer, out_dir)
    training = {"steps": result.steps, "qat_steps": result.qat_steps, "seconds": round(result.seconds, 1),
                "seed": result.seed, "device": result.device, "clip_variants": result.variants, **result.start,
                "first_loss": round(result.losses[0], 4),
                "final_loss": round(float(np.mean(result.losses[-20:])), 4), "tools": tool_versions()}
    return record_trained(out_dir, result.model, result.tokenizer, training)


_LOSS_LINE = re.compile(r"^step (\d+)/(\d+) loss ([0-9.eE+-]+|nan|inf)\s*$")


def logged_losses(log: Path, steps: int) -> list[tuple[int, float]]:
    """The `step N/T loss X` lines the trainer printed: (N, X) in order; T must be `steps` and
    the last line step `steps` (a run that ended early is not recorded as finished)."""
    found = []
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError as exc:
        raise AudioError(f"cannot read the training log {log} ({exc})",
                         hint="pass the log the trainer printed (`step N/T loss X` lines)") from exc
    for line in lines:
        match = _LOSS_LINE.match(line.strip())
        if match:
            if int(match[2]) != steps:
                raise AudioError(f"{log} is a {match[2]}-step run, not {steps}", hint=f"pass --steps {match[2]}")
            found.append((int(match[1]), float(match[3])))
    if not found or found[-1][0] != steps:
        last = f"its last logged step is {found[-1][0]}" if found else "it has no `step N/T loss X` line"
        raise AudioError(f"{log} is not a finished {steps}-step run: {last}",
                         hint="record only weights whose training finished")
    return found


def load_trained(weights_dir: Path):
    """(model, tokenizer) from a folder with the trainer's weights and tokenizer, loaded as the
    oracle loads them (a checkpoint folder through `from_pretrained`), fp32 on the CPU."""
    from tokenizers import Tokenizer
    from transformers import Gemma4ForConditionalGeneration

    weights_dir = Path(weights_dir)
    for name in (WEIGHTS, TOKENIZER):
        if not (weights_dir / name).is_file():
            raise AudioError(f"{weights_dir} has no {name}", hint="pass the folder the trainer wrote (--out)")
    with tempfile.TemporaryDirectory(prefix="tiny-audio-record-") as tmp:
        path = write_checkpoint(Path(tmp) / "ckpt", weights_dir / WEIGHTS, weights_dir / TOKENIZER)
        model = Gemma4ForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32).eval()
    return model, Tokenizer.from_file(str(weights_dir / TOKENIZER))


def record_only(weights_dir: Path, log: Path, steps: int, device: str, *, seed: int = 1234,
                variants: int = DEFAULT_VARIANTS, trained_tools: dict | None = None,
                speech: dict | None = None,
                start: TrainingStart = SEEDED_START) -> dict:
    """trained.json for weights trained elsewhere (e.g. on a GPU whose run ended before its record):
    the facts the command line and the training log state, the margins measured here. The
    built-in spoken clips are written from `speech` (a clip bank) where the folder lacks them."""
    losses = logged_losses(log, steps)
    model, tok = load_trained(weights_dir)
    ensure_builtin_clips(weights_dir, speech)
    training = {"steps": steps, "qat_steps": qat_steps(steps, start.qat_fraction), "seed": seed, "device": device,
                "clip_variants": variants, **start.facts(), "first_logged_loss": {"step": losses[0][0], "loss": losses[0][1]},
                "final_logged_loss": {"step": losses[-1][0], "loss": losses[-1][1]},
                "log_sha256": sha256_file(Path(log))}
    if trained_tools:
        training["tools"] = dict(trained_tools)
    training["recorded"] = ("by --record-only: steps, seed, variants, device and tools as given on its command "
                            "line, losses from the training log, seconds unknown; margins measured on measured_on")
    training["measured_on"] = {"device": "cpu", "tools": tool_versions()}
    return record_trained(weights_dir, model, tok, training)


def ensure_builtin_clips(out_dir: Path, speech: dict | None) -> None:
    """The built-in spoken clips, recorded once with the model: from the bank where it has them,
    else espeak-ng."""
    from .clipset import save_bank

    if (Path(out_dir) / CLIPS).is_file():
        return
    words = [c for c in BUILTIN_CLIPS if c.kind == "word"]
    builtin = {c.name: speech[c.name] for c in words if speech and c.name in speech}
    missing = [c for c in words if c.name not in builtin]
    save_bank({**builtin, **speech_bank(missing)}, Path(out_dir) / CLIPS)


def shipped_record(shipped_dir: Path = SHIPPED_DIR) -> dict:
    from ..tiny import TinyWeightsError

    retrain = "reinstall gemmaios, or retrain with `python -m gemmaios.audio.tinymodel`"
    try:
        record = json.loads((Path(shipped_dir) / RECORD).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TinyWeightsError(f"cannot read {Path(shipped_dir) / RECORD} ({exc})", hint=retrain) from exc
    for name in record["sha256"]:
        path = Path(shipped_dir) / name
        if (sha256_file(path) if path.is_file() else None) != record["sha256"][name]:
            raise TinyWeightsError(f"{path} does not match the sha256 in {RECORD}", hint=retrain)
    return record


def write_checkpoint(out_dir: Path, weights: Path, tokenizer_file: Path, extra_marker: dict | None = None) -> Path:
    """A checkpoint folder: config.json, generation_config.json, preprocessor_config.json,
    weights and tokenizer files (loadable by `Gemma4ForConditionalGeneration.from_pretrained`)."""
    from tokenizers import Tokenizer
    from transformers import GenerationConfig

    from ..files import replace_dir
    from ..tiny import write_tokenizer

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-audio-", dir=out_dir.parent))
    try:
        config = model_config(Tokenizer.from_file(str(tokenizer_file)))
        config.architectures = ["Gemma4ForConditionalGeneration"]
        config.save_pretrained(tmp)
        GenerationConfig.from_model_config(config.text_config).save_pretrained(tmp)
        write_json_atomic(tmp / "preprocessor_config.json", processor_config())
        shutil.copyfile(weights, tmp / "model.safetensors")
        write_tokenizer(None, tmp, Path(tokenizer_file))
        tc = json.loads((tmp / "tokenizer_config.json").read_text())
        tc["extra_special_tokens"] = {**IMAGE_TOKENS, **OTHER_TOKENS}
        write_json_atomic(tmp / "tokenizer_config.json", tc)
        marker = {"format": TINY_AUDIO_FORMAT, "variant": "e4b-audio", "max_audio_seconds": MAX_SAMPLES / 16000,
                  **(extra_marker or {})}
        (tmp / MARKER_FILE).write_text(json.dumps(marker) + "\n")
        replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def generate_tiny_audio_checkpoint(out_dir: Path, shipped_dir: Path = SHIPPED_DIR) -> Path:
    record = shipped_record(shipped_dir)
    return write_checkpoint(out_dir, Path(shipped_dir) / WEIGHTS, Path(shipped_dir) / TOKENIZER,
                            {"weights": "trained", "weights_sha256": record["sha256"][WEIGHTS]})


def default_dir() -> Path:
    """The cache folder of the `tiny-audio` checkpoint, beside the tiny and tiny-vision ones."""
    from ..tiny import default_tiny_dir

    return default_tiny_dir().parent / f"tiny-audio-v{TINY_AUDIO_FORMAT}"


def checkpoint_is_current(path: Path, shipped_dir: Path = SHIPPED_DIR) -> bool:
    """Whether `path` holds the checkpoint of the shipped weights in this format (its marker says so)."""
    try:
        marker = json.loads((Path(path) / MARKER_FILE).read_text())
        shipped = json.loads((Path(shipped_dir) / RECORD).read_text())["sha256"][WEIGHTS]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return False
    return isinstance(marker, dict) and marker.get("format") == TINY_AUDIO_FORMAT and \
        marker.get("weights_sha256") == shipped


def ensure_tiny_audio_checkpoint(cache_dir: Path | None = None) -> Path:
    """The `tiny-audio` checkpoint folder (`--model tiny-audio`), written from the shipped weights when
    the cached one is missing or stale (another format, other weights)."""
    path = Path(cache_dir) if cache_dir else default_dir()
    if not checkpoint_is_current(path):
        generate_tiny_audio_checkpoint(path)
    return path


def train_and_ship(args, speech: dict | None) -> dict:
    from ..tinytrain import training_start

    # Before any training: every clip must be at hand (the bank's, else espeak-ng's), so a long
    # GPU run cannot end in EspeakMissing when it ships.
    ensure_builtin_clips(args.out, speech)
    wanted = [c for c in training_cases(args.variants) if c.kind == "word"]
    speech = {**(speech or {}), **speech_bank([c for c in wanted if not speech or c.name not in speech])}

    def show(step, total, loss):
        if step % 10 == 0 or step == total:
            print(f"step {step}/{total} loss {loss:.4f}", flush=True)

    result = train_tiny_audio(steps=args.steps, progress=show, seed=args.seed, device=args.device,
                              variants=args.variants, speech=speech, start=training_start(args))
    return ship(result, args.out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..tinytrain import add_start_options, trained_with, training_start

    parser = argparse.ArgumentParser(prog="python -m gemmaios.audio.tinymodel",
                                     description="fine-tune and ship the tiny model that hears")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--variants", type=int, default=DEFAULT_VARIANTS, help="jittered training copies of each clip kind")
    parser.add_argument("--device", default="cpu", help="cpu (one thread), or cuda to train on a GPU")
    add_start_options(parser, DEFAULT_QAT_FRACTION)
    parser.add_argument("--clips", type=Path, default=None,
                        help="a spoken-clip bank (.npz from `python -m gemmaios.audio.clipset`); default: espeak-ng")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--record-only", type=Path, default=None, metavar="DIR",
                        help="train nothing: write DIR/trained.json for the weights and tokenizer in DIR trained "
                             "elsewhere (--steps, --seed, --variants, --device: how they were trained; margins "
                             "measured here)")
    parser.add_argument("--training-log", type=Path, default=None,
                        help="with --record-only: the log the training run printed (its `step N/T loss X` lines)")
    parser.add_argument("--trained-with", action="append", default=[], metavar="PACKAGE=VERSION",
                        help="with --record-only: a tool version of the training run (repeat: torch=2.11.0, ...; "
                             "left out of the record when not given)")
    args = parser.parse_args(argv)
    if args.record_only is not None and args.training_log is None:
        parser.error("--record-only needs --training-log")
    try:
        speech = load_bank(args.clips) if args.clips else None
        if args.record_only is not None:
            try:
                tools = trained_with(args.trained_with) or None
            except ValueError as exc:
                parser.error(str(exc))
            record = record_only(args.record_only, args.training_log, args.steps, args.device, seed=args.seed,
                                 variants=args.variants, trained_tools=tools, speech=speech,
                                 start=training_start(args))
        else:
            record = train_and_ship(args, speech)
    except AudioError as exc:
        print(f"error: {exc}")
        return 1
    print(json.dumps({k: record[k] for k in ("training", "clip_margins", "clip_margins_int4_grid", "text_margins",
                                             "clip_answers")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
