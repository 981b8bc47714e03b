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


# ---- the trained tiny model under Core AI's runtime ----------------------------------------------

CHAT_TOKENS = 48  # the reply cap of the end-to-end chat (every trained reply ends well before it)


def _key(messages: list[dict]) -> str:
    """A message list as the Swift vectors look renderings up (roles and contents joined)."""
    return "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages)


@pytest.fixture(scope="module")
def six_turn_chat(tiny_build, tiny_checkpoint):
    """The 6-turn conversation (tinycorpus.CHAT_CONVERSATION) through `ChatSession` on the demo build's
    int4 bundle, with every rendering it asked for, and HF `generate` on each turn's full history."""
    import torch
    from transformers import AutoTokenizer, Gemma4ForCausalLM

    from gemmaios import hostrun
    from gemmaios.hostrun.chat import ChatSession

    out = tiny_build.path
    bundle = hostrun.find_bundle(out)
    tok = hostrun.BundleTokenizer(hostrun.BundleInfo.load(bundle))
    hf_tok = AutoTokenizer.from_pretrained(tiny_checkpoint.path)
    model = Gemma4ForCausalLM.from_pretrained(tiny_checkpoint.path, dtype=torch.float32).eval()
    record = {"turns": [], "render": {}, "fed_per_call": []}
    with hostrun.BundleRunner(bundle, out / "tables") as runner:
        session = ChatSession(runner, tok, max_new_tokens=CHAT_TOKENS)
        render, prefill = session.render, runner.prefill

        def recording_render(messages):
            ids = render(messages)
            record["render"][_key(messages)] = ids
            return ids

        def counting_prefill(ids, states, **kwargs):
            record["fed_per_call"].append(len(ids))
            return prefill(ids, states, **kwargs)

        session.render = recording_render
        runner.prefill = counting_prefill
        messages: list[dict] = []
        for question in CHAT_CONVERSATION:
            cached_before = list(session.conversation.cached)
            turn = session.ask(question)
            messages.append({"role": "user", "content": question})
            ids = hf_tok.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
            with torch.no_grad():
                hf = model.generate(torch.tensor([ids]), max_new_tokens=CHAT_TOKENS, do_sample=False,
                                    eos_token_id=tok.eos_ids, pad_token_id=0)[0, len(ids):].tolist()
            record["turns"].append({"question": question, "turn": turn, "template_ids": ids, "hf": hf,
                                    "cached_before": cached_before, "cached_after_prefill": turn.kept + turn.prefilled})
            messages.append({"role": "assistant", "content": turn.text})
        record["final_cached"] = list(session.conversation.cached)
        record["hf_tokenizer"] = hf_tok
        record["eos"] = tok.eos_ids
    return record


def test_six_turn_chat_equals_hf_generate_and_prefills_only_new_tokens(six_turn_chat):
    turns = six_turn_chat["turns"]
    assert len(turns) == 6
    for i, t in enumerate(turns):
        turn = t["turn"]
        # the ids in the cache are HF's apply_chat_template of the whole conversation, one <bos>
        assert turn.kept + turn.prefilled == len(t["template_ids"])
        assert t["template_ids"].count(2) == 1
        # the reply is HF generate's on the full templated history, token for token
        assert turn.generated_ids == t["hf"], (i, turn.generated_ids, t["hf"])
        assert turn.generated_ids[-1] in six_turn_chat["eos"] and not turn.cut  # a whole reply, ended by <turn|>
        assert turn.dropped == 0 and turn.rolled_back == 0
        if i == 0:
            assert turn.kept == 0 and turn.prefilled == len(t["template_ids"])
        else:
            # only the new tokens: everything the cache held (the history and the last reply) is kept
            assert t["template_ids"][: len(t["cached_before"])] == t["cached_before"]
            assert turn.kept == len(t["cached_before"])
            assert turn.prefilled == len(t["template_ids"]) - len(t["cached_before"])
            assert turn.fed == t["template_ids"][turn.kept:]
            assert turn.prefilled < 40 < turn.kept  # a turn's worth, not the history
    # the runtime was fed exactly that, once per turn
    assert six_turn_chat["fed_per_call"] == [t["turn"].prefilled for t in turns]
    answers = [t["turn"].answer for t in turns]
    assert "Madrid" in answers[1] and "Katze" in answers[3] and "Oslo" in answers[5]  # follow-ups understood


