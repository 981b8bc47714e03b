"""Gates 1-4 of a conversion: HF parity (fp32, quantized), the saved asset's summary, the kernel placement."""

from __future__ import annotations

import gc
from pathlib import Path

import torch

from .. import kernels
from ..checkpoint import Checkpoint
from ..decode_model import DecodeSpec, Gemma4Decode, use_flash_decode
from ..tiny import tiny_weights
from .export import prefill_function_name
from .options import GATE_MEMORY_SHARE, AssetGateFailed, KernelGateFailed, Progress, resolve_head_quant


def _weight_param_count(checkpoint: Checkpoint) -> int:
    from safetensors import safe_open

    total = 0
    for path in checkpoint.weight_files:
        with safe_open(str(path), "pt") as handle:
            for name in handle.keys():
                shape = handle.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def gates_fit_in_memory(checkpoint: Checkpoint) -> tuple[bool, str]:
    import psutil

    need = _weight_param_count(checkpoint) * 4 * 2.2  # HF fp32 + ours fp32 + activations
    have = psutil.virtual_memory().available
    if need > have * GATE_MEMORY_SHARE:
        return False, (
            f"skipped: the fp32 reference needs ~{need / 1e9:.0f} GB, {have / 1e9:.0f} GB is free; "
            "run the conversion on a machine with more memory to gate this checkpoint"
        )
    return True, ""


# Coarsest first: gate 2 is bounded by the least precise format in the graph.
_PRECISION_ORDER = ("int4", "int8", "fp16")


def run_parity_gates(
    checkpoint: Checkpoint,
    quant: str,
    progress: Progress | None = None,
    flash_decode: str | None = None,
    head_quant: str | None = None,
    prefill_chunks: tuple[int, ...] = (),
    recipe=None,
    awq: dict | None = None,
) -> dict:
    """Gates 1 and 2 (see gemmaios.parity); raises ParityGateFailed on failure.

    With a mixed-bit `recipe` (and its AWQ scales `awq`), gate 2 runs the recipe's weights and is
    judged by mean KL divergence and top-1 agreement against the recipe's floors (parity.recipe_parity_gate).

    With `prefill_chunks`, gate 1 runs again with the prompts prefilled in chunks (the module's
    `prefill_C` path), on the gate prompts plus one longer than the sliding window and several
    chunks long (`fp32_greedy_chunked`).

    With `flash_decode`, the full layers go through the kernel's hook (its fp32 reference in eager
    fp32), i.e. the module the converter exports. Gate 2 runs the bundle's weights: the linears
    at `quant` and the lm_head at `head_quant` (an untied int4/int8 copy, or the tied fp16
    table), bounded for the coarser of the two.
    """
    head_quant = resolve_head_quant(quant, head_quant)
    from .. import parity

    spec = DecodeSpec.from_text_config(checkpoint.text_config)
    prompts = parity.encode_prompts(checkpoint)
    if progress:
        progress("reference (transformers fp32)", 0, 1)
    refs = parity.hf_reference(checkpoint, prompts)
    fp32 = Gemma4Decode(checkpoint, quant="fp16", dtype=torch.float32, spec=spec).eval()
    use_flash_decode(fp32, flash_decode)
    exact = parity.PleRows(checkpoint, spec, exact=True) if spec.ple_dim else None
    gate1 = parity.greedy_parity_gate(fp32, refs, exact)
    chunked = None
    if prefill_chunks:
        long_refs = parity.hf_reference(checkpoint, parity.encode_prompts(checkpoint, (parity.LONG_GATE_PROMPT,)))
        chunked = parity.greedy_parity_gate(fp32, refs + long_refs, exact, chunks=prefill_chunks).as_dict()
        chunked["prompt_tokens"] = [len(r.prompt_ids) for r in refs + long_refs]
    del fp32
    gc.collect()
    quantized = Gemma4Decode(checkpoint, quant=quant, head_quant=head_quant, dtype=torch.float32, spec=spec,
                             recipe=recipe, awq=awq).eval()
    use_flash_decode(quantized, flash_decode)
    table = parity.PleRows(checkpoint, spec, exact=False) if spec.ple_dim else None
    if recipe is not None:
        gate2 = parity.recipe_parity_gate(quantized, refs, recipe, table)
        del quantized
        gc.collect()
        report = {"fp32_greedy": gate1.as_dict(), "quantized": gate2 | {"quant": quant, "recipe": recipe.name}}
        if chunked is not None:
            report["fp32_greedy_chunked"] = chunked
        return report
    bound = min(quant, quantized.head_quant, key=_PRECISION_ORDER.index)
    # A random-weight tiny variant gets the logit-error bound; the trained tiny model its own top-1 floors.
    weights = tiny_weights(checkpoint.path)
    gate2 = parity.quantized_parity_gate(quantized, refs, bound, table, tiny=weights == "random",
                                         trained_tiny=weights == "trained")
    del quantized
    gc.collect()
    report = {"fp32_greedy": gate1.as_dict(), "quantized": gate2.as_dict() | {"quant": quant, "head_quant": head_quant}}
    if chunked is not None:
        report["fp32_greedy_chunked"] = chunked
    return report


