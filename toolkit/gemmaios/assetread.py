"""Read the quantized weights back from a saved `.aimodel`: what Core AI actually stores.

Every `coreai.blockwise_shift_scale` in the asset's program dequantizes one weight from constants:
levels (packed Int2/UInt2 four to a byte, Int4/UInt4 two, Int8/UInt8 one), fp16 scales, and an
offset (a zero point in the levels' type, and a `minval` in fp16: 0 for symmetric weights, the
group minimum for affine ones). This module prints the program with its resources, decodes those
constants and returns them per op, so tests and the asset gate compare them with the quantizer's
own levels, scales and offsets, element for element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TYPE = re.compile(r"^(?P<shape>(?:\d+x)*)(?P<elem>si|ui|i|f)(?P<bits>\d+)$")
_CONST = re.compile(r"^\s*(%[\w#]+) = coreai\.constant (?P<value>dense_resource<(?P<res>[\w.]+)>|dense<(?P<dense>[^>]*)>)"
                    r" : tensor<(?P<type>[^>]+)>")
_BSS = re.compile(r"^\s*%[\w#]+ = coreai\.blockwise_shift_scale (?P<args>[^:]+) : \((?P<types>[^)]*)\)")
_RESOURCE = re.compile(r'^\s*([\w.]+): "0x([0-9A-Fa-f]*)"', re.M)

STORAGE_NAMES = {("si", 2): "Int2", ("si", 4): "Int4", ("si", 8): "Int8", ("i", 8): "Int8",
                 ("ui", 2): "UInt2", ("ui", 4): "UInt4", ("ui", 8): "UInt8"}


@dataclass
class StoredWeight:
    """One dequantized weight as the asset stores it."""

    storage: str  # Int2 .. UInt8
    shape: tuple[int, ...]
    levels: np.ndarray  # int16, unpacked
    scale: np.ndarray  # float16
    zero_point: np.ndarray  # int16 (the levels' type)
    minval: np.ndarray  # float16
    packed_bytes: int  # the levels' bytes in the asset

    def dequantize(self) -> np.ndarray:
        rep = [a // b for a, b in zip(self.shape, self.scale.shape, strict=True)]
        expand = lambda t: np.kron(t.astype(np.float32), np.ones(rep, np.float32))  # noqa: E731
        return (self.levels - expand(self.zero_point)) * expand(self.scale) + expand(self.minval)


def _parse_type(text: str) -> tuple[tuple[int, ...], str, int]:
    m = _TYPE.match(text.strip())
    if not m:
        raise ValueError(f"unexpected tensor type {text!r}")
    shape = tuple(int(d) for d in m["shape"].split("x") if d)
    return shape, m["elem"], int(m["bits"])


def _unpack(raw: bytes, shape: tuple[int, ...], elem: str, bits: int) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    data = np.frombuffer(raw, dtype=np.uint8)
    if elem == "f":
        return np.frombuffer(raw, dtype=np.float16 if bits == 16 else np.float32)[:n].reshape(shape)
    if bits == 8:
        values = data[:n].astype(np.int16)
    else:
        per = 8 // bits
        mask = (1 << bits) - 1
        values = np.stack([(data >> (bits * k)) & mask for k in range(per)], axis=-1).reshape(-1)[:n].astype(np.int16)
    if elem in ("si", "i"):
        values = np.where(values >= (1 << (bits - 1)), values - (1 << bits), values)
    return values.reshape(shape)


def _splat(text: str, shape: tuple[int, ...], elem: str, bits: int) -> np.ndarray:
    text = text.strip()
    if text.startswith("["):
        values = [float(v.strip(" []")) for v in text.split(",") if v.strip(" []")]
        arr = np.array(values)
    else:
        arr = np.full(shape, float(text))
    dtype = np.float16 if elem == "f" else np.int16
    return arr.astype(dtype).reshape(shape)


def program_text(aimodel: Path) -> str:
    """The asset's programs printed in full, resources included (only sensible for small assets)."""
    from coreai.authoring.asset import AIProgram

    files = sorted(Path(aimodel).glob("*.mlirb"))
    if not files:
        raise FileNotFoundError(f"{aimodel} holds no program bytecode (*.mlirb)")
    texts = []
    for f in files:
        program = AIProgram._load_bytecode(f)  # noqa: SLF001 — coreai's own loader of the saved bytecode
        module = program._module._mlir_module  # noqa: SLF001
        texts.append(module.operation.get_asm(large_elements_limit=None, large_resource_limit=None,
                                              assume_verified=True))
    return "\n".join(texts)


def stored_weights(aimodel: Path) -> list[StoredWeight]:
    """Every blockwise_shift_scale's constants, decoded; one entry per distinct levels constant."""
    text = program_text(aimodel)
    resources = {name: bytes.fromhex(hexdata)[4:] for name, hexdata in _RESOURCE.findall(text)}
    out: list[StoredWeight] = []
    seen: set[str] = set()
    consts: dict[str, tuple[str, np.ndarray | None, tuple, str, int]] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("coreai.graph") or line.lstrip().startswith("func"):
            consts = {}  # SSA names are per function
        m = _CONST.match(line)
        if m and not _TYPE.match(m["type"].strip()):
            continue  # not a plain tensor constant (e.g. a shape constant): never a shift-scale operand
        if m:
            shape, elem, bits = _parse_type(m["type"])
            if m["res"]:
                key = m["res"]
                raw = resources.get(key)
                value = None if raw is None else _unpack(raw, shape, elem, bits)
            elif m["dense"].strip().startswith('"0x'):  # hex-encoded dense elements (no alignment header)
                key = None
                value = _unpack(bytes.fromhex(m["dense"].strip().strip('"')[2:]), shape, elem, bits)
            else:
                key = None
                try:
                    value = _splat(m["dense"], shape, elem, bits)
                except ValueError:  # a constant this reader does not decode: never a weight's operand
                    value = None
            consts[m.group(1)] = (key, value, shape, elem, bits)
            continue
        b = _BSS.match(line)
        if not b:
            continue
        args = [a.strip() for a in b["args"].split(",")]
        if any(a not in consts for a in args[:4]) or len(args) < 4:
            continue
        key, levels, shape, elem, bits = consts[args[0]]
        if levels is None or any(consts[a][1] is None for a in args[1:4]):
            continue
        if key is not None and key in seen:
            continue
        seen.add(key)
        out.append(StoredWeight(STORAGE_NAMES.get((elem, bits), f"{elem}{bits}"), shape, levels,
                                consts[args[1]][1], consts[args[2]][1], consts[args[3]][1],
                                packed_bytes=int(np.prod(shape)) * bits // 8))
    return out
