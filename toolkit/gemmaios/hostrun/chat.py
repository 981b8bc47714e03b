"""A multi-turn chat on one bundle through Core AI's runtime: the KV cache kept across turns.

`ChatSession` renders the whole conversation with the checkpoint's chat template (HF
`apply_chat_template`) every turn and prefills only what the cache does not hold yet
(`gemmaios.chat` says the rules: the cache always holds the template's rendering; reasoning
channels the template drops are rolled back; at the context limit the oldest exchanges go).
The caches grow by doubling, as the upstream engine's do, up to the bundle's context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..chat import Conversation, ReplyRouter, TurnPlan, thought_text
from ..contract import CHAT_CHANNEL_END, CHAT_CHANNEL_START, CHAT_THINKING_ARGUMENT
from .runner import BundleRunner

FIRST_CAPACITY = 256  # the caches' first size; doubled as the conversation grows


@dataclass
class ChatTurn:
    """One answered turn."""

    answer: str  # the reply without its reasoning channel
    thought: str | None  # the reasoning channel's text, None if the model did not think
    text: str  # the reply as the conversation keeps it (channel included; the template decides)
    generated_ids: list[int]
    prefilled: int  # tokens fed this turn before the reply (what was new)
    kept: int  # tokens of the cache reused from earlier turns
    rolled_back: int  # cached tokens the template no longer renders (a dropped reasoning channel, ...)
    dropped: int  # oldest exchanges dropped at the context limit
    cut: bool  # stopped at the token cap, not at the end of the turn
    stopped: bool = False  # interrupted (Ctrl-C)
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    fed: list[int] = field(default_factory=list)  # the ids the prefill fed


class ChatSession:
    """A conversation with one loaded bundle. `tok` is a `BundleTokenizer` (its HF tokenizer's
    chat template renders the conversation); `thinking` renders with `enable_thinking=True`."""

    def __init__(self, runner: BundleRunner, tok, *, system: str | None = None, thinking: bool = False,
                 max_new_tokens: int = 512, chunked: bool = False) -> None:
        self.runner, self.tok = runner, tok
        self.thinking = thinking
        self.max_new_tokens = max_new_tokens
        self.chunked = chunked
        self.conversation = Conversation(system=system)
        self.context = runner.bundle.max_context
        self._states: dict | None = None
        self._capacity = 0
        hf = tok.tokenizer
        self.channel_start = _token_id(hf, CHAT_CHANNEL_START)
        self.channel_end = _token_id(hf, CHAT_CHANNEL_END)

    def render(self, messages: list[dict]) -> list[int]:
        """The checkpoint's chat template on the whole conversation, generation prompt included."""
        kwargs = {CHAT_THINKING_ARGUMENT: True} if self.thinking else {}
        ids = self.tok.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, **kwargs)
        return [int(t) for t in (ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)]

    def reset(self) -> None:
        """Forget the conversation (the caches are reused, overwritten from position 0)."""
        self.conversation.reset()

    def _ensure(self, needed: int) -> None:
        if self._states is None:
            self._capacity = min(self.context, max(FIRST_CAPACITY, _pow2(needed)))
            self._states = self.runner.new_states(self._capacity)
        elif needed > self._capacity:
            self._capacity = min(self.context, _pow2(needed))
            self._states = self.runner.grow_states(self._states, self._capacity)

    def ask(self, text: str, *, on_token: Callable[[int, str], object] | None = None,
            should_stop: Callable[[], bool] | None = None) -> ChatTurn:
        """Answer `text`: plan (raises gemmaios.chat.ContextFull when it cannot fit), prefill the new
        tokens, decode greedily until an end-of-turn token or `max_new_tokens`. `on_token(id, where)`
        gets each generated token with its channel ("thought", "answer" or "marker")."""
        conv = self.conversation
        turn: TurnPlan = conv.prepare(text, self.render, budget=self.max_new_tokens, context=self.context)
        cached_before = len(conv.cached)
        plan = turn.plan
        self._ensure(len(turn.target) + self.max_new_tokens)
        started = time.perf_counter()
        logits, _ = self.runner.prefill(plan.feed, self._states, chunked=self.chunked, start=plan.keep)
        conv.prefilled(turn)
        first = time.perf_counter()
        router = ReplyRouter(self.channel_start, self.channel_end)
        generated: list[int] = []
        stop_ids = set(self.tok.eos_ids)
        stopped = False
        position = len(turn.target)
        while True:
            token = int(np.argmax(logits))
            generated.append(token)
            where = "marker" if token in stop_ids else router.route(token)
            if on_token:
                on_token(token, where)
            if token in stop_ids or len(generated) == self.max_new_tokens:
                break
            if should_stop and should_stop():
                stopped = True
                break
            position += 1
            logits = self.runner.step(token, position, self._states)
        last = time.perf_counter()
        ended = generated[-1] in stop_ids
        reply_ids = generated[:-1] if ended else generated
        full = self.tok.tokenizer.decode(reply_ids, skip_special_tokens=False)
        conv.replied(full, generated[:-1])
        reply = router.reply
        thought = (thought_text(self.tok.tokenizer.decode(reply.thought, skip_special_tokens=True))
                   if self.channel_start is not None and self.channel_start in reply_ids else None)
        answer = self.tok.tokenizer.decode([t for t in reply.answer if t not in stop_ids],
                                           skip_special_tokens=True).strip()
        return ChatTurn(answer=answer, thought=thought, text=full, generated_ids=generated,
                        prefilled=len(plan.feed), kept=plan.keep, rolled_back=plan.rolled_back(cached_before),
                        dropped=turn.dropped, cut=not ended and not stopped, stopped=stopped,
                        prefill_seconds=first - started, decode_seconds=last - first, fed=list(plan.feed))


def _token_id(hf, token: str) -> int | None:
    tid = hf.convert_tokens_to_ids(token)
    return int(tid) if isinstance(tid, int) and tid != hf.unk_token_id else None


def _pow2(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size
