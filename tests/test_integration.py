"""Cross-step checks: the converted module against the oracle, and the whole tiny build."""

import json

import pytest
import torch
from devicebuild import copy_build

from gemmaios.decode_model import Gemma4Decode
from gemmaios.oracle import BUILTIN_PROMPTS, run_oracle, score_against_oracle
from gemmaios.parity import PleRows, decode_steps
from gemmaios.pipeline import BuildOptions
from gemmaios.steps import run_build

# The oracle's full decode: the trained tiny model's greedy margins stay real for all of it.
ORACLE_TOKENS = 32


def test_converted_fp32_module_scores_n_of_n_against_the_oracle(tiny_checkpoint, tmp_path):
    oracle = run_oracle(tiny_checkpoint, BUILTIN_PROMPTS, ORACLE_TOKENS, out=tmp_path / "oracle.json")
    model = Gemma4Decode(tiny_checkpoint, quant="fp16", dtype=torch.float32).eval()
    ple = PleRows(tiny_checkpoint, model.spec, exact=True)
    runs = []
    for prompt in oracle.prompts:
        generated, _ = decode_steps(model, prompt.prompt_ids, ORACLE_TOKENS, ple=ple)
        runs.append((prompt.prompt_ids, generated))
    score = score_against_oracle(runs, oracle)
    assert score.exact == len(BUILTIN_PROMPTS.prompts) == 8, score.summary
    assert score.passed

    # The same judge catches a run that is wrong at a confident step.
    first = oracle.prompts[0]
    broken = list(runs[0][1])
    broken[3] = (broken[3] + 1) % tiny_checkpoint.text_config["vocab_size"]
    bad = score_against_oracle([(first.prompt_ids, broken), *runs[1:]], oracle)
    assert bad.exact == 7
    assert bad.prompts[0].divergence == 3 and bad.prompts[0].got == broken[3]


@pytest.mark.full  # torch decodes 8 prompts x 32 tokens; every make-test build's gates hold its bundle to the oracle
@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_quantized_module_decodes_the_oracle_tokens(tiny_checkpoint, quant):
    """The bundle's weights (int8/int4 linears and head, int8 per-layer table), free-running
    greedy: token-exact with the fp32 oracle on every built-in prompt, like a QAT checkpoint."""
    oracle = run_oracle(tiny_checkpoint, BUILTIN_PROMPTS, ORACLE_TOKENS)
    model = Gemma4Decode(tiny_checkpoint, quant=quant, dtype=torch.float32).eval()
    table = PleRows(tiny_checkpoint, model.spec, exact=False)
    runs = [(p.prompt_ids, decode_steps(model, p.prompt_ids, ORACLE_TOKENS, ple=table)[0]) for p in oracle.prompts]
    score = score_against_oracle(runs, oracle, near_tie_margin=0)
    assert score.exact == 8, score.summary


def test_tiny_build_end_to_end_then_fully_skipped(tiny_build, tmp_path):
    status = tiny_build.statuses  # the session's `gemmaios build --model tiny`, first run
    # no Mac here: compile waits for one, and the iPhone app refuses the un-compiled bundle
    assert status == {"checkpoint": "done", "tables": "done", "convert": "done", "oracle": "done",
                      "compile": "pending", "app": "pending", "sign": "pending"}
    assert "not an AOT .aimodelc for h18p" in tiny_build.messages["app"]
    assert "xcrun coreai-build compile" in tiny_build.commands["app"]
    build = copy_build(tiny_build.path, tmp_path / "b")
    manifest = json.loads((build / "build.json").read_text())
    convert = manifest["steps"]["convert"]["details"]
    bundle = build / convert["bundle_dir"]
    metadata = json.loads((bundle / "metadata.json").read_text())
    assert metadata["assets"]["main"].endswith(".aimodel")
    assert "xcrun coreai-build compile" in manifest["steps"]["compile"]["details"]["command"]

    # `gemmaios app --allow-uncompiled`: the explicit override renders it
    allowed = BuildOptions(model="tiny", extra={"app": {"allow_uncompiled": True}})
    _, reports = run_build(allowed, build)
    status = {r.name: r.status for r in reports}
    assert status == {"checkpoint": "skipped", "tables": "skipped", "convert": "skipped", "oracle": "skipped",
                      "compile": "pending", "app": "done", "sign": "pending"}
    sign = next(r for r in reports if r.name == "sign")  # no Mac here: signing waits for one, naming xcodebuild
    assert "xcodebuild" in sign.command
    entitlements = list((build / "app").rglob("*.entitlements"))
    assert entitlements and "increased-memory-limit" in entitlements[0].read_text()

    _, again = run_build(allowed, build)
    assert {r.name: r.status for r in again} == {**status, "app": "skipped"}
