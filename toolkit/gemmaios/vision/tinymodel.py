"""The tiny multimodal model: the trained tiny E4B decoder plus a tiny Gemma 4 vision tower.

`Gemma4ForConditionalGeneration` (model_type `gemma4`, the E2B/E4B layout: vision tower, 3x3
pooling, `embed_vision` projector) whose text decoder starts from the shipped trained tiny
weights (`gemmaios/data/tiny`), its vocabulary extended by the image/audio marker tokens.
It is fine-tuned to describe the project's own pictures (`vision.images`: colour, shape and
frame; 30 jittered copies of each kind, so it generalises to the unjittered oracle pictures it
never sees) while text examples keep the decoder's text answers; the last fifth fake-quantizes
the decoder's linears and head on the int4 grid, as tinytrain does. From a seeded tower 3500
steps take ~6 min on a GPU (`--device cuda`) or ~3 h on one CPU thread; the shipped weights
fine-tune the format-1 model's tower (`tower_init.safetensors`) for WARM_STEPS on a GPU (minutes),
then twice 1500 steps continued on one CPU thread wholly on the int4 grid (`--init-from`,
`--qat-fraction 1.0 --lr-scale 0.3`, ~15 min each), after which they describe all 8 pictures on the
int4 grid (docs/images.md). The result ships in `gemmaios/data/tiny-vision` (sha256s, training facts and
margins, plain fp32 and on the int4 grid, recorded in trained.json); `--record-only` writes that
record for weights a run elsewhere left behind (a GPU run stopped while measuring margins).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..files import replace_dir, sha256_file, write_json_atomic
from ..tiny import TINY_VISION_ID  # noqa: F401  (one home for the built-in names: gemmaios.tiny)
from ..tinytrain import SEEDED_START, TrainingStart
from .images import BUILTIN_IMAGES, ImageCase, training_cases
from .preprocess import IMAGE_PLACEHOLDER, ImageSpec, expand_prompt, image_processor, preprocess

TINY_VISION_FORMAT = 2  # 2: Gemma 4's framing and marker names
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "tiny-vision"
WEIGHTS, TOKENIZER, RECORD = "model.safetensors", "tokenizer.json", "trained.json"
# The vision tower and projector training starts from (fine-tuned, not from scratch): those of the
# format-1 tiny-vision model (3500 steps on a GPU, model.safetensors sha256 3c845a09…), kept so a
# retrain from the same start is comparable. Without it (`--init-tower none`) the tower starts
# from the seeded initialisation and needs DEFAULT_STEPS.
TOWER_INIT = "tower_init.safetensors"
MARKER_FILE = "gemmaios_tiny.json"

# Gemma 4's marker tokens, appended to the tiny text vocabulary (384): ids 384..390, so V = 391
# (Gemma 4's own ids for them lie above 255k).
IMAGE_TOKENS = {"boi_token": "<|image>", "eoi_token": "<image|>", "image_token": "<|image|>"}
OTHER_TOKENS = {"video_token": "<|video|>", "boa_token": "<|audio>", "eoa_token": "<audio|>",
                "audio_token": "<|audio|>"}
ADDED_TOKENS = [*IMAGE_TOKENS.values(), *OTHER_TOKENS.values()]

PATCH_SIZE, POOLING, SOFT_TOKENS = 8, 3, 70  # 70: the smallest budget transformers' processor accepts
# The picture ends the user turn and the answer opens with its colour and shape: the last soft
# tokens (which carry the whole picture: the vision tower attends globally) then lie inside the
# decoder's sliding window when the first answer token is decided.
QUESTION = f"Describe the image.\n{IMAGE_PLACEHOLDER}"
# The recipe: 30 jittered copies of every colour x shape x frame, 3500 steps from a seeded tower,
# WARM_STEPS from the shipped tower_init (how the shipped weights were made, on a GPU).
DEFAULT_STEPS, DEFAULT_VARIANTS, WARM_STEPS = 3500, 30, 1500
VISION_THREADS = 2  # CPU threads of a CPU retrain (they decide float summation order, so the bytes)


def vision_config_kwargs() -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, head_dim=16, patch_size=PATCH_SIZE, pooling_kernel_size=POOLING,
                position_embedding_size=64, rope_parameters={"rope_type": "axial", "rope_theta": 100.0},
                standardize=True, rms_norm_eps=1e-6)


def processor_config() -> dict:
    return {"image_processor_type": "Gemma4ImageProcessorPil", "patch_size": PATCH_SIZE,
            "pooling_kernel_size": POOLING, "max_soft_tokens": SOFT_TOKENS}


def tokenizer_with_markers(text_tokenizer_file: Path):
    """The shipped tiny tokenizer plus the marker tokens (ids 384..390), as tokenizers.Tokenizer."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(text_tokenizer_file))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ADDED_TOKENS])
    return tok


