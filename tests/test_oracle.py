import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from gemmaios.checkpoint import load_checkpoint
from gemmaios.cli import app
from gemmaios.oracle import (
    BUILTIN_PROMPTS,
    DEFAULT_NEAR_TIE_MARGIN,
    DIVERGED,
    EXACT,
    NEAR_TIE,
    ORACLE_SCHEMA,
    PROMPT_MISMATCH,
    SHORT,
    Generation,
    OracleError,
    PromptSetError,
    ReferenceModel,
    compare_runs,
    compare_trials,
    explain_divergences,
    load_oracle,
    load_prompt_set,
    run_oracle,
    score_against_oracle,
    teacher_forced,
)
from gemmaios.oracle.prompts import Prompt, PromptSet
from gemmaios.pipeline import DONE, FAILED, SKIPPED, BuildOptions, sha256_file
from gemmaios.steps import run_build
from gemmaios.transcript import SCHEMA, TranscriptError, read_transcript, write_transcript

N = 32  # new tokens per prompt (the oracle's default): crosses the tiny model's sliding window (8)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model is too small to gain from threads; on a shared CI box they only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    return ReferenceModel.load(tiny_checkpoint)


@pytest.fixture(scope="module")
def oracle_path(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("oracle") / "oracle.json"
    run_oracle(reference, BUILTIN_PROMPTS, N, top_k=5, out=path)
    return path


@pytest.fixture(scope="module")
def oracle(oracle_path):
    return load_oracle(oracle_path)


def transcript_records(runs_by_trial, prompt_set=BUILTIN_PROMPTS, footer=True):
    """A device-style transcript: runs_by_trial[trial] = list of (prompt_ids, generated_ids)."""
    records = [{"type": "header", "schema": SCHEMA, "run_id": "test", "started_at": "2026-11-24T12:00:00Z",
                "device": {"product_type": "iPhone18,2", "arch": "h18p"}, "bundle": {"name": "gemma4_tiny_decode_fp16"},
                "prompt_set": prompt_set.header(), "trials": len(runs_by_trial), "max_new_tokens": N}]
    for trial, runs in enumerate(runs_by_trial):
        for index, (prompt_ids, generated) in enumerate(runs):
            records.append({"type": "prompt", "trial": trial, "index": index,
                            "prompt_id": prompt_set.prompts[index].id, "prompt_ids": list(prompt_ids),
                            "generated_ids": list(generated), "prefill_tokens": len(prompt_ids),
                            "prefill_seconds": 0.1, "decode_tokens": len(generated) - 1, "decode_seconds": 0.2})
    if footer:
        records.append({"type": "footer", "completed": True})
    return records


def oracle_runs(oracle):
    return [(p.prompt_ids, list(p.generated_ids)) for p in oracle.prompts]


def test_oracle_file_records_the_reference(oracle_path, oracle, tiny_checkpoint):
    raw = json.loads(oracle_path.read_text())
    assert raw["schema"] == ORACLE_SCHEMA
    assert raw["decode"] == {"method": "greedy", "max_new_tokens": N, "stop_at_eos": False, "top_k": 5}
    assert raw["model"]["id"] == "tiny" and raw["model"]["fingerprint"] == tiny_checkpoint.fingerprint()
    assert raw["tokenizer_sha256"] == sha256_file(tiny_checkpoint.tokenizer_path)
    assert raw["chat_template"] is True and raw["dtype"] == "float32"
    assert raw["prompt_set"] == BUILTIN_PROMPTS.header() and len(BUILTIN_PROMPTS.prompts) == 8
    assert oracle.eos_token_ids == [1, 106]  # <eos>, <turn|>
    for prompt, p in zip(BUILTIN_PROMPTS.prompts, oracle.prompts, strict=True):
        assert (p.id, p.text) == (prompt.id, prompt.text)
        # rendered user turn (Gemma 4): <bos><|turn>user\n ... <turn|>\n<|turn>model\n
        assert p.prompt_ids[:2] == [2, 105] and p.prompt_ids.count(105) == 2 and p.prompt_ids.count(106) == 1
        assert len(p.generated_ids) == N and len(p.top_k) == N
        for token, step in zip(p.generated_ids, p.top_k, strict=True):
            assert step.ids[0] == token and len(step.ids) == 5
            assert step.logits == sorted(step.logits, reverse=True)


def test_independent_greedy_decode_scores_n_of_n(oracle, tiny_checkpoint, tmp_path):
    """HF `generate` (its own loop and cache) with EOS disabled, written as a device transcript."""
    from transformers import Gemma4ForCausalLM, GenerationConfig

    model = Gemma4ForCausalLM.from_pretrained(tiny_checkpoint.path, dtype=torch.float32).eval()
    config = GenerationConfig(do_sample=False, max_new_tokens=N, eos_token_id=None, pad_token_id=0)
    runs = []
    for p in oracle.prompts:
        out = model.generate(torch.tensor([p.prompt_ids]), generation_config=config)
        runs.append((p.prompt_ids, out[0, len(p.prompt_ids):].tolist()))

    score = score_against_oracle(runs, oracle)  # plain (prompt_ids, generated_ids) lists
    assert (score.exact, score.total, score.passed) == (8, 8, True)
    assert score.summary.startswith("8/8 exact")

    path = write_transcript(tmp_path / "run.jsonl", transcript_records([runs]))
    from_file = score_against_oracle(read_transcript(path, require_complete=True), oracle)
    assert from_file.summary.startswith("8/8 exact") and not from_file.warnings


def test_no_cache_decode_differs_at_most_at_near_ties(oracle, reference):
    """Full recompute per token (no KV cache): fp32 noise may only flip knife-edge steps."""
    runs = []
    with torch.inference_mode():
        for p in oracle.prompts:
            seq = list(p.prompt_ids)
            for _ in range(N):
                seq.append(int(reference.model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
            runs.append((p.prompt_ids, seq[len(p.prompt_ids):]))
    score = score_against_oracle(runs, oracle)
    assert score.passed, score.summary
    assert all(s.verdict in (EXACT, NEAR_TIE) for s in score.prompts)


def _step_with_margin(oracle, pick):
    """(prompt index, step, margin) of the step `pick` chooses from all recorded margins."""
    steps = [(i, k, m) for i, p in enumerate(oracle.prompts) for k, m in enumerate(p.margins) if 1 <= k <= N - 3]
    return pick(steps)


def test_perturbed_transcript_is_scored(oracle, reference, tmp_path):
    tie_p, tie_k, tie_m = _step_with_margin(oracle, lambda s: min(s, key=lambda x: x[2]))
    hard_p, hard_k, hard_m = _step_with_margin(
        oracle, lambda s: max((x for x in s if x[0] != tie_p), key=lambda x: x[2]))
    # The trained tiny model decides every step clearly (margins above the default 0.1), so a
    # threshold between its least and most confident steps makes the one a near-tie.
    near_tie = (tie_m + hard_m) / 2
    assert DEFAULT_NEAR_TIE_MARGIN < tie_m < near_tie < hard_m

    runs = oracle_runs(oracle)
    for p, k in ((tie_p, tie_k), (hard_p, hard_k)):
        generated = runs[p][1]
        generated[k] = oracle.prompts[p].top_k[k].ids[1]  # take the oracle's runner-up there
        generated[k + 1:] = [7] * (N - k - 1)  # and wander off afterwards
    path = write_transcript(tmp_path / "perturbed.jsonl", transcript_records([runs]))
    score = score_against_oracle(read_transcript(path), oracle, near_tie_margin=near_tie)

    assert score.exact == 6 and score.total == 8 and not score.passed
    tie, hard = score.prompts[tie_p], score.prompts[hard_p]
    assert (tie.verdict, tie.divergence, tie.near_tie, tie.got_rank) == (NEAR_TIE, tie_k, True, 1)
    assert tie.margin == pytest.approx(tie_m)
    assert (hard.verdict, hard.divergence, hard.near_tie) == (DIVERGED, hard_k, False)
    assert hard.expected == oracle.prompts[hard_p].generated_ids[hard_k]
    assert hard.got == oracle.prompts[hard_p].top_k[hard_k].ids[1] and hard.where.endswith(f":{hard_p + 2}")
    assert "6/8 exact" in score.summary and "1 near-tie" in score.summary
    assert f"prompt {hard_p} diverged at token {hard_k}" in score.summary

    # teacher forcing: after wandering off, the run no longer follows the oracle given its own context
    explain_divergences(score, read_transcript(path), reference)
    assert score.prompts[0 if hard_p else 1].after_divergence is None  # exact prompts are not re-run
    agree, judged = hard.after_divergence
    assert judged == N - hard_k - 1 and agree < judged
    assert f"then took the oracle's top-1 at {agree}/{judged}" in score.summary

    # ...while a run that flipped and then kept decoding greedily follows it at every later position
    p = oracle.prompts[hard_p]
    prefix = p.generated_ids[:hard_k] + [p.top_k[hard_k].ids[1]]
    rest, _ = reference.greedy(p.prompt_ids + prefix, N - hard_k - 1)
    honest = [Generation(tuple(p.prompt_ids), tuple(prefix + rest), index=hard_p)]
    healed = explain_divergences(score_against_oracle(honest, oracle, near_tie_margin=near_tie), honest, reference)
    assert healed.prompts[0].verdict == DIVERGED and healed.prompts[0].after_divergence == (len(rest), len(rest))

    # with only the near-tie flip the margin rule lets the run pass; a threshold below its margin does not
    only_tie = [Generation(tuple(a), tuple(b), index=i) for i, (a, b) in enumerate(runs) if i != hard_p]
    assert score_against_oracle(only_tie, oracle, near_tie_margin=near_tie).passed
    strict = score_against_oracle(only_tie, oracle, near_tie_margin=tie_m / 2)
    assert not strict.passed and [s.verdict for s in strict.prompts if not s.exact] == [DIVERGED]


def test_short_eos_and_prompt_mismatch(oracle):
    runs = oracle_runs(oracle)
    eos = oracle.eos_token_ids[0]
    p0 = oracle.prompts[0]
    cases = [
        Generation(tuple(p0.prompt_ids), tuple(p0.generated_ids[:5]), index=0),  # stopped early
        Generation(tuple(p0.prompt_ids), tuple(p0.generated_ids[:5]) + (eos,), index=0),  # EOS the oracle lacks
        Generation(tuple(runs[1][0][:-1]) + (99,), tuple(runs[1][1]), index=1),  # different tokenization
        Generation(tuple(p0.prompt_ids), tuple(p0.generated_ids) + (3, 4), index=0),  # longer than the oracle
    ]
    short, wrong_eos, mismatch, longer = score_against_oracle(cases, oracle).prompts
    assert (short.verdict, short.divergence, short.got) == (SHORT, 5, None)
    expected_verdict = NEAR_TIE if p0.margins[5] < DEFAULT_NEAR_TIE_MARGIN else DIVERGED
    assert (wrong_eos.verdict, wrong_eos.divergence, wrong_eos.got) == (expected_verdict, 5, eos)
    assert (mismatch.verdict, mismatch.divergence) == (PROMPT_MISMATCH, len(runs[1][0]) - 1)
    assert longer.verdict == EXACT and "2 token(s) beyond" in longer.note

    # an oracle that emitted EOS at step 5: a run ending right there is exact, not short
    stops = dataclasses.replace(oracle, eos_token_ids=[p0.generated_ids[5]])
    (ended,) = score_against_oracle([(p0.prompt_ids, p0.generated_ids[:6])], stops).prompts
    assert ended.verdict == EXACT and ended.compared == 6 and "EOS" in ended.note


def test_run_vs_run_determinism(oracle, tmp_path):
    runs = oracle_runs(oracle)
    phone = read_transcript(write_transcript(tmp_path / "phone.jsonl", transcript_records([runs] * 3)))
    mac = read_transcript(write_transcript(tmp_path / "mac.jsonl", transcript_records([runs] * 3)))
    same = compare_runs(phone, mac, labels=("iPhone", "Mac"))
    assert same.passed and same.summary.startswith("24/24 token-identical (iPhone vs Mac)")
    assert compare_trials(phone).summary.startswith("16/16 token-identical")

    # a single-trial reference is compared with every trial of the other run
    single = read_transcript(write_transcript(tmp_path / "one.jsonl", transcript_records([runs])))
    assert compare_runs(phone, single).summary.startswith("24/24")
    two = read_transcript(write_transcript(tmp_path / "two.jsonl", transcript_records([runs] * 2)))
    assert compare_trials(two).summary.startswith("8/8 token-identical (trial 1 vs trial 0)")

    changed = [list(map(list, r)) for r in runs]
    changed[3][1][7] += 1
    rerun = read_transcript(write_transcript(tmp_path / "rerun.jsonl", transcript_records([runs, runs, changed])))
    det = compare_runs(phone, rerun)
    assert (det.identical, det.total, det.passed) == (23, 24, False)
    (bad,) = [p for p in det.pairs if not p.identical]
    assert (bad.trial, bad.index, bad.divergence) == (2, 3, 7)
    assert "23/24 token-identical" in det.summary and "trial 2 prompt 3 at token 7" in det.summary
    assert compare_trials(rerun).identical == 15

    missing = read_transcript(write_transcript(tmp_path / "cut.jsonl", transcript_records([runs[:6]] * 3, footer=False)))
    assert compare_runs(phone, missing).summary.startswith("18/24")


def test_teacher_forced_agrees_with_greedy_and_finds_the_flip(oracle, reference):
    p = oracle.prompts[2]
    sequence = p.prompt_ids + p.generated_ids
    forced = teacher_forced(reference, sequence)
    start = len(p.prompt_ids)
    assert forced.agreement(start) == (N, N)
    assert [s.margin for s in forced.from_position(start)] == pytest.approx(p.margins, abs=1e-3)

    flipped = list(sequence)
    flipped[start + 4] = p.top_k[4].ids[2]
    steps = {s.position: s for s in teacher_forced(reference, flipped).steps}
    assert not steps[start + 4].agrees and steps[start + 4].actual_rank == 2
    assert steps[start + 4].actual_gap == pytest.approx(p.top_k[4].logits[0] - p.top_k[4].logits[2], abs=1e-3)
    with pytest.raises(OracleError, match="at least two tokens"):
        reference.teacher_forced([2])


def test_multimodal_checkpoint_loads_the_text_decoder(tiny_checkpoint, oracle, tmp_path):
    """A `gemma4` (multimodal) layout: config.text_config and model.language_model.* weights."""
    from safetensors.torch import load_file, save_file

    for f in tiny_checkpoint.path.iterdir():
        if f.suffix != ".safetensors" and f.name != "config.json":
            shutil.copy(f, tmp_path / f.name)
    weights = load_file(tiny_checkpoint.path / "model.safetensors")
    save_file({"model.language_model." + k.removeprefix("model."): v for k, v in weights.items()},
              tmp_path / "model.safetensors")
    config = {"model_type": "gemma4", "architectures": ["Gemma4ForConditionalGeneration"],
              "text_config": tiny_checkpoint.config, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    multimodal = load_checkpoint(tmp_path, model_id="mm-layout")
    again = run_oracle(multimodal, BUILTIN_PROMPTS, N)
    assert score_against_oracle([(p.prompt_ids, p.generated_ids) for p in again.prompts], oracle).exact == 8

    # a checkpoint whose decoder weights are absent is refused rather than run on random init:
    # an untied head with no lm_head tensor...
    untied = {**config, "text_config": {**tiny_checkpoint.config, "tie_word_embeddings": False}}
    (tmp_path / "config.json").write_text(json.dumps(untied))
    with pytest.raises(OracleError, match="lm_head.weight"):
        ReferenceModel.load(load_checkpoint(tmp_path, model_id="mm-layout"))
    # ...and a missing layer
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file({k: v for k, v in weights.items() if "layers.3." not in k}, tmp_path / "model.safetensors")
    with pytest.raises(OracleError, match="weights are not in"):
        ReferenceModel.load(load_checkpoint(tmp_path, model_id="mm-layout"))


def test_pipeline_caches_and_reruns_the_oracle(tmp_path):
    quiet = Console(file=io.StringIO())
    build = tmp_path / "build"
    options = BuildOptions(model="tiny", oracle_tokens=4)
    _, first = run_build(options, build, only={"checkpoint", "oracle"}, console=quiet)
    assert [r.status for r in first] == [DONE, DONE]
    manifest = json.loads((build / "build.json").read_text())["steps"]["oracle"]
    assert manifest["details"]["oracle"] == "oracle/oracle.json"
    assert manifest["details"]["prompt_set"] == BUILTIN_PROMPTS.header() and manifest["details"]["max_new_tokens"] == 4
    assert load_oracle(build / "oracle/oracle.json").max_new_tokens == 4

    _, again = run_build(options, build, only={"checkpoint", "oracle"}, console=quiet)
    assert [r.status for r in again] == [SKIPPED, SKIPPED]

    prompts = tmp_path / "mine.yaml"
    prompts.write_text("name: mine\nprompts:\n  - id: hi\n    text: Say hello.\n  - Count to three.\n")
    options.prompts_file = prompts
    _, other = run_build(options, build, only={"oracle"}, console=quiet)
    assert other[0].status == DONE
    written = load_oracle(build / "oracle/oracle.json")
    assert written.prompt_set["name"] == "mine" and [p.id for p in written.prompts] == ["hi", "p1"]
    _, cached = run_build(options, build, only={"oracle"}, console=quiet)
    assert cached[0].status == SKIPPED

    prompts.write_text("prompts: nope\n")
    _, failed = run_build(options, build, only={"oracle"}, console=quiet)
    assert failed[0].status == FAILED and "`prompts` must be a non-empty list" in failed[0].message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("prompts: [a: b: c\n", "not valid YAML"),
        ("- just a list\n", "must be a mapping"),
        ("prompts: []\n", "non-empty list"),
        ("prompts: [Hi]\ntemperature: 0.7\n", "unknown keys ['temperature']"),
        ("chat_template: maybe\nprompts: [Hi]\n", "chat_template"),
        ("prompts:\n  - {id: a, text: ''}\n", "prompts[0].text"),
        ("prompts:\n  - {id: 'a b', text: Hi}\n", "prompts[0].id"),
        ("prompts:\n  - {id: a, text: Hi}\n  - {id: a, text: Ho}\n", "appears twice"),
        ("prompts:\n  - {text: Hi, role: system}\n", "prompts[0] must be"),
    ],
)
def test_bad_prompts_yaml_is_a_named_error(tmp_path, text, needle):
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    with pytest.raises(PromptSetError) as err:
        load_prompt_set(path)
    assert needle in str(err.value) and str(path) in str(err.value) and err.value.hint


def test_prompt_set_sha_tracks_content():
    a = BUILTIN_PROMPTS
    assert load_prompt_set(None) is a and len(a.sha256) == 64
    assert a.header() == {"name": "builtin", "sha256": a.sha256, "count": 8}


def test_cli_oracle_and_score(tmp_path, oracle):
    runner = CliRunner()
    build = tmp_path / "b"
    made = runner.invoke(app, ["oracle", "--model", "tiny", "--out", str(build), "--tokens", str(N)])
    assert made.exit_code == 0, made.output
    assert load_oracle(build / "oracle/oracle.json").prompts[0].generated_ids == oracle.prompts[0].generated_ids

    runs = oracle_runs(oracle)
    good = write_transcript(tmp_path / "good.jsonl", transcript_records([runs, runs]))
    result = runner.invoke(app, ["score", str(good), "--build", str(build)])
    assert result.exit_code == 0, result.output
    assert "16/16 exact vs fp32 oracle" in result.stdout

    result = runner.invoke(app, ["score", str(good), "--against", str(good)])
    assert result.exit_code == 0 and "16/16 token-identical" in result.stdout

    as_json = runner.invoke(app, ["score", str(good), "--build", str(build), "--json"])
    assert as_json.exit_code == 0, as_json.output
    scored = json.loads(as_json.stdout)  # stdout is the one JSON object, no table beside it
    assert scored["passed"] is True and scored["transcript"] == str(good) and scored["determinism"] is None
    assert (scored["oracle"]["exact"], scored["oracle"]["total"], scored["oracle"]["hard_divergences"]) == (16, 16, 0)
    assert {p["verdict"] for p in scored["oracle"]["prompts"]} == {"exact"} and len(scored["oracle"]["prompts"]) == 16
    det = json.loads(runner.invoke(app, ["score", str(good), "--against", str(good), "--json"]).stdout)["determinism"]
    assert (det["identical"], det["total"], det["passed"]) == (16, 16, True)

    hard_p, hard_k, _ = _step_with_margin(oracle, lambda s: max(s, key=lambda x: x[2]))
    runs[hard_p][1][hard_k] = oracle.prompts[hard_p].top_k[hard_k].ids[1]
    bad = write_transcript(tmp_path / "bad.jsonl", transcript_records([runs]))
    result = runner.invoke(app, ["score", str(bad), "--oracle", str(build / "oracle/oracle.json")])
    assert result.exit_code == 1 and "7/8 exact" in result.stdout and "1 hard divergence" in result.stdout
    as_json = runner.invoke(app, ["score", str(bad), "--oracle", str(build / "oracle/oracle.json"), "--json"])
    scored = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and scored["passed"] is False and scored["oracle"]["exact"] == 7
    [diverged] = [p for p in scored["oracle"]["prompts"] if p["verdict"] != "exact"]
    assert (diverged["index"], diverged["divergence"]) == (hard_p, hard_k)
    explained = runner.invoke(app, ["score", str(bad), "--build", str(build), "--model", str(build / "checkpoint")])
    assert explained.exit_code == 1 and "then took the oracle's top-1 at" in explained.stdout


@pytest.mark.parametrize(
    ("mangle", "line", "needle"),
    [
        (lambda lines: lines[:3] + [lines[3][:50]], 4, "truncated"),
        (lambda lines: lines[:2] + [lines[2].replace('"generated_ids": [', '"generated_ids": ["x", ')] + lines[3:], 3,
         "token ids"),
        (lambda lines: lines[:1] + [""] + lines[1:], 2, "blank line"),
    ],
)
def test_malformed_transcript_is_reported_with_its_line(tmp_path, oracle, oracle_path, mangle, line, needle):
    lines = [json.dumps(r, sort_keys=True) for r in transcript_records([oracle_runs(oracle)])]
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join(mangle(lines)) + "\n")
    with pytest.raises(TranscriptError) as err:
        read_transcript(path)
    assert err.value.line == line and needle in str(err.value)
    result = CliRunner().invoke(app, ["score", str(path), "--oracle", str(oracle_path)])
    assert result.exit_code == 2 and f"run.jsonl:{line}:" in result.output.replace("\n", "")


@pytest.mark.parametrize(
    ("mangle", "needle"),
    [
        (None, "no oracle at"),
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: text.replace(ORACLE_SCHEMA, "gemmaios.oracle/0"), "has schema 'gemmaios.oracle/0'"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "decode"}), "incomplete"),
        (lambda text: json.dumps({**json.loads(text), "prompts": [
            {**p, "top_k": p["top_k"][:-1]} for p in json.loads(text)["prompts"]]}), "top-k steps"),
    ],
)
def test_damaged_oracle_file_is_a_named_error(oracle_path, tmp_path, mangle, needle):
    path = tmp_path / "oracle.json"
    if mangle:
        path.write_text(mangle(oracle_path.read_text()))
    with pytest.raises(OracleError, match=needle.replace("(", r"\(")):
        load_oracle(path)


