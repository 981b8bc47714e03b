"""Prefill in chunks: `prefill_C` functions beside `main`, bit-identical to `main` under Core AI's runtime.

The builds are the session's (tests/conftest.py): one gated `gemmaios convert`-step build (int4,
ladder 16,8, HF parity gates including the chunked walk), one fp16 ladder bundle and one int4
main-only bundle for the size comparison. Every bundle carries both chunk sizes, and the runtime gate walks each
size alone and the ladder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gemmaios import hostrun, parity
from gemmaios.cli import app
from gemmaios.convert import (
    AssetGateFailed,
    PrefillChunkError,
    asset_gate,
    convert_checkpoint,
    resolve_prefill_chunks,
)
from gemmaios.decode_model import Gemma4Decode
from gemmaios.oracle import ORACLE_FILE, load_oracle

LADDER = "16,8"


@pytest.fixture(scope="module")
def gated_build(prefill_ladder_build):
    return prefill_ladder_build


@pytest.fixture(scope="module")
def tables_dir(gated_build):
    return gated_build / "tables"


@pytest.fixture(scope="module")
def oracle_prompts(gated_build):
    return [(p.id, p.prompt_ids) for p in load_oracle(gated_build / ORACLE_FILE).prompts]


@pytest.fixture(scope="module")
def fp16_bundle(prefill_ladder_fp16):
    return prefill_ladder_fp16


def bundle_of(build_dir: Path) -> Path:
    return hostrun.find_bundle(build_dir)


def metadata(bundle_dir: Path) -> dict:
    return json.loads((Path(bundle_dir) / "metadata.json").read_text())


# ----------------------------------------------------------------------------- options


def test_prefill_chunk_option_is_validated():
    assert resolve_prefill_chunks(None) == resolve_prefill_chunks("0") == resolve_prefill_chunks(0) == ()
    assert resolve_prefill_chunks("8") == (8,)
    assert resolve_prefill_chunks("8,16") == (16, 8)
    for bad, words in (("32", "not supported"), ("12", "not supported"), ("8,8", "repeats"), ("x", "ladder"),
                       ("0,8", "not supported")):
        with pytest.raises(PrefillChunkError, match=words) as info:
            resolve_prefill_chunks(bad)
        assert info.value.hint


def test_chunk_must_fit_the_context_and_the_stock_attention(tiny_checkpoint, tmp_path):
    with pytest.raises(PrefillChunkError, match="does not fit a --max-context of 16"):
        convert_checkpoint(tiny_checkpoint, tmp_path, "fp16", "provider", 16, gates=False, prefill_chunks=16)
    assert not any(tmp_path.iterdir()), "a refused option must not start a conversion"


def test_cli_rejects_an_unsupported_chunk(tmp_path):
    result = CliRunner().invoke(app, ["convert", "--model", "tiny", "--out", str(tmp_path), "--prefill-chunk", "32"])
    assert result.exit_code == 2
    assert "--prefill-chunk 32 is not supported" in result.output
    assert not (tmp_path / "build.json").exists()


# ----------------------------------------------------------------------------- eager module


def test_eager_chunk_path_matches_the_one_token_path(tiny_checkpoint):
    """fp32 eager: a chunked prefill leaves the caches and last logits of the one-token walk (to fp32
    rounding: torch's matmuls order sums by shape; the runtime bundles below are bit-identical)."""
    model = Gemma4Decode(tiny_checkpoint, quant="fp16", dtype=torch.float32).eval()
    ple = parity.PleRows(tiny_checkpoint, model.spec, exact=True)
    ids = parity.encode_prompts(tiny_checkpoint, (parity.LONG_GATE_PROMPT,))[0]
    assert len(ids) > 2 * 16 + model.spec.sliding_window

    def walk(sizes):
        key, value = model.new_cache(len(ids) + 1)
        pos, out = 0, None
        with torch.no_grad(), parity.small_model_threads(model.spec.hidden_size):
            while pos < len(ids):
                rows = next((c for c in sizes if pos + c <= len(ids)), 1)
                batch = ids[pos : pos + rows]
                out = model(torch.tensor([batch], dtype=torch.int32), torch.arange(pos + rows, dtype=torch.int32)[None],
                            torch.cat([ple(t) for t in batch], dim=1), key, value)
                pos += rows
        return out, key, value

    plain = walk(())
    for sizes in ((16,), (8,), (16, 8)):
        chunked = walk(sizes)
        assert chunked[0].shape == (1, 1, model.spec.vocab_size)
        for a, b in zip(plain, chunked, strict=True):
            torch.testing.assert_close(a, b, atol=5e-4, rtol=0)
    # A wrong mask is not within rounding: drop the sliding window from the chunk path.
    window = model.spec.sliding_window
    model.spec.sliding_window = 10_000
    try:
        broken = walk((16,))
    finally:
        model.spec.sliding_window = window
    assert float((broken[0] - plain[0]).abs().max()) > 1e-2


# ----------------------------------------------------------------------------- the gated build


@pytest.mark.full
def test_build_records_both_functions_and_all_gates(gated_build, oracle_prompts):
    bundle = bundle_of(gated_build)
    meta = metadata(bundle)
    assert meta["language"]["function_map"] == {"main": ["main"], "prefill": ["prefill_16", "prefill_8"]}
    assert meta["language"]["max_context_length"] == 256  # the explicit --max-context is honoured
    facts = meta["gemmaios"]
    assert facts["prefill"]["chunks"] == [16, 8]
    fn = facts["prefill"]["functions"]["prefill_16"]
    assert [i["shape"] for i in fn["inputs"]] == [[1, 16], [1, None], [1, 16, 12, 8]]
    assert fn["outputs"] == [{"name": "logits", "dtype": "Float16", "shape": [1, 1, 384]}]
    assert fn["states"] == facts["states"]
    assert [i["shape"] for i in facts["inputs"]] == [[1, 1], [1, None], [1, 1, 12, 8]]  # main unchanged
    gates = facts["gates"]
    chunked = gates["fp32_greedy_chunked"]
    assert chunked["passed"] and chunked["gate"] == "fp32_greedy_chunked_16_8"
    assert chunked["token_matches"] == chunked["prompts"] * chunked["steps"]
    assert max(chunked["prompt_tokens"]) > 2 * 16 + 8  # several chunks and past the sliding window
    assert chunked["max_abs_logit_error"] <= parity.FP32_LOGIT_TOLERANCE
    run = gates["prefill_run"]
    assert run["status"] == "passed" and run["prompt_count"] == len(oracle_prompts) + 2  # + long, + exact-chunks
    assert run["long_prompts"] >= 1
    assert {w["route"] for w in run["walks"]} == {"prefill_16", "prefill_8", "prefill_16+prefill_8"}
    assert all(w["bit_identical"] and set(w["max_abs_delta"].values()) == {0.0} for w in run["walks"])
    manifest = json.loads((gated_build / "build.json").read_text())
    assert manifest["steps"]["convert"]["inputs"]["prefill_chunks"] == [16, 8]
    assert "prefill_16+prefill_8" in manifest["steps"]["convert"]["message"]


@pytest.mark.full
def test_weights_are_shared_not_copied(gated_build, int4_main_only_256):
    with_prefill = metadata(bundle_of(gated_build))["gemmaios"]["gates"]["asset"]
    alone = int4_main_only_256.gates["asset"]
    # The same Int4 and Float16 element counts as the single-function asset: one copy of the weights.
    assert with_prefill["storage_types"]["Int4"] == alone["storage_types"]["Int4"]
    assert with_prefill["storage_types"]["Float16"] == alone["storage_types"]["Float16"]
    assert with_prefill["weights_shared"]["stored_float16_elements"] == alone["storage_types"]["Float16"]
    added = with_prefill["asset_bytes"] - alone["asset_bytes"]
    weights = alone["stored_bytes"]
    assert 0 < added < 2 * alone["asset_bytes"] - 2 * weights  # graphs only: less than two more main graphs
    print(f"\nint4 tiny: main only {alone['asset_bytes']} B, + prefill_16 + prefill_8 {with_prefill['asset_bytes']} B "
          f"(+{added} B; Int4 weights {weights} B stored once)")


@pytest.mark.full
def test_asset_gate_catches_a_missing_function_and_copied_weights(gated_build, int4_main_only_256):
    aimodel = int4_main_only_256.aimodel
    names = {"inputs": ("input_ids", "position_ids", "ple_tokens"), "states": ("keyCache", "valueCache"),
             "outputs": ("logits",)}
    model_elements = {"Int4": {"elements": int4_main_only_256.gates["asset"]["expected_elements"], "offset_allowance": 768}}
    with pytest.raises(AssetGateFailed, match=r"expected \['main', 'prefill_8'\]"):
        asset_gate(aimodel, names, model_elements, "int4", (8,))
    bundle = bundle_of(gated_build)
    ladder = next(bundle.glob("*.aimodel"))
    with pytest.raises(AssetGateFailed, match="do not share their weights"):
        # As if one copy of the fp16 tensors were half what the asset stores.
        stored = metadata(bundle)["gemmaios"]["gates"]["asset"]["storage_types"]["Float16"]
        asset_gate(ladder, names, model_elements, "int4", (16, 8), float16_elements=stored // 2)
    with pytest.raises(AssetGateFailed, match="Int4 storage holds"):
        halved = {"Int4": {"elements": model_elements["Int4"]["elements"] // 2, "offset_allowance": 768}}
        asset_gate(ladder, names, halved, "int4", (16, 8))


# ----------------------------------------------------------------------------- runtime bit-identity


@pytest.mark.full
@pytest.mark.parametrize("chunk", [8, 16])
def test_int4_and_fp16_chunked_walks_are_bit_identical(gated_build, fp16_bundle, tables_dir, oracle_prompts, chunk):
    for bundle in (bundle_of(gated_build), fp16_bundle.bundle_dir):
        with hostrun.BundleRunner(bundle, tables_dir) as runner:
            assert runner.prefill_chunks == [16, 8]
            ids = hostrun.long_prefill_prompt([p for _, p in oracle_prompts], [chunk], 8, 256)
            plain = runner.prefill_snapshot(ids, len(ids) + 1, chunked=False)
            chunked = runner.prefill_snapshot(ids, len(ids) + 1, chunked=True, sizes=[chunk])
            assert chunked["calls"].count(chunk) >= 3 and plain["calls"] == [1] * len(ids)
            for key in ("logits", "keyCache", "valueCache"):
                assert np.array_equal(plain[key], chunked[key]), (bundle.name, key)
            # Greedy decoding after a chunked prefill gives the main-only walk's tokens.
            first = oracle_prompts[0][1]
            a = runner.generate(first, 6)
            b = runner.generate(first, 6, chunked=True)
            assert a.generated_ids == b.generated_ids
    assert fp16_bundle.gates["prefill_run"]["status"] == "passed"


@pytest.mark.full
def test_a_wrong_chunk_graph_fails_the_runtime_gate(tiny_checkpoint, tmp_path, tables_dir, oracle_prompts, monkeypatch):
    """A prefill graph that ignores the sliding window inside the chunk is caught, and no bundle is left."""
    from gemmaios import decode_model

    real = decode_model.DecoderLayer.forward_chunk

    def no_window(self, *args):
        window = self.spec.sliding_window
        self.spec.sliding_window = 10_000
        try:
            return real(self, *args)
        finally:
            self.spec.sliding_window = window

    monkeypatch.setattr(decode_model.DecoderLayer, "forward_chunk", no_window)
    check = hostrun.build_prefill_check(None, tables_dir, prompts=oracle_prompts[:1])
    with pytest.raises(hostrun.PrefillGateFailed) as info:
        convert_checkpoint(tiny_checkpoint, tmp_path / "bundle", "int8", "provider", 128, gates=False,
                           prefill_chunks="16", prefill_check=check)
    assert "differs from the main-only walk" in str(info.value) and info.value.prompt
    assert not any((tmp_path / "bundle").glob("gemma4_*")), "a failed gate must leave no bundle behind"
