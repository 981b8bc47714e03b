"""The `tables` pipeline step: writes and verifies the tables for a build."""

from __future__ import annotations

import math

from ..pipeline import BuildContext, Step, StepOutcome
from ..steprecords import TablesDetails
from .layout import TABLES_DIR, TABLES_FORMAT
from .sidecar import read_sidecar
from .source import not_applicable_reason, table_source, table_tensor_name
from .verify import DEFAULT_SAMPLE, verify_tables
from .writer import human_size, write_tables_from_source


class TablesStep(Step):
    name = "tables"
    title = "int8 per-layer embedding table + scales for the app's mmap gather"

    def applicable(self, ctx: BuildContext) -> str | None:
        return not_applicable_reason(ctx.checkpoint)

    def inputs(self, ctx: BuildContext) -> dict:
        return {
            "checkpoint": ctx.step_fingerprint("checkpoint"),
            "tensor": table_tensor_name(ctx.checkpoint),
            "format": TABLES_FORMAT,
            "verify_count": DEFAULT_SAMPLE,
        }

    def run(self, ctx: BuildContext) -> StepOutcome:
        source = table_source(ctx.checkpoint)
        out_dir = ctx.path(TABLES_DIR)
        with ctx.progress(f"int8 table {source.rows}×{source.cols}", total=source.rows) as advance:
            result = write_tables_from_source(source, out_dir, progress=advance)
        report = verify_tables(ctx.checkpoint, out_dir)
        how = "reused intact files" if result.reused else (
            f"{human_size(source.nbytes)} in {result.seconds:.1f}s, {source.nbytes / max(result.seconds, 1e-9) / 1e9:.2f} GB/s")
        if result.rewrite_reason not in ("", "no tables yet"):
            how += f"; rewritten because {result.rewrite_reason}"
        # Hashed while writing, or re-verified when reused: the manifest need not read 2.8 GB again.
        files = read_sidecar(out_dir)["files"]
        return StepOutcome(
            outputs=[result.i8, result.scale, result.sidecar],
            known_sha256={result.i8: files["i8"]["sha256"], result.scale: files["scale"]["sha256"]},
            details=TablesDetails(
                i8=f"{TABLES_DIR}/{result.i8.name}", scale=f"{TABLES_DIR}/{result.scale.name}",
                sidecar=f"{TABLES_DIR}/{result.sidecar.name}", shape=[source.rows, source.cols],
                num_layers=source.num_layers, dim=source.dim, embed_scale=math.sqrt(source.dim),
                source_tensor=source.tensor, verification=report.as_dict()),
            message=(f"{source.rows}×{source.cols} int8 ({how}); {len(report.ids)} ids match HF within the "
                     f"int8 bound (max {report.max_bound_ratio:.3f}× bound)"),
        )
