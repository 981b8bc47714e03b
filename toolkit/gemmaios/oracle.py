"""The fp32 reference oracle, and the gates that judge device runs against it.

`run_oracle` runs the Hugging Face `transformers` Gemma 4 text decoder in fp32 on a prompt
set, greedy, a fixed number of new tokens per prompt, and records every step's top-k
logits. `score_against_oracle` then says how many device generations match it exactly, where
each divergence starts, and whether it started at a near-tie (the oracle's own top-1/top-2
margin below a threshold: a quantization-class flip) or at a clear decision (a bug).
`compare_runs` / `compare_trials` judge run-vs-run determinism the same way.

The oracle decodes the full N tokens without stopping at EOS, because the device bench runs
a fixed N too; a device run that stops early at an EOS the oracle also produced still counts
as exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checkpoint import Checkpoint, resolve_checkpoint
from .errors import GemmaiosError
from .pipeline import BuildContext, Step, StepOutcome, sha256_file, write_json_atomic
from .transcript import PromptRecord, Transcript

ORACLE_SCHEMA = "gemmaios.oracle/1"
ORACLE_FILE = "oracle/oracle.json"
DEFAULT_TOP_K = 5
DEFAULT_TOKENS = 32
# A flip where the oracle's top-1/top-2 logit gap is below this is a knife-edge tie: the
# fp32 reference itself would flip under fp16-class noise, so it is not evidence of a bug.
DEFAULT_NEAR_TIE_MARGIN = 0.1
SINGLE_THREAD_PARAMS = 20_000_000

Progress = Callable[[int], Any]


class PromptSetError(GemmaiosError):
    """A prompts YAML file is unreadable or does not describe a prompt set."""


class OracleError(GemmaiosError):
    """The oracle cannot be produced, or an oracle.json is missing, malformed or incompatible."""


# ----------------------------------------------------------------------------- prompt sets


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: tuple[Prompt, ...]
    chat_template: bool = True

    @property
    def sha256(self) -> str:
        """Identity of what is decoded (texts, ids, template flag); the name is only a label."""
        canonical = {"chat_template": self.chat_template, "prompts": [[p.id, p.text] for p in self.prompts]}
        return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def header(self) -> dict[str, Any]:
        """The transcript header's `prompt_set` object for this set."""
        return {"name": self.name, "sha256": self.sha256, "count": len(self.prompts)}


BUILTIN_PROMPTS = PromptSet(
    name="builtin",
    prompts=(
        Prompt("capital-france", "What is the capital of France?"),
        Prompt("sky-blue", "Explain in two sentences why the sky is blue."),
        Prompt("count-ten", "Count from one to ten."),
        Prompt("poem-sea", "Write a short poem about the sea."),
        Prompt("two-plus-two", "What is two plus two? Answer in one sentence."),
        Prompt("translate-hello", "Translate 'hello, how are you?' into French."),
        Prompt("on-device", "Why does running a language model on a phone protect privacy?"),
        Prompt("summarise-fox", "Summarise in one sentence: the quick brown fox jumps over the lazy dog."),
    ),
)

_PROMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def load_prompt_set(path: Path | None = None) -> PromptSet:
    """The built-in set, or the one in a YAML file.

    ```yaml
    name: my-set            # optional, default: the file's stem
    chat_template: true     # optional, default true: wrap each prompt as a user turn
    prompts:
      - id: capital-france
        text: What is the capital of France?
      - Explain why the sky is blue.   # a bare string gets the id p<index>
    ```
    """
    if path is None:
        return BUILTIN_PROMPTS
    path = Path(path)

    def bad(problem: str) -> PromptSetError:
        return PromptSetError(f"{path}: {problem}", hint=_PROMPTS_HINT)

    if not path.is_file():
        raise PromptSetError(f"prompts file {path} does not exist", hint="check the --prompts path")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise bad(f"not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise bad("must be a mapping with a `prompts` list")
    unknown = sorted(set(raw) - {"name", "chat_template", "prompts"})
    if unknown:
        raise bad(f"unknown keys {unknown} (known: name, chat_template, prompts)")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise bad("`name` must be a non-empty string")
    chat = raw.get("chat_template", True)
    if not isinstance(chat, bool):
        raise bad(f"`chat_template` must be true or false, got {chat!r}")
    items = raw.get("prompts")
    if not isinstance(items, list) or not items:
        raise bad("`prompts` must be a non-empty list")
    prompts: list[Prompt] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"id": f"p{i}", "text": item}
        if not isinstance(item, dict) or set(item) - {"id", "text"} or "text" not in item:
            raise bad(f"prompts[{i}] must be a string or a mapping with `text` (and optional `id`), got {item!r}")
        text, pid = item["text"], item.get("id", f"p{i}")
        if not isinstance(text, str) or not text.strip():
            raise bad(f"prompts[{i}].text must be a non-empty string")
        if not isinstance(pid, str) or not _PROMPT_ID.match(pid):
            raise bad(f"prompts[{i}].id {pid!r} must be letters, digits, '.', '_' or '-'")
        prompts.append(Prompt(pid, text))
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise bad(f"prompt id {p.id!r} appears twice")
        seen.add(p.id)
    return PromptSet(name=name.strip(), prompts=tuple(prompts), chat_template=chat)


_PROMPTS_HINT = "see `gemmaios oracle --help`: a YAML mapping with `prompts: [{id: ..., text: ...}, ...]`"


