"""The convert step's bundle-run gate: the saved bundle through Core AI's runtime against the oracle."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import hostfacts
from .bundleinfo import BundleInfo, asset_weight_bytes, estimate_step_seconds
from .errors import BundleGateFailed, HostRunError
from .hostfacts import Progress
from .runner import BundleRunner
from .transcripts import coreai_version


@dataclass
class BundleGateReport:
    """Per prompt: the runtime's verdict against the oracle, and its logit error vs the torch module."""

    summary: str
    exact: int
    total: int
    verdicts: list[dict]
    max_logit_error: float | None
    logit_error_bound: float
    oracle_median_margin: float
    seconds: float
    runtime: str = ""
    status: str = "passed"

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# The CPU runtime computes in f16 with f16 accumulation; logits are softcapped (|l| <= 30) and
# stored in f16 (ulp 2^-5 near 30). Measured on the trained tiny model's fp16/int8/int4 bundles
# against the same weights in eager fp32: see tests/test_hostrun.py and the README.
LOGIT_ERROR_BOUND = 0.25
# The widest attention head LOGIT_ERROR_BOUND was measured at (the E4B-shaped tiny model's full layers).
CALIBRATED_HEAD_DIM = 32


def logit_error_bound(text_config: dict) -> float:
    """The bundle-run gate's logit-error bound for a model: LOGIT_ERROR_BOUND up to heads
    CALIBRATED_HEAD_DIM wide, growing with the square root of a wider head.

    Gemma 4 attends with unit scale on RMS-normed queries and keys, so each score is a sum of
    head-dim products that the CPU runtime accumulates in f16, and the 12B/31B full layers also
    project 16-32 such 512-wide heads back through one f16 sum. Measured on trained tiny models
    (docs/mac-target.md): heads of 32, fp16 bundle 0.064 (bound 0.25); heads of 512 (12B-shaped
    unified), fp16 0.427 and int4 0.473 with every prompt token-exact (bound 1.0)."""
    from ..kernels.configs import full_head_dim  # global_head_dim, or the 12B/31B per-layer override

    widest = max(int(text_config.get("head_dim") or 0), full_head_dim(text_config))
    return LOGIT_ERROR_BOUND * math.sqrt(max(1.0, widest / CALIBRATED_HEAD_DIM))