def hf_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    from ..tiny import CHAT_TEMPLATE

    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", chat_template=CHAT_TEMPLATE,
                                   extra_special_tokens={**IMAGE_TOKENS, **OTHER_TOKENS})


def model_config(tok):
    from transformers import Gemma4Config, Gemma4TextConfig, Gemma4VisionConfig

    from ..tiny import tiny_text_config_kwargs

    vocab = tok.get_vocab_size()
    text = Gemma4TextConfig(**{**tiny_text_config_kwargs(), "vocab_size": vocab, "vocab_size_per_layer_input": vocab})
    ids = {k.replace("_token", "_token_id"): tok.token_to_id(v) for k, v in {**IMAGE_TOKENS, **OTHER_TOKENS}.items()}
    return Gemma4Config(text_config=text, vision_config=Gemma4VisionConfig(**vision_config_kwargs()), audio_config=None,
                        boi_token_id=ids["boi_token_id"], eoi_token_id=ids["eoi_token_id"],
                        image_token_id=ids["image_token_id"], video_token_id=ids["video_token_id"],
                        boa_token_id=ids["boa_token_id"], eoa_token_index=ids["eoa_token_id"],
                        audio_token_id=ids["audio_token_id"], tie_word_embeddings=True)


def initial_model(config, text_weights: Path, seed: int = 1234, tower_init: Path | None = None):
    """Seeded init; the text decoder's tensors from the trained tiny weights (new vocab rows: the
    seeded init's), the vision tower's standardize buffers set off the identity; with `tower_init`,
    the vision tower and projector from that file."""
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
        generator = torch.Generator().manual_seed(seed)
        vt = model.model.vision_tower
        # transformers starts the patch position table at all-ones (the same vector for every
        # position, 10x the patch projection): the features then barely depend on the picture
        # and the decoder learns to ignore them. Start it small and the projection wider.
        pe = vt.patch_embedder
        pe.position_embedding_table.copy_(0.02 * torch.randn(pe.position_embedding_table.shape, generator=generator))
        pe.input_proj.weight.copy_(0.1 * torch.randn(pe.input_proj.weight.shape, generator=generator))
        vt.std_bias.copy_(0.1 * torch.randn(vt.std_bias.shape, generator=generator))
        vt.std_scale.copy_(1.0 + 0.1 * torch.randn(vt.std_scale.shape, generator=generator))
        if tower_init is not None:
            full = model.state_dict()
            loaded = load_file(str(tower_init))
            for name, tensor in loaded.items():
                if name not in full or full[name].shape != tensor.shape or name.startswith("model.language_model."):
                    raise ValueError(f"{tower_init}: {name} {tuple(tensor.shape)} is not a tensor of the tiny vision tower")
                full[name].copy_(tensor)
    return model


def int4_grid_on(model) -> list:
    """Fake-quantize the decoder's linears and its head on the converter's int4 grid (the vision
    tower and projector stay fp16 in the bundle, so they are left alone); returns the hooked modules."""
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
class VisionTrainResult:
    model: object
    tokenizer: object  # tokenizers.Tokenizer
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    qat_steps: int = 0
    seed: int = 1234
    device: str = "cpu"
    variants: int = 3
    threads: int = 1  # CPU intra-op threads (they decide float summation order, so the bytes)
    tower_init: Path | None = None  # where the vision tower started (None: the seeded initialisation)
    start: dict = field(default_factory=dict)  # TrainingStart.facts(): a continued run's start


def _image_examples(spec: ImageSpec, hf_tok, cases: list[ImageCase]):
    from ..tinycorpus import END, EOS, chat_prompt

    proc = image_processor(spec)
    out = []
    for case in cases:
        prepared = preprocess(case.pixels(), spec, proc)
        prompt = expand_prompt(chat_prompt(QUESTION), spec, hf_tok, prepared.num_soft_tokens)
        target = hf_tok(f"{case.answer()}{END}\n" + EOS * 6, add_special_tokens=False)["input_ids"]
        out.append((prompt, target, torch.from_numpy(prepared.pixel_values),
                    torch.from_numpy(prepared.pixel_position_ids).long()))
    return out


