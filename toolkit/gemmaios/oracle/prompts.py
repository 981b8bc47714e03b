"""Prompt sets: the built-in set and user YAML files (`prompts: [{id, text}]`), validated strictly."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import GemmaiosError


class PromptSetError(GemmaiosError):
    """A prompts YAML file is unreadable or does not describe a prompt set."""


ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str  # the (last) user message
    # a multi-turn prompt (issue 27): the conversation before `text`, as (role, content) pairs with
    # roles from ROLES; rendered whole by the checkpoint's own chat template, so it follows whatever
    # framing the tokenizer has. Empty: a single user turn.
    history: tuple[tuple[str, str], ...] = ()

    def messages(self) -> list[dict[str, str]]:
        """The chat messages the template renders: the history, then `text` as the user turn."""
        return [{"role": r, "content": c} for r, c in self.history] + [{"role": "user", "content": self.text}]


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: tuple[Prompt, ...]
    chat_template: bool = True

    @property
    def sha256(self) -> str:
        """Identity of what is decoded (texts, ids, template flag); the name is only a label."""
        canonical = {"chat_template": self.chat_template,
                     "prompts": [[p.id, p.text, *([[list(t) for t in p.history]] if p.history else [])]
                                 for p in self.prompts]}
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

# The parity gates' plain-text prompts (no chat turn; `gemmaios.parity` runs them, the tiny model
# is trained on them).
GATE_PROMPTS = (
    "The capital of France is",
    "Write a short poem about the sea.",
    "Count from one to ten: one, two,",
    "Explain why the sky is blue:",
)

# Prompt sets shipped with gemmaios, named instead of a path (`--prompts long-prefill`): a name
# is looked up here only when no file of that name exists.
PACKAGED_PROMPT_SETS = {
    # two prompts of well over 512 tokens: prefill figures (issue 18). The built-in 8 stay what the
    # tiny model is trained on and the oracle gate checks; this set is opt-in.
    "long-prefill": Path(__file__).resolve().parents[1] / "data" / "prompts" / "long-prefill.yaml",
    # the long-context probe (issue 27): prompts past 1k, 2k and 4k tokens, single- and multi-turn,
    # short to long (the engine's KV binding only grows); the report groups agreement by context
    "long-context": Path(__file__).resolve().parents[1] / "data" / "prompts" / "long-context.yaml",
}

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
      - id: follow-up                  # multi-turn: the conversation so far, then `text`
        history:
          - {role: user, text: What is the capital of Italy?}
          - {role: assistant, text: The capital of Italy is Rome.}
        text: And what about Spain?
    ```
    """
    if path is None:
        return BUILTIN_PROMPTS
    path = Path(path)
    if not path.exists() and str(path) in PACKAGED_PROMPT_SETS:
        path = PACKAGED_PROMPT_SETS[str(path)]

    def bad(problem: str) -> PromptSetError:
        return PromptSetError(f"{path}: {problem}", hint=_PROMPTS_HINT)

    if not path.is_file():
        raise PromptSetError(f"prompts file {path} does not exist",
                             hint="check the --prompts path, or name a packaged set: "
                                  + ", ".join(sorted(PACKAGED_PROMPT_SETS)))
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
        if not isinstance(item, dict) or set(item) - {"id", "text", "history"} or "text" not in item:
            raise bad(f"prompts[{i}] must be a string or a mapping with `text` (and optional `id`, `history`), "
                      f"got {str(item)[:200]!r}")
        text, pid = item["text"], item.get("id", f"p{i}")
        if not isinstance(text, str) or not text.strip():
            raise bad(f"prompts[{i}].text must be a non-empty string")
        if not isinstance(pid, str) or not _PROMPT_ID.match(pid):
            raise bad(f"prompts[{i}].id {pid!r} must be letters, digits, '.', '_' or '-'")
        history = []
        for j, turn in enumerate(item.get("history") or []):
            if (not isinstance(turn, dict) or set(turn) != {"role", "text"} or turn["role"] not in ROLES
                    or not isinstance(turn["text"], str) or not turn["text"].strip()):
                raise bad(f"prompts[{i}].history[{j}] must be {{role: {'|'.join(ROLES)}, text: <non-empty>}}")
            history.append((turn["role"], turn["text"]))
        if history and not chat:
            raise bad(f"prompts[{i}] has a `history`, which needs `chat_template: true`")
        prompts.append(Prompt(pid, text, tuple(history)))
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise bad(f"prompt id {p.id!r} appears twice")
        seen.add(p.id)
    return PromptSet(name=name.strip(), prompts=tuple(prompts), chat_template=chat)


_PROMPTS_HINT = "see `gemmaios oracle --help`: a YAML mapping with `prompts: [{id: ..., text: ...}, ...]`"
