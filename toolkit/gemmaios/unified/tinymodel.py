"""The tiny unified model (`gemma4_unified`, the 12B's encoder-free layout at toy size), trained.

`Gemma4UnifiedForConditionalGeneration` with the config of `gemmaios.tiny.TINY_UNIFIED` (12B-shaped
decoder, 4-px patches merged 3x3, 16-sample audio tokens), trained from transformers' seeded
initialisation on four kinds of batches in turn:

  image   the vision package's pictures (`vision.images`: colour, shape, frame; jittered copies,
          so the unjittered gate pictures are never seen) → "A red circle in a wide picture."
  audio   generated tones (`unified.tones`: low/middle/high pitch, short/long) → "A high tone, short."
  mixed   a picture and a clip in either order → both answers in that order
  text    the tiny corpus (`gemmaios.tinycorpus`), with the e4b's corpus tokenizer

The last fifth fake-quantizes the decoder's linears and head on the converter's int4 grid (the
embedders stay fp16 in the bundle), as tinytrain does. The result goes to `gemmaios/data/tiny-unified`
(weights, tokenizer, trained.json with sha256s, training facts and greedy top-1/top-2 margins on the
eight gate prompts, fp32 and on the int4 grid, and on the text prompts), which
`gemmaios.tiny.generate_tiny_checkpoint(..., TINY_UNIFIED)` then uses.

    python -m gemmaios.unified.tinymodel --device cuda --steps 6000 --out toolkit/gemmaios/data/tiny-unified

Dependency-light: torch, transformers, tokenizers, numpy (no torchvision, no internet).
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

from ..errors import TrainingRecordError
from ..files import sha256_file, write_json_atomic
from ..tiny import (
    SHIPPED_DIR as TEXT_DIR,
)
from ..tiny import (
    SHIPPED_RECORD,
    SHIPPED_TOKENIZER,
    SHIPPED_WEIGHTS,
    TINY_SEED,
    TINY_UNIFIED_PROCESSOR,
    TINY_UNIFIED_SHIPPED_DIR,
    tiny_unified_config,
)
from ..tinytrain import SEEDED_START, TrainingStart
from ..unified_inputs import (
    AUDIO_MARKER,
    IMAGE_MARKER,
    PreparedImage,
    UnifiedSpec,
    encode_prompt,
    frame_audio,
    mm_token_type_ids,
    prepare_image,
)
from ..vision.images import BUILTIN_IMAGES, ImageCase, orientation, training_cases
from .tones import BUILTIN_TONES, ToneCase, training_tones

DEFAULT_STEPS, DEFAULT_VARIANTS, DEFAULT_BATCH = 6000, 30, 16
LEARNING_RATE, WARMUP_STEPS, QAT_FRACTION = 3e-3, 100, 0.2
KINDS = ("image", "audio", "mixed", "text")  # one kind per step, in turn (the default cycle)
QUESTIONS = {
    "image": f"Describe the image.\n{IMAGE_MARKER}",
    "audio": f"Describe the sound.\n{AUDIO_MARKER}",
    "image+audio": f"Describe the image and the sound.\n{IMAGE_MARKER}\n{AUDIO_MARKER}",
    "audio+image": f"Describe the sound and the image.\n{AUDIO_MARKER}\n{IMAGE_MARKER}",
}
TRAILING_EOS = 6
# Greedy tokens the gates decode: the longest answer (a mixed one) is 40 tokens with its <end_of_turn>.
MAX_NEW_TOKENS = 48


def image_answer(case: ImageCase) -> str:
    w, h = case.size
    return f"A {case.colour} {case.shape} in a {orientation(w, h)} picture."


@dataclass(frozen=True)
class GatePrompt:
    """One of the eight multimodal gate prompts: a question and its items, in prompt order."""

    name: str
    layout: str  # a QUESTIONS key
    image: ImageCase | None = None
    tone: ToneCase | None = None

    def answer(self) -> str:
        parts = {"image": image_answer(self.image) if self.image else "", "audio": self.tone.answer() if self.tone else ""}
        return " ".join(parts[k] for k in self.layout.split("+"))


# 3 image, 3 audio, 2 mixed (both orders): unjittered pictures and tones, never trained on.
GATE_PROMPTS = (
    GatePrompt("image-red-circle-square", "image", image=BUILTIN_IMAGES[0]),
    GatePrompt("image-blue-square-wide", "image", image=BUILTIN_IMAGES[1]),
    GatePrompt("image-green-triangle-tall", "image", image=BUILTIN_IMAGES[2]),
    GatePrompt("audio-low-short", "audio", tone=BUILTIN_TONES[0]),
    GatePrompt("audio-middle-long", "audio", tone=BUILTIN_TONES[3]),
    GatePrompt("audio-high-short", "audio", tone=BUILTIN_TONES[4]),
    GatePrompt("mixed-yellow-circle-wide43+high-long", "image+audio", image=BUILTIN_IMAGES[3], tone=BUILTIN_TONES[5]),
    GatePrompt("mixed-low-long+purple-square-tall34", "audio+image", image=BUILTIN_IMAGES[4], tone=BUILTIN_TONES[1]),
)


def text_tokenizer():
    """The e4b's corpus tokenizer (ids 0..383; the unified markers are the rows past it)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TEXT_DIR / SHIPPED_TOKENIZER))