def test_the_packaged_long_prefill_set_is_opt_in_and_over_512_tokens(tiny_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    from gemmaios.oracle.prompts import PACKAGED_PROMPT_SETS
    from gemmaios.oracle.reference import encode_prompt

    long_set = load_prompt_set(Path("long-prefill"))
    assert long_set.name == "long-prefill" and len(long_set.prompts) == 2
    assert load_prompt_set(None).name == "builtin" and len(load_prompt_set(None).prompts) == 8  # unchanged
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint.path)
    lengths = [len(encode_prompt(tok, p, long_set.chat_template)) for p in long_set.prompts]
    assert all(n >= 512 for n in lengths), lengths
    # a file of that name wins over the packaged set; an unknown name says which sets exist
    (tmp_path / "long-prefill").write_text("prompts: [hello]\n")
    assert load_prompt_set(tmp_path / "long-prefill").prompts[0].text == "hello"
    with pytest.raises(PromptSetError) as err:
        load_prompt_set(Path("no-such-set"))
    assert "long-prefill" in err.value.hint and set(PACKAGED_PROMPT_SETS) == {"long-prefill", "long-context"}


def test_the_long_context_probe_crosses_1k_2k_4k_short_to_long(tiny_checkpoint):
    """Issue 27: the packaged probe, counted with a real tokenizer; multi-turn prompts render the whole
    conversation with the checkpoint's own chat template (one <bos>, its framing, the generation prompt)."""
    from transformers import AutoTokenizer

    from gemmaios.oracle.reference import encode_prompt

    probe = load_prompt_set(Path("long-context"))
    assert probe.name == "long-context" and probe.chat_template
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint.path)
    lengths = [len(encode_prompt(tok, p, True)) for p in probe.prompts]
    assert lengths == sorted(lengths), lengths  # short to long: the engine's KV binding only grows
    assert lengths[0] < 64 and any(n > 4096 for n in lengths)
    assert any(1024 < n <= 2048 for n in lengths) and any(2048 < n <= 4096 for n in lengths)
    multi = [p for p in probe.prompts if p.history]
    assert {p.id for p in multi} == {"short-followup", "chat-2.5k"}
    for p in multi:
        messages = [{"role": r, "content": c} for r, c in p.history] + [{"role": "user", "content": p.text}]
        want = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"]
        ids = encode_prompt(tok, p, True)
        assert ids == want and ids.count(tok.bos_token_id) == 1
        rendered = tok.decode(ids)
        assert all(content in rendered for _, content in p.history)
    # a history changes the identity of the set; a set without one keeps its sha256
    flat = PromptSet("x", tuple(Prompt(p.id, p.text) for p in probe.prompts))
    assert flat.sha256 != PromptSet("x", probe.prompts).sha256
    assert load_prompt_set(None).sha256 == PromptSet("builtin", load_prompt_set(None).prompts).sha256


def test_prompt_history_is_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts:\n  - id: a\n    text: hi\n    history: [{role: robot, text: x}]\n")
    with pytest.raises(PromptSetError, match=r"history\[0\]"):
        load_prompt_set(bad)
    bad.write_text("chat_template: false\nprompts:\n  - id: a\n    text: hi\n"
                   "    history: [{role: user, text: x}]\n")
    with pytest.raises(PromptSetError, match="needs `chat_template: true`"):
        load_prompt_set(bad)