def bundle_gate(
    bundle_dir: Path,
    oracle,
    tables_dir: Path | None,
    *,
    reference: Callable[[list[int], list[int]], np.ndarray] | None = None,
    near_tie_margin: float | None = None,
    logit_error_bound: float = LOGIT_ERROR_BOUND,
    progress: Progress | None = None,
) -> BundleGateReport:
    """Run the saved bundle through Core AI's runtime on every oracle prompt and judge it.

    Each prompt is decoded greedily for the oracle's N tokens and scored with the oracle's rule
    (exact, or a flip at a near-tie). `reference(prompt_ids, tokens)`: the torch module's
    teacher-forced logits along the same tokens, for the logit-error figure. Raises
    BundleGateFailed at the first clear divergence or when the logit error exceeds the bound.
    """
    from ..oracle.scoring import DEFAULT_NEAR_TIE_MARGIN, Generation, score_against_oracle

    margin_rule = DEFAULT_NEAR_TIE_MARGIN if near_tie_margin is None else near_tie_margin
    started = time.perf_counter()
    generations: list[Generation] = []
    errors: list[float] = []
    with BundleRunner(bundle_dir, tables_dir) as runner:
        name = runner.bundle.name
        for index, prompt in enumerate(oracle.prompts):
            gen = runner.generate(prompt.prompt_ids, oracle.max_new_tokens, keep_logits=reference is not None)
            generations.append(Generation(tuple(prompt.prompt_ids), tuple(gen.generated_ids), index=index,
                                          prompt_id=prompt.id, where=f"bundle run, prompt {prompt.id}"))
            if reference is not None:
                ref = reference(prompt.prompt_ids, gen.generated_ids)
                errors.append(float(np.max(np.abs(np.stack(gen.logits) - ref))))
            if progress:
                progress(1)
    score = score_against_oracle(generations, oracle, near_tie_margin=margin_rule)
    margins = [m for p in oracle.prompts for m in p.margins if math.isfinite(m)]
    verdicts = [{"prompt": s.prompt_id, "verdict": s.verdict, "divergence": s.divergence, "margin": s.margin,
                 "expected": s.expected, "got": s.got, "logit_error": errors[i] if errors else None}
                for i, s in enumerate(score.prompts)]
    worst = max(errors) if errors else None
    summary = f"{score.exact}/{score.total} exact vs fp32 oracle under Core AI's runtime ({oracle.max_new_tokens} tokens)"
    if score.near_ties:
        summary += f", {len(score.near_ties)} near-tie flip(s)"
    if worst is not None:
        summary += f"; max |Δlogit| vs torch {worst:.3g}"
    report = BundleGateReport(summary=summary, exact=score.exact, total=score.total, verdicts=verdicts,
                              max_logit_error=worst, logit_error_bound=logit_error_bound,
                              oracle_median_margin=float(np.median(margins)) if margins else float("nan"),
                              seconds=round(time.perf_counter() - started, 2),
                              runtime=f"coreai-core {coreai_version()} ({platform.system()} "
                                      f"{'system runtime' if platform.system() == 'Darwin' else 'CPU runtime, f16 accumulation'})")
    if score.failures:
        first = score.failures[0]
        detail = (f"prompt {first.prompt_id!r} diverged at generated token {first.divergence}: oracle {first.expected}, "
                  f"bundle {first.got}, oracle margin {first.margin:.3g}" if first.divergence is not None
                  else f"prompt {first.prompt_id!r}: {first.verdict} ({first.note})")
        raise BundleGateFailed(f"{name}: {detail} — {summary}", prompt=first.prompt_id,
                               position=first.divergence,
                               hint="the bundle computes something other than the checkpoint: a conversion bug, "
                                    "wrong PLE tables, or damaged weights; see gemmaios.decode_model")
    if worst is not None and worst > logit_error_bound:
        at = int(np.argmax(errors))
        raise BundleGateFailed(f"{name}: logits under Core AI's runtime differ from the torch module "
                               f"by {worst:.3g} on prompt {oracle.prompts[at].id!r} (bound {logit_error_bound}) — {summary}",
                               prompt=oracle.prompts[at].id, position=None,
                               hint="the saved graph does not compute what the module does; convert again and report it")
    return report


