"""What a converted program runs for attention, and the check that every full layer uses the kernel."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GemmaiosError
from .configs import full_attention_layers, full_head_dim, text_config_dict
from .spec import DEFAULT_VARIANT, KERNEL_SPECS, KernelSourceError, kernel_spec

_METAL_OP_RE = re.compile(
    r'coreai\.metal4_kernel kernel_args\([^)]*\).*?\{kernel_name = "(?P<name>\w+)".*?\}\s*:\s*\(tensor<(?P<q>[0-9x]+)x(?P<dt>\w+?)[,>]'
)
_SDPA_GRAPH_RE = re.compile(
    r"coreai\.graph [^@]*@(?P<graph>[\w.$-]+)\(%arg0: tensor<(?P<q>[0-9x]+)x\w+>[^\n]*"
    r'composite_declaration<"scaled_dot_product_attention"'
)
_INVOKE_RE = re.compile(r"coreai\.invoke @(?P<graph>[\w.$-]+)\(")


@dataclass
class AttentionSummary:
    """Attention ops of a converted program: our kernels and the stock SDPA, with their query shapes."""

    kernels: list[dict] = field(default_factory=list)  # {"entry", "query_shape"}
    stock_sdpa: list[dict] = field(default_factory=list)  # {"graph", "query_shape"}

    def as_dict(self) -> dict:
        return {"flash_decode_kernels": self.kernels, "stock_sdpa": self.stock_sdpa}


def attention_summary(program_or_text: Any) -> AttentionSummary:
    """Find the flash-decode kernel ops and stock SDPA calls in an ``AIProgram`` (or its MLIR text)."""
    text = program_or_text if isinstance(program_or_text, str) else str(program_or_text)
    summary = AttentionSummary()
    entries = {spec.entry for spec in KERNEL_SPECS.values()}
    for op in _METAL_OP_RE.finditer(text):
        name = op["name"]
        entry = name if name in entries else re.sub(r"_[a-z]{8}$", "", name)
        if entry in entries:
            summary.kernels.append({"entry": entry, "query_shape": [int(x) for x in op["q"].split("x")]})
    sdpa_graphs = {g["graph"]: [int(x) for x in g["q"].split("x")] for g in _SDPA_GRAPH_RE.finditer(text)}
    for call in _INVOKE_RE.finditer(text):
        if call["graph"] in sdpa_graphs:
            summary.stock_sdpa.append({"graph": call["graph"], "query_shape": sdpa_graphs[call["graph"]]})
    return summary


class KernelPlacementError(GemmaiosError):
    """A converted program does not run the flash-decode kernel on exactly the full layers."""


def check_full_layers_use_kernel(
    summary: AttentionSummary, config: Any, kernel: str = DEFAULT_VARIANT
) -> None:
    """Raise unless the (single decode function) program runs ``kernel`` once per full layer and
    no stock SDPA with the full layers' head dim is left."""
    cfg = text_config_dict(config)
    n_full = len(full_attention_layers(cfg))
    head_dim = full_head_dim(cfg)
    expected = {"entry": kernel_spec(kernel).entry, "query_shape": [int(cfg["num_attention_heads"]), head_dim]}
    problems = []
    if summary.kernels != [expected] * n_full:
        problems.append(f"expected {n_full} x {expected}, found {summary.kernels}")
    stock_full = [s for s in summary.stock_sdpa if s["query_shape"][-1] == head_dim]
    if stock_full:
        problems.append(f"stock SDPA still runs with head dim {head_dim}: {stock_full}")
    if problems:
        raise KernelPlacementError(
            "flash-decode kernel placement is wrong: " + "; ".join(problems),
            hint="every full layer's decode attention must call gemmaios.kernels.full_attention_sdpa, and the "
            "converter needs register_flash_decode_kernels() before add_exported_program",
        )


def bundle_suffix(kernel: str | None) -> str:
    """Bundle-name suffix of a flash-decode build, as the shipped bundles name it: _msdpa / _msdpa_g8."""
    if kernel is None:
        return ""
    return "_msdpa" + ("" if kernel_spec(kernel).splits == 1 else f"_g{kernel_spec(kernel).splits}")


def asset_attention_summary(aimodel: Path) -> AttentionSummary:
    """:func:`attention_summary` of a saved ``.aimodel`` (reads its program bytecode)."""
    from coreai.authoring.asset import AIProgram

    files = sorted(Path(aimodel).glob("*.mlirb"))
    if not files:
        raise KernelSourceError(
            f"{aimodel} holds no program bytecode (*.mlirb)",
            hint="pass the .aimodel folder written by convert",
        )
    return attention_summary("\n".join(program_text(AIProgram._load_bytecode(f)) for f in files))


def program_text(program: Any) -> str:
    """An AIProgram's MLIR text with weight constants elided: a 31B asset printed in full is tens of
    GB of hex. Falls back to ``str`` where coreai's module internals differ."""
    module = getattr(getattr(program, "_module", None), "_mlir_module", None)
    if module is None:
        return str(program)
    return module.operation.get_asm(large_elements_limit=16, large_resource_limit=64, assume_verified=True)
