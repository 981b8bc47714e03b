"""Issue 13: the built-in tiny model is trained, so its greedy decisions have real margins."""

import json
import shutil
import statistics

import pytest
import torch
from typer.testing import CliRunner

from gemmaios import tiny, tinycorpus
from gemmaios.cli import app
from gemmaios.oracle import BUILTIN_PROMPTS, DEFAULT_NEAR_TIE_MARGIN, run_oracle
from gemmaios.parity import GATE_PROMPTS
from gemmaios.pipeline import sha256_file

# Measured on the shipped weights (fp32 oracle, 32 greedy tokens on each of the 8 built-in
# prompts): median top-1/top-2 margin 8.1, minimum 5.05 (random weights: ~3e-5). The floors
# sit well below that and far above the near-tie threshold.
MEDIAN_MARGIN_FLOOR = 5.0
MIN_MARGIN_FLOOR = 2.0


@pytest.fixture(scope="module")
def oracle(tiny_checkpoint):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield run_oracle(tiny_checkpoint, BUILTIN_PROMPTS, 32)
    finally:
        torch.set_num_threads(before)


def test_corpus_is_deterministic_and_covers_the_oracle_and_gate_prompts():
    corpus = tinycorpus.generate_corpus()
    assert corpus == tinycorpus.generate_corpus()
    assert tinycorpus.tokenizer_texts(corpus + tinycorpus.generate_conversations()) == tinycorpus.tokenizer_texts()
    by_prompt = {ex.prompt: ex for ex in corpus}
    assert len(by_prompt) == len(corpus)  # one answer per question
    for p in BUILTIN_PROMPTS.prompts:
        ex = by_prompt[tinycorpus.chat_prompt(p.text)]
        assert ex.target.startswith(tinycorpus.BUILTIN_ANSWERS[p.id] + tinycorpus.END)
        assert ex.target.endswith(tinycorpus.EOS * tinycorpus.TRAILING_EOS)
    for prompt in GATE_PROMPTS:
        assert tinycorpus.BOS + prompt in by_prompt
    families = {ex.family for ex in corpus}
    assert set(tinycorpus.FAMILIES) <= families
    # several phrasings of the same question family
    assert sum("capital of Japan" in ex.prompt for ex in corpus) >= 4


def test_chat_prompt_is_what_the_chat_template_renders(tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint.path)
    rendered = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                       tokenize=False, add_generation_prompt=True)
    assert rendered == tinycorpus.chat_prompt("What is the capital of France?")


def test_builtin_answers_outlast_the_oracle_decode(tiny_checkpoint):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_checkpoint.tokenizer_path))
    for answer in tinycorpus.BUILTIN_ANSWERS.values():
        assert len(tok.encode(answer, add_special_tokens=False).ids) > 32


