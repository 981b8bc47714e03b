"""The fp32 reference: the Hugging Face Gemma 4 text decoder run greedy (`run_oracle`) or teacher-forced, and
the torch device check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import Checkpoint, resolve_checkpoint
from ..files import sha256_file
from .prompts import BUILTIN_PROMPTS, Prompt, PromptSet
from .records import DEFAULT_TOKENS, DEFAULT_TOP_K, Oracle, OracleError, OraclePrompt, TopK

SINGLE_THREAD_PARAMS = 20_000_000

Progress = Callable[[int], Any]


def encode_prompt(tok: Any, prompt: Prompt, chat_template: bool, *, where: str = "the checkpoint") -> list[int]:
    """Prompt token ids as the app feeds them: the rendered chat turn (BOS included), or BOS + text.

    One rule for the oracle, the host runner and the app's chat: the user turn rendered with
    the tokenizer's chat template and the generation prompt, tokenized without adding specials.
    """
    if chat_template:
        if not getattr(tok, "chat_template", None):
            raise OracleError(
                f"the tokenizer of {where} has no chat template",
                hint="use a prompts file with `chat_template: false`, or add chat_template.jinja to the checkpoint",
            )
        text = tok.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
        return list(tok(text, add_special_tokens=False)["input_ids"])
    return list(tok(prompt.text, add_special_tokens=True)["input_ids"])


class ReferenceModel:
    """The HF Gemma 4 text decoder in fp32 plus its tokenizer, loaded once and reused."""

    def __init__(self, checkpoint: Checkpoint, model: Any, tokenizer: Any, device: str) -> None:
        self.checkpoint = checkpoint
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_token_ids: list[int] = sorted({eos} if isinstance(eos, int) else set(eos or []))
        # A toy-sized model (the built-in tiny one) decodes faster on one thread: its matmuls are
        # too small to split, and on a shared machine extra threads only spin (measured 10x).
        self.single_thread = sum(p.numel() for p in model.parameters()) < SINGLE_THREAD_PARAMS

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        import torch

        before = torch.get_num_threads()
        if self.single_thread:
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(before)

    @classmethod
    def load(cls, checkpoint: Checkpoint | str | Path, device: str = "cpu") -> ReferenceModel:
        import torch
        from transformers import AutoTokenizer

        from ..hf_text import load_hf_text_decoder

        ckpt = _as_checkpoint(checkpoint)
        try:
            # Multimodal releases (gemma4, gemma4_unified): only the text decoder, its weight
            # names (model.language_model.*) mapped onto the causal LM's (model.*).
            model = load_hf_text_decoder(ckpt, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(ckpt.path)
            template, _ = ckpt.chat_template()
            if not getattr(tokenizer, "chat_template", None) and template:
                tokenizer.chat_template = template  # Gemma 4 without one: the framing the bundle gets too
        except (OSError, ValueError, RuntimeError) as exc:
            raise OracleError(
                f"transformers could not load the Gemma 4 text decoder from {ckpt.path}: {exc}",
                hint="check that the checkpoint is complete (`gemmaios build` validates it) and transformers is >= 5.5",
            ) from exc
        missing = _missing_text_weights(model, ckpt)
        if missing:
            raise OracleError(
                f"{len(missing)} text-decoder weights are not in {ckpt.path} (e.g. {missing[0]}); "
                "the reference would run on random weights",
                hint="the checkpoint is incomplete or not a Gemma 4 text checkpoint; re-download it",
            )
        model.to(device).eval()
        return cls(ckpt, model, tokenizer, device)

    def encode(self, prompt: Prompt, chat_template: bool) -> list[int]:
        """Prompt token ids as the app feeds them: the rendered chat turn (BOS included), or BOS + text."""
        return encode_prompt(self.tokenizer, prompt, chat_template, where=str(self.checkpoint.path))

    def greedy(
        self, prompt_ids: Sequence[int], max_new_tokens: int, top_k: int = DEFAULT_TOP_K, progress: Progress | None = None
    ) -> tuple[list[int], list[TopK]]:
        """Greedy decode exactly `max_new_tokens` tokens (no EOS stop) with the KV cache, recording top-k."""
        import torch

        generated: list[int] = []
        steps: list[TopK] = []
        with self._inference():
            ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            for step in range(max_new_tokens):
                logits = out.logits[0, -1].float()
                values, indices = torch.topk(logits, top_k)
                token = int(torch.argmax(logits))
                steps.append(TopK(ids=indices.tolist(), logits=values.tolist()))
                generated.append(token)
                if progress:
                    progress(1)
                if step + 1 < max_new_tokens:
                    nxt = torch.tensor([[token]], dtype=torch.long, device=self.device)
                    out = self.model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
        return generated, steps

    def teacher_forced(self, ids: Sequence[int], top_k: int = DEFAULT_TOP_K) -> TeacherForced:
        """One full forward over `ids`: the oracle's top-1 and margin for every next position."""
        import torch

        if len(ids) < 2:
            raise OracleError("teacher forcing needs at least two tokens", hint="pass prompt ids plus generated ids")
        with self._inference():
            logits = self.model(input_ids=torch.tensor([list(ids)], device=self.device), use_cache=False).logits[0]
        positions = []
        for i in range(len(ids) - 1):
            row = logits[i].float()
            values, indices = torch.topk(row, top_k)
            actual = int(ids[i + 1])
            top = TopK(ids=indices.tolist(), logits=values.tolist())
            positions.append(
                ForcedStep(position=i + 1, actual=actual, top1=top.ids[0], margin=top.margin,
                           actual_gap=float(values[0] - row[actual]), actual_rank=top.rank(actual))
            )
        return TeacherForced(ids=list(ids), steps=positions)