def spec_of(config) -> UnifiedSpec:
    return UnifiedSpec.from_config(config.to_dict(), TINY_UNIFIED_PROCESSOR)


@dataclass
class Prepared:
    """A multimodal prompt as HF and the bundle take it: expanded ids, pictures and clips in prompt order."""

    ids: list[int]
    images: list[PreparedImage]
    clips: list[np.ndarray]


def prepare(layout: str, image: ImageCase | None, tone: ToneCase | None, spec: UnifiedSpec, tokenize,
            render=None) -> Prepared:
    """`tokenize(text) -> ids` (no specials added); `render(question) -> text`: the chat turn (the tiny's
    template by default)."""
    from ..tinycorpus import chat_prompt

    render = render or chat_prompt
    images = [prepare_image(image.pixels(), spec, pad=True)] if "image" in layout else []
    clips = [frame_audio(tone.samples(spec.audio_samples_per_token, spec.sampling_rate), spec)] \
        if "audio" in layout else []
    ids = encode_prompt(render(QUESTIONS[layout]), tokenize, spec, [im.num_soft_tokens for im in images],
                        [len(c) for c in clips])
    return Prepared(ids, images, clips)


def tokenize_with(tok):
    """A tokenizers.Tokenizer as `prepare`'s `tokenize`."""
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def gate_inputs(prompt: GatePrompt, spec: UnifiedSpec, tokenize, render=None) -> Prepared:
    return prepare(prompt.layout, prompt.image, prompt.tone, spec, tokenize, render)


def hf_inputs(spec: UnifiedSpec, rows: list[list[int]], images: list[PreparedImage], clips: list[np.ndarray],
              pad_id: int) -> dict:
    """HF's forward kwargs for a batch (rows right-padded with `pad_id`; pictures and clips in row order)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    kwargs = {"input_ids": ids, "mm_token_type_ids": torch.from_numpy(mm_token_type_ids(ids.flatten().tolist(), spec))
              .reshape(ids.shape)}
    if images:
        kwargs["pixel_values"] = torch.from_numpy(np.stack([im.pixel_values for im in images]))
        kwargs["image_position_ids"] = torch.from_numpy(np.stack([im.position_ids for im in images])).long()
    if clips:
        longest = max(len(c) for c in clips)
        kwargs["input_features"] = torch.from_numpy(np.stack([np.pad(c, ((0, longest - len(c)), (0, 0))) for c in clips]))
        kwargs["input_features_mask"] = torch.tensor([[i < len(c) for i in range(longest)] for c in clips])
    return kwargs


def hf_greedy(model, spec: UnifiedSpec, prompt: Prepared, max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[list[int], list[float]]:
    """HF's greedy tokens after `prompt` (one full forward per token, no cache: the fp32 oracle) and each
    step's top-1/top-2 margin; stops after a stop token."""
    tokens, margins = [], []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            kwargs = hf_inputs(spec, [prompt.ids + tokens], prompt.images, prompt.clips, spec.pad_token_id)
            device = next(model.parameters()).device
            logits = model(**{k: v.to(device) for k, v in kwargs.items()}, use_cache=False).logits[0, -1].float()
            top = torch.topk(logits, 2).values
            tokens.append(int(logits.argmax()))
            margins.append(float(top[0] - top[1]))
            if tokens[-1] in spec.stop_token_ids:
                break
    return tokens, margins


