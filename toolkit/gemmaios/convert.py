"""Convert a Gemma 4 text checkpoint into a Core AI LanguageBundle for the pipelined engine.

checkpoint → our decode module (gemmaios.decode_model), weights streamed from safetensors
and quantized per block of 32 → parity gates against transformers → torch.export →
coreai_torch.TorchConverter → `.aimodel` → asset-summary gate → metadata.json + tokenizer/.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__, hostrun, kernels
from .bundle import bundle_name, copy_tokenizer, write_metadata
from .checkpoint import Checkpoint
from .decode_model import DecodeSpec, Gemma4Decode, use_flash_decode
from .errors import GemmaiosError
from .oracle import ORACLE_FILE
from .pipeline import BuildContext, Step, StepOutcome, replace_dir
from .quantize import BLOCK, QUANTS, expected_storage_bytes
from .tiny import tiny_weights

PLE_MODES = ("provider", "tbl")
TARGETS = ("ios", "mac")
# Cache length the graph is traced with; the exported seq dims are dynamic up to max_context.
TRACE_CACHE_LEN = 64
TRACE_POSITIONS = 8
# Each Gemma 4 HF parity gate holds HF's fp32 model plus ours; skip above this share of free RAM.
GATE_MEMORY_SHARE = 0.6

Progress = Callable[[str, int, int], None]


class ConvertError(GemmaiosError):
    """The checkpoint cannot be converted with the requested options."""


class AssetGateFailed(GemmaiosError):
    """The saved .aimodel does not have the expected functions, I/O, states or storage."""


class PrefillChunkError(ConvertError):
    """--prefill-chunk names a chunk size or ladder this conversion cannot build."""


class TargetNotSupported(ConvertError):
    """The checkpoint cannot run on the requested --target (e.g. 12B/31B on iPhone)."""


class KernelGateFailed(AssetGateFailed):
    """The saved .aimodel does not run the flash-decode kernel on exactly the full layers."""


@dataclass
class ConvertResult:
    bundle_dir: Path
    name: str
    aimodel: Path
    metadata: Path
    quant: str
    head_quant: str
    ple: str
    max_context: int
    inputs: list[dict]
    outputs: list[dict]
    states: list[dict]
    gates: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    target: str = "ios"
    kernel: str | None = None  # flash-decode variant on the full layers, None: stock SDPA
    prefill_chunks: tuple[int, ...] = ()  # sizes of the prefill_C functions beside main

    def files(self) -> list[Path]:
        return sorted(p for p in self.bundle_dir.rglob("*") if p.is_file())


def model_key(checkpoint: Checkpoint) -> str:
    if checkpoint.is_tiny:
        return "tiny"
    base = checkpoint.spec.key if checkpoint.spec else Path(checkpoint.model_id.rstrip("/")).name.lower()
    base = "".join(c if c.isalnum() else "_" for c in base).strip("_")
    return base + ("_qat" if "qat" in checkpoint.model_id.lower() and "qat" not in base else "")


DEFAULT_MAX_CONTEXT = 4096


def resolve_max_context(checkpoint: Checkpoint, requested: int | None) -> int:
    """The context length to build for: the request, else 4096 capped at what the model supports."""
    if requested is not None:
        return requested
    return min(DEFAULT_MAX_CONTEXT, int(checkpoint.text_config.get("max_position_embeddings") or DEFAULT_MAX_CONTEXT))


def resolve_flash_decode(checkpoint: Checkpoint, target: str, kernel: str | None = None) -> str | None:
    """The flash-decode kernel variant this conversion uses on the full layers, or None (stock SDPA).

    Mac targets of models whose full-layer decode query overflows the stock SDPA (12B, 31B) get
    the kernel (default g8); other Mac targets keep the stock graph. iPhone targets of those
    models are refused.
    """
    if target not in TARGETS:
        raise ConvertError(f"unknown --target {target!r}", hint="choose ios (iPhone, default) or mac")
    if kernel is not None and kernel not in kernels.KERNEL_SPECS:
        raise ConvertError(
            f"unknown --kernel {kernel!r}", hint=f"choose one of {', '.join(sorted(kernels.KERNEL_SPECS))}"
        )
    needed = kernels.needs_flash_decode(checkpoint.text_config)
    if needed and target == "ios":
        cfg = checkpoint.text_config
        raise TargetNotSupported(
            f"{checkpoint.model_id} cannot target iPhone: its full layers' decode query "
            f"({cfg['num_attention_heads']} heads x 512) crashes the stock SDPA at the first token, "
            "and a 12B/31B model exceeds the iPhone memory budget",
            hint="convert it for the Mac with --target mac (full layers then run gemmaios' flash-decode kernel)",
        )
    if kernel is not None and target != "mac":
        raise ConvertError("--kernel only applies to --target mac", hint="drop --kernel, or add --target mac")
    if not needed:
        return None
    return kernel or kernels.DEFAULT_VARIANT


# Chunk sizes a `prefill_C` function may have: static shapes the phone's GPU compiles once.
PREFILL_CHUNK_SIZES = (8, 16)


def resolve_prefill_chunks(value: int | str | tuple | list | None) -> tuple[int, ...]:
    """`--prefill-chunk`: 0 / None / "" = off; 8, 16, or a ladder such as "16,8" → sizes, largest first."""
    if value is None:
        return ()
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        try:
            items = [int(p) for p in parts if p]
        except ValueError:
            raise PrefillChunkError(
                f"--prefill-chunk {value!r} is not a chunk size or a comma-separated ladder",
                hint=f"pass 0 (off), one of {', '.join(map(str, PREFILL_CHUNK_SIZES))}, or a ladder such as 16,8",
            ) from None
    else:
        items = [int(v) for v in value]
    if items in ([], [0]):
        return ()
    bad = [c for c in items if c not in PREFILL_CHUNK_SIZES]
    if bad:
        raise PrefillChunkError(
            f"--prefill-chunk {bad[0]} is not supported (chunk sizes: {', '.join(map(str, PREFILL_CHUNK_SIZES))}; 0 = off)",
            hint="larger chunks risk iOS's per-encode scratch-heap ceiling (apple/coreai-models#201); use 16 or 8",
        )
    if len(set(items)) != len(items):
        raise PrefillChunkError(f"--prefill-chunk {value!r} repeats a chunk size", hint="name each size once, e.g. 16,8")
    return tuple(sorted(items, reverse=True))


def resolve_head_quant(quant: str, head_quant: str | None) -> str:
    """The lm_head's storage: the request, else the weights' quant (int4/int8: an untied
    quantized copy; fp16: the head stays tied to the fp16 embedding table)."""
    return head_quant or quant


def _check_prefill(prefill_chunks: tuple[int, ...], max_context: int, flash_decode: str | None) -> None:
    if not prefill_chunks:
        return
    if flash_decode is not None:
        raise PrefillChunkError(
            f"--prefill-chunk cannot be combined with the {flash_decode} flash-decode kernel build",
            hint="the kernel is a one-query decode kernel; drop --prefill-chunk for --target mac 12B/31B builds",
        )
    if max(prefill_chunks) >= max_context:
        raise PrefillChunkError(
            f"--prefill-chunk {max(prefill_chunks)} does not fit a --max-context of {max_context}: a chunk needs "
            "at least one more cache row than its size",
            hint=f"use a chunk smaller than the context, or a --max-context above {max(prefill_chunks)}",
        )


def _check_options(checkpoint: Checkpoint, quant: str, ple: str, max_context: int, head_quant: str) -> None:
    if quant not in QUANTS:
        raise ConvertError(f"unknown --quant {quant!r}", hint=f"choose one of {', '.join(QUANTS)}")
    if head_quant not in QUANTS:
        raise ConvertError(f"unknown --head-quant {head_quant!r}", hint=f"choose one of {', '.join(QUANTS)}")
    hidden = int(checkpoint.text_config.get("hidden_size") or 0)
    if head_quant != "fp16" and hidden % BLOCK:
        raise ConvertError(
            f"--head-quant {head_quant} needs hidden_size divisible by {BLOCK}, and {checkpoint.model_id} has {hidden}",
            hint="use --head-quant fp16 (the tied fp16 head)",
        )
    if ple not in PLE_MODES:
        raise ConvertError(f"unknown --ple {ple!r}", hint="choose provider or tbl")
    limit = int(checkpoint.text_config.get("max_position_embeddings") or 131072)
    if not 16 <= max_context <= limit:
        raise ConvertError(
            f"--max-context {max_context} is outside 16..{limit} (the checkpoint's max_position_embeddings)",
            hint=f"pick a context length the model supports, e.g. {min(DEFAULT_MAX_CONTEXT, limit)}",
        )
    if ple == "tbl" and not checkpoint.text_config.get("hidden_size_per_layer_input"):
        raise ConvertError(
            f"--ple tbl needs per-layer embeddings, and {checkpoint.model_id} has none",
            hint="use --ple provider (the flag has no effect on models without PLE)",
        )


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
) -> dict:
    """Gates 1 and 2 (see gemmaios.parity); raises ParityGateFailed on failure.

    With `prefill_chunks`, gate 1 runs again with the prompts prefilled in chunks (the module's
    `prefill_C` path), on the gate prompts plus one longer than the sliding window and several
    chunks long (`fp32_greedy_chunked`).

    With `flash_decode`, the full layers go through the kernel's hook (its fp32 reference in eager
    fp32), i.e. the module the converter exports. Gate 2 runs the bundle's weights: the linears
    at `quant` and the lm_head at `head_quant` (an untied int4/int8 copy, or the tied fp16
    table), bounded for the coarser of the two.
    """
    head_quant = resolve_head_quant(quant, head_quant)
    from . import parity

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
    quantized = Gemma4Decode(checkpoint, quant=quant, head_quant=head_quant, dtype=torch.float32, spec=spec).eval()
    use_flash_decode(quantized, flash_decode)
    table = parity.PleRows(checkpoint, spec, exact=False) if spec.ple_dim else None
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


def reference_inputs(model: Gemma4Decode, max_context: int, rows: int = 1) -> tuple[dict, dict]:
    """Trace inputs and dynamic shapes: input_ids static [1,rows] (1: `main`, C: `prefill_C`);
    positions and cache length dynamic.

    A chunk needs at least C positions; its cache-length dim needs a lower bound of C+1: with
    min 1 or min C torch.export stops with "Constraints violated (cache_len)" (measured on tiny).
    """
    from torch.export import Dim

    spec = model.spec
    positions = Dim("positions", min=rows, max=max_context)
    cache_len = Dim("cache_len", min=1 if rows == 1 else rows + 1, max=max_context)
    inputs: dict = {
        "input_ids": torch.zeros((1, rows), dtype=torch.int32),
        "position_ids": torch.arange(max(TRACE_POSITIONS, rows + 2), dtype=torch.int32).unsqueeze(0),
    }
    shapes: dict = {"input_ids": None, "position_ids": {1: positions}}
    if spec.ple_dim:
        if model.ple == "provider":
            inputs["ple_tokens"] = torch.zeros((1, rows, spec.num_layers, spec.ple_dim), dtype=torch.float16)
            shapes["ple_tokens"] = None
        else:
            # Uninitialised on purpose: torch.export traces with fake tensors and never reads
            # it, so the 2.8 GB (E4B) table costs no resident memory (zeros would touch it).
            inputs["ple_table"] = torch.empty((spec.ple_vocab, spec.num_layers * spec.ple_dim), dtype=torch.int8)
            inputs["ple_scale"] = torch.zeros((spec.ple_vocab,), dtype=torch.float32)
            shapes["ple_table"] = None
            shapes["ple_scale"] = None
    key, value = model.new_cache(max(TRACE_CACHE_LEN, 2 * rows + 4))
    inputs["keyCache"], inputs["valueCache"] = key, value
    shapes["keyCache"] = {3: cache_len}
    shapes["valueCache"] = {3: cache_len}
    return inputs, shapes


def prefill_function_name(chunk: int) -> str:
    return f"prefill_{chunk}"


def export_program(
    model: Gemma4Decode, max_context: int, flash_decode: str | None = None, prefill_chunks: tuple[int, ...] = ()
):
    """torch.export → coreai-torch decompositions → TorchConverter → AIProgram.

    `flash_decode`: the kernel variant the model's full layers call (see use_flash_decode); its
    Metal lowering is registered with the converter. `prefill_chunks`: a `prefill_C` function
    per chunk size beside `main`, traced from the same module (the converter stores each
    weight once for all functions; the asset gate checks it).
    """
    import coreai_torch

    from .decode_model import export_graph

    graph = export_graph(model).eval()
    functions = [("main", 1)] + [(prefill_function_name(c), c) for c in prefill_chunks]

    def export_fn_for(rows: int, last: bool):
        inputs, shapes = reference_inputs(model, max_context, rows)

        def export_fn(module):
            with torch.no_grad():
                exported = torch.export.export(module, args=(), kwargs=inputs, dynamic_shapes=shapes)
            decomposed = exported.run_decompositions(coreai_torch.get_decomp_table())
            del exported
            if last:
                # The program's state_dict now holds the int8 levels; drop ours (and the traced
                # program's, collected here) so that when coreai-torch replaces each with its
                # int4 re-packing the int8 copy is freed then, not after all are packed
                # (E4B: ~4.6 GB of int8 levels next to 2.3 GB of packed int4 otherwise).
                # Every function is traced first: each export reads the levels.
                release_levels(model)
            free_memory()
            return decomposed

        return export_fn

    converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    if flash_decode is not None:
        kernels.register_flash_decode_kernels(converter, (flash_decode,))
    for index, (entry, rows) in enumerate(functions):
        converter.add_pytorch_module(
            graph,
            export_fn=export_fn_for(rows, last=index == len(functions) - 1),
            input_names=model.input_names(),
            output_names=model.output_names(),
            state_names=model.state_names(),
            entrypoint_name=entry,
        )
    # The converter now holds what it needs (int4 levels re-packed two per byte in its
    # exported program); return the packing's freed temporaries before it builds the
    # MLIR constants.
    free_memory()
    program = converter.to_coreai()
    converter.clear()
    del converter
    free_memory()
    optimize = getattr(program, "optimize", None)  # coreai-core 1.0.0b3 optimizes on build
    if callable(optimize):
        optimize()
    return program


def release_levels(model: Gemma4Decode) -> None:
    for _, lin in model.linears():
        if lin.quantized:
            lin.levels = torch.empty(0, dtype=torch.int8)


def _libc():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise)."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def large_blocks_from_mmap(threshold: int = 4 << 20) -> None:
    """Serve allocations above `threshold` from mmap, so freeing a weight returns its memory.

    glibc otherwise raises its mmap threshold after each large free and keeps later
    weight-sized blocks on the heap, where freed memory stays resident. 4 MiB puts every
    E4B weight matrix (int8 levels from 5 MB, packed int4 from 2.6 MB) on mmap: at 32 MiB the
    26 MB int8 MLP levels and their int4 packing temporaries fragmented the heap (+2-4 GB).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD


