"""Train the built-in tiny Gemma 4 on the generated corpus (`gemmaios.tinycorpus`).

A random-weight model has near-flat logits (top-1/top-2 margins ~1e-4), so no parity gate
can tell a correct bundle from a broken one. This trains transformers' own
`Gemma4ForCausalLM` (the tiny E4B-structured config) on CPU until its greedy answers to the
oracle's built-in prompts are confident, then finishes with a short quantization-aware phase:
every Linear weight the converter quantizes (input dim a multiple of 32) and the lm_head
(the converter's untied int4 copy of the tied embedding) are fake-quantized on the q4_0
grid of `gemmaios.quantize` (per block of 32, symmetric absmax / 7, scale rounded to fp16),
with a straight-through gradient — so, like the Gemma 4 QAT checkpoints it stands in for,
its int4 bundle decodes what its fp32 reference decodes.

Deterministic: fixed seeds, a fixed draw order and one intra-op thread (thread count changes
float summation order), so the same torch build reproduces the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .files import sha256_file
from .quantize import BLOCK, QMAX, QMIN
from .tinycorpus import Example, generate_conversations, generate_corpus

DEFAULT_STEPS = 900
DEFAULT_QAT_FRACTION = 0.2
BATCH_SIZE = 32
# Every CONVERSATION_EVERY-th step trains a batch of CONVERSATION_BATCH multi-turn conversations
# (about as many tokens as a batch of single turns) instead.
CONVERSATION_EVERY = 3
CONVERSATION_BATCH = 6
LEARNING_RATE = 4e-3
WARMUP_STEPS = 60
# Target tokens trained per example: the answer, its end marker, then <eos> up to this many
# (the oracle decodes 32), with at least MIN_TRAILING_EOS of them.
MIN_TARGET_TOKENS = 40
MIN_TRAILING_EOS = 4

Progress = Callable[[int, int, float], None]  # (step, steps, loss)


@dataclass
class TrainResult:
    model: object  # Gemma4ForCausalLM, eval mode, fp32
    tokenizer: object  # tokenizers.Tokenizer
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    qat_steps: int = 0
    batch_size: int = BATCH_SIZE


# A fixed intra-op thread count: it decides float summation order, so the bytes depend on it.
TRAIN_THREADS = 1


@contextlib.contextmanager
def fixed_threads(threads: int = TRAIN_THREADS):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def trained_with(pairs: list[str]) -> dict[str, str]:
    """`--trained-with torch=2.11.0 --trained-with transformers=5.17.0` (the trainers' --record-only):
    the training run's package versions; a pair without a version is refused."""
    versions = dict(pair.partition("=")[::2] for pair in pairs)
    bad = [name for name, version in versions.items() if not name or not version]
    if bad:
        raise ValueError(f"--trained-with takes PACKAGE=VERSION, got {', '.join(repr(b) for b in bad)}")
    return versions


@dataclass(frozen=True)
class TrainingStart:
    """Where a multimodal trainer's run starts and how hard it steps: `init_from` a folder an earlier
    run wrote (its model.safetensors continue instead of the seeded start), the peak learning rates
    scaled by `lr_scale` (below 1 to refine a trained model), the last `qat_fraction` of the steps
    on the int4 grid."""

    init_from: Path | None = None
    lr_scale: float = 1.0
    qat_fraction: float = DEFAULT_QAT_FRACTION

    def facts(self) -> dict:
        """What trained.json states of the start (nothing for the default seeded start)."""
        out: dict = {}
        if self.init_from is not None:
            weights = Path(self.init_from) / "model.safetensors"
            earlier = Path(self.init_from) / "trained.json"
            steps = None
            if earlier.is_file():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    steps = json.loads(earlier.read_text())["training"]["steps"]
            out["init_from"] = {"sha256": sha256_file(weights), **({"steps": steps} if steps is not None else {})}
        if self.lr_scale != 1.0:
            out["lr_scale"] = self.lr_scale
        return out

    def load_into(self, model) -> None:
        """Replace `model`'s tensors by the earlier run's (read through transformers' loader, as a
        checkpoint reads them: it maps the saved names onto the model's); every tensor must match."""
        if self.init_from is None:
            return
        weights = Path(self.init_from) / "model.safetensors"
        if not weights.is_file():
            raise ValueError(f"--init-from {self.init_from}: no model.safetensors there (pass the folder an earlier "
                             "run wrote with --out)")
        with tempfile.TemporaryDirectory(prefix="gemmaios-init-from-") as tmp:
            model.config.save_pretrained(tmp)
            (Path(tmp) / "model.safetensors").symlink_to(weights.resolve())
            earlier, info = type(model).from_pretrained(tmp, dtype=torch.float32, output_loading_info=True)
        if info["missing_keys"] or info["unexpected_keys"]:
            raise ValueError(f"--init-from {self.init_from}: its weights are not this model's (missing "
                             f"{sorted(info['missing_keys'])[:3]}, unexpected {sorted(info['unexpected_keys'])[:3]})")
        model.load_state_dict(earlier.state_dict())


SEEDED_START = TrainingStart()  # the default: the seeded start, full learning rates, the last fifth on the grid


def add_start_options(parser, qat_fraction: float = DEFAULT_QAT_FRACTION) -> None:
    """--init-from, --lr-scale and --qat-fraction, the same for the three multimodal trainers (with
    --record-only they state how the recorded run started)."""
    parser.add_argument("--init-from", type=Path, metavar="DIR",
                        help="continue from the weights an earlier run wrote to DIR instead of the seeded start")
    parser.add_argument("--lr-scale", type=float, default=1.0,
                        help="scale the peak learning rates (below 1 to refine a trained model)")
    parser.add_argument("--qat-fraction", type=float, default=qat_fraction,
                        help=f"the last fraction of the steps trained on the int4 grid (default {qat_fraction})")


def training_start(args) -> TrainingStart:
    return TrainingStart(args.init_from, args.lr_scale, args.qat_fraction)


def encode_examples(tokenizer, examples: list[Example]) -> list[tuple[list[int], list[bool]]]:
    """(token ids, trained-or-not per token) per example, trailing <eos> trimmed: the model's
    replies are trained, what it is given (user turns, system turns, turn openers) is not."""
    eos = tokenizer.token_to_id("<eos>")
    encoded = []
    for ex in examples:
        ids: list[int] = []
        trained: list[bool] = []
        text = ""
        last_start = 0
        for piece, is_target in ex.segments:
            before = ids
            text += piece
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            if ids[: len(before)] != before:
                raise ValueError(f"tokens change when the next piece follows: {text[-80:]!r}")
            trained += [is_target] * (len(ids) - len(before))
            if is_target:
                last_start = len(before)
        content = len(ids)
        while ids[content - 1] == eos:
            content -= 1
        keep = max(content + MIN_TRAILING_EOS, last_start + MIN_TARGET_TOKENS)
        encoded.append((ids[:keep], trained[:keep]))
    return encoded


def fake_quant_int4(weight: torch.Tensor) -> torch.Tensor:
    """The q4_0 grid of quantize_blockwise in the forward pass, identity in the backward."""
    out_features, in_features = weight.shape
    blocks = weight.reshape(out_features, in_features // BLOCK, BLOCK)
    scale = (blocks.detach().abs().amax(dim=-1, keepdim=True) / QMAX["int4"]).to(torch.float16).to(weight.dtype)
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    grid = (torch.round(blocks / safe).clamp(QMIN["int4"], QMAX["int4"]) * scale).reshape_as(weight)
    return weight + (grid - weight).detach()


def fake_quant_forward(self, x):
    return F.linear(x, fake_quant_int4(self.weight), self.bias)


def enable_qat(model) -> list[str]:
    """Fake-quantize every Linear the converter quantizes, and the (tied) lm_head.

    The lm_head shares its weight with the embedding, but only the head's matmul is
    quantized (the converter keeps the embedding gather exact), so the hook is on the
    head's forward, not on the shared tensor.
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.in_features % BLOCK == 0:
            module.forward = types.MethodType(fake_quant_forward, module)
            names.append(name)
    return names


def disable_qat(model) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and "forward" in module.__dict__:
            del module.forward


def pad_batch(encoded, indices, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [encoded[i] for i in indices]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (ids, trained) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(ids)] = torch.where(torch.tensor(trained), torch.tensor(ids), -100)
    return input_ids, labels


def optimizer_step(model, optimizer, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Next-token cross-entropy against `labels` (-100: not a target), one clipped step; the loss."""
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def _learning_rate(step: int, steps: int, peak: float = LEARNING_RATE) -> float:
    warmup = min(WARMUP_STEPS, steps // 5)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_tiny(
    steps: int = DEFAULT_STEPS,
    qat_fraction: float = DEFAULT_QAT_FRACTION,
    progress: Progress | None = None,
    seed: int | None = None,
    device: str = "cpu",
    learning_rate: float | None = None,
    batch_size: int | None = None,
) -> TrainResult:
    """Train the tiny e4b model from its seeded initialisation; the last `qat_fraction` of the
    steps fake-quantize to int4. Returns the model (eval mode, fake-quant removed)."""
    from .tiny import TINY_SEED, initial_tiny_model, train_tokenizer
    from .tinycorpus import tokenizer_texts

    seed = TINY_SEED if seed is None else seed
    examples = generate_corpus()
    conversations = generate_conversations()
    tokenizer = train_tokenizer(tokenizer_texts(examples + conversations))
    encoded = encode_examples(tokenizer, examples)
    encoded_conversations = encode_examples(tokenizer, conversations)
    weights = torch.tensor([ex.weight for ex in examples], dtype=torch.float64)
    conversation_weights = torch.tensor([ex.weight for ex in conversations], dtype=torch.float64)
    pad_id = tokenizer.token_to_id("<pad>")
    qat_start = steps - int(round(steps * qat_fraction))
    started = time.perf_counter()
    losses: list[float] = []
    with fixed_threads():
        torch.manual_seed(seed)
        model = initial_tiny_model(attn_implementation="sdpa").to(device)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim == 2]
        other = [p for n, p in model.named_parameters() if p.ndim != 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
            lr=LEARNING_RATE, betas=(0.9, 0.98), eps=1e-8,
        )
        draws = torch.Generator().manual_seed(seed)
        for step in range(steps):
            if step == qat_start:
                enable_qat(model)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, steps, learning_rate or LEARNING_RATE)
            if step % CONVERSATION_EVERY == CONVERSATION_EVERY - 1:
                indices = torch.multinomial(conversation_weights, CONVERSATION_BATCH, replacement=True,
                                            generator=draws).tolist()
                batch = pad_batch(encoded_conversations, indices, pad_id)
            else:
                indices = torch.multinomial(weights, batch_size or BATCH_SIZE, replacement=True, generator=draws).tolist()
                batch = pad_batch(encoded, indices, pad_id)
            input_ids, labels = (t.to(device) for t in batch)
            logits = model(input_ids=input_ids, use_cache=False).logits
            losses.append(optimizer_step(model, optimizer, logits, labels))
            if progress:
                progress(step + 1, steps, losses[-1])
        disable_qat(model)
    model.to("cpu").eval()
    return TrainResult(model, tokenizer, losses, time.perf_counter() - started, steps, steps - qat_start,
                       batch_size or BATCH_SIZE)


