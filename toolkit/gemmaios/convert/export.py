"""torch.export → coreai-torch → AIProgram, and the memory hygiene that keeps full-size exports in RAM."""

from __future__ import annotations

import gc

import torch

from .. import kernels
from ..decode_model import Gemma4Decode
from .options import TRACE_CACHE_LEN, TRACE_POSITIONS


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
    if model.image_tokens:  # static: the soft-token budget's rows (the id-space splice reads them)
        inputs["image_embeds"] = torch.zeros((model.image_tokens, spec.hidden_size), dtype=torch.float16)
        shapes["image_embeds"] = None
    key, value = model.new_cache(max(TRACE_CACHE_LEN, 2 * rows + 4))
    inputs["keyCache"], inputs["valueCache"] = key, value
    shapes["keyCache"] = {3: cache_len}
    shapes["valueCache"] = {3: cache_len}
    return inputs, shapes


def prefill_function_name(chunk: int) -> str:
    return f"prefill_{chunk}"


def export_program(
    model: Gemma4Decode, max_context: int, flash_decode: str | None = None, prefill_chunks: tuple[int, ...] = (),
    extra_functions: list | None = None,
):
    """torch.export → coreai-torch decompositions → TorchConverter → AIProgram.

    `flash_decode`: the kernel variant the model's full layers call (see use_flash_decode); its
    Metal lowering is registered with the converter. `prefill_chunks`: a `prefill_C` function
    per chunk size beside `main`, traced from the same module (the converter stores each
    weight once for all functions; the asset gate checks it). `extra_functions`: further entry
    points (gemmaios.convert.multimodal.FunctionExport: `prefill_multimodal` on the same module,
    the embedders), traced after the decoder's own.
    """
    import coreai_torch

    from ..decode_model import export_graph

    graph = export_graph(model).eval()
    functions = [("main", 1)] + [(prefill_function_name(c), c) for c in prefill_chunks]

    def traced(module, inputs: dict, shapes, last: bool):
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

    def export_fn_for(rows: int, last: bool):
        inputs, shapes = reference_inputs(model, max_context, rows)
        return lambda module: traced(module, inputs, shapes, last)

    converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    if flash_decode is not None:
        kernels.register_flash_decode_kernels(converter, (flash_decode,))
    extra = list(extra_functions or ())
    decoder_extras = [f for f in extra if any(m is model for m in f.module.modules())]
    for index, (entry, rows) in enumerate(functions):
        converter.add_pytorch_module(
            graph,
            export_fn=export_fn_for(rows, last=index == len(functions) - 1 and not decoder_extras),
            input_names=model.input_names(),
            output_names=model.output_names(),
            state_names=model.state_names(),
            entrypoint_name=entry,
        )
    for fn in extra:
        last = bool(decoder_extras) and fn is decoder_extras[-1]

        def export_extra(module, fn=fn, last=last):
            return traced(module, fn.inputs, fn.shapes, last)

        converter.add_pytorch_module(fn.module, export_fn=export_extra, input_names=fn.input_names,
                                     output_names=fn.output_names, state_names=fn.state_names or None,
                                     entrypoint_name=fn.name)
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