def _parse_specs(pairs) -> list[dict]:
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
    """The int4/int8 levels of every quantized weight (lm_head included), by storage type:
    {"Int4": {"elements": Σ out*in, "offset_allowance": max out*in/32}}.

    The converter also emits an all-zero zero-point constant of each weight's scale shape
    (out × in/32) in the weight's type; equal ones are merged, and on tiny at most one
    per type survived (measured: +192 int4 elements for the int4 linears, +768 for an int4
    head alone). The largest one is allowed on top: 1/32 of one matrix, which matters only
    when the head is the type's sole matrix (fp16 weights, --head-quant int4/int8).
    """
    counts: dict[str, dict[str, int]] = {}
    for _, lin in model.linears():
        if lin.quantized:
            entry = counts.setdefault(_STORAGE_TYPE[lin.quant], {"elements": 0, "offset_allowance": 0})
            entry["elements"] += lin.shape[0] * lin.shape[1]
            entry["offset_allowance"] = max(entry["offset_allowance"], lin.shape[0] * lin.shape[1] // BLOCK)
    return counts


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
) -> dict:
    """Gate 3: the saved asset's summary has main, the I/O and states, and the right storage.

    `expected_q_elements`: per storage type (see expected_quantized_elements); each type's
    stored count must lie within 2% of its levels (plus the one zero-point allowance above).
    `prefill_chunks`: a `prefill_C` function per size is expected too, with main's inputs,
    states and output except `input_ids [1,C]` (and `ple_tokens [1,C,L,D]`). The storage
    check is the same single-model expectation: a function that copied the weights would
    double the Int4/Int8 counts and fail it, so passing proves the weights are shared.
    """
    from coreai.authoring.asset import AIModelAsset

    summary = AIModelAsset.load(aimodel).summary(include_statistics=True)
    if summary is None:
        raise AssetGateFailed(f"{aimodel} has no source program", hint="the save was interrupted; convert again")
    functions = list(summary.function_names)
    inputs = _parse_specs(summary.function_inputs("main")) if "main" in functions else []
    outputs = _parse_specs(summary.function_outputs("main")) if "main" in functions else []
    states = _parse_specs(summary.function_states("main")) if "main" in functions else []
    storage = {name: count for name, count in (_parse_pair(s) for s in summary.storage_types)}
    problems = []
    expected_functions = ["main"] + [prefill_function_name(c) for c in prefill_chunks]
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
    for chunk in prefill_chunks:
        fname = prefill_function_name(chunk)
        if fname not in functions:
            continue
        got = {
            "inputs": _parse_specs(summary.function_inputs(fname)),
            "outputs": _parse_specs(summary.function_outputs(fname)),
            "states": _parse_specs(summary.function_states(fname)),
        }
        prefill_io[fname] = {"chunk": chunk, **got}
        # main's I/O with the token dimension C instead of 1 on input_ids and ple_tokens.
        want_inputs = [
            dict(i, shape=[1, chunk] + i["shape"][2:]) if i["name"] in ("input_ids", "ple_tokens") else i
            for i in inputs
        ]
        for kind, want in (("inputs", want_inputs), ("states", states), ("outputs", outputs)):
            if got[kind] != want:
                problems.append(f"{fname} {kind} {got[kind]}, expected {want}")
    report: dict = {"functions": functions, "storage_types": storage}
    if prefill_chunks:
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
        bits = 4 if type_name == "Int4" else 8
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