def train_tiny_vision(steps: int = DEFAULT_STEPS, batch: int = 8, text_every: int = 4,
                      progress=None, seed: int = 1234, device: str = "cpu",
                      variants: int = DEFAULT_VARIANTS, threads: int = VISION_THREADS,
                      tower_init: Path | None = None, start: TrainingStart = SEEDED_START) -> VisionTrainResult:
    """Fine-tune the tiny multimodal model: image batches (every step but each `text_every`-th)
    and text batches from the tiny corpus (so the decoder keeps its text answers).

    `device` "cuda" trains on a GPU (the batches are drawn on the CPU either way, so a seed
    picks the same examples); the returned model is on the CPU. `variants`: jittered copies of
    every colour x shape x aspect (the built-in oracle images, unjittered, are never trained on).
    `start`: continue an earlier run's weights, scale the learning rates, the int4-grid fraction."""
    from ..tiny import SHIPPED_DIR as TEXT_DIR
    from ..tinycorpus import generate_corpus
    from ..tinytrain import encode_examples, fixed_threads, optimizer_step, pad_batch

    tok = tokenizer_with_markers(TEXT_DIR / "tokenizer.json")
    hf_tok = hf_tokenizer(tok)
    config = model_config(tok)
    spec = ImageSpec.from_config(config.to_dict(), processor_config())
    examples = _image_examples(spec, hf_tok, training_cases(variants))
    corpus = generate_corpus()
    text_encoded = encode_examples(tok, corpus)
    text_weights = torch.tensor([ex.weight for ex in corpus], dtype=torch.float64)
    pad = tok.token_to_id("<pad>")
    qat_start = steps - int(round(steps * start.qat_fraction))
    started, losses = time.perf_counter(), []
    with fixed_threads(threads):
        dev = torch.device(device)
        model = initial_model(config, TEXT_DIR / "model.safetensors", seed, tower_init)
        start.load_into(model)
        model.to(dev)
        model.config._attn_implementation = "sdpa"
        model.train()
        lm = model.model.language_model
        vision_params = [p for n, p in model.named_parameters() if not n.startswith("model.language_model.")]
        text_params = list(lm.parameters())
        optimizer = torch.optim.AdamW([{"params": vision_params, "lr": 3e-3}, {"params": text_params, "lr": 6e-4}],
                                      betas=(0.9, 0.98), weight_decay=0.0)
        peaks = [3e-3 * start.lr_scale, 6e-4 * start.lr_scale]
        draws = torch.Generator().manual_seed(seed)
        hooked: list = []
        for step in range(steps):
            if step == qat_start:  # the converter's int4 grid on the decoder's linears and head
                hooked = int4_grid_on(model)
            scale = min(1.0, (step + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(step / steps * 3.14159)).item()))
            for group, peak in zip(optimizer.param_groups, peaks, strict=True):
                group["lr"] = peak * scale
            if text_every and step % text_every == text_every - 1:
                idx = torch.multinomial(text_weights, 16, replacement=True, generator=draws).tolist()
                input_ids, labels = pad_batch(text_encoded, idx, pad)
                labels = labels.to(dev)
                logits = model(input_ids=input_ids.to(dev), use_cache=False).logits
            else:
                idx = torch.randint(len(examples), (batch,), generator=draws).tolist()
                rows = [examples[i] for i in idx]
                width = max(len(p) + len(t) for p, t, _, _ in rows)
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                labels = torch.full((len(rows), width), -100, dtype=torch.long)
                for r, (p, t, _, _) in enumerate(rows):
                    input_ids[r, : len(p) + len(t)] = torch.tensor(p + t)
                    labels[r, len(p) : len(p) + len(t)] = torch.tensor(t)
                labels = labels.to(dev)
                logits = model(input_ids=input_ids.to(dev), pixel_values=torch.stack([r[2] for r in rows]).to(dev),
                               image_position_ids=torch.stack([r[3] for r in rows]).to(dev), use_cache=False).logits
            losses.append(optimizer_step(model, optimizer, logits, labels))
            if progress:
                progress(step + 1, steps, losses[-1])
        int4_grid_off(hooked)
    model.to("cpu").eval()
    return VisionTrainResult(model, tok, losses, time.perf_counter() - started, steps, steps - qat_start, seed, device,
                             variants, threads, tower_init, start.facts())