def _as_checkpoint(checkpoint: Checkpoint | str | Path) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else resolve_checkpoint(str(checkpoint))


def _missing_text_weights(model: Any, ckpt: Checkpoint) -> list[str]:
    """Parameters of the loaded decoder that the checkpoint does not hold."""
    present = {name[len(ckpt.weight_prefix):] for name in ckpt.tensor_index if name.startswith(ckpt.weight_prefix)}
    missing = []
    for name, _ in model.named_parameters():
        if name == "lm_head.weight" or not name.startswith("model."):
            continue
        if name[len("model."):] not in present:
            missing.append(name)
    # No lm_head in the weights is only fine when it is tied to the embedding.
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    if not tied and not any(name.endswith("lm_head.weight") for name in ckpt.tensor_index):
        missing.append("lm_head.weight")
    return missing


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    return {dist: metadata.version(dist) for dist in ("torch", "transformers")}


def run_oracle(
    checkpoint: Checkpoint | ReferenceModel | str | Path,
    prompt_set: PromptSet = BUILTIN_PROMPTS,
    max_new_tokens: int = DEFAULT_TOKENS,
    top_k: int = DEFAULT_TOP_K,
    progress: Progress | None = None,
    *,
    device: str = "cpu",
    out: Path | None = None,
) -> Oracle:
    """Greedy fp32 reference generations for every prompt of `prompt_set` (written to `out` if given)."""
    if max_new_tokens < 1:
        raise OracleError(f"max_new_tokens must be at least 1, got {max_new_tokens}", hint="pass --tokens N with N >= 1")
    if top_k < 2:
        raise OracleError(f"top_k must be at least 2 to measure margins, got {top_k}", hint="use the default (5)")
    ref = checkpoint if isinstance(checkpoint, ReferenceModel) else ReferenceModel.load(checkpoint, device=device)
    ckpt = ref.checkpoint
    records = []
    for prompt in prompt_set.prompts:
        prompt_ids = ref.encode(prompt, prompt_set.chat_template)
        generated, steps = ref.greedy(prompt_ids, max_new_tokens, top_k=top_k, progress=progress)
        first_eos = next((i for i, t in enumerate(generated) if t in ref.eos_token_ids), None)
        records.append(OraclePrompt(prompt.id, prompt.text, prompt_ids, generated, steps, first_eos))
    oracle = Oracle(
        model={"id": ckpt.model_id, "revision": ckpt.revision, "fingerprint": ckpt.fingerprint(),
               "model_type": ckpt.config.get("model_type")},
        tokenizer_sha256=sha256_file(ckpt.tokenizer_path),
        chat_template=prompt_set.chat_template,
        prompt_set=prompt_set.header(),
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        eos_token_ids=ref.eos_token_ids,
        prompts=records,
        device=ref.device,
        tools=tool_versions(),
    )
    if out is not None:
        oracle.save(out)
    return oracle


@dataclass
class ForcedStep:
    position: int  # index in the sequence of the token being predicted
    actual: int
    top1: int
    margin: float
    actual_gap: float  # oracle top-1 logit minus the actual token's logit (0 when they agree)
    actual_rank: int | None

    @property
    def agrees(self) -> bool:
        return self.actual == self.top1


@dataclass
class TeacherForced:
    ids: list[int]
    steps: list[ForcedStep]

    def from_position(self, start: int) -> list[ForcedStep]:
        return [s for s in self.steps if s.position >= start]

    def agreement(self, start: int = 1) -> tuple[int, int]:
        """(positions where the sequence took the oracle's top-1, positions judged), from `start` on."""
        judged = self.from_position(start)
        return sum(s.agrees for s in judged), len(judged)


def teacher_forced(
    checkpoint: Checkpoint | ReferenceModel | str | Path, ids: Sequence[int], top_k: int = DEFAULT_TOP_K,
    *, device: str = "cpu",
) -> TeacherForced:
    """The oracle's top-1 and margin at each position of a given token sequence (e.g. a device run)."""
    ref = checkpoint if isinstance(checkpoint, ReferenceModel) else ReferenceModel.load(checkpoint, device=device)
    return ref.teacher_forced(ids, top_k=top_k)


def check_torch_device(device: str) -> str:
    """`device` if torch can run the reference there; else a named error, before the model is loaded."""
    if device == "cpu":
        return device
    import torch

    hint = "use --device cpu (the default), or cuda / cuda:N / mps on a machine that has one"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise OracleError(f"--device {device!r} is not a torch device ({exc})", hint=hint) from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise OracleError(f"--device {device}: this torch sees {count} CUDA device(s)", hint=hint)
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise OracleError(f"--device {device}: MPS is not available on this machine", hint=hint)
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise OracleError(f"--device {device}: the oracle runs on cpu, cuda or mps only", hint=hint)
    return device