def head_facts(spec: DecodeSpec, head_quant: str) -> dict:
    """How the bundle stores the embedding and the lm_head (for size and bandwidth models).

    Per decoded token the gather reads one fp16 embedding row; the head reads its whole
    table: the embedding itself when tied, else the untied int4/int8 copy.
    """
    shape = [spec.vocab_size, spec.hidden_size]
    facts = {
        "tied": head_quant == "fp16",
        "shape": shape,
        "embedding_dtype": "float16",
        "embedding_bytes": shape[0] * shape[1] * 2,
    }
    if head_quant != "fp16":
        facts["scheme"] = f"linear symmetric absmax, per block of {BLOCK} input columns (untied copy)"
        facts["head_bytes"] = expected_storage_bytes([tuple(shape)], head_quant)
    return facts


def _parse_pair(item) -> tuple[str, int]:
    if isinstance(item, tuple):
        return str(item[0]), int(item[1])
    name, _, count = str(item).strip("()").partition(",")
    return name.strip(), int(count)


def convert_checkpoint(
    checkpoint: Checkpoint,
    out_dir: Path,
    quant: str = "int4",
    ple: str = "provider",
    max_context: int = 4096,
    *,
    progress: Progress | None = None,
    gates: bool | None = None,
    tables: dict | None = None,
    target: str = "ios",
    kernel: str | None = None,
    head_quant: str | None = None,
    bundle_check: Callable[[Path], dict] | None = None,
    prefill_chunks: int | str | tuple | list | None = None,
    prefill_check: Callable[[Path], dict] | None = None,
) -> ConvertResult:
    """Write `out_dir/<bundle name>/` (the .aimodel, metadata.json, tokenizer/).

    `gates`: None runs the HF parity gates when the fp32 reference fits in memory (else
    records why not), True always runs them, False skips them. The asset gate always runs.
    `tables`: the tables step's details for tbl bundles (recorded in metadata).
    `target`: "ios" (iPhone) or "mac"; `kernel`: the flash-decode variant for Mac builds of
    12B/31B ("simple" | "g8", default g8; see resolve_flash_decode).
    `head_quant`: the lm_head's storage (default: `quant`; int4/int8 = an untied quantized
    copy next to the exact fp16 embedding table, fp16 = tied to it).
    `bundle_check(staged_bundle_dir)`: runs the finished bundle before it is moved into place
    (the build's Core AI runtime gate, gemmaios.hostrun); its report is recorded under
    `gates.bundle_run`, and an exception from it leaves no bundle behind.
    `prefill_chunks`: `--prefill-chunk` (0/None off; 8, 16 or a ladder "16,8"): a `prefill_C`
    function per size beside `main` (see resolve_prefill_chunks). The parity gates then also
    run the module's chunked walk against transformers, and `prefill_check(staged_bundle_dir)`
    (gemmaios.hostrun.build_prefill_check) proves the saved asset's chunked walk bit-identical
    to its `main`-only walk under Core AI's runtime (`gates.prefill_run`); without it the
    metadata records that this gate did not run.
    """
    flash = resolve_flash_decode(checkpoint, target, kernel)
    head_quant = resolve_head_quant(quant, head_quant)
    chunks = resolve_prefill_chunks(prefill_chunks)
    _check_options(checkpoint, quant, ple, max_context, head_quant)
    _check_prefill(chunks, max_context, flash)
    large_blocks_from_mmap()
    out_dir = Path(out_dir)
    name = bundle_name(model_key(checkpoint), quant, ple) + kernels.bundle_suffix(flash)
    seconds: dict[str, float] = {}
    t0 = time.time()

    gate_report: dict = {}
    run_gates, why_not = (True, "") if gates else ((False, "skipped: disabled") if gates is False else gates_fit_in_memory(checkpoint))
    if run_gates:
        gate_report.update(
            run_parity_gates(checkpoint, quant, progress, flash, head_quant=head_quant, prefill_chunks=chunks)
        )
    else:
        gate_report["parity"] = why_not
    seconds["gates"] = round(time.time() - t0, 2)

    t1 = time.time()
    spec = DecodeSpec.from_text_config(checkpoint.text_config)
    model = Gemma4Decode(
        checkpoint,
        quant=quant,
        head_quant=head_quant,
        dtype=torch.float16,
        ple=ple,
        spec=spec,
        progress=(lambda i, n: progress("layers", i, n)) if progress else None,
    ).eval()
    use_flash_decode(model, flash)
    free_memory()
    q_elements = expected_quantized_elements(model)
    float_elements = expected_float16_elements(model)
    names = {"inputs": model.input_names(), "states": model.state_names(), "outputs": model.output_names()}
    seconds["load_quantize"] = round(time.time() - t1, 2)

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir))
    try:
        t2 = time.time()
        if progress:
            progress("export", 0, 1)
        program = export_program(model, max_context, flash, chunks)
        del model
        free_memory()
        seconds["export"] = round(time.time() - t2, 2)
        t3 = time.time()
        import coreai.runtime as rt

        if progress:
            progress("save", 0, 1)
        aimodel = staging / f"{name}.aimodel"
        program.save_asset(aimodel, rt.AIModelAssetMetadata())
        del program
        free_memory()
        seconds["save"] = round(time.time() - t3, 2)
        if progress:
            progress("asset gate", 0, 1)
        asset = asset_gate(aimodel, names, q_elements, quant, chunks, float_elements)
        io = {k: asset.pop(k) for k in ("inputs", "outputs", "states", "prefill")}
        gate_report["asset"] = asset
        if flash is not None:
            if progress:
                progress("kernel gate", 0, 1)
            gate_report["flash_decode"] = kernel_gate(aimodel, checkpoint.text_config, flash)

        copy_tokenizer(checkpoint.path, staging / "tokenizer")
        gemmaios_section = {
            "source": {"model_id": checkpoint.model_id, "revision": checkpoint.revision},
            "quant": quant,
            "quant_scheme": None if quant == "fp16" else f"linear symmetric absmax, per block of {BLOCK} input columns",
            "head_quant": head_quant,
            "head": head_facts(spec, head_quant),
            "ple": ple,
            "max_context": max_context,
            "target": target,
            "flash_decode": (
                {
                    "kernel": flash,
                    "entry": kernels.KERNEL_SPECS[flash].entry,
                    "full_layers": kernels.full_attention_layers(checkpoint.text_config),
                    "attention": gate_report["flash_decode"]["attention"],
                }
                if flash
                else None
            ),
            "inputs": io["inputs"],
            "outputs": io["outputs"],
            "states": io["states"],
            "kv_layers": [lay.index for lay in spec.kv_layers],
            "prefill": (
                {
                    "chunks": list(chunks),
                    "functions": io["prefill"],
                    "sliding_window": spec.sliding_window,
                    "routing": "full chunks of C prompt tokens (largest C first) to prefill_C, the rest to main",
                    "output": "logits of the chunk's last row only [1,1,V]",
                }
                if chunks
                else None
            ),
            "gates": gate_report,
        }
        if ple == "tbl":
            gemmaios_section["ple_table"] = {
                "shape": [spec.ple_vocab, spec.num_layers * spec.ple_dim],
                "dtype": "int8",
                "scale_dtype": "float32",
                "tables": tables or {},
            }
        metadata_fields = dict(
            name=name,
            aimodel=f"{name}.aimodel",
            tokenizer=checkpoint.model_id if not checkpoint.is_tiny else "tiny",
            vocab_size=spec.vocab_size,
            max_context=max_context,
            prefill_functions=[prefill_function_name(c) for c in chunks],
        )
        write_metadata(staging, **metadata_fields, gemmaios=gemmaios_section)
        if chunks:
            if prefill_check is None:
                gate_report["prefill_run"] = {
                    "status": "not run",
                    "summary": "not run: no prompts and PLE tables were given to the chunked-prefill runtime gate",
                }
            else:
                if progress:
                    progress("chunked prefill gate (Core AI runtime)", 0, 1)
                t5 = time.time()
                gate_report["prefill_run"] = prefill_check(staging)
                seconds["prefill_run"] = round(time.time() - t5, 2)
            write_metadata(staging, **metadata_fields, gemmaios=gemmaios_section)
        if bundle_check is not None:
            if progress:
                progress("bundle run gate (Core AI runtime)", 0, 1)
            t4 = time.time()
            gate_report["bundle_run"] = bundle_check(staging)
            seconds["bundle_run"] = round(time.time() - t4, 2)
            write_metadata(staging, **metadata_fields, gemmaios=gemmaios_section)
        final = out_dir / name
        replace_dir(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    seconds["total"] = round(time.time() - t0, 2)
    return ConvertResult(
        bundle_dir=final,
        name=name,
        aimodel=final / f"{name}.aimodel",
        metadata=final / "metadata.json",
        quant=quant,
        head_quant=head_quant,
        ple=ple,
        max_context=max_context,
        inputs=io["inputs"],
        outputs=io["outputs"],
        states=io["states"],
        gates=gate_report,
        seconds=seconds,
        target=target,
        kernel=flash,
        prefill_chunks=chunks,
    )


def _has_ple(checkpoint: Checkpoint) -> bool:
    return bool(checkpoint.text_config.get("hidden_size_per_layer_input"))


class ConvertStep(Step):
    name = "convert"
    title = "decode graph → Core AI LanguageBundle (parity-gated)"

    def inputs(self, ctx: BuildContext) -> dict:
        opts = ctx.options
        values = {
            "checkpoint": ctx.step_fingerprint("checkpoint"),
            "quant": opts.quant,
            "head_quant": resolve_head_quant(opts.quant, opts.head_quant),
            "ple": opts.ple,
            "max_context": resolve_max_context(ctx.checkpoint, opts.max_context),
            "target": opts.target,
            "kernel": resolve_flash_decode(ctx.checkpoint, opts.target, opts.kernel),
            "toolkit": __version__,
        }
        chunks = resolve_prefill_chunks(getattr(opts, "prefill_chunk", "0"))
        if chunks:  # absent when off, so builds made before the option keep their fingerprint
            values["prefill_chunks"] = list(chunks)
        if opts.ple == "tbl" or _has_ple(ctx.checkpoint):
            values["tables"] = ctx.step_fingerprint("tables")
        # The bundle-run gate runs the saved bundle on the oracle's prompts (gemmaios.hostrun).
        values["oracle"] = ctx.step_fingerprint("oracle")
        return values

    def run(self, ctx: BuildContext) -> StepOutcome:
        opts = ctx.options
        tables = None
        if opts.ple == "tbl":
            ctx.step_outputs("tables")  # raises a clear error when the tables step has not finished
            record = ctx.manifest.get("tables")
            tables = dict(record.details) if record else {}
            spec = DecodeSpec.from_text_config(ctx.checkpoint.text_config)
            want = [spec.ple_vocab, spec.num_layers * spec.ple_dim]
            if tables.get("shape") and list(tables["shape"]) != want:
                raise ConvertError(
                    f"the tables step wrote a PLE table of shape {tables['shape']}, this checkpoint needs {want}",
                    hint="re-run the tables step (`gemmaios build --force`)",
                )
        ctx.step_outputs("oracle")  # the bundle-run gate judges the bundle against it
        if _has_ple(ctx.checkpoint):
            ctx.step_outputs("tables")  # the gate feeds the bundle its per-layer inputs from them
        layers_bar: dict = {}
        gate_bar: dict = {}

        def gate_progress(n: int = 1) -> None:
            if "advance" not in gate_bar:
                from .oracle import load_oracle

                total = len(load_oracle(ctx.path(ORACLE_FILE)).prompts)
                gate_bar["cm"] = ctx.progress("bundle run (Core AI runtime)", total=total)
                gate_bar["advance"] = gate_bar["cm"].__enter__()
                gate_bar["total"], gate_bar["done"] = total, 0
            gate_bar["advance"](n)
            gate_bar["done"] += n
            if gate_bar["done"] >= gate_bar["total"]:
                gate_bar.pop("cm").__exit__(None, None, None)
                gate_bar.pop("advance")

        flash = resolve_flash_decode(ctx.checkpoint, opts.target, opts.kernel)
        check = hostrun.build_bundle_check(
            ctx.checkpoint,
            ctx.path(ORACLE_FILE),
            ctx.path("tables") if _has_ple(ctx.checkpoint) else None,
            quant=opts.quant,
            head_quant=resolve_head_quant(opts.quant, opts.head_quant),
            flash_decode=flash,
            progress=gate_progress,
        )
        chunks = resolve_prefill_chunks(opts.prefill_chunk)
        prefill_check = None
        if chunks:
            prefill_check = hostrun.build_prefill_check(
                ctx.path(ORACLE_FILE), ctx.path("tables") if _has_ple(ctx.checkpoint) else None
            )

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "layers":
                if "advance" not in layers_bar:
                    layers_bar["cm"] = ctx.progress("quantize layers", total=total)
                    layers_bar["advance"] = layers_bar["cm"].__enter__()
                layers_bar["advance"](1)
                if done == total:
                    layers_bar.pop("cm").__exit__(None, None, None)
                    layers_bar.pop("advance")
            else:
                ctx.console.print(f"  [dim]{stage}…[/dim]")

        result = convert_checkpoint(
            ctx.checkpoint,
            ctx.path("bundle"),
            opts.quant,
            opts.ple,
            resolve_max_context(ctx.checkpoint, opts.max_context),
            progress=progress,
            tables=tables,
            target=opts.target,
            kernel=opts.kernel,
            head_quant=opts.head_quant,
            bundle_check=check,
            prefill_chunks=chunks,
            prefill_check=prefill_check,
        )
        rel = lambda p: str(Path(p).relative_to(ctx.build_dir))  # noqa: E731
        details = {
            "bundle_dir": rel(result.bundle_dir),
            "name": result.name,
            "aimodel": rel(result.aimodel),
            "metadata": rel(result.metadata),
            "quant": result.quant,
            "head_quant": result.head_quant,
            "ple": result.ple,
            "max_context": result.max_context,
            "target": result.target,
            "kernel": result.kernel,
            "prefill_chunks": list(result.prefill_chunks),
            "inputs": result.inputs,
            "outputs": result.outputs,
            "states": result.states,
            "gates": result.gates,
            "seconds": result.seconds,
        }
        g1 = result.gates.get("fp32_greedy")
        note = f"{g1['token_matches']}/{g1['prompts'] * g1['steps']} fp32 greedy" if g1 else "parity gates skipped"
        run_gate = result.gates.get("bundle_run")
        if run_gate:
            note += "; " + run_gate["summary"]
        prefill_run = result.gates.get("prefill_run")
        if prefill_run:
            names = "+".join(f"prefill_{c}" for c in result.prefill_chunks)
            note += f"; {names}: {prefill_run.get('short') or prefill_run['summary']}"
        if result.kernel:
            note += f"; flash-decode {result.kernel} on full layers {result.gates['flash_decode']['full_layers']}"
        elif result.target == "mac":
            note += "; stock attention (this model does not need the flash-decode kernel)"
        return StepOutcome(outputs=result.files(), details=details, message=f"{result.name} ({note})")
