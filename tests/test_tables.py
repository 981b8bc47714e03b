import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from gemmaios.checkpoint import resolve_checkpoint
from gemmaios.pipeline import DONE, NOT_APPLICABLE, SKIPPED, BuildOptions
from gemmaios.steps import run_build
from gemmaios.tables import (
    I8_NAME,
    SCALE_NAME,
    SIDECAR_NAME,
    InsufficientDiskSpace,
    TablesMismatch,
    TablesNotApplicable,
    check_disk_space,
    check_tables,
    compare_to_reference,
    gather,
    hf_per_layer_inputs,
    load_tables,
    open_table_source,
    read_sidecar,
    verify_tables,
    write_tables,
    write_tables_from_source,
)


@pytest.fixture(scope="module")
def written(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("tables")
    return write_tables(tiny_checkpoint, out)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tables_written_per_contract_and_hashes_verify(tiny_checkpoint, written):
    cfg = tiny_checkpoint.text_config
    layers, dim = cfg["num_hidden_layers"], cfg["hidden_size_per_layer_input"]
    name = "model.embed_tokens_per_layer.weight"
    table = load_numpy(tiny_checkpoint.tensor_file(name))[name]
    vocab = table.shape[0]
    assert written.shape == (vocab, layers * dim) and not written.reused

    # Independent recomputation from the library-loaded tensor: the contract's formula exactly.
    expected_scale = np.abs(table).max(axis=1) / np.float32(127)
    expected_i8 = np.rint(table / expected_scale[:, None]).astype(np.int8)
    i8 = np.fromfile(written.i8, np.int8).reshape(vocab, layers * dim)
    scale = np.fromfile(written.scale, "<f4")
    np.testing.assert_array_equal(scale, expected_scale)
    np.testing.assert_array_equal(i8, expected_i8)
    assert np.abs(i8).max() == 127 and i8.min() >= -127

    sidecar = json.loads(written.sidecar.read_text())
    assert sidecar["files"]["i8"]["sha256"] == sha256(written.i8)
    assert sidecar["files"]["scale"]["sha256"] == sha256(written.scale)
    assert sidecar["files"]["i8"]["bytes"] == vocab * layers * dim
    assert sidecar["source"]["tensor"] == name and sidecar["source"]["file"] == "model.safetensors"
    assert sidecar["shape"] == [vocab, layers * dim] and sidecar["embed_scale"]["value"] == pytest.approx(dim**0.5)
    assert check_tables(written.out_dir) == []


def test_gather_matches_hf_model_within_int8_bound(tiny_checkpoint, written):
    from transformers import Gemma4ForCausalLM

    model = Gemma4ForCausalLM.from_pretrained(tiny_checkpoint.path).eval()
    cfg = tiny_checkpoint.text_config
    vocab = written.shape[0]
    ids = [0, vocab - 1, cfg["pad_token_id"], cfg["bos_token_id"], 17, 200, 17]
    with torch.no_grad():
        hf = model.model.get_per_layer_inputs(torch.tensor([ids]))[0].float().numpy()

    tables = load_tables(written.out_dir)
    out = tables.gather(ids)
    assert out.dtype == np.float16 and out.shape == (1, len(ids), cfg["num_hidden_layers"], cfg["hidden_size_per_layer_input"])
    assert gather(written.out_dir, ids[1]).shape == (1, 1, cfg["num_hidden_layers"], cfg["hidden_size_per_layer_input"])
    np.testing.assert_array_equal(gather(written.out_dir, ids[1])[0, 0], out[0, 1])

    report = compare_to_reference(tables, ids, hf, "full HF model")
    assert report.ok, report
    assert report.max_abs_error > 0  # int8 really quantized: the bound is being exercised

    # The build's cheap reference (HF's method on a meta-device model) equals the full model's output.
    np.testing.assert_array_equal(hf_per_layer_inputs(tiny_checkpoint, ids), hf)
    assert verify_tables(tiny_checkpoint, written.out_dir).ok


def test_verification_catches_a_wrong_scale(tiny_checkpoint, written, tmp_path):
    out = tmp_path / "t"
    shutil.copytree(written.out_dir, out)
    scale = np.fromfile(out / SCALE_NAME, "<f4")
    scale[5] *= 1.02  # same size: only the comparison against HF can notice
    scale.tofile(out / SCALE_NAME)
    with pytest.raises(TablesMismatch, match="differ from HF"):
        verify_tables(tiny_checkpoint, out, ids=[0, 5, 9])
    assert any("sha256" in p for p in check_tables(out))


@pytest.mark.parametrize("damage", ["truncate", "flip", "interrupted"])
def test_partial_or_damaged_output_is_detected_and_redone(tiny_checkpoint, written, tmp_path, damage):
    out = tmp_path / "t"
    shutil.copytree(written.out_dir, out)
    good = sha256(out / I8_NAME)
    if damage == "truncate":
        with open(out / I8_NAME, "r+b") as fh:
            fh.truncate(1000)
        assert "bytes" in check_tables(out, hashes=False)[0]
    elif damage == "flip":
        raw = bytearray((out / I8_NAME).read_bytes())
        raw[123] ^= 0x55
        (out / I8_NAME).write_bytes(bytes(raw))
        assert check_tables(out, hashes=False) == [] and "sha256" in check_tables(out)[0]
    else:  # killed before the renames and the sidecar: temp files left, no sidecar
        (out / SIDECAR_NAME).unlink()
        (out / f".{I8_NAME}.tmp").write_bytes(b"\0" * 10)
        assert "missing" in check_tables(out)[0]

    again = write_tables(tiny_checkpoint, out)
    assert not again.reused
    assert {"truncate": "bytes", "flip": "sha256", "interrupted": "missing"}[damage] in again.rewrite_reason
    assert sha256(out / I8_NAME) == good and check_tables(out) == []
    assert not list(out.glob(".*.tmp"))


def test_rerun_reuses_intact_tables(tiny_checkpoint, written):
    before = written.i8.stat().st_mtime_ns
    again = write_tables(tiny_checkpoint, written.out_dir)
    assert again.reused and written.i8.stat().st_mtime_ns == before


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_real_checkpoint_dtypes_quantize_per_contract(tmp_path, dtype):
    layers, dim, vocab = 3, 4, 50
    gen = torch.Generator().manual_seed(7)
    table = (torch.randn(vocab, layers * dim, generator=gen) * torch.rand(vocab, 1, generator=gen)).to(dtype)
    table[3] = 0  # an all-zero row (e.g. pad) must not divide by zero
    name = "model.language_model.embed_tokens_per_layer.weight"
    file = tmp_path / "model.safetensors"
    save_torch({"model.language_model.embed_tokens.weight": torch.zeros(vocab, 2, dtype=dtype), name: table}, str(file))

    source = open_table_source(file, name, num_layers=layers, dim=dim)
    result = write_tables_from_source(source, tmp_path / "out", chunk_bytes=7 * layers * dim)  # several chunks
    rows = table.float()
    scale = rows.abs().amax(dim=1) / 127
    expected = torch.round(rows / torch.where(scale > 0, scale, 1.0)[:, None]).to(torch.int8)
    np.testing.assert_array_equal(np.fromfile(result.scale, "<f4"), scale.numpy())
    np.testing.assert_array_equal(np.fromfile(result.i8, np.int8).reshape(vocab, -1), expected.numpy())
    ple = load_tables(result.out_dir).gather([3])
    assert not ple.any()
    assert read_sidecar(result.out_dir)["source"]["dtype"] == {torch.bfloat16: "BF16", torch.float16: "F16",
                                                              torch.float32: "F32"}[dtype]


def test_disk_space_is_checked_up_front(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(InsufficientDiskSpace, match=r"need .* only .* is free"):
        check_disk_space(tmp_path / "not-yet", free + 10**15)
    check_disk_space(tmp_path, 1)


@pytest.fixture(scope="module")
def checkpoint_without_table(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint minus its per-layer table, as a 12B/31B-style folder."""
    folder = tmp_path_factory.mktemp("no-ple") / "ckpt"
    shutil.copytree(tiny_checkpoint.path, folder)
    weights = load_numpy(folder / "model.safetensors")
    del weights["model.embed_tokens_per_layer.weight"]
    save_numpy(weights, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size_per_layer_input"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_checkpoint_without_table_is_not_applicable(checkpoint_without_table, tmp_path):
    ckpt = resolve_checkpoint(str(checkpoint_without_table))
    with pytest.raises(TablesNotApplicable, match="no per-layer embeddings"):
        write_tables(ckpt, tmp_path / "t")
    ctx, reports = run_build(BuildOptions(model=str(checkpoint_without_table)), tmp_path / "build",
                             only={"checkpoint", "tables"})
    status = {r.name: r for r in reports}
    assert status["checkpoint"].status == DONE
    assert status["tables"].status == NOT_APPLICABLE and "no per-layer embeddings" in status["tables"].message
    assert not (ctx.build_dir / "tables").exists()


def test_pipeline_step_records_details_and_skips_on_rerun(tmp_path):
    build = tmp_path / "build"
    ctx, reports = run_build(BuildOptions(model="tiny"), build, only={"checkpoint", "tables"})
    assert [(r.name, r.status) for r in reports] == [("checkpoint", DONE), ("tables", DONE)]
    record = ctx.manifest.get("tables")
    details = record.details
    assert {details.i8, details.scale, details.sidecar} == {
        "tables/embed_per_layer.i8", "tables/embed_per_layer.scale.f32", "tables/embed_per_layer.json"}
    assert details.shape == [384, 96] and details.verification["ok"]
    assert 0 in details.verification["ids"] and 383 in details.verification["ids"]
    assert set(record.outputs) == {details.i8, details.scale, details.sidecar}

    _, again = run_build(BuildOptions(model="tiny"), build, only={"checkpoint", "tables"})
    assert [r.status for r in again] == [SKIPPED, SKIPPED]

    with open(build / details.i8, "r+b") as fh:  # damaged after a finished build
        fh.truncate(10)
    _, third = run_build(BuildOptions(model="tiny"), build, only={"checkpoint", "tables"})
    assert third[1].status == DONE and check_tables(build / "tables") == []


def test_interrupted_write_keeps_previous_tables_and_leaves_no_temps(tiny_checkpoint, written, tmp_path):
    out = tmp_path / "t"
    shutil.copytree(written.out_dir, out)
    before = {p.name: sha256(p) for p in out.iterdir()}
    chunks = []

    def interrupt_after_two_chunks(rows):
        chunks.append(rows)
        if len(chunks) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_tables(tiny_checkpoint, out, progress=interrupt_after_two_chunks, reuse=False, chunk_bytes=4096)
    assert {p.name: sha256(p) for p in out.iterdir()} == before  # nothing half-written took their place
    assert check_tables(out) == []

    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        chunks.clear()
        write_tables(tiny_checkpoint, fresh, progress=interrupt_after_two_chunks, chunk_bytes=4096)
    assert list(fresh.iterdir()) == [] and check_tables(fresh)


def test_bf16_checkpoint_matches_hf_in_bf16(tiny_checkpoint, tmp_path):
    """Real checkpoints are bf16: the bf16 read path, HF in bf16 and the bound, at D=16 (sqrt exact)."""
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    from gemmaios.tiny import tiny_text_config_kwargs

    folder = tmp_path / "bf16"
    torch.manual_seed(3)
    config = Gemma4TextConfig(**{**tiny_text_config_kwargs(), "hidden_size_per_layer_input": 16})
    model = Gemma4ForCausalLM(config).to(torch.bfloat16).eval()
    with torch.no_grad():
        model.model.embed_tokens_per_layer.weight.normal_(0, 0.05)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint.path / name, folder / name)
    ckpt = resolve_checkpoint(str(folder))

    result = write_tables(ckpt, tmp_path / "t")
    assert read_sidecar(result.out_dir)["source"]["dtype"] == "BF16"
    ids = [0, 383, 2, 50, 51]
    loaded = Gemma4ForCausalLM.from_pretrained(folder).eval()
    assert loaded.dtype == torch.bfloat16
    with torch.no_grad():
        hf = loaded.model.get_per_layer_inputs(torch.tensor([ids]))[0].float().numpy()
    np.testing.assert_array_equal(hf_per_layer_inputs(ckpt, ids), hf)
    report = compare_to_reference(load_tables(result.out_dir), ids, hf, "bf16 HF model")
    assert report.ok and report.max_abs_error > 0
    assert verify_tables(ckpt, result.out_dir).ok