@dataclass
class PromptMargins:
    prompt: str
    tokens: list[int]
    margins: list[float]
    text: str = ""


def greedy_margins(model, tokenizer, prompts: list[str], steps: int = 32) -> list[PromptMargins]:
    """Greedy decode (fp32, KV cache, as the oracle does) of each rendered prompt: tokens and
    top-1/top-2 margins."""
    out = []
    with torch.no_grad(), fixed_threads():
        for prompt in prompts:
            ids = tokenizer.encode(prompt, add_special_tokens=False).ids
            tokens, margins = [], []
            result = model(input_ids=torch.tensor([ids]), use_cache=True)
            for _ in range(steps):
                logits = result.logits[0, -1].float()
                top = torch.topk(logits, 2).values
                tokens.append(int(logits.argmax()))
                margins.append(float(top[0] - top[1]))
                result = model(input_ids=torch.tensor([tokens[-1:]]), past_key_values=result.past_key_values,
                               use_cache=True)
            out.append(PromptMargins(prompt, tokens, margins, tokenizer.decode(tokens, skip_special_tokens=False)))
    return out


def evaluation_prompts() -> list[str]:
    """The oracle's built-in prompts (chat-rendered) and the parity gates' plain prompts, two of
    the built-ins under a system instruction and two with thinking on."""
    from .oracle.prompts import BUILTIN_PROMPTS, GATE_PROMPTS
    from .tinycorpus import BOS, SYSTEM_PROMPTS, chat_prompt

    builtin = [p.text for p in BUILTIN_PROMPTS.prompts]
    return ([chat_prompt(q) for q in builtin] + [BOS + p for p in GATE_PROMPTS]
            + [chat_prompt(q, system=SYSTEM_PROMPTS[0]) for q in builtin[:2]]
            + [chat_prompt(q, thinking=True) for q in builtin[2:4]])