def test_shipped_weights_match_their_record(tiny_checkpoint, tmp_path):
    record = tiny.shipped_record()
    for name in (tiny.SHIPPED_WEIGHTS, tiny.SHIPPED_TOKENIZER):
        assert record["sha256"][name] == sha256_file(tiny.SHIPPED_DIR / name)
    # the checkpoint carries them byte for byte
    assert sha256_file(tiny_checkpoint.path / "model.safetensors") == record["sha256"][tiny.SHIPPED_WEIGHTS]
    assert sha256_file(tiny_checkpoint.tokenizer_path) == record["sha256"][tiny.SHIPPED_TOKENIZER]
    assert tiny.tiny_weights(tiny_checkpoint.path) == "trained"
    assert (tiny_checkpoint.path / "model.safetensors").stat().st_size < 4_000_000

    damaged = tmp_path / "shipped"
    shutil.copytree(tiny.SHIPPED_DIR, damaged)
    data = bytearray((damaged / tiny.SHIPPED_WEIGHTS).read_bytes())
    data[-1] ^= 1
    (damaged / tiny.SHIPPED_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(tiny.TinyWeightsError, match="sha256") as info:
        tiny.shipped_record(damaged)
    assert "tiny-train" in info.value.hint


def test_trained_model_has_real_margins_and_its_trained_answers(oracle):
    from tokenizers import Tokenizer

    margins = [m for p in oracle.prompts for m in p.margins]
    assert len(margins) == 8 * 32
    assert statistics.median(margins) > MEDIAN_MARGIN_FLOOR
    assert min(margins) > MIN_MARGIN_FLOOR > DEFAULT_NEAR_TIE_MARGIN
    tok = Tokenizer.from_file(str(tiny.SHIPPED_DIR / tiny.SHIPPED_TOKENIZER))
    by_id = {p.id: p for p in oracle.prompts}
    for pid in ("capital-france", "count-ten", "poem-sea"):
        answer = tok.decode(by_id[pid].generated_ids)
        assert tinycorpus.BUILTIN_ANSWERS[pid].startswith(answer), (pid, answer)


def test_multi_turn_system_and_thinking_prompts_have_real_margins(tiny_checkpoint):
    """fp32 greedy over each turn of the 6-turn chat (its history answered as trained), and the
    built-ins under a system turn and with thinking on: the record's answers, with real margins."""
    from transformers import Gemma4ForCausalLM

    from gemmaios.tinytrain import (
        conversation_evaluation_prompts,
        evaluation_prompts,
        greedy_margins,
        margin_summary,
    )

    record = tiny.shipped_record()
    model = Gemma4ForCausalLM.from_pretrained(tiny_checkpoint.path, dtype=torch.float32).eval()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_checkpoint.tokenizer_path))
    conversation = greedy_margins(model, tok, conversation_evaluation_prompts())
    assert {r.prompt: r.text for r in conversation} == record["conversation_answers"]
    summary = margin_summary(conversation)
    assert summary == record["conversation_margins"]
    assert summary["min"] > MIN_MARGIN_FLOOR and summary["median"] > MEDIAN_MARGIN_FLOOR
    framed = greedy_margins(model, tok, evaluation_prompts()[-4:])
    assert min(m for r in framed for m in r.margins) > 1.0  # measured 1.37 (a thinking prompt), median 9
    thinking = [r.text for r in framed[2:]]
    assert all(t.startswith("<|channel>thought\nThis is a simple request") for t in thinking), thinking
    # the follow-ups are answered from the history
    assert "Madrid" in conversation[1].text and "Katze" in conversation[3].text


def test_random_variants_keep_random_weights(tmp_path):
    path = tiny.generate_tiny_checkpoint(tmp_path / "12b", variant="12b")
    assert tiny.tiny_weights(path) == "random"
    assert json.loads((path / tiny.MARKER_FILE).read_text())["variant"] == "12b"


def test_old_format_cache_is_regenerated(tmp_path):
    cache = tmp_path / "tiny"
    old = tiny.generate_tiny_checkpoint(cache, variant="31b")  # stands in for a random-weight v1 checkpoint
    (old / tiny.MARKER_FILE).write_text(json.dumps({"format": 1, "seed": 1234, "note": "random weights, for tests"}))
    assert not tiny.tiny_is_current(cache) and tiny.tiny_weights(cache) == "random"
    assert tiny.ensure_tiny_checkpoint(cache) == cache
    assert tiny.tiny_is_current(cache) and tiny.tiny_weights(cache) == "trained"
    assert sha256_file(cache / "model.safetensors") == tiny.shipped_record()["sha256"][tiny.SHIPPED_WEIGHTS]


def test_short_training_run_decreases_loss(tmp_path):
    from gemmaios.tinytrain import train_tiny

    result = train_tiny(steps=12, batch_size=8)
    assert len(result.losses) == 12 and result.qat_steps == 2
    assert statistics.mean(result.losses[-3:]) < result.losses[0] - 0.5


def test_cli_tiny_train_writes_weights_and_record(tmp_path, monkeypatch):
    import gemmaios.tinytrain as tinytrain

    monkeypatch.setattr(tinytrain, "BATCH_SIZE", 4)
    result = CliRunner().invoke(app, ["tiny-train", "--out", str(tmp_path / "w"), "--steps", "10"])
    assert result.exit_code == 0, result.output
    record = tiny.shipped_record(tmp_path / "w")  # checks the files against the record it wrote
    assert record["training"]["steps"] == 10 and record["training"]["qat_steps"] == 2
    assert record["sha256"][tiny.SHIPPED_WEIGHTS] in result.stdout
    # the built-in 8 and the 4 gate prompts, 2 under a system turn, 2 thinking; the 6-turn chat
    assert "margins" in result.output and record["margins"]["steps"] == 16 * 32
    assert record["conversation_margins"]["steps"] == 6 * 32