@dataclass
class PathCheck:
    """HF fp32 along a candidate continuation (one forward over prompt + continuation)."""

    hf_tokens: list[int]  # HF's argmax at each step of the continuation
    margins: list[float]  # HF's top-1/top-2 margin at each step
    divergence: int | None  # first step where the candidate is not HF's argmax (None: it is HF's greedy path)


def hf_path_check(model, spec: UnifiedSpec, prompt: Prepared, continuation: list[int]) -> PathCheck:
    """Is `continuation` HF's greedy continuation of `prompt`? Greedy is decided step by step, so the
    candidate is HF's greedy path exactly when it is HF's argmax at every step, which one teacher-forced
    forward says (the first step where it is not is where HF's greedy would diverge, with HF's margin there)."""
    kwargs = hf_inputs(spec, [prompt.ids + continuation], prompt.images, prompt.clips, spec.pad_token_id)
    device = next(model.parameters()).device
    with torch.no_grad():
        rows = model(**{k: v.to(device) for k, v in kwargs.items()}, use_cache=False).logits[0].float()
    rows = rows[len(prompt.ids) - 1 : len(prompt.ids) - 1 + len(continuation)].cpu()
    top = torch.topk(rows, 2, dim=-1).values
    hf_tokens = rows.argmax(-1).tolist()
    at = next((i for i, (a, b) in enumerate(zip(hf_tokens, continuation, strict=True)) if a != b), None)
    return PathCheck(hf_tokens, (top[:, 0] - top[:, 1]).tolist(), at)


def initial_model(config, seed: int = TINY_SEED):
    """transformers' own seeded initialisation of the tiny unified model."""
    from transformers import Gemma4UnifiedForConditionalGeneration

    torch.manual_seed(seed)
    model = Gemma4UnifiedForConditionalGeneration(config)
    model.config._attn_implementation = "sdpa"
    return model


def int4_grid_on(model) -> list:
    """Fake-quantize the decoder's linears and its head on the converter's int4 grid (the embedders stay
    fp16 in the bundle, so they are left alone); returns the hooked modules."""
    import types

    from ..tinytrain import BLOCK, fake_quant_forward

    modules = [m for m in [*model.model.language_model.modules(), model.lm_head]
               if isinstance(m, torch.nn.Linear) and m.in_features % BLOCK == 0]
    for module in modules:
        module.forward = types.MethodType(fake_quant_forward, module)
    return modules


def int4_grid_off(modules: list) -> None:
    for module in modules:
        del module.forward


@dataclass
class UnifiedTrainResult:
    model: object
    tokenizer: object  # tokenizers.Tokenizer
    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    qat_steps: int = 0
    seed: int = TINY_SEED
    device: str = "cpu"
    variants: int = DEFAULT_VARIANTS
    batch: int = DEFAULT_BATCH
    start: dict = field(default_factory=dict)  # TrainingStart.facts(): a continued run's start
    kinds: tuple[str, ...] = KINDS


def kind_cycle(kinds) -> tuple[str, ...]:
    """`kinds` as the trainer's cycle of batch kinds; ValueError when it is empty or names a kind not in KINDS."""
    kinds = tuple(kinds)
    if not kinds or set(kinds) - set(KINDS):
        raise ValueError(f"{','.join(kinds)}: each must be one of {', '.join(KINDS)}")
    return kinds


