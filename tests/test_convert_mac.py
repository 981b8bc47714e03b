"""`convert --target mac`: tiny 12B/31B-shaped models export with the flash-decode kernel on their full layers."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from gemmaios import kernels as K
from gemmaios.checkpoint import load_checkpoint
from gemmaios.cli import app
from gemmaios.convert import (
    ConvertError,
    ConvertStep,
    KernelGateFailed,
    TargetNotSupported,
    convert_checkpoint,
    kernel_gate,
    resolve_flash_decode,
)
from gemmaios.pipeline import BuildContext, BuildOptions, fingerprint
from gemmaios.steps import default_build_dir


def tiny(tiny_dense_dirs, variant):
    # model_id "tiny": random weights, so gate 2 uses the tiny model's logit-error bound.
    return load_checkpoint(tiny_dense_dirs[variant], model_id="tiny")


def convert_for_mac(tiny_dense_dirs, mac_12b_build, tmp_path, variant: str, kernel: str | None) -> dict:
    """12B-shaped through the build (options → convert step → build.json: the session's mac_12b_build),
    31B through the API."""
    if variant == "12b":
        assert kernel is None  # the session's build takes the default kernel
        details = json.loads((mac_12b_build / "build.json").read_text())["steps"]["convert"]["details"]
        # The bundle-run gate cannot pass a kernel bundle on Linux, and says so instead of passing.
        assert details["gates"]["bundle_run"]["status"] == "not run", details["gates"]["bundle_run"]
        return details | {"aimodel": mac_12b_build / details["aimodel"], "metadata": mac_12b_build / details["metadata"]}
    result = convert_checkpoint(tiny(tiny_dense_dirs, variant), tmp_path, "int8", "provider", 64, target="mac", kernel=kernel)
    return vars(result)


@pytest.mark.full
@pytest.mark.parametrize(
    "variant,kernel,entry,name,global_kv_heads",
    [
        # the default variant; a tiny folder is named after itself, like a real checkpoint folder
        ("12b", None, "gemmaios_flash_decode_sdpa_g8", "gemma4_12b_decode_int8_msdpa_g8", 1),
        ("31b", "simple", "gemmaios_flash_decode_sdpa", "gemma4_tiny_decode_int8_msdpa", 4),
    ],
)
def test_mac_conversion_runs_the_kernel_on_exactly_the_full_layers(
    tiny_dense_dirs, mac_12b_build, tmp_path, variant, kernel, entry, name, global_kv_heads
):
    from coreai.authoring.asset import AIModelAsset, AIProgram

    config = tiny(tiny_dense_dirs, variant).text_config
    heads = config["num_attention_heads"]
    result = convert_for_mac(tiny_dense_dirs, mac_12b_build, tmp_path, variant, kernel)

    assert result["name"] == name
    assert (result["target"], result["kernel"]) == ("mac", kernel or "g8")
    # Gate 1 ran the module the converter exports (full layers through the kernel's hook).
    gates = result["gates"]
    assert gates["fp32_greedy"]["passed"] and gates["fp32_greedy"]["token_matches"] == 128
    assert gates["quantized"]["passed"]

    # The saved asset, read back: one kernel per full layer with the [H, 512] query, no stock SDPA at 512.
    summary = K.asset_attention_summary(result["aimodel"])
    assert summary.kernels == [{"entry": entry, "query_shape": [heads, 512]}] * 2
    assert not [s for s in summary.stock_sdpa if s["query_shape"][-1] == 512]
    ops = dict(re.findall(r"\((\w+), (\d+)\)", str(AIModelAsset.load(result["aimodel"]).summary())))
    assert int(ops["metal4_kernel"]) == 2  # Core AI's own op count agrees
    # The kernel reads the layer's valid keys only: the global KV heads x the dynamic length x 512.
    text = K.program_text(AIProgram._load_bytecode(result["aimodel"] / "main.mlirb"))
    assert f"tensor<{global_kv_heads}x?x512xf16" in text
    gate = gates["flash_decode"]
    assert gate["passed"] and gate["full_layers"] == [5, 11] and gate["attention"] == summary.as_dict()

    meta = json.loads(result["metadata"].read_text())["gemmaios"]
    assert meta["target"] == "mac"
    assert meta["flash_decode"] == {
        "kernel": kernel or "g8",
        "entry": entry,
        "full_layers": [5, 11],
        "attention": summary.as_dict(),
    }
    assert meta["gates"]["flash_decode"]["passed"]

    # The gate fails, named, when the asset runs another variant than the one asked for.
    other = "simple" if (kernel or "g8") == "g8" else "g8"
    with pytest.raises(KernelGateFailed, match="placement is wrong"):
        kernel_gate(result["aimodel"], config, other)


def test_12b_31b_for_iphone_are_refused_with_a_pointer_to_the_mac_target(tiny_dense_dirs, tmp_path):
    for variant in ("12b", "31b"):
        with pytest.raises(TargetNotSupported, match="--target mac"):
            convert_checkpoint(tiny(tiny_dense_dirs, variant), tmp_path, "int8", target="ios")
    assert not list(tmp_path.iterdir())  # refused before any work
    # Through the CLI: the convert step fails with that message.
    result = CliRunner().invoke(
        app, ["convert", "--model", str(tiny_dense_dirs["12b"]), "--target", "ios", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 1
    record = json.loads((tmp_path / "b" / "build.json").read_text())["steps"]["convert"]
    assert record["status"] == "failed" and "cannot target iPhone" in record["message"]
    assert "--target mac" in record["message"]


def test_target_and_kernel_options_are_checked(tiny_dense_dirs, tiny_checkpoint):
    ckpt12 = tiny(tiny_dense_dirs, "12b")
    assert resolve_flash_decode(ckpt12, "mac") == "g8"
    assert resolve_flash_decode(ckpt12, "mac", "simple") == "simple"
    assert resolve_flash_decode(tiny_checkpoint, "mac") is None  # E4B-shaped: the stock graph
    assert resolve_flash_decode(tiny_checkpoint, "ios") is None
    with pytest.raises(ConvertError, match="--target"):
        resolve_flash_decode(ckpt12, "android")
    with pytest.raises(ConvertError, match="--kernel"):
        resolve_flash_decode(ckpt12, "mac", "g4")
    with pytest.raises(ConvertError, match="only applies to --target mac"):
        resolve_flash_decode(tiny_checkpoint, "ios", "g8")
    bad = CliRunner().invoke(app, ["convert", "--model", "tiny", "--target", "mac", "--kernel", "g4"])
    assert bad.exit_code == 2 and "--kernel" in bad.output


def test_target_and_kernel_change_the_convert_fingerprint_and_build_folder(tiny_dense_dirs, tmp_path):
    model = str(tiny_dense_dirs["12b"])
    prints, folders = set(), set()
    for target, kernel in (("mac", None), ("mac", "g8"), ("mac", "simple")):
        options = BuildOptions(model=model, quant="int8", target=target, kernel=kernel)
        inputs = ConvertStep().inputs(BuildContext(tmp_path / f"{target}-{kernel}", options))
        assert (inputs["target"], inputs["kernel"]) == (target, kernel or "g8")
        prints.add(fingerprint(inputs))
        folders.add(default_build_dir(options))
    assert len(prints) == 2  # the default kernel is g8: same conversion, same fingerprint
    assert len(folders) == 3 and all("-mac-" in str(f) for f in folders)
    assert "-mac-" not in str(default_build_dir(BuildOptions(model=model)))