# ----------------------------------------------------------------------------- reference model


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
        text = tok.apply_chat_template([{"role": "user", "content": prompt.text}], tokenize=False,
                                       add_generation_prompt=True)
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
        from transformers import AutoConfig, AutoTokenizer, Gemma4ForCausalLM

        ckpt = _as_checkpoint(checkpoint)
        config = AutoConfig.from_pretrained(ckpt.path)
        kwargs: dict[str, Any] = {}
        if ckpt.config.get("model_type") == "gemma4":
            # Multimodal release: keep only the text decoder and map its weight names
            # (model.language_model.*) onto Gemma4ForCausalLM's (model.*).
            config = config.text_config
            kwargs["key_mapping"] = {r"^model\.language_model\.": "model."}
        try:
            model = Gemma4ForCausalLM.from_pretrained(ckpt.path, config=config, dtype=torch.float32, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(ckpt.path)
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


# ----------------------------------------------------------------------------- oracle records


@dataclass
class TopK:
    ids: list[int]
    logits: list[float]

    @property
    def margin(self) -> float:
        """Top-1 minus top-2 logit (inf when only one candidate was recorded)."""
        return self.logits[0] - self.logits[1] if len(self.logits) > 1 else float("inf")

    def rank(self, token: int) -> int | None:
        """0-based rank of `token` among the recorded candidates, None when outside the top-k."""
        return self.ids.index(token) if token in self.ids else None

    def gap(self, token: int) -> float | None:
        """How far `token`'s logit lies below the top-1 logit (None when outside the top-k)."""
        r = self.rank(token)
        return None if r is None else self.logits[0] - self.logits[r]


@dataclass
class OraclePrompt:
    id: str
    text: str
    prompt_ids: list[int]
    generated_ids: list[int]
    top_k: list[TopK]
    first_eos: int | None = None

    @property
    def margins(self) -> list[float]:
        return [s.margin for s in self.top_k]


@dataclass
class Oracle:
    model: dict[str, Any]
    tokenizer_sha256: str
    chat_template: bool
    prompt_set: dict[str, Any]
    max_new_tokens: int
    top_k: int
    eos_token_ids: list[int]
    prompts: list[OraclePrompt]
    stop_at_eos: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    tools: dict[str, str] = field(default_factory=dict)
    schema: str = ORACLE_SCHEMA

    @property
    def min_margin(self) -> float:
        return min((m for p in self.prompts for m in p.margins), default=float("inf"))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["decode"] = {"method": "greedy", "max_new_tokens": data.pop("max_new_tokens"),
                          "stop_at_eos": data.pop("stop_at_eos"), "top_k": data.pop("top_k")}
        return data

    def save(self, path: Path) -> Path:
        write_json_atomic(Path(path), self.to_json())
        return Path(path)


def load_oracle(path: Path) -> Oracle:
    """Read and check an oracle.json written by `run_oracle`."""
    path = Path(path)
    if not path.is_file():
        raise OracleError(f"no oracle at {path}", hint="run `gemmaios oracle` (or `gemmaios build`) first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OracleError(f"{path} is not valid JSON ({exc})", hint="delete it and run `gemmaios oracle --force`") from exc
    if not isinstance(data, dict) or data.get("schema") != ORACLE_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise OracleError(f"{path} has schema {found!r}, expected {ORACLE_SCHEMA!r}",
                          hint="re-run `gemmaios oracle --force` with this gemmaios")
    try:
        decode = data.pop("decode")
        prompts = [
            OraclePrompt(**{**p, "top_k": [TopK(**s) for s in p["top_k"]]}) for p in data.pop("prompts")
        ]
        oracle = Oracle(**data, prompts=prompts, max_new_tokens=decode["max_new_tokens"],
                        stop_at_eos=decode["stop_at_eos"], top_k=decode["top_k"])
    except (KeyError, TypeError) as exc:
        raise OracleError(f"{path} is incomplete or malformed ({exc!r})",
                          hint="delete it and run `gemmaios oracle --force`") from exc
    for p in oracle.prompts:
        if len(p.top_k) != len(p.generated_ids):
            raise OracleError(f"{path}: prompt {p.id!r} has {len(p.generated_ids)} tokens but {len(p.top_k)} top-k steps",
                              hint="delete it and run `gemmaios oracle --force`")
    return oracle


def _tool_versions() -> dict[str, str]:
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
        tools=_tool_versions(),
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


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Generation:
    """One generation to judge: what any runner (device, Mac, converted module) produced."""

    prompt_ids: tuple[int, ...]
    generated_ids: tuple[int, ...]
    index: int = 0
    trial: int = 0
    prompt_id: str = ""
    where: str = ""  # e.g. "run.jsonl:4", for messages


GenerationsLike = Transcript | Iterable[Generation | PromptRecord | tuple[Sequence[int], Sequence[int]]]


def as_generations(runs: GenerationsLike) -> list[Generation]:
    """Normalise a Transcript, PromptRecords, Generations or plain (prompt_ids, generated_ids) pairs."""
    if isinstance(runs, Transcript):
        path = runs.path
        return [_from_record(r, f"{path}:{r.line}") for r in runs.prompts]
    out = []
    for i, item in enumerate(runs):
        if isinstance(item, Generation):
            out.append(item)
        elif isinstance(item, PromptRecord):
            out.append(_from_record(item, f"line {item.line}"))
        else:
            prompt_ids, generated_ids = item
            out.append(Generation(tuple(prompt_ids), tuple(generated_ids), index=i))
    return out


def _from_record(r: PromptRecord, where: str) -> Generation:
    return Generation(tuple(r.prompt_ids), tuple(r.generated_ids), r.index, r.trial, r.prompt_id, where)


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """First index where the sequences differ (a length difference counts at the shorter end)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


EXACT, NEAR_TIE, DIVERGED, SHORT, PROMPT_MISMATCH, NO_ORACLE = (
    "exact", "near-tie", "diverged", "short", "prompt mismatch", "no oracle prompt",
)


@dataclass
class PromptScore:
    index: int
    trial: int
    prompt_id: str
    verdict: str  # one of EXACT, NEAR_TIE, DIVERGED, SHORT, PROMPT_MISMATCH, NO_ORACLE
    compared: int = 0  # tokens judged
    divergence: int | None = None  # position in generated_ids of the first difference
    expected: int | None = None  # oracle token there
    got: int | None = None  # device token there (None when the device stopped)
    margin: float | None = None  # oracle top-1/top-2 margin there
    got_rank: int | None = None  # device token's rank in the oracle's top-k there (None: outside)
    got_gap: float | None = None
    note: str = ""
    where: str = ""
    # (positions after the divergence where the run took the oracle's top-1 given its own
    # context, positions judged): filled by `explain_divergences`
    after_divergence: tuple[int, int] | None = None

    @property
    def exact(self) -> bool:
        return self.verdict == EXACT

    @property
    def near_tie(self) -> bool | None:
        """True/False at a divergence with an oracle margin; None when exact or not judged."""
        if self.verdict == NEAR_TIE:
            return True
        if self.verdict in (DIVERGED, SHORT) and self.margin is not None:
            return False
        return None


@dataclass
class OracleScore:
    prompts: list[PromptScore]
    near_tie_margin: float
    max_new_tokens: int
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.prompts)

    @property
    def exact(self) -> int:
        return sum(p.exact for p in self.prompts)

    @property
    def near_ties(self) -> list[PromptScore]:
        return [p for p in self.prompts if p.verdict == NEAR_TIE]

    @property
    def failures(self) -> list[PromptScore]:
        """Divergences that are not near-ties: what points at a conversion bug."""
        return [p for p in self.prompts if p.verdict not in (EXACT, NEAR_TIE)]

    @property
    def passed(self) -> bool:
        """Every generation exact or diverging only at a near-tie (the margin rule)."""
        return self.total > 0 and not self.failures

    @property
    def summary(self) -> str:
        text = f"{self.exact}/{self.total} exact vs fp32 oracle ({self.max_new_tokens} tokens)"
        if self.near_ties:
            text += f"; {len(self.near_ties)} near-tie flip(s) (margin < {self.near_tie_margin:g})"
        if self.failures:
            worst = self.failures[0]
            where = f"trial {worst.trial} prompt {worst.index}"
            detail = f"{worst.verdict} at token {worst.divergence}" if worst.divergence is not None else worst.verdict
            if worst.margin is not None:
                detail += f", oracle margin {worst.margin:.3g}"
            if worst.after_divergence and worst.after_divergence[1]:
                agree, judged = worst.after_divergence
                detail += f", then took the oracle's top-1 at {agree}/{judged} positions"
            text += f"; {len(self.failures)} hard divergence(s), first: {where} {detail}"
        return text


def score_against_oracle(
    runs: GenerationsLike, oracle: Oracle, *, near_tie_margin: float = DEFAULT_NEAR_TIE_MARGIN
) -> OracleScore:
    """Judge each generation against the oracle prompt with the same index."""
    warnings: list[str] = []
    if isinstance(runs, Transcript):
        sha = runs.header.get("prompt_set", {}).get("sha256")
        if sha and sha != oracle.prompt_set.get("sha256"):
            warnings.append(f"transcript prompt set {runs.header['prompt_set'].get('name')!r} ({sha[:12]}) is not the "
                            f"oracle's {oracle.prompt_set.get('name')!r} ({oracle.prompt_set.get('sha256', '')[:12]})")
        if runs.header.get("max_new_tokens", 0) > oracle.max_new_tokens:
            warnings.append(f"the run generated {runs.header['max_new_tokens']} tokens; only the oracle's "
                            f"{oracle.max_new_tokens} are judged (re-run `gemmaios oracle --tokens` to judge all)")
    scores = [_score_one(g, oracle, near_tie_margin) for g in as_generations(runs)]
    return OracleScore(scores, near_tie_margin, oracle.max_new_tokens, warnings)


def _score_one(g: Generation, oracle: Oracle, threshold: float) -> PromptScore:
    base = {"index": g.index, "trial": g.trial, "prompt_id": g.prompt_id, "where": g.where}
    if not 0 <= g.index < len(oracle.prompts):
        return PromptScore(**base, verdict=NO_ORACLE, note=f"the oracle has {len(oracle.prompts)} prompts")
    ref = oracle.prompts[g.index]
    base["prompt_id"] = g.prompt_id or ref.id
    if list(g.prompt_ids) != ref.prompt_ids:
        at = first_divergence(g.prompt_ids, ref.prompt_ids)
        return PromptScore(**base, verdict=PROMPT_MISMATCH, divergence=at,
                           note=f"prompt tokens differ from the oracle's at position {at} (tokenizer or chat template)")
    expected, got = ref.generated_ids, list(g.generated_ids)
    n = min(len(expected), len(got))
    at = next((i for i in range(n) if expected[i] != got[i]), None)
    if at is None:
        if len(got) >= len(expected):
            note = f"{len(got) - len(expected)} token(s) beyond the oracle not judged" if len(got) > len(expected) else ""
            return PromptScore(**base, verdict=EXACT, compared=len(expected), note=note)
        if got and got[-1] in oracle.eos_token_ids:
            return PromptScore(**base, verdict=EXACT, compared=len(got), note="stopped at EOS, as the oracle did")
        step = ref.top_k[len(got)]
        return PromptScore(**base, verdict=SHORT, compared=len(got), divergence=len(got), expected=expected[len(got)],
                           margin=step.margin, note=f"the run stopped after {len(got)} of {len(expected)} tokens")
    step = ref.top_k[at]
    verdict = NEAR_TIE if step.margin < threshold else DIVERGED
    return PromptScore(**base, verdict=verdict, compared=at + 1, divergence=at, expected=expected[at], got=got[at],
                       margin=step.margin, got_rank=step.rank(got[at]), got_gap=step.gap(got[at]))


def explain_divergences(
    score: OracleScore, runs: GenerationsLike, reference: ReferenceModel, top_k: int = DEFAULT_TOP_K
) -> OracleScore:
    """Teacher-force each diverged run's own tokens through the oracle.

    After a first flip the free-running oracle no longer applies, but the oracle given the
    run's own context still does: a healthy model that took a near-tie keeps choosing the
    oracle's top-1 afterwards, a broken one does not.
    """
    for judged, g in zip(score.prompts, as_generations(runs), strict=True):
        if judged.verdict in (DIVERGED, NEAR_TIE) and judged.divergence is not None:
            forced = reference.teacher_forced(list(g.prompt_ids) + list(g.generated_ids), top_k=top_k)
            judged.after_divergence = forced.agreement(len(g.prompt_ids) + judged.divergence + 1)
    return score


@dataclass
class PairScore:
    trial: int
    index: int
    prompt_id: str
    identical: bool
    divergence: int | None = None
    note: str = ""


@dataclass
class DeterminismScore:
    pairs: list[PairScore]
    labels: tuple[str, str] = ("a", "b")

    @property
    def total(self) -> int:
        return len(self.pairs)

    @property
    def identical(self) -> int:
        return sum(p.identical for p in self.pairs)

    @property
    def passed(self) -> bool:
        return self.total > 0 and self.identical == self.total

    @property
    def summary(self) -> str:
        text = f"{self.identical}/{self.total} token-identical ({self.labels[0]} vs {self.labels[1]})"
        bad = [p for p in self.pairs if not p.identical]
        if bad:
            first = bad[0]
            at = f" at token {first.divergence}" if first.divergence is not None else ""
            text += f"; first difference: trial {first.trial} prompt {first.index}{at}{' (' + first.note + ')' if first.note else ''}"
        return text


def compare_runs(a: GenerationsLike, b: GenerationsLike, labels: tuple[str, str] = ("a", "b")) -> DeterminismScore:
    """Run-vs-run token identity, paired by (trial, prompt index).

    When one side ran a single trial (e.g. a Mac reference) every trial of the other side is
    compared with it, whatever its trial number, so 3 iPhone trials × 8 prompts against one
    Mac pass count as 24.
    """
    ga, gb = as_generations(a), as_generations(b)
    ka = {(g.trial, g.index): g for g in ga}
    kb = {(g.trial, g.index): g for g in gb}
    trials_a, trials_b = {t for t, _ in ka}, {t for t, _ in kb}
    if len(trials_b) == 1 and trials_a:
        kb = {(t, i): g for t in trials_a for (_, i), g in kb.items()}
    elif len(trials_a) == 1 and trials_b:
        ka = {(t, i): g for t in trials_b for (_, i), g in ka.items()}
    pairs = []
    for key in sorted(set(ka) | set(kb)):
        x, y = ka.get(key), kb.get(key)
        pid = (x or y).prompt_id
        if x is None or y is None:
            missing = labels[0] if x is None else labels[1]
            pairs.append(PairScore(key[0], key[1], pid, False, note=f"missing from {missing}"))
        elif x.prompt_ids != y.prompt_ids:
            pairs.append(PairScore(key[0], key[1], pid, False, first_divergence(x.prompt_ids, y.prompt_ids),
                                   note="prompt tokens differ"))
        else:
            at = first_divergence(x.generated_ids, y.generated_ids)
            pairs.append(PairScore(key[0], key[1], pid, at is None, at))
    return DeterminismScore(pairs, labels)


def compare_trials(transcript: Transcript) -> DeterminismScore:
    """Every trial after the first against trial 0 of the same run (run vs rerun on one device)."""
    gens = as_generations(transcript)
    trials = sorted({g.trial for g in gens})
    if len(trials) < 2:
        return DeterminismScore([], ("trial 0", "later trials"))
    first = [g for g in gens if g.trial == trials[0]]
    rest = [g for g in gens if g.trial != trials[0]]
    later = f"trial {trials[1]}" if len(trials) == 2 else f"trials {trials[1]}..{trials[-1]}"
    return compare_runs(rest, first, labels=(later, f"trial {trials[0]}"))


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


# ----------------------------------------------------------------------------- pipeline step


class OracleStep(Step):
    name = "oracle"
    title = "fp32 Hugging Face reference generations"

    def _settings(self, ctx: BuildContext) -> tuple[PromptSet, int, int, str]:
        prompt_set = load_prompt_set(ctx.options.prompts_file)
        top_k = int(ctx.options.extra.get("oracle_top_k", DEFAULT_TOP_K))
        device = check_torch_device(str(ctx.options.extra.get("oracle_device", "cpu")))
        return prompt_set, ctx.options.oracle_tokens, top_k, device

    def inputs(self, ctx: BuildContext) -> dict:
        prompt_set, tokens, top_k, device = self._settings(ctx)
        ckpt = ctx.checkpoint
        return {
            "schema": ORACLE_SCHEMA,
            "model": ctx.options.model,
            "revision": ckpt.revision,
            "checkpoint": ckpt.fingerprint(),
            "prompt_set": prompt_set.header(),
            "chat_template": prompt_set.chat_template,
            "max_new_tokens": tokens,
            "top_k": top_k,
            "device": device,
            # the reference is whatever this transformers/torch computes
            "tools": _tool_versions(),
        }

    def run(self, ctx: BuildContext) -> StepOutcome:
        prompt_set, tokens, top_k, device = self._settings(ctx)
        path = ctx.path(ORACLE_FILE)
        with ctx.progress(f"oracle: {len(prompt_set.prompts)} prompts × {tokens} tokens",
                          len(prompt_set.prompts) * tokens) as advance:
            oracle = run_oracle(ctx.checkpoint, prompt_set, tokens, top_k=top_k, progress=advance,
                                device=device, out=path)
        eos_hits = sum(p.first_eos is not None for p in oracle.prompts)
        return StepOutcome(
            outputs=[path],
            details={"oracle": ORACLE_FILE, "prompt_set": prompt_set.header(), "max_new_tokens": tokens,
                     "top_k": top_k, "min_margin": oracle.min_margin, "prompts_reaching_eos": eos_hits},
            message=f"{len(oracle.prompts)} prompts × {tokens} tokens, min top-1/top-2 margin {oracle.min_margin:.3g}",
        )