def image_margins(model, tok, cases=BUILTIN_IMAGES, steps: int = 32, *, int4_grid: bool = False) -> list[dict]:
    """fp32 greedy decode of each built-in image prompt: the text and top-1/top-2 margins
    (`int4_grid`: with the decoder's weights on the int4 grid, what the int4 bundle computes)."""
    hooked = int4_grid_on(model) if int4_grid else []
    try:
        return _image_margins(model, tok, cases, steps)
    finally:
        int4_grid_off(hooked)


def _image_margins(model, tok, cases, steps: int) -> list[dict]:
    from ..tinycorpus import chat_prompt

    hf_tok = hf_tokenizer(tok)
    spec = ImageSpec.from_config(model.config.to_dict(), processor_config())
    proc = image_processor(spec)
    out = []
    with torch.no_grad():
        for case in cases:
            prepared = preprocess(case.pixels(), spec, proc)
            ids = expand_prompt(chat_prompt(QUESTION), spec, hf_tok, prepared.num_soft_tokens)
            result = model(input_ids=torch.tensor([ids]), pixel_values=torch.from_numpy(prepared.pixel_values)[None],
                           image_position_ids=torch.from_numpy(prepared.pixel_position_ids).long()[None], use_cache=True)
            tokens, margins = [], []
            for _ in range(steps):
                logits = result.logits[0, -1].float()
                top = torch.topk(logits, 2).values
                tokens.append(int(logits.argmax()))
                margins.append(float(top[0] - top[1]))
                result = model(input_ids=torch.tensor([tokens[-1:]]), past_key_values=result.past_key_values,
                               use_cache=True)
            out.append({"image": case.name, "text": tok.decode(tokens, skip_special_tokens=False),
                        "expected": case.answer(), "min_margin": round(min(margins), 4), "margins": margins})
    return out


def ship(result: VisionTrainResult, out_dir: Path = SHIPPED_DIR) -> dict:
    """Write the weights, tokenizer and trained.json (sha256s, training facts, margins)."""
    from importlib import metadata

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        result.model.save_pretrained(tmp, safe_serialization=True)
        result.tokenizer.save(str(Path(tmp) / TOKENIZER))
        for name in (WEIGHTS, TOKENIZER):
            shutil.move(str(Path(tmp) / name), out_dir / name)
    training = {"steps": result.steps, "qat_steps": result.qat_steps, "seconds": round(result.seconds, 1),
                "seed": result.seed, "device": result.device, "image_variants": result.variants,
                **({"threads": result.threads} if result.device == "cpu" else {}),
                "tower_init": _tower_init_fact(result.tower_init), **result.start,
                "first_loss": round(result.losses[0], 4),
                "final_loss": round(sum(result.losses[-20:]) / min(20, len(result.losses)), 4),
                "tools": {d: metadata.version(d) for d in ("torch", "transformers", "tokenizers")}}
    return record_trained(result.model, result.tokenizer, out_dir, training)


def _tower_init_fact(tower_init: Path | None) -> dict | None:
    return {"file": Path(tower_init).name, "sha256": sha256_file(tower_init)} if tower_init else None