def conversation_evaluation_prompts() -> list[str]:
    """Every turn of the chat tests' 6-turn conversation, the earlier turns answered as trained."""
    from .tinycorpus import conversation_prompts

    return conversation_prompts()


def margin_summary(runs: list[PromptMargins]) -> dict:
    margins = sorted(m for run in runs for m in run.margins)
    return {
        "steps": len(margins),
        "median": round(margins[len(margins) // 2], 4),
        "min": round(margins[0], 4),
        "below_near_tie": sum(m < 0.1 for m in margins),
    }


def ship(result: TrainResult, out_dir) -> dict:
    """Write the trained weights, tokenizer and their record (sha256s, training facts, margins)
    into `out_dir` (the package's data/tiny by default in the CLI); returns the record."""
    import shutil
    import tempfile
    from importlib import metadata
    from pathlib import Path

    from .files import sha256_file, write_json_atomic
    from .tiny import SHIPPED_RECORD, SHIPPED_TOKENIZER, SHIPPED_WEIGHTS, TINY_SEED

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = greedy_margins(result.model, result.tokenizer, evaluation_prompts())
    conversation = greedy_margins(result.model, result.tokenizer, conversation_evaluation_prompts())
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        result.model.save_pretrained(tmp, safe_serialization=True)
        result.tokenizer.save(str(Path(tmp) / SHIPPED_TOKENIZER))
        for name in (SHIPPED_WEIGHTS, SHIPPED_TOKENIZER):
            shutil.move(str(Path(tmp) / name), out_dir / name)
    record = {
        "sha256": {name: sha256_file(out_dir / name) for name in (SHIPPED_WEIGHTS, SHIPPED_TOKENIZER)},
        "bytes": {name: (out_dir / name).stat().st_size for name in (SHIPPED_WEIGHTS, SHIPPED_TOKENIZER)},
        "training": {
            "seed": TINY_SEED, "steps": result.steps, "qat_steps": result.qat_steps, "batch_size": result.batch_size,
            "threads": TRAIN_THREADS, "seconds": round(result.seconds, 1),
            "first_loss": round(result.losses[0], 4), "final_loss": round(sum(result.losses[-20:]) / min(20, len(result.losses)), 4),
            "tools": {dist: metadata.version(dist) for dist in ("torch", "transformers", "tokenizers")},
        },
        # fp32 greedy top-1/top-2 logit margins over 32 tokens of the oracle's built-in prompts
        # and the parity gates' prompts.
        "margins": margin_summary(runs),
        "answers": {run.prompt: run.text for run in runs},
        # The same over each turn of the 6-turn conversation (tinycorpus.CHAT_CONVERSATION).
        "conversation_margins": margin_summary(conversation),
        "conversation_answers": {run.prompt: run.text for run in conversation},
    }
    write_json_atomic(out_dir / SHIPPED_RECORD, record)
    return record