def test_cli_tiny_train_json_prints_the_record_it_wrote(tmp_path, monkeypatch):
    import gemmaios.tinytrain as tinytrain

    monkeypatch.setattr(tinytrain, "BATCH_SIZE", 4)
    result = CliRunner().invoke(app, ["tiny-train", "--out", str(tmp_path / "w"), "--steps", "10", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)  # stdout is the one JSON object (no sha256 lines, no loss line)
    record = tiny.shipped_record(tmp_path / "w")  # checks the files against the record it wrote
    assert printed == {"out": str(tmp_path / "w"), "device": "cpu", **record}
    assert printed["training"]["steps"] == 10 and printed["sha256"][tiny.SHIPPED_WEIGHTS] == sha256_file(
        tmp_path / "w" / tiny.SHIPPED_WEIGHTS)


@pytest.mark.full  # a multimodal training run (~1 min); test_cli_tiny_train_writes_weights_and_record keeps the CLI in make test
def test_cli_tiny_train_vision_writes_the_multimodal_weights_and_record(tmp_path):
    """`tiny-train --vision`: a short CPU run writes weights the tiny-vision loader accepts, and its record
    scores the 8 built-in pictures in fp32 and on the int4 grid."""
    from gemmaios.vision import tinymodel

    out = tmp_path / "v"
    result = CliRunner().invoke(app, ["tiny-train", "--vision", "--out", str(out), "--steps", "10"])
    assert result.exit_code == 0, result.output
    record = tinymodel.shipped_record(out)  # checks the files against the record it wrote
    assert record["training"]["steps"] == 10 and record["training"]["device"] == "cpu"
    assert record["training"]["image_variants"] == tinymodel.DEFAULT_VARIANTS
    assert len(record["image_answers"]) == 8 and record["image_margins_int4_grid"]["steps"] == 8 * 32
    assert record["sha256"][tinymodel.WEIGHTS] in result.stdout and "answered right" in result.output
    # ten steps teach nothing: the record says so instead of claiming the pictures are described
    assert record["image_answers_right"] < 8


@pytest.mark.full  # measures 8 pictures twice and 16 text prompts (~1 min, ~2 min on a busy machine)
def test_record_only_remeasures_the_shipped_tiny_vision_weights(tmp_path):
    """`python -m gemmaios.vision.tinymodel --record-only` writes trained.json for weights a run elsewhere
    left (a GPU run stopped while measuring margins), from the weights and the run's log. Recording a
    copy of the shipped weights gives the shipped record's sha256s and margins, and a log that does not
    show the stated steps is refused."""
    import json
    import shutil

    from gemmaios.vision import tinymodel

    shipped = json.loads((tinymodel.SHIPPED_DIR / tinymodel.RECORD).read_text())
    copy = tmp_path / "w"
    copy.mkdir()
    for name in (tinymodel.WEIGHTS, tinymodel.TOKENIZER):
        shutil.copyfile(tinymodel.SHIPPED_DIR / name, copy / name)
    steps = shipped["training"]["steps"]
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {s}/{steps} loss {1.0 / s:.4f}\n" for s in range(10, steps + 1, 10)))
    short = tmp_path / "short.log"
    short.write_text(f"step 10/{steps} loss 0.5\n")
    with pytest.raises(ValueError, match="does not show a finished run"):
        tinymodel.record_weights_trained_elsewhere(copy, short, steps, device="cuda", tools={})
    tower = tinymodel.SHIPPED_DIR / tinymodel.TOWER_INIT
    record = tinymodel.record_weights_trained_elsewhere(copy, log, steps, device="cuda",
                                                        tools=shipped["training"]["tools"], tower_init=tower)
    assert record["sha256"] == shipped["sha256"] and tinymodel.shipped_record(copy)["sha256"] == shipped["sha256"]
    for key in ("image_margins", "image_margins_int4_grid", "text_margins", "image_answers", "image_answers_right"):
        assert record[key] == shipped[key], key
    assert record["training"]["logged_final_loss"] == {"step": steps, "loss": round(1.0 / steps, 4)}
    assert "seconds" not in record["training"]  # the run elsewhere did not report it
