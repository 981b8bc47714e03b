"""A conversation kept across turns on one KV cache: what to feed, what to keep, what to drop.

Pure logic (no runtime, no tokenizer): `gemmaios run` drives it with Core AI's runtime and the
checkpoint's chat template, and GemmaiosCore's `Conversation` (Swift) is the same logic, held to
this one by shared vectors (tests/test_chat.py).

The rules:
- The ids in the KV cache are always exactly what the chat template renders for the whole
  conversation so far (HF `apply_chat_template` of all messages, generation prompt included),
  followed by the reply being generated. Each turn renders the whole conversation again and
  feeds only what differs from what the cache holds: the common prefix stays, the rest is
  prefilled (`plan_feed`). Normally that is the new turn alone (the end of the last reply,
  `<turn|>\\n`, the user turn and the generation prompt).
- Where the template does not keep what the model generated, the cache follows the template:
  Gemma 4's template drops a reply's reasoning channel (`<|channel>thought ... <channel|>`)
  from the history, so the next turn rolls the cache back to the reply's start and prefills the
  answer alone. What the cache holds is then again the template's rendering, token for token.
- At the context limit (the rendered conversation plus the reply budget would not fit), the
  oldest exchanges (a user turn and its reply; a system turn always stays) are dropped and the
  conversation is read again from where it changed; the caller tells the user how many were
  dropped. If even the newest message alone does not fit, nothing is dropped and the turn is
  refused (`ContextFull`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .contract import CHAT_THOUGHT_NAME
from .errors import GemmaiosError

Render = Callable[[list[dict]], list[int]]  # messages -> the template's ids (generation prompt included)


class ContextFull(GemmaiosError):
    """A message does not fit the context even with every earlier exchange dropped."""


@dataclass(frozen=True)
class FeedPlan:
    """`keep` ids of the cache stay; `feed` is prefilled after them (never empty: the last fed
    token's logits pick the first new token)."""

    keep: int
    feed: list[int]

    def rolled_back(self, cached: int) -> int:
        return cached - self.keep


def plan_feed(cached: Sequence[int], target: Sequence[int]) -> FeedPlan:
    """What to prefill so the cache holding `cached` ends up holding `target`."""
    keep = 0
    limit = min(len(cached), len(target))
    while keep < limit and cached[keep] == target[keep]:
        keep += 1
    if keep == len(target):  # nothing new: feed the last token again for its logits
        keep = max(len(target) - 1, 0)
    return FeedPlan(keep, list(target[keep:]))


@dataclass
class TurnPlan:
    """One user turn, planned: the whole rendering, what to feed, how many exchanges were dropped."""

    target: list[int]
    plan: FeedPlan
    dropped: int


@dataclass
class Conversation:
    """The messages and the ids in the KV cache (`cached`); `system` opens every rendering."""

    system: str | None = None
    messages: list[dict] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)

    def all_messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.messages

    def prepare(self, text: str, render: Render, *, budget: int, context: int) -> TurnPlan:
        """Add the user's `text` and plan its prefill; `budget` tokens must stay free for the reply.

        Drops the oldest exchanges while the rendering plus `budget` exceeds `context`; raises
        ContextFull (the conversation unchanged) when even the message alone does not fit."""
        candidate = [*self.messages, {"role": "user", "content": text}]
        dropped = 0
        while True:
            sys_part = [{"role": "system", "content": self.system}] if self.system else []
            target = list(render(sys_part + candidate))
            if len(target) + budget <= context:
                break
            if len(candidate) <= 1:
                raise ContextFull(
                    f"this message needs {len(target)} tokens plus {budget} for the reply, more than the "
                    f"context of {context}", hint="send a shorter message, or ask for fewer tokens per reply")
            candidate = candidate[2:] if len(candidate) > 2 else candidate[-1:]
            dropped += 1
        self.messages = candidate
        return TurnPlan(target, plan_feed(self.cached, target), dropped)

    def prefilled(self, turn: TurnPlan) -> None:
        """The plan's tokens are in the cache."""
        self.cached = list(turn.target)

    def replied(self, text: str, fed_ids: Sequence[int]) -> None:
        """The model's reply (its full text, reasoning channel included: the template decides what
        the history keeps) and the generated ids that went into the cache (all but the last)."""
        self.messages.append({"role": "assistant", "content": text})
        self.cached = [*self.cached, *fed_ids]

    def reset(self) -> None:
        self.messages = []
        self.cached = []


@dataclass
class RoutedReply:
    """A reply's tokens split by channel: the reasoning (`thought`, channel markers and the
    channel's name line excluded) and the answer."""

    thought: list[int] = field(default_factory=list)
    answer: list[int] = field(default_factory=list)


class ReplyRouter:
    """Routes generated tokens as they come: inside `<|channel>` … `<channel|>` to the thought,
    elsewhere to the answer; the markers themselves to neither."""

    def __init__(self, channel_start: int | None, channel_end: int | None) -> None:
        self.start, self.end = channel_start, channel_end
        self.inside = False
        self.reply = RoutedReply()

    def route(self, token: int) -> str:
        """"thought", "answer" or "marker" for this token (and keep it there)."""
        if self.start is not None and token == self.start:
            self.inside = True
            return "marker"
        if self.end is not None and token == self.end and self.inside:
            self.inside = False
            return "marker"
        (self.reply.thought if self.inside else self.reply.answer).append(token)
        return "thought" if self.inside else "answer"


def route_reply(ids: Sequence[int], channel_start: int | None, channel_end: int | None) -> RoutedReply:
    router = ReplyRouter(channel_start, channel_end)
    for token in ids:
        router.route(int(token))
    return router.reply


THOUGHT_CHANNEL_NAME = CHAT_THOUGHT_NAME  # the line that opens Gemma 4's reasoning channel


def thought_text(decoded: str) -> str:
    """The reasoning channel's text as shown: its `thought` name line removed, trimmed."""
    return decoded.removeprefix(THOUGHT_CHANNEL_NAME).strip()