def test_the_swift_conversation_matches_on_the_same_chat(six_turn_chat, swift_toolchain, tmp_path):
    """GemmaiosCore's Conversation replays the chat from its renderings and plans what gemmaios.chat
    planned, turn by turn (`swift test`, ConversationTests.testMatchesTheToolkitsConversations)."""
    import json
    import re

    from swift_toolchain import CORE, run, swift_cache

    from gemmaios.chat import route_reply

    steps = []
    eos = set(six_turn_chat["eos"])
    for t in six_turn_chat["turns"]:
        turn = t["turn"]
        steps.append({"op": "ask", "text": t["question"], "budget": CHAT_TOKENS, "context": 4096,
                      "expect": {"target": t["template_ids"], "keep": turn.kept, "feed": turn.fed,
                                 "dropped": turn.dropped, "rolled_back": turn.rolled_back}})
        reply = turn.generated_ids[:-1] if turn.generated_ids[-1] in eos else turn.generated_ids
        routed = route_reply(reply, 100, 101)
        steps.append({"op": "reply", "text": turn.text, "generated": turn.generated_ids, "reply_ids": reply,
                      "channel_start": 100, "channel_end": 101, "thought": routed.thought, "answer": routed.answer})
    scenarios = [{"name": "six-turn tiny chat", "system": None, "render": six_turn_chat["render"], "steps": steps,
                  "cached": six_turn_chat["final_cached"]}]
    scenarios.append(_context_limit_scenario(six_turn_chat))
    path = tmp_path / "chat-vectors.json"
    path.write_text(json.dumps({"scenarios": scenarios}))
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", swift_cache("GemmaiosCore"),
                  "--filter", "ConversationTests"], env={"GEMMAIOS_CHAT_VECTORS": str(path)})
    assert "Test Case 'ConversationTests.testMatchesTheToolkitsConversations' passed" in output, output[-4000:]
    assert re.search(r"Executed \d+ tests, with 0 failures", output)


def _context_limit_scenario(chat) -> dict:
    """The same questions and replies under a small context: gemmaios.chat drops the oldest exchanges
    (its plan, from the real renderings, is what Swift must reproduce), and a reset."""
    table = dict(chat["render"])
    conv = Conversation()
    steps = []

    def render(messages):
        key = _key(messages)
        if key not in table:  # a dropped-history rendering the live chat never asked for
            table[key] = chat["hf_tokenizer"].apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
        return table[key]

    for t in chat["turns"]:
        turn = t["turn"]
        before = len(conv.cached)
        try:
            plan = conv.prepare(t["question"], render, budget=CHAT_TOKENS, context=160)
            conv.prefilled(plan)
            expect = {"target": plan.target, "keep": plan.plan.keep, "feed": plan.plan.feed, "dropped": plan.dropped,
                      "rolled_back": plan.plan.rolled_back(before)}
        except ContextFull as exc:  # pragma: no cover - the questions are short
            raise AssertionError(exc) from exc
        steps.append({"op": "ask", "text": t["question"], "budget": CHAT_TOKENS, "context": 160, "expect": expect})
        reply = turn.generated_ids[:-1]
        routed = route_reply(reply, 100, 101)
        steps.append({"op": "reply", "text": turn.text, "generated": turn.generated_ids, "reply_ids": reply,
                      "channel_start": 100, "channel_end": 101, "thought": routed.thought, "answer": routed.answer})
        conv.replied(turn.text, turn.generated_ids[:-1])
    dropped = [s["expect"]["dropped"] for s in steps if s["op"] == "ask"]
    assert sum(dropped) > 0 and max(s["expect"]["rolled_back"] for s in steps if s["op"] == "ask") > 0
    return {"name": "context limit 160", "system": None, "render": table, "steps": steps, "cached": conv.cached}



