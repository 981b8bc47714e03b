"""The build's step list and the entry point the CLI and tests call."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .buildfolder import default_build_dir
from .buildlayout import CHECKPOINT_RECORD
from .checkpoint import require_inputs
from .pipeline import BuildContext, BuildOptions, Pipeline, Step, StepOutcome, StepReport, write_json_atomic


class CheckpointStep(Step):
    name = "checkpoint"
    title = "resolve and validate the checkpoint"

    def inputs(self, ctx: BuildContext) -> dict:
        ckpt = ctx.checkpoint
        key = {"model": ctx.options.model, "revision": ckpt.revision, "checkpoint": ckpt.fingerprint()}
        kinds = _input_kinds(ctx.options)
        if len(kinds) > 1:  # checked here, so a text build's record does not stand in for it
            key["inputs"] = kinds
        return key

    def run(self, ctx: BuildContext) -> StepOutcome:
        ckpt = ctx.checkpoint
        kinds = _input_kinds(ctx.options)
        if len(kinds) > 1:
            # before any step loads a multimodal model: a checkpoint without that input stops here
            # with UnsupportedInput saying why; the 12B's multi-function bundle is Mac-only
            require_inputs(ckpt, kinds)
            from .convert.options import check_unified_multimodal

            check_unified_multimodal(ckpt, ctx.options.vision, getattr(ctx.options, "audio", False), ctx.options.target)
        record = ctx.path(CHECKPOINT_RECORD)
        write_json_atomic(record, {**ckpt.describe(), "fingerprint": ckpt.fingerprint()})
        outputs = [record]
        if ckpt.is_tiny:
            outputs += [ckpt.path / "config.json", ckpt.tokenizer_path, *ckpt.weight_files]
        layers = ckpt.text_config.get("num_hidden_layers")
        return StepOutcome(outputs=outputs, message=f"{ckpt.model_id} ({layers} layers)")


def _input_kinds(options: BuildOptions) -> list[str]:
    return ["text"] + (["image"] if options.vision else []) + (["audio"] if getattr(options, "audio", False) else [])


def all_steps() -> list[Step]:
    from .app import AppStep
    from .compile import CompileStep
    from .convert import ConvertStep
    from .oracle import OracleStep
    from .sign import SignStep
    from .tables import TablesStep

    # The oracle comes before convert: the convert step runs the saved bundle against it.
    return [CheckpointStep(), TablesStep(), OracleStep(), ConvertStep(), CompileStep(), AppStep(), SignStep()]


# The steps that produce a gated bundle: the tables (its per-layer inputs; n/a without PLE) and
# the oracle (the convert step runs the saved bundle against it), then convert itself.
BUNDLE_STEPS = frozenset({"checkpoint", "tables", "oracle", "convert"})


def step_names() -> list[str]:
    return [s.name for s in all_steps()]


def run_build(
    options: BuildOptions,
    build_dir: Path | None = None,
    *,
    only: set[str] | None = None,
    force: set[str] = frozenset(),
    console: Console | None = None,
) -> tuple[BuildContext, list[StepReport]]:
    ctx = BuildContext(build_dir or default_build_dir(options), options, console=console)
    ctx.manifest.set_meta("options", {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()})
    return ctx, Pipeline(all_steps()).run(ctx, only=only, force=force)