def torch_reference(checkpoint, quant: str, head_quant: str | None, flash_decode: str | None, tables_dir: Path | None,
                    recipe=None, awq: dict | None = None):
    """The bundle's own weights in eager fp32 (gemmaios.decode_model), teacher-forced along given tokens.

    Returns `reference(prompt_ids, tokens) -> logits [len(tokens), V]`, with the per-layer inputs
    from the same tables the runtime gets: the difference is then the runtime's arithmetic alone.
    `recipe`/`awq`: a mixed-bit build's plan and AWQ scales (quant "fp16" with neither: the fp32 model).
    """
    import torch

    from ..decode_model import Gemma4Decode, use_flash_decode
    from ..parity import decode_steps

    model = Gemma4Decode(checkpoint, quant=quant, head_quant=head_quant, dtype=torch.float32,
                         recipe=recipe, awq=awq).eval()
    use_flash_decode(model, flash_decode)
    ple = None
    if model.spec.ple_dim:
        from ..tables.reader import PleTables

        tables = PleTables(Path(tables_dir))
        ple = lambda token: torch.from_numpy(tables.gather(token)).float()  # noqa: E731

    def reference(prompt_ids: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        _, logits = decode_steps(model, list(prompt_ids), len(tokens), ple, forced=list(tokens))
        return logits.numpy()

    return reference


def build_bundle_check(
    checkpoint,
    oracle_path: Path,
    tables_dir: Path | None,
    *,
    quant: str,
    head_quant: str | None,
    flash_decode: str | None = None,
    progress: Progress | None = None,
    recipe=None,
    awq: dict | None = None,
) -> Callable[[Path], dict]:
    """The convert step's gate: run the staged bundle through Core AI's runtime (see bundle_gate).

    Never passes silently: a bundle too large for a CPU runtime is recorded as skipped with the
    time it would take, and a bundle whose Metal kernel the Linux runtime cannot execute as
    not run, with the runtime's reason.
    """

    def check(staged: Path) -> dict:
        from ..oracle.records import load_oracle

        info = BundleInfo.load(staged)
        size = asset_weight_bytes(info)
        if size > hostfacts.LARGE_BUNDLE_BYTES:  # read at call time (tests lower it)
            minutes = estimate_step_seconds(info) / 60
            return {"status": "skipped", "summary": (
                f"skipped: a {size / 1e9:.1f} GB bundle takes ~{minutes:.0f} min per token on Core AI's CPU runtime; "
                f"run it on a Mac with `gemmaios run --bundle <bundle>`")}
        oracle = load_oracle(oracle_path)
        bound = logit_error_bound(checkpoint.text_config)
        if recipe is not None:
            return recipe_bundle_gate(staged, oracle, tables_dir, recipe,
                                      reference=torch_reference(checkpoint, quant, head_quant, None, tables_dir,
                                                                recipe=recipe, awq=awq),
                                      fp32=torch_reference(checkpoint, "fp16", "fp16", None, tables_dir),
                                      logit_error_bound=bound, progress=progress)
        reference = torch_reference(checkpoint, quant, head_quant, flash_decode, tables_dir)
        try:
            return bundle_gate(staged, oracle, tables_dir, reference=reference, logit_error_bound=bound,
                               progress=progress).as_dict()
        except HostRunError as exc:
            if flash_decode is None:
                raise
            return {"status": "not run", "summary": (
                f"not run: Core AI's {platform.system()} runtime cannot execute the {flash_decode} flash-decode "
                f"Metal kernel ({exc.args[0]}); run the bundle on a Mac to check it")}

    return check




def recipe_bundle_gate(
    bundle_dir: Path,
    oracle,
    tables_dir: Path | None,
    recipe,
    *,
    reference: Callable[[list[int], list[int]], np.ndarray],
    fp32: Callable[[list[int], list[int]], np.ndarray],
    logit_error_bound: float = LOGIT_ERROR_BOUND,
    progress: Progress | None = None,
) -> dict:
    """The runtime gate of a mixed-bit recipe bundle: teacher-forced along the fp32 oracle's tokens.

    A recipe changes the model on purpose, so its greedy text is not held to the fp32 oracle's
    token for token; instead, under Core AI's runtime, its mean KL(fp32 || bundle) per token and its
    top-1 agreement with the oracle's tokens must meet the recipe's floors, and its logits must
    match the recipe's own weights run in eager fp32 (`reference`) within the logit-error bound:
    the asset computes what the recipe's module does. BundleGateFailed on either.
    """
    from ..recipe import judge_floors, kl_top1

    started = time.perf_counter()
    ours, refs, errors = [], [], []
    with BundleRunner(bundle_dir, tables_dir) as runner:
        name = runner.bundle.name
        for prompt in oracle.prompts:
            got = runner.forced(prompt.prompt_ids, prompt.generated_ids)
            ours.append(got)
            refs.append(fp32(prompt.prompt_ids, prompt.generated_ids))
            errors.append(float(np.max(np.abs(got - reference(prompt.prompt_ids, prompt.generated_ids)))))
            if progress:
                progress(1)
    stats = kl_top1(np.concatenate(refs), np.concatenate(ours))
    passed, rule = judge_floors(recipe, stats["kl_mean"], stats["top1"])
    worst = max(errors)
    summary = (f"recipe {recipe.name} under Core AI's runtime vs fp32 ({stats['tokens']} teacher-forced tokens): "
               f"mean KL {stats['kl_mean']:.4f}, top-1 {stats['top1']:.1%} ({rule}); max |Δlogit| vs the "
               f"recipe's torch module {worst:.3g}")
    report = {"status": "passed" if passed and worst <= logit_error_bound else "failed", "summary": summary,
              **stats, "floors": rule, "max_logit_error": worst, "logit_error_bound": logit_error_bound,
              "prompts": len(oracle.prompts), "seconds": round(time.perf_counter() - started, 2),
              "runtime": f"coreai-core {coreai_version()} ({platform.system()})"}
    if not passed:
        raise BundleGateFailed(f"{name}: {summary}", prompt=None, position=None,
                               hint="give the fragile tensors more bits (`gemmaios sensitivity` ranks them), "
                                    "or loosen the recipe's floors if that loss is acceptable")
    if worst > logit_error_bound:
        raise BundleGateFailed(f"{name}: logits under Core AI's runtime differ from the recipe's torch module by "
                               f"{worst:.3g} (bound {logit_error_bound}) — {summary}", prompt=None, position=None,
                               hint="the saved graph does not compute what the module does; convert again and report it")
    return report