def test_cli_chat_keeps_the_conversation_resets_and_exits(tiny_build, tmp_path):
    from devicebuild import copy_build
    from typer.testing import CliRunner

    from gemmaios.cli import app

    out = copy_build(tiny_build.path, tmp_path / "build")
    lines = ["What is the capital of Italy?", "And what about Spain?", "/reset", "And what about Spain?", "/exit",
             "What is two plus two?"]
    result = CliRunner().invoke(app, ["run", "--out", str(out)], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert "Rome" in result.output and "Madrid" in result.output
    assert result.output.count("kept from earlier turns") == 3  # Italy, Spain; after /reset, Spain
    assert "(0 kept from earlier turns)" in result.output.split("conversation forgotten")[1]  # a new conversation
    assert "Two plus two" not in result.output  # /exit ended the chat
    cut = CliRunner().invoke(app, ["run", "--out", str(out), "-p", "What is the capital of France?", "-n", "4"])
    assert cut.exit_code == 0, cut.output
    assert "reply cut at 4 tokens (--tokens sets the cap)" in cut.output
    whole = CliRunner().invoke(app, ["run", "--out", str(out), "-p", "What is the capital of France?"])
    assert "Paris" in whole.output and "reply cut" not in whole.output


def test_cli_think_shows_the_reasoning_apart_and_the_history_drops_it(tiny_build, tmp_path):
    import json

    from devicebuild import copy_build
    from typer.testing import CliRunner

    from gemmaios.cli import app

    out = copy_build(tiny_build.path, tmp_path / "build")
    # the tiny model thinks on the built-in prompts and the capitals it was taught to think on
    questions = "Count from one to ten.\nWhat is the capital of France?\n"
    result = CliRunner().invoke(app, ["run", "--out", str(out), "--think", "--json"], input=questions)
    assert result.exit_code == 0, result.output
    turns = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(turns) == 2
    first, second = turns
    assert first["thought"] == "This is a simple request, so a short answer will do."
    assert first["text"].startswith("One, two, three") and "<|channel>" not in first["text"]
    assert second["thought"] == "The capital of France is Paris." and "Paris" in second["text"]
    # the second turn kept the history up to the first reply's start: the reply was rolled back
    # (the template drops its reasoning) and its answer prefilled again
    assert second["rolled_back_tokens"] == first["new_tokens"] - 1 and second["reused_tokens"] > 0
    shown = CliRunner().invoke(app, ["run", "--out", str(out), "--think"], input=questions)
    assert "thinking: This is a simple request" in shown.output  # the name line is not shown


def test_a_gemma_4_checkpoint_without_a_chat_template_gets_ours(tiny_checkpoint, tmp_path):
    """Some Gemma 4 tokenizer releases ship no chat template: the bundle's tokenizer/ gets Gemma 4's
    framing as gemmaios writes it (the source recorded), and the oracle renders with it too."""
    import json
    import shutil

    from gemmaios.bundlemetadata import copy_tokenizer
    from gemmaios.checkpoint import CHAT_TEMPLATE_FALLBACK, checkpoint_chat_template, load_checkpoint
    from gemmaios.oracle.prompts import Prompt
    from gemmaios.oracle.reference import ReferenceModel

    own, source = checkpoint_chat_template(tiny_checkpoint.path, "gemma4_text")
    assert (own.strip(), source) == (CHAT_TEMPLATE.strip(), "checkpoint")  # the tiny checkpoint ships it
    bare = tmp_path / "bare"
    shutil.copytree(tiny_checkpoint.path, bare)
    (bare / "chat_template.jinja").unlink()
    config = json.loads((bare / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    ckpt = load_checkpoint(bare, model_id="bare-gemma4")
    assert ckpt.chat_template() == (CHAT_TEMPLATE, CHAT_TEMPLATE_FALLBACK)
    assert checkpoint_chat_template(bare, "llama") == (None, "none")  # only Gemma 4 gets Gemma 4's framing
    copy_tokenizer(bare, tmp_path / "tokenizer", CHAT_TEMPLATE)
    assert (tmp_path / "tokenizer" / "chat_template.jinja").read_text() == CHAT_TEMPLATE
    reference = ReferenceModel.load(ckpt)
    ids = reference.encode(Prompt("p", "What is the capital of France?"), True)
    assert ids == ReferenceModel.load(tiny_checkpoint).encode(Prompt("p", "What is the capital of France?"), True)
