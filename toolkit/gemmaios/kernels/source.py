"""The .metal source (kernels/flash_decode_sdpa.metal): helpers + one body per [[kernel]], parsed and checked
against the registered specs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .spec import KernelSourceError, KernelSpec

KERNEL_SOURCE = Path(__file__).resolve().parents[3] / "kernels" / "flash_decode_sdpa.metal"


_HELPERS_RE = re.compile(r"// gemmaios:helpers:begin\n(.*?)// gemmaios:helpers:end\n", re.S)
_KERNEL_RE = re.compile(r"\[\[kernel\]\]\s+void\s+(\w+)\s*\(")
_PARAM_RE = re.compile(r"^(?P<type>.+?)\s+(?P<name>\w+)\s+\[\[(?P<attr>[^\]]+)\]\]$")


@dataclass(frozen=True)
class MetalParam:
    type: str
    name: str
    attr: str  # "buffer(0)", "thread_position_in_threadgroup", ...


@dataclass(frozen=True)
class MetalKernel:
    entry: str
    params: tuple[MetalParam, ...]
    body: str


@dataclass(frozen=True)
class MetalSource:
    path: Path
    helpers: str
    kernels: dict[str, MetalKernel] = field(default_factory=dict)


def _split_top_level(text: str) -> list[str]:
    """Split a parameter list on commas outside <...>, (...) and [[...]]."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def _matching(text: str, open_at: int, opener: str, closer: str) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == opener:
            depth += 1
        elif text[i] == closer:
            depth -= 1
            if depth == 0:
                return i
    raise KernelSourceError(f"unbalanced {opener}{closer} in the Metal source", hint="fix the .metal file")


def parse_metal_source(text: str, path: Path = KERNEL_SOURCE) -> MetalSource:
    helpers = _HELPERS_RE.search(text)
    if helpers is None:
        raise KernelSourceError(
            f"{path}: no `// gemmaios:helpers:begin` ... `// gemmaios:helpers:end` block",
            hint="the helpers shared by the kernels must sit between those two marker lines",
        )
    kernels: dict[str, MetalKernel] = {}
    for match in _KERNEL_RE.finditer(text):
        open_paren = match.end() - 1
        close_paren = _matching(text, open_paren, "(", ")")
        open_brace = text.index("{", close_paren)
        close_brace = _matching(text, open_brace, "{", "}")
        params = []
        for raw in _split_top_level(text[open_paren + 1 : close_paren]):
            pm = _PARAM_RE.match(raw)
            if pm is None:
                raise KernelSourceError(f"{path}: cannot read kernel parameter {raw!r} of {match.group(1)}")
            params.append(MetalParam(pm["type"], pm["name"], pm["attr"].strip()))
        kernels[match.group(1)] = MetalKernel(
            match.group(1), tuple(params), text[open_brace + 1 : close_brace]
        )
    return MetalSource(path=path, helpers=helpers.group(1), kernels=kernels)


def load_metal_source(path: Path = KERNEL_SOURCE) -> MetalSource:
    if not path.is_file():
        raise KernelSourceError(
            f"flash-decode kernel source {path} is missing",
            hint="gemmaios runs from its source checkout (pip install -e .); restore kernels/ from git",
        )
    return parse_metal_source(path.read_text(), path)


def expected_params(spec: KernelSpec) -> tuple[MetalParam, ...]:
    """The kernel parameters Core AI generates for this registration (fp16 tensors, in order)."""
    params = []
    tensors = list(zip(spec.input_names, spec.input_ranks, strict=True)) + list(
        zip(spec.result_names, spec.result_ranks, strict=True)
    )
    for index, (name, rank) in enumerate(tensors):
        params.append(
            MetalParam(
                f"tensor<device half, metal::dextents<int, {rank}>, tensor_handle>", name, f"buffer({index})"
            )
        )
    params += [MetalParam(dtype, name, attr) for name, dtype, attr in spec.metal_params]
    return tuple(params)


def check_kernel_source(source: MetalSource, spec: KernelSpec) -> MetalKernel:
    """The source's kernel for ``spec``, after checking its entry name and parameters match."""
    kernel = source.kernels.get(spec.entry)
    if kernel is None:
        raise KernelSourceError(
            f"{source.path} has no [[kernel]] {spec.entry!r} (found: {sorted(source.kernels)})",
            hint="the entry names in kernels/flash_decode_sdpa.metal and gemmaios.kernels.KERNEL_SPECS must match",
        )
    expected = expected_params(spec)
    if kernel.params != expected:
        diff = [
            f"#{i}: source `{_fmt(a)}`, registered `{_fmt(b)}`"
            for i, (a, b) in enumerate(zip(kernel.params, expected, strict=False))
            if a != b
        ]
        if len(kernel.params) != len(expected):
            diff.append(f"source has {len(kernel.params)} parameters, registration {len(expected)}")
        raise KernelSourceError(
            f"{source.path}: parameters of {spec.entry} do not match its registration: " + "; ".join(diff),
            hint="keep the .metal signature exactly as Core AI generates it (see KernelSpec)",
        )
    return kernel


def _fmt(p: MetalParam) -> str:
    return f"{p.type} {p.name} [[{p.attr}]]"