def _learning_rate(step: int, steps: int, peak: float = LEARNING_RATE) -> float:
    warmup = min(WARMUP_STEPS, max(1, steps // 5))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class _Examples:
    """Training rows of one kind, prepared on first use (pictures resized once each)."""

    def __init__(self, spec: UnifiedSpec, tok, variants: int, seed: int) -> None:
        from ..tinycorpus import END, EOS

        self.spec, self.tok = spec, tok
        self.images, self.tones = training_cases(variants), training_tones(variants)
        self.rng = np.random.default_rng(seed)
        self.cache: dict = {}
        self.suffix = f"{END}\n" + EOS * TRAILING_EOS

    def _image(self, i: int) -> PreparedImage:
        if ("image", i) not in self.cache:
            self.cache["image", i] = prepare_image(self.images[i].pixels(), self.spec, pad=True)
        return self.cache["image", i]

    def _clip(self, i: int) -> np.ndarray:
        if ("tone", i) not in self.cache:
            tone = self.tones[i]
            self.cache["tone", i] = frame_audio(tone.samples(self.spec.audio_samples_per_token, self.spec.sampling_rate),
                                                self.spec)
        return self.cache["tone", i]

    def row(self, kind: str):
        """(prompt ids, target ids, pictures, clips) of one random example of `kind` (image, audio, mixed)."""
        from ..tinycorpus import chat_prompt

        layout = {"image": "image", "audio": "audio"}.get(kind) or str(self.rng.choice(["image+audio", "audio+image"]))
        image = int(self.rng.integers(len(self.images))) if "image" in layout else None
        tone = int(self.rng.integers(len(self.tones))) if "audio" in layout else None
        images = [self._image(image)] if image is not None else []
        clips = [self._clip(tone)] if tone is not None else []
        ids = encode_prompt(chat_prompt(QUESTIONS[layout]), lambda t: self.tok.encode(t, add_special_tokens=False).ids,
                            self.spec, [im.num_soft_tokens for im in images], [len(c) for c in clips])
        answer = GatePrompt("", layout, self.images[image] if image is not None else None,
                            self.tones[tone] if tone is not None else None).answer()
        target = self.tok.encode(answer + self.suffix, add_special_tokens=False).ids
        return ids, target, images, clips


def train_tiny_unified(steps: int = DEFAULT_STEPS, batch: int = DEFAULT_BATCH, device: str = "cpu",
                       seed: int = TINY_SEED, variants: int = DEFAULT_VARIANTS,
                       start: TrainingStart = SEEDED_START, kinds: tuple[str, ...] = KINDS,
                       progress=None) -> UnifiedTrainResult:
    """Train from the seeded initialisation: image, audio, mixed and text batches in turn (`kinds`: the
    cycle of batch kinds, e.g. more image and mixed steps when continuing a run whose audio is learnt).

    `device` "cuda" trains on a GPU (examples are drawn on the CPU either way, so a seed picks the same
    ones); the returned model is on the CPU, in eval mode, the int4 grid removed."""
    from ..tinycorpus import generate_corpus
    from ..tinytrain import encode_examples, fixed_threads, optimizer_step, pad_batch

    kinds = kind_cycle(kinds)
    tok = text_tokenizer()
    config = tiny_unified_config()
    spec = spec_of(config)
    examples = _Examples(spec, tok, variants, seed)
    corpus = generate_corpus()
    text_encoded = encode_examples(tok, corpus)
    text_weights = torch.tensor([ex.weight for ex in corpus], dtype=torch.float64)
    pad = tok.token_to_id("<pad>")
    qat_start = steps - int(round(steps * start.qat_fraction))
    losses: dict[str, list[float]] = {k: [] for k in KINDS if k in kinds}
    started = time.perf_counter()
    with fixed_threads(1):
        dev = torch.device(device)
        model = initial_model(config, seed)
        start.load_into(model)
        model.to(dev)
        model.train()
        decay = [p for p in model.parameters() if p.ndim == 2]
        other = [p for p in model.parameters() if p.ndim != 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                                      lr=LEARNING_RATE, betas=(0.9, 0.98), eps=1e-8)
        draws = torch.Generator().manual_seed(seed)
        hooked: list = []
        for step in range(steps):
            if step == qat_start:
                hooked = int4_grid_on(model)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, steps, LEARNING_RATE * start.lr_scale)
            kind = kinds[step % len(kinds)]
            if kind == "text":
                idx = torch.multinomial(text_weights, batch, replacement=True, generator=draws).tolist()
                input_ids, labels = pad_batch(text_encoded, idx, pad)
                logits = model(input_ids=input_ids.to(dev), use_cache=False).logits
            else:
                rows = [examples.row(kind) for _ in range(batch)]
                kwargs = hf_inputs(spec, [p + t for p, t, _, _ in rows], [im for r in rows for im in r[2]],
                                   [c for r in rows for c in r[3]], pad)
                labels = torch.full(kwargs["input_ids"].shape, -100, dtype=torch.long)
                for r, (p, t, _, _) in enumerate(rows):
                    labels[r, len(p): len(p) + len(t)] = torch.tensor(t)
                logits = model(**{k: v.to(dev) for k, v in kwargs.items()}, use_cache=False).logits
            losses[kind].append(optimizer_step(model, optimizer, logits, labels.to(dev)))
            if progress:
                progress(step + 1, steps, kind, losses[kind][-1])
        int4_grid_off(hooked)
    model.to("cpu").eval()
    return UnifiedTrainResult(model, tok, losses, time.perf_counter() - started, steps, steps - qat_start, seed, device,
                              variants, batch, start.facts(), kinds)


def gate_margins(model, tok, *, int4_grid: bool = False) -> list[dict]:
    """HF greedy on each gate prompt (fp32; `int4_grid`: the decoder's weights on the int4 grid, what the
    int4 bundle computes): its text, whether it is the expected answer, its margins."""
    spec = spec_of(model.config)
    hooked = int4_grid_on(model) if int4_grid else []
    out = []
    try:
        for prompt in GATE_PROMPTS:
            tokens, margins = hf_greedy(model, spec, gate_inputs(prompt, spec, tokenize_with(tok)))
            text = tok.decode([t for t in tokens if t < tok.get_vocab_size()], skip_special_tokens=True)
            out.append({"prompt": prompt.name, "text": text, "expected": prompt.answer(),
                        "right": text.strip() == prompt.answer(), "min_margin": round(min(margins), 4),
                        "margins": [round(m, 4) for m in margins]})
    finally:
        int4_grid_off(hooked)
    return out


def text_margins(model, tok, steps: int = 24) -> dict:
    """Greedy top-1/top-2 margins on the oracle's built-in and gate text prompts (fp32, full forwards)."""
    from ..tinytrain import evaluation_prompts

    margins = []
    with torch.no_grad():
        for prompt in evaluation_prompts():
            ids = tok.encode(prompt, add_special_tokens=False).ids
            for _ in range(steps):
                logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].float()
                top = torch.topk(logits, 2).values
                margins.append(float(top[0] - top[1]))
                ids.append(int(logits.argmax()))
    margins.sort()
    return {"steps": len(margins), "median": round(margins[len(margins) // 2], 4), "min": round(margins[0], 4),
            "below_near_tie": sum(m < 0.1 for m in margins)}


def _summary(runs: list[dict]) -> dict:
    all_m = sorted(m for r in runs for m in r["margins"])
    return {"steps": len(all_m), "median": round(all_m[len(all_m) // 2], 4), "min": round(all_m[0], 4),
            "below_near_tie": sum(m < 0.1 for m in all_m), "answers_right": sum(r["right"] for r in runs)}


def save_weights(model, tokenizer, out_dir: Path) -> None:
    """Write the weights and the tokenizer into `out_dir` (each file moved in whole)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save(str(Path(tmp) / SHIPPED_TOKENIZER))
        for name in (SHIPPED_WEIGHTS, SHIPPED_TOKENIZER):
            shutil.move(str(Path(tmp) / name), out_dir / name)


def tool_versions() -> dict[str, str]:
    """This machine's torch, transformers and tokenizers versions."""
    from importlib import metadata

    return {d: metadata.version(d) for d in ("torch", "transformers", "tokenizers")}


def record_trained(model, tokenizer, out_dir: Path, training: dict) -> dict:
    """Measure the margins of the weights in `out_dir` (`model`, `tokenizer`: what they load as) here, on
    the CPU, and write trained.json beside them: sha256s, `training` (what the training run states), where
    and with what the margins were measured, the margins; returns the record."""
    out_dir = Path(out_dir)
    model = model.to("cpu").eval()
    with torch.no_grad():
        gates = gate_margins(model, tokenizer)
        gates_int4 = gate_margins(model, tokenizer, int4_grid=True)
        text = text_margins(model, tokenizer)
    record = {
        "sha256": {n: sha256_file(out_dir / n) for n in (SHIPPED_WEIGHTS, SHIPPED_TOKENIZER)},
        "bytes": {n: (out_dir / n).stat().st_size for n in (SHIPPED_WEIGHTS, SHIPPED_TOKENIZER)},
        "training": training,
        "margins_measured": {"device": "cpu", "tools": tool_versions()},
        "gate_margins": _summary(gates),
        "gate_margins_int4_grid": _summary(gates_int4),
        "text_margins": text,
        "gate_answers": {r["prompt"]: {k: r[k] for k in ("text", "expected", "right", "min_margin")} for r in gates},
        "gate_answers_int4_grid": {r["prompt"]: {k: r[k] for k in ("text", "right", "min_margin")} for r in gates_int4},
    }
    write_json_atomic(out_dir / SHIPPED_RECORD, record)
    return record


def ship(result: UnifiedTrainResult, out_dir: Path = TINY_UNIFIED_SHIPPED_DIR) -> dict:
    """Write the weights, tokenizer and trained.json (sha256s, training facts, margins); returns the record."""

    def tail(values: list[float]) -> float:
        return round(sum(values[-20:]) / min(20, len(values)), 4)

    save_weights(result.model, result.tokenizer, out_dir)
    training = {"steps": result.steps, "qat_steps": result.qat_steps, "batch": result.batch,
                "seconds": round(result.seconds, 1), "seed": result.seed, "device": result.device,
                "variants": result.variants, **result.start,
                **({"kinds": list(result.kinds)} if result.kinds != KINDS else {}),
                "first_loss": {k: round(v[0], 4) for k, v in result.losses.items() if v},
                "final_loss": {k: tail(v) for k, v in result.losses.items() if v},
                "tools": tool_versions()}
    return record_trained(result.model, result.tokenizer, out_dir, training)


PROGRESS_LINE = re.compile(r"^step (\d+)/(\d+) (\w+) loss ([0-9.eE+-]+)\s*$")


def losses_from_log(text: str, steps: int, source: str = "the training log") -> dict:
    """The first and final logged loss of each kind, from `main`'s progress lines (`step N/T kind loss X`,
    one every T/100 steps): {"first_loss", "final_loss", "loss_steps", "loss_source"}. The log must be a
    run of `steps` steps that reached its last one."""
    hint = "pass the log the training run printed (its `step N/T kind loss X` lines) and its --steps"
    lines = [m.groups() for m in map(PROGRESS_LINE.match, text.splitlines()) if m]
    if not lines:
        raise TrainingRecordError(f"{source} has no `step N/T kind loss X` lines", hint=hint)
    totals = {int(t) for _, t, _, _ in lines}
    if totals != {steps}:
        raise TrainingRecordError(f"{source} is of a run of {sorted(totals)} steps, not {steps}", hint=hint)
    if int(lines[-1][0]) != steps:
        raise TrainingRecordError(f"{source} stops at step {lines[-1][0]} of {steps}: the run did not finish",
                               hint="record weights of a finished run only")
    first: dict[str, tuple[int, float]] = {}
    final: dict[str, tuple[int, float]] = {}
    for step, _, kind, loss in lines:
        first.setdefault(kind, (int(step), float(loss)))
        final[kind] = (int(step), float(loss))
    every = int(lines[1][0]) - int(lines[0][0]) if len(lines) > 1 else steps
    return {"first_loss": {k: round(v[1], 4) for k, v in first.items()},
            "final_loss": {k: round(v[1], 4) for k, v in final.items()},
            "loss_steps": {"first": {k: v[0] for k, v in first.items()}, "final": {k: v[0] for k, v in final.items()}},
            "loss_source": f"{source}: one logged step every {every}"}


def record_only(folder: Path, training_log: Path, *, steps: int, device: str, trained_with: dict[str, str],
                batch: int = DEFAULT_BATCH, seed: int = TINY_SEED, variants: int = DEFAULT_VARIANTS,
                start: TrainingStart = SEEDED_START, kinds: tuple[str, ...] = KINDS) -> dict:
    """Record weights trained elsewhere (`main` run with these settings on `device`, with the tools
    `trained_with`, its progress in `training_log`): load `folder`'s weights and tokenizer, measure their
    margins here and write trained.json beside them. The training's seconds are not known here, so they
    are not recorded."""
    from tokenizers import Tokenizer
    from transformers import Gemma4UnifiedForConditionalGeneration

    folder = Path(folder)
    for name in (SHIPPED_WEIGHTS, SHIPPED_TOKENIZER):
        if not (folder / name).is_file():
            raise TrainingRecordError(f"{folder} has no {name}", hint="pass the folder the training run wrote (--out)")
    training = {"steps": steps, "qat_steps": int(round(steps * start.qat_fraction)), "batch": batch, "seed": seed,
                "device": device, "variants": variants, **start.facts(),
                **({"kinds": list(kinds)} if tuple(kinds) != KINDS else {}),
                **losses_from_log(Path(training_log).read_text(), steps, Path(training_log).name),
                "tools": dict(trained_with)}
    # transformers' loader, as the checkpoint reads them (it maps the saved names onto the model's)
    with tempfile.TemporaryDirectory() as tmp:
        tiny_unified_config().save_pretrained(tmp)
        (Path(tmp) / SHIPPED_WEIGHTS).symlink_to((folder / SHIPPED_WEIGHTS).resolve())
        model, info = Gemma4UnifiedForConditionalGeneration.from_pretrained(tmp, dtype=torch.float32,
                                                                             output_loading_info=True)
    if info["missing_keys"] or info["unexpected_keys"]:
        raise TrainingRecordError(f"{folder / SHIPPED_WEIGHTS} is not the tiny unified model's (missing "
                                  f"{sorted(info['missing_keys'])[:3]}, unexpected {sorted(info['unexpected_keys'])[:3]})",
                                  hint="pass the folder the training run wrote (--out)")
    model.config._attn_implementation = "sdpa"
    return record_trained(model, Tokenizer.from_file(str(folder / SHIPPED_TOKENIZER)), folder, training)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..errors import GemmaiosError
    from ..tinytrain import add_start_options, trained_with, training_start

    parser = argparse.ArgumentParser(prog="python -m gemmaios.unified.tinymodel",
                                     description="train and ship the tiny unified (12B-shaped, image + audio) model")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--seed", type=int, default=TINY_SEED)
    parser.add_argument("--variants", type=int, default=DEFAULT_VARIANTS,
                        help="jittered training copies of each picture kind and each tone kind")
    parser.add_argument("--device", default="cpu", help="cpu (one thread), or cuda to train on a GPU "
                        "(with --record-only: the device the weights were trained on)")
    add_start_options(parser, QAT_FRACTION)
    parser.add_argument("--kinds", default=",".join(KINDS), metavar="KIND,...",
                        help="the cycle of batch kinds, one per step (default %(default)s; repeat a kind to give "
                             "it more steps)")
    parser.add_argument("--out", type=Path, default=TINY_UNIFIED_SHIPPED_DIR)
    parser.add_argument("--record-only", type=Path, metavar="DIR",
                        help="do not train: record the weights a training run wrote to DIR (model.safetensors, "
                             "tokenizer.json), measuring their margins here and writing DIR/trained.json; "
                             "--steps, --batch, --seed, --variants, --kinds and --device state that run's settings")
    parser.add_argument("--training-log", type=Path, metavar="LOG",
                        help="with --record-only: the training run's output (its first and final losses)")
    parser.add_argument("--trained-with", action="append", default=[], metavar="PACKAGE=VERSION",
                        help="with --record-only: a tool version of the training run (repeat: torch=2.11.0, ...)")
    args = parser.parse_args(argv)
    try:
        kinds = kind_cycle(k.strip() for k in args.kinds.split(",") if k.strip())
    except ValueError as exc:
        parser.error(f"--kinds {exc}")
    if args.record_only:
        if not args.training_log:
            parser.error("--record-only needs --training-log LOG (the training run's output)")
        try:
            tools = trained_with(args.trained_with)
        except ValueError as exc:
            parser.error(str(exc))
        if not tools:
            parser.error("--record-only needs --trained-with PACKAGE=VERSION for the training run's torch and "
                         "transformers (e.g. --trained-with torch=2.11.0 --trained-with transformers=5.17.0)")
        try:
            record = record_only(args.record_only, args.training_log, steps=args.steps, device=args.device,
                                 trained_with=tools, batch=args.batch, seed=args.seed, variants=args.variants,
                                 start=training_start(args), kinds=kinds)
        except GemmaiosError as err:
            print(f"error: {err}")
            return 1
    else:
        every = max(1, args.steps // 100)

        def show(step, total, kind, loss):
            if step % every == 0 or step == total:
                print(f"step {step}/{total} {kind} loss {loss:.4f}", flush=True)

        result = train_tiny_unified(steps=args.steps, batch=args.batch, device=args.device, seed=args.seed,
                                    variants=args.variants, start=training_start(args), kinds=kinds, progress=show)
        record = ship(result, args.out)
    print(json.dumps({k: record[k] for k in ("training", "margins_measured", "gate_margins", "gate_margins_int4_grid",
                                             "text_margins", "gate_answers")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