def parse_io_specs(pairs) -> list[dict]:
    """[('name', 'NDArray (Float16, 1 × ? × 4)')] → [{'name', 'dtype', 'shape'}] (None = dynamic)."""
    specs = []
    for name, text in pairs:
        inner = text[text.index("(") + 1 : text.rindex(")")]
        dtype, _, dims = inner.partition(",")
        shape = [None if d.strip() == "?" else int(d) for d in dims.replace("×", ",").split(",") if d.strip()]
        specs.append({"name": name, "dtype": dtype.strip(), "shape": shape})
    return specs


_STORAGE_TYPE = {"int4": "Int4", "int8": "Int8"}


def expected_quantized_elements(model: Gemma4Decode) -> dict[str, dict[str, int]]:
    """The levels of every quantized weight (lm_head included), by storage type (Int2..UInt8):
    {"Int4": {"elements": Σ out*in, "offset_allowance": Σ over distinct scale shapes of out*in/group}}.

    The converter also emits a zero-point constant of each weight's scale shape (out × in/group)
    in the weight's type (all zero; affine weights' `minval` mode gets the type's q_min, 0 for
    UInt); equal ones are merged, and on tiny at most one per type and shape survived (measured:
    +192 int4 elements for the int4 linears, +768 for an int4 head alone). One per distinct scale
    shape is allowed on top, which matters only when the head is the type's sole matrix.
    """
    counts: dict[str, dict[str, int]] = {}
    shapes: dict[str, set] = {}
    for _, lin in model.linears():
        if lin.quantized:
            group = lin.tensor_quant.group
            entry = counts.setdefault(lin.storage, {"elements": 0, "offset_allowance": 0})
            entry["elements"] += lin.shape[0] * lin.shape[1]
            scale_shape = (lin.shape[0], lin.shape[1] // group)
            if scale_shape not in shapes.setdefault(lin.storage, set()):
                shapes[lin.storage].add(scale_shape)
                entry["offset_allowance"] += scale_shape[0] * scale_shape[1]
    return counts


# Printing a program with its resources costs a few times its size in text: only small assets.
READBACK_MAX_WEIGHT_BYTES = 64 << 20


def asset_readback_fits(model: Gemma4Decode) -> bool:
    stored = sum(lin.quantized_weight().storage_bytes() if lin.quantized else lin.shape[0] * lin.shape[1] * 2
                 for _, lin in model.linears())
    return stored <= READBACK_MAX_WEIGHT_BYTES


def levels_gate(aimodel: Path, expected: dict) -> dict:
    """Each quantized weight's levels, scales and offsets read back from the saved asset equal the quantizer's.

    `expected`: name → QuantizedWeight. Every one must match exactly one stored weight (same storage
    type, levels, fp16 scales and, for affine grids, fp16 minimums); AssetGateFailed names the first
    that does not.
    """
    import numpy as np

    from ..assetread import stored_weights
    from ..quantize import storage_type

    stored = stored_weights(aimodel)
    unused = list(range(len(stored)))
    per_type: dict[str, dict] = {}
    for name, qw in expected.items():
        want_type = storage_type(qw.bits, qw.mode)
        levels = qw.q.numpy().astype(np.int16)
        scale = qw.scale.to(torch.float16).numpy()
        offset = None if qw.offset is None else qw.offset.to(torch.float16).numpy()
        hit = None
        for i in unused:
            s = stored[i]
            if s.storage != want_type or s.shape != levels.shape or not np.array_equal(s.levels, levels):
                continue
            if not np.array_equal(s.scale, scale) or np.any(s.zero_point != 0):
                continue
            if not np.array_equal(s.minval, np.zeros_like(scale) if offset is None else offset):
                continue
            hit = i
            break
        if hit is None:
            raise AssetGateFailed(
                f"{aimodel.name}: the asset holds no {want_type} constant equal to {name}'s levels, scales and offsets "
                f"({qw.bits}-bit {qw.mode}, groups of {qw.group})",
                hint="the converter stored these weights differently from gemmaios.quantize; report it")
        unused.remove(hit)
        entry = per_type.setdefault(want_type, {"tensors": 0, "bits_in_recipe": set(), "packed_bytes": 0})
        entry["tensors"] += 1
        entry["bits_in_recipe"].add(qw.bits)
        entry["packed_bytes"] += stored[hit].packed_bytes
    for entry in per_type.values():
        entry["bits_in_recipe"] = sorted(entry["bits_in_recipe"])
    counts = ", ".join(f"{k}: {v['tensors']}" for k, v in sorted(per_type.items()))
    return {"status": "passed", "tensors": len(expected), "by_storage": per_type,
            "summary": f"{len(expected)} quantized weights read back from the asset equal the quantizer's "
                       f"levels, scales and offsets ({counts})"}


def expected_float16_elements(model: Gemma4Decode) -> int:
    """The module's fp16 parameters and buffers (the embedding table, fp16 weights, scales):
    one copy of them is what an asset stores as Float16, however many functions share them."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() for t in tensors if t.dtype == torch.float16)


def asset_gate(
    aimodel: Path,
    names: dict,
    expected_q_elements: dict[str, dict[str, int]],
    quant: str,
    prefill_chunks: tuple[int, ...] = (),
    float16_elements: int | None = None,
    extra_functions: dict[str, dict] | None = None,
) -> dict:
    """Gate 3: the saved asset's summary has main, the I/O and states, and the right storage.

    `expected_q_elements`: per storage type (see expected_quantized_elements); each type's
    stored count must lie within 2% of its levels (plus the one zero-point allowance above).
    `prefill_chunks`: a `prefill_C` function per size is expected too, with main's inputs,
    states and output except `input_ids [1,C]` (and `ple_tokens [1,C,L,D]`). The storage
    check is the same single-model expectation: a function that copied the weights would
    double the Int4/Int8 counts and fail it, so passing proves the weights are shared.
    `extra_functions`: {name: {"inputs": (...), "outputs": (...), "states": (...)}}, further
    entry points (the 12B's `prefill_multimodal`, `embed_vision`, `embed_audio`) whose I/O names
    must be these; `float16_elements` then counts their fp16 weights too (the embedders').
    """
    from coreai.authoring.asset import AIModelAsset

    summary = AIModelAsset.load(aimodel).summary(include_statistics=True)
    if summary is None:
        raise AssetGateFailed(f"{aimodel} has no source program", hint="the save was interrupted; convert again")
    functions = list(summary.function_names)
    inputs = parse_io_specs(summary.function_inputs("main")) if "main" in functions else []
    outputs = parse_io_specs(summary.function_outputs("main")) if "main" in functions else []
    states = parse_io_specs(summary.function_states("main")) if "main" in functions else []
    storage = {name: count for name, count in (_parse_pair(s) for s in summary.storage_types)}
    problems = []
    extra_functions = dict(extra_functions or {})
    expected_functions = ["main"] + [prefill_function_name(c) for c in prefill_chunks] + list(extra_functions)
    if sorted(functions) != sorted(expected_functions):
        problems.append(f"functions {functions}, expected {expected_functions}")
    for kind, got in (("inputs", inputs), ("states", states), ("outputs", outputs)):
        if [i["name"] for i in got] != list(names[kind]):
            problems.append(f"{kind} {[i['name'] for i in got]}, expected {list(names[kind])}")
    if inputs and inputs[0]["shape"] != [1, 1]:
        problems.append(f"input_ids shape {inputs[0]['shape']}, expected static [1, 1]")
    if len(inputs) > 1 and inputs[1]["shape"] != [1, None]:
        problems.append(f"position_ids shape {inputs[1]['shape']}, expected [1, ?]")
    for s in states:
        if s["shape"][3] is not None:
            problems.append(f"state {s['name']} has a static sequence dim {s['shape']}")
    prefill_io: dict = {}

    def function_io(fname: str) -> dict:
        return {"inputs": parse_io_specs(summary.function_inputs(fname)),
                "outputs": parse_io_specs(summary.function_outputs(fname)),
                "states": parse_io_specs(summary.function_states(fname))}

    for chunk in prefill_chunks:
        fname = prefill_function_name(chunk)
        if fname not in functions:
            continue
        got = function_io(fname)
        prefill_io[fname] = {"chunk": chunk, **got}
        # main's I/O with the token dimension C instead of 1 on input_ids and ple_tokens.
        want_inputs = [
            dict(i, shape=[1, chunk] + i["shape"][2:]) if i["name"] in ("input_ids", "ple_tokens") else i
            for i in inputs
        ]
        for kind, want in (("inputs", want_inputs), ("states", states), ("outputs", outputs)):
            if got[kind] != want:
                problems.append(f"{fname} {kind} {got[kind]}, expected {want}")
    for fname, want_names in extra_functions.items():
        if fname not in functions:
            continue
        got = function_io(fname)
        prefill_io[fname] = got
        for kind in ("inputs", "outputs", "states"):
            if [i["name"] for i in got[kind]] != list(want_names.get(kind, ())):
                problems.append(f"{fname} {kind} {[i['name'] for i in got[kind]]}, expected {list(want_names.get(kind, ()))}")
    report: dict = {"functions": functions, "storage_types": storage}
    if prefill_chunks or extra_functions:
        shared = {
            "functions": len(functions),
            "rule": "stored Int4/Int8 elements within 2% of ONE copy of the quantized weights, and stored "
            "Float16 elements at most 2% (+1024 small constants) above the module's fp16 tensors",
        }
        if float16_elements:
            got = storage.get("Float16", 0)
            shared.update(expected_float16_elements=float16_elements, stored_float16_elements=got)
            if got > 1.02 * float16_elements + 1024:
                problems.append(
                    f"Float16 storage holds {got} elements for {len(functions)} functions, one copy of the "
                    f"fp16 weights is {float16_elements}: the functions do not share their weights"
                )
        report["weights_shared"] = shared
    checks = {}
    for type_name, want in expected_q_elements.items():
        expected, allowance = want["elements"], want["offset_allowance"]
        got = storage.get(type_name, 0)
        bits = int("".join(ch for ch in type_name if ch.isdigit()))
        ratio = got / expected if expected else 0.0
        checks[type_name] = {
            "expected_elements": expected,
            "offset_allowance": allowance,
            "stored_elements": got,
            "expected_bytes": expected * bits // 8,
            "stored_bytes": got * bits // 8,
            "ratio": round(ratio, 5),
        }
        if not 0.98 * expected <= got <= 1.02 * expected + allowance:
            problems.append(
                f"{type_name} storage holds {got} elements, expected {expected} (-2%..+2% + {allowance} "
                "zero-point elements): the weights were not stored quantized"
            )
    if checks:
        report["quantized"] = checks
        # The weights' own type up front (the head's when only the head is quantized).
        main = _STORAGE_TYPE.get(quant) if _STORAGE_TYPE.get(quant) in checks else next(iter(checks))
        report.update(quantized_type=main, **checks[main])
    if problems:
        raise AssetGateFailed(
            f"{aimodel.name}: " + "; ".join(problems),
            hint="the exported graph does not match the pipelined engine's contract; see gemmaios.decode_model",
        )
    report["passed"] = True
    report["asset_bytes"] = _asset_bytes(aimodel)
    return report | {"inputs": inputs, "outputs": outputs, "states": states, "prefill": prefill_io}


def _asset_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def kernel_gate(aimodel: Path, text_config: dict, variant: str) -> dict:
    """Gate 4 (flash-decode builds): one `variant` kernel per full layer, no stock SDPA at head dim 512."""
    summary = kernels.asset_attention_summary(aimodel)
    try:
        kernels.check_full_layers_use_kernel(summary, text_config, variant)
    except kernels.KernelPlacementError as exc:
        raise KernelGateFailed(f"{aimodel.name}: {exc.args[0]}", hint=exc.hint) from exc
    return {
        "passed": True,
        "kernel": variant,
        "entry": kernels.KERNEL_SPECS[variant].entry,
        "full_layers": kernels.full_attention_layers(text_config),
        "attention": summary.as_dict(),
    }


def _parse_pair(item) -> tuple[str, int]:
    if isinstance(item, tuple):
        return str(item[0]), int(item[1])
    name, _, count = str(item).strip("()").partition(",")
    return name.strip(), int(count)


