"""Issue 27: Gemma 4's chat framing (the tiny template, the corpus's renderer) and the multi-turn
chat's planning logic (gemmaios.chat), without a bundle."""

from __future__ import annotations

import pytest

from gemmaios.chat import ContextFull, Conversation, plan_feed, route_reply, thought_text
from gemmaios.tiny import CHAT_TEMPLATE, SPECIAL_TOKEN_IDS, train_tokenizer
from gemmaios.tinycorpus import (
    CHAT_CONVERSATION,
    conversation_prompts,
    generate_conversations,
    render,
    strip_thinking,
)


@pytest.fixture(scope="module")
def hf_tok():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(), bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", chat_template=CHAT_TEMPLATE)


CONVERSATIONS = [
    [{"role": "user", "content": "Hello."}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello."}],
    [{"role": "user", "content": "  What is two plus two? "}, {"role": "assistant", "content": " Four. "},
     {"role": "user", "content": "And three plus three?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "<|channel>thought\nA greeting.\n<channel|>Hello!"},
     {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."},
     {"role": "user", "content": "One more"}],
]


@pytest.mark.parametrize("thinking", [False, True])
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_the_corpus_renders_as_the_template_does(hf_tok, index, thinking):
    messages = CONVERSATIONS[index]
    for generation in (True, False):
        want = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation,
                                          enable_thinking=thinking)
        assert render(messages, add_generation_prompt=generation, enable_thinking=thinking) == want


def test_the_template_frames_turns_as_gemma_4_documents():
    """The examples of Google's Gemma 4 prompt-formatting page, rendered by our template."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def rendered(messages, **kwargs):
        out, _ = render_jinja_template([messages], chat_template=CHAT_TEMPLATE, bos_token="<bos>", **kwargs)
        return out[0]

    assert rendered([{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "Hello."}]) == (
        "<bos><|turn>system\nYou are a helpful assistant.<turn|>\n<|turn>user\nHello.<turn|>\n")
    water = [{"role": "user", "content": "What is the water formula?"}]
    assert rendered(water, add_generation_prompt=True, enable_thinking=True) == (
        "<bos><|turn>system\n<|think|><turn|>\n<|turn>user\nWhat is the water formula?<turn|>\n<|turn>model\n")
    # thinking off: no system turn, the E-series generation prompt (no empty channel)
    assert rendered(water, add_generation_prompt=True) == "<bos><|turn>user\nWhat is the water formula?<turn|>\n<|turn>model\n"
    # an earlier reply's reasoning is not in the history
    history = [*water, {"role": "assistant", "content": "<|channel>thought\nH2O.\n<channel|>It is H2O."},
               {"role": "user", "content": "Thanks"}]
    assert "H2O.\n" not in rendered(history, enable_thinking=True)
    assert "<|turn>model\nIt is H2O.<turn|>\n" in rendered(history, enable_thinking=True)
    image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    assert rendered(image) == "<bos><|turn>user\n\n\n<|image|>\n\nDescribe this image.<turn|>\n"
    with pytest.raises(Exception, match="checkpoint's own Gemma 4 chat template"):
        rendered(water, tools=[{"type": "function", "function": {"name": "f"}}])


def test_special_tokens_sit_at_gemma_4_ids_and_stay_whole(hf_tok):
    tok = train_tokenizer()
    assert {t: tok.token_to_id(t) for t in SPECIAL_TOKEN_IDS} == SPECIAL_TOKEN_IDS
    ids = hf_tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)["input_ids"]
    assert ids[:2] == [2, 105] and ids.count(2) == 1 and ids.count(106) == 1 and ids.count(105) == 2


def test_strip_thinking_matches_the_template(hf_tok):
    for text in ("<|channel>thought\nx\n<channel|>Answer.", "Plain.", " a <|channel>t<channel|> b ",
                 "<|channel>never closed"):
        got = hf_tok.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": text}],
                                         tokenize=False)
        assert got == f"<bos><|turn>user\nq<turn|>\n<|turn>model\n{strip_thinking(text)}<turn|>\n"


def test_corpus_conversations_build_on_earlier_turns():
    texts = [ex.text for ex in generate_conversations()]
    assert any("<|turn>user\nAnd what about" in t or "<|turn>user\nAnd " in t for t in texts)
    assert max(t.count("<|turn>user") for t in texts) == 6 and min(t.count("<|turn>user") for t in texts) == 2
    assert any("<|think|>" in t for t in texts) and any("<|turn>system\nYou are" in t for t in texts)
    prompts = conversation_prompts()
    assert len(prompts) == len(CHAT_CONVERSATION) == 6
    assert all(later.startswith(earlier.removesuffix("<|turn>model\n")) for earlier, later in zip(prompts, prompts[1:], strict=False))
    assert "Madrid" in prompts[2] and "Katze" in prompts[4]


# ---- the planning logic -----------------------------------------------------------------------

def test_plan_feeds_what_the_cache_lacks():
    assert plan_feed([], [2, 5, 6]).feed == [2, 5, 6]
    plan = plan_feed([2, 5, 6, 7], [2, 5, 6, 7, 106, 8, 9])
    assert (plan.keep, plan.feed) == (4, [106, 8, 9])
    rolled = plan_feed([2, 5, 100, 7, 101, 8], [2, 5, 8, 106])  # a reasoning channel the history drops
    assert (rolled.keep, rolled.feed, rolled.rolled_back(6)) == (2, [8, 106], 4)
    same = plan_feed([2, 5, 6], [2, 5, 6])  # nothing new: the last token again, for its logits
    assert (same.keep, same.feed) == (2, [6])


def _render_words(messages):
    """A stand-in template: one id per word, 1 per turn marker."""
    ids = [2]
    for m in messages:
        ids += [1] + [len(w) for w in m["content"].split()]
    return ids + [1]


def test_conversation_keeps_the_system_turn_and_drops_the_oldest_exchanges():
    conv = Conversation(system="be brief")
    turn = conv.prepare("one two three", _render_words, budget=4, context=40)
    assert turn.dropped == 0 and turn.plan.keep == 0
    conv.prefilled(turn)
    conv.replied("four five", [4, 4])
    turn = conv.prepare("six seven", _render_words, budget=4, context=40)
    assert turn.dropped == 0 and turn.plan.keep == len(turn.target) - len(turn.plan.feed)
    conv.prefilled(turn)
    conv.replied("eight nine ten eleven twelve thirteen", [5, 4])
    turn = conv.prepare("fourteen fifteen", _render_words, budget=8, context=20)
    assert turn.dropped == 2 and [m["content"] for m in conv.messages] == ["fourteen fifteen"]
    assert len(turn.target) + 8 <= 20 and turn.target[:4] == [2, 1, 2, 5]  # the system turn stays
    conv.prefilled(turn)
    with pytest.raises(ContextFull, match="more than the context of 12"):
        conv.prepare("a b c d e f g h", _render_words, budget=4, context=12)
    assert [m["content"] for m in conv.messages] == ["fourteen fifteen"]  # unchanged
    conv.reset()
    assert conv.messages == [] and conv.cached == []


def test_reply_router_keeps_the_reasoning_apart():
    reply = route_reply([100, 7, 8, 101, 9, 10], 100, 101)
    assert (reply.thought, reply.answer) == ([7, 8], [9, 10])
    assert route_reply([9, 101, 10], 100, 101).answer == [9, 101, 10]  # a stray closer is text
    assert route_reply([9, 100, 10], None, None).answer == [9, 100, 10]  # no channel tokens: all answer
    assert thought_text("thought\nThe capital of Italy is Rome.\n") == "The capital of Italy is Rome."