def record_trained(model, tokenizer, out_dir: Path, training: dict) -> dict:
    """Measure the margins of the weights in `out_dir` (fp32 and on the int4 grid, on this
    machine's CPU) and write trained.json beside them; returns the record."""
    from ..tinytrain import evaluation_prompts, fixed_threads, greedy_margins, margin_summary

    with fixed_threads(VISION_THREADS):  # the same float summation order wherever it is measured
        images = image_margins(model, tokenizer)
        images_int4 = image_margins(model, tokenizer, int4_grid=True)
    text_runs = greedy_margins(_TextView(model), tokenizer, evaluation_prompts())
    all_image = sorted(m for r in images for m in r["margins"])
    all_int4 = sorted(m for r in images_int4 for m in r["margins"])
    record = {
        "sha256": {n: sha256_file(out_dir / n) for n in (WEIGHTS, TOKENIZER)},
        "bytes": {n: (out_dir / n).stat().st_size for n in (WEIGHTS, TOKENIZER)},
        "training": training,
        "image_margins": {"steps": len(all_image), "median": round(all_image[len(all_image) // 2], 4),
                          "min": round(all_image[0], 4), "below_near_tie": sum(m < 0.1 for m in all_image)},
        "image_margins_int4_grid": {
            "steps": len(all_int4), "median": round(all_int4[len(all_int4) // 2], 4), "min": round(all_int4[0], 4),
            "below_near_tie": sum(m < 0.1 for m in all_int4),
            "answers_right": sum(r["text"].startswith(r["expected"][: len(r["text"])]) for r in images_int4)},
        "text_margins": margin_summary(text_runs),
        "image_answers": {r["image"]: {"text": r["text"], "expected": r["expected"], "min_margin": r["min_margin"]}
                          for r in images},
        "image_answers_right": sum(r["text"].startswith(r["expected"][: len(r["text"])]) for r in images),
    }
    write_json_atomic(out_dir / RECORD, record)
    return record


def logged_losses(log: Path) -> list[tuple[int, float]]:
    """(step, loss) of a training log's `step N/T loss X` lines (every 10th step is printed)."""
    found = []
    for line in Path(log).read_text().splitlines():
        match = re.match(r"step (\d+)/\d+ loss ([0-9.]+)$", line.strip())
        if match:
            found.append((int(match.group(1)), float(match.group(2))))
    return found


def record_weights_trained_elsewhere(weights_dir: Path, log: Path, steps: int, *, device: str, tools: dict,
                                     seed: int = 1234, tower_init: Path | None = None,
                                     variants: int = DEFAULT_VARIANTS, start: TrainingStart = SEEDED_START) -> dict:
    """trained.json for weights a run elsewhere wrote (e.g. a GPU run stopped while measuring):
    its training facts from the arguments and its log, the margins measured here."""
    from importlib import metadata

    from tokenizers import Tokenizer
    from transformers import Gemma4ForConditionalGeneration

    weights_dir = Path(weights_dir)
    losses = logged_losses(log)
    if not losses or losses[-1][0] != steps:
        raise ValueError(f"{log} does not show a finished run of {steps} steps (last logged: "
                         f"{losses[-1][0] if losses else 'none'})")
    tok = Tokenizer.from_file(str(weights_dir / TOKENIZER))
    config = model_config(tok)
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        shutil.copyfile(weights_dir / WEIGHTS, Path(tmp) / WEIGHTS)
        model = Gemma4ForConditionalGeneration.from_pretrained(tmp, dtype=torch.float32).eval()
    training = {"steps": steps, "qat_steps": int(round(steps * start.qat_fraction)), "seed": seed, "device": device,
                "image_variants": variants, "tower_init": _tower_init_fact(tower_init), **start.facts(),
                "logged_first_loss": {"step": losses[0][0], "loss": losses[0][1]},
                "logged_final_loss": {"step": losses[-1][0], "loss": losses[-1][1]},
                "tools": tools,
                "margins_measured_with": {d: metadata.version(d) for d in ("torch", "transformers", "tokenizers")}}
    return record_trained(model, tok, weights_dir, training)


class _TextView:
    """The multimodal model called with text only (greedy_margins' interface)."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, **kwargs):
        return self.model(**kwargs)


def shipped_record(shipped_dir: Path = SHIPPED_DIR) -> dict:
    from ..tiny import TinyWeightsError

    try:
        record = json.loads((Path(shipped_dir) / RECORD).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TinyWeightsError(f"cannot read {Path(shipped_dir) / RECORD} ({exc})",
                               hint="reinstall gemmaios, or retrain with `python -m gemmaios.vision.tinymodel`") from exc
    for name in (WEIGHTS, TOKENIZER):
        got = sha256_file(Path(shipped_dir) / name) if (Path(shipped_dir) / name).is_file() else None
        if got != record["sha256"][name]:
            raise TinyWeightsError(f"{Path(shipped_dir) / name} does not match the sha256 in {RECORD}",
                                   hint="reinstall gemmaios, or retrain with `python -m gemmaios.vision.tinymodel`")
    return record


def generate_tiny_vision_checkpoint(out_dir: Path, shipped_dir: Path = SHIPPED_DIR) -> Path:
    """The checkpoint folder: config.json, preprocessor_config.json, weights, tokenizer files."""
    from ..tiny import write_tokenizer

    record = shipped_record(shipped_dir)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-vision-", dir=out_dir.parent))
    try:
        from tokenizers import Tokenizer
        from transformers import GenerationConfig

        tok = Tokenizer.from_file(str(Path(shipped_dir) / TOKENIZER))
        config = model_config(tok)
        config.architectures = ["Gemma4ForConditionalGeneration"]
        config.save_pretrained(tmp)
        GenerationConfig.from_model_config(config.text_config).save_pretrained(tmp)
        write_json_atomic(tmp / "preprocessor_config.json", processor_config())
        shutil.copyfile(Path(shipped_dir) / WEIGHTS, tmp / "model.safetensors")
        write_tokenizer(None, tmp, Path(shipped_dir) / TOKENIZER)
        tc = json.loads((tmp / "tokenizer_config.json").read_text())
        tc["extra_special_tokens"] = {**IMAGE_TOKENS, **OTHER_TOKENS}
        write_json_atomic(tmp / "tokenizer_config.json", tc)
        marker = {"format": TINY_VISION_FORMAT, "weights": "trained", "variant": "e4b-vision",
                  "weights_sha256": record["sha256"][WEIGHTS]}
        (tmp / MARKER_FILE).write_text(json.dumps(marker) + "\n")
        replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def default_dir() -> Path:
    from ..tiny import default_tiny_dir

    return default_tiny_dir().parent / f"tiny-vision-v{TINY_VISION_FORMAT}"


def ensure_tiny_vision_checkpoint(cache_dir: Path | None = None) -> Path:
    path = Path(cache_dir) if cache_dir else default_dir()
    marker = path / MARKER_FILE
    current = False
    if marker.is_file():
        try:
            data = json.loads(marker.read_text())
            current = data.get("format") == TINY_VISION_FORMAT and \
                data.get("weights_sha256") == json.loads((SHIPPED_DIR / RECORD).read_text())["sha256"][WEIGHTS]
        except (OSError, json.JSONDecodeError, KeyError):
            current = False
    if not current:
        generate_tiny_vision_checkpoint(path)
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..tinytrain import add_start_options, trained_with, training_start

    parser = argparse.ArgumentParser(prog="python -m gemmaios.vision.tinymodel",
                                     description="fine-tune and ship the tiny multimodal model")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"default {WARM_STEPS} from the shipped tower_init, {DEFAULT_STEPS} with --init-tower none")
    parser.add_argument("--init-tower", default=str(SHIPPED_DIR / TOWER_INIT),
                        help="safetensors of the vision tower and projector to start from, or `none`")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--variants", type=int, default=DEFAULT_VARIANTS, help="jittered training copies of each picture kind")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to train on a GPU (with --record-only: the device "
                                                        "the weights were trained on)")
    parser.add_argument("--threads", type=int, default=VISION_THREADS, help="CPU threads (recorded: they change the bytes)")
    add_start_options(parser)
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--record-only", type=Path, metavar="DIR",
                        help="train nothing: write trained.json for the weights a run elsewhere left in DIR "
                             "(the training command's --steps, --device, ... plus --training-log and --trained-with)")
    parser.add_argument("--training-log", type=Path, help="that run's output (its `step N/T loss X` lines)")
    parser.add_argument("--trained-with", action="append", default=[], metavar="PACKAGE=VERSION",
                        help="with --record-only: a tool version of the training run (repeat: torch=2.11.0, ...)")
    args = parser.parse_args(argv)
    tower = None if args.init_tower == "none" else Path(args.init_tower)
    steps = args.steps or (WARM_STEPS if tower else DEFAULT_STEPS)
    if args.record_only:
        if not args.training_log or not args.trained_with:
            parser.error("--record-only needs --training-log and --trained-with PACKAGE=VERSION")
        try:
            tools = trained_with(args.trained_with)
        except ValueError as exc:
            parser.error(str(exc))
        record = record_weights_trained_elsewhere(args.record_only, args.training_log, steps, device=args.device,
                                                  tools=tools, seed=args.seed, tower_init=tower, variants=args.variants,
                                                  start=training_start(args))
        print(json.dumps({k: record[k] for k in ("training", "image_margins", "image_margins_int4_grid",
                                                 "text_margins", "image_answers")}, indent=1))
        return 0

    def show(step, total, loss):
        if step % 10 == 0 or step == total:
            print(f"step {step}/{total} loss {loss:.4f}", flush=True)

    result = train_tiny_vision(steps=steps, progress=show, seed=args.seed, device=args.device,
                               variants=args.variants, threads=args.threads, tower_init=tower,
                               start=training_start(args))
    record = ship(result, args.out)
    print(json.dumps({k: record[k] for k in ("training", "image_margins", "image_margins_int4_grid", "text_margins",
                                             "image_answers")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
