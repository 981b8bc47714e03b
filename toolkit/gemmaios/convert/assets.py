"""Encoder assets beside the decoder (the vision and audio towers): one `main`, static shapes."""

from __future__ import annotations

import torch

from .export import free_memory
from .gates import parse_io_specs


def export_static_asset(module: torch.nn.Module, inputs: dict, input_names: tuple[str, ...],
                        output_names: tuple[str, ...], out) -> tuple[list[dict], list[dict]]:
    """An encoder asset (one `main`, static shapes: the vision and audio towers) written to
    `out`: torch.export → coreai-torch → AIProgram → .aimodel; returns main's (inputs, outputs)
    as the saved asset states them (gates.parse_io_specs)."""
    import coreai.runtime as rt
    import coreai_torch
    from coreai.authoring.asset import AIModelAsset


    def export_fn(graph):
        with torch.no_grad():
            exported = torch.export.export(graph, args=(), kwargs=inputs)
        return exported.run_decompositions(coreai_torch.get_decomp_table())

    converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
    converter.add_pytorch_module(module.eval(), export_fn=export_fn, input_names=input_names,
                                 output_names=output_names, state_names=(), entrypoint_name="main")
    program = converter.to_coreai()
    converter.clear()
    optimize = getattr(program, "optimize", None)
    if callable(optimize):
        optimize()
    program.save_asset(out, rt.AIModelAssetMetadata())
    del program
    free_memory()
    summary = AIModelAsset.load(out).summary(include_statistics=False)
    return parse_io_specs(summary.function_inputs("main")), parse_io_specs(summary.function_outputs("main"))
