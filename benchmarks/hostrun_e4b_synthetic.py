"""What `gemmaios run` costs on a Linux box for a full-size bundle: load time, one decode step, peak RSS.

Builds (or reuses) the synthetic full-size E4B checkpoint of convert_e4b_synthetic.py, converts
it (int4, provider PLE, no parity gates), writes its PLE tables, then in a fresh child process
loads the bundle with Core AI's runtime (gemmaios.hostrun.BundleRunner) and times one decode
step. The child's own peak RSS (VmHWM) is printed, plus the step estimate `gemmaios run`
shows up front.

    python benchmarks/hostrun_e4b_synthetic.py --work /tmp/e4b-synth [--steps 1] [--keep]

Needs ~16 GB of disk for the checkpoint, ~4 GB for the bundle, ~3 GB for the tables, and
patience: a decode step on Core AI's CPU runtime takes minutes at this size.

Measured here (2 cores, 24 GB; the 3.955 GB int4 bundle): peak RSS 8.14 GB (the runtime's
own VmHWM), load 35.8 s and 1173 s for one decode step while the machine also ran the test
suite; an earlier probe on a quieter machine took ~420 s per step and 12-19 s to load, which is
what `gemmaios run`'s up-front estimate uses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _synthetic():
    spec = importlib.util.spec_from_file_location("convert_e4b_synthetic", HERE / "convert_e4b_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(work: Path, steps: int) -> None:
    from gemmaios.hostrun import BundleInfo, BundleRunner, asset_weight_bytes, estimate_step_seconds

    synth = _synthetic()
    bundle_dir = next(p for p in (work / "bundle").iterdir() if (p / "metadata.json").is_file())
    info = BundleInfo.load(bundle_dir)
    started = time.perf_counter()
    with BundleRunner(bundle_dir, work / "tables") as runner:
        load = time.perf_counter() - started
        print(f"  loaded in {load:.1f}s; decoding {steps} step(s) ...", flush=True)
        gen = runner.generate([2] * steps, 1)  # `steps` calls of `main`, the last one yields a token
        step = gen.prefill_seconds / steps
    print(json.dumps({
        "bundle": info.name,
        "asset_gb": round(asset_weight_bytes(info) / 1e9, 3),
        "load_seconds": round(runner.load_seconds, 2),
        "seconds_per_step": round(step, 2),
        "estimate_seconds_per_step": round(estimate_step_seconds(info), 1),
        "peak_rss_gb": round(synth.own_peak_rss_bytes() / 1e9, 2),
    }), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/gemmaios-e4b-synthetic"))
    ap.add_argument("--steps", type=int, default=1, help="decode steps to time (each takes minutes)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint, bundle and tables afterwards")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.work, args.steps)
        return
    synth = _synthetic()
    ckpt_dir = args.work / "checkpoint"
    if not (ckpt_dir / "model.safetensors.index.json").is_file():
        print(f"writing synthetic E4B checkpoint to {ckpt_dir} ...", flush=True)
        print(f"checkpoint written in {synth.write_checkpoint(ckpt_dir):.0f}s", flush=True)
    if not (args.work / "bundle").is_dir():
        print("converting (int4, provider, no parity gates) ...", flush=True)
        code, _ = synth.run_child([sys.executable, str(HERE / "convert_e4b_synthetic.py"), "--child",
                                   "--work", str(args.work), "--quant", "int4", "--ple", "provider"])
        if code:
            sys.exit(code)
    if not (args.work / "tables" / "embed_per_layer.json").is_file():
        from gemmaios.checkpoint import load_checkpoint
        from gemmaios.tables import write_tables

        print("writing PLE tables ...", flush=True)
        write_tables(load_checkpoint(ckpt_dir, model_id="synthetic-e4b"), args.work / "tables")
    code, result = synth.run_child([sys.executable, __file__, "--child", "--work", str(args.work),
                                    "--steps", str(args.steps)])
    if result:
        print(f"Core AI runtime on this machine: load {result['load_seconds']:.1f}s, "
              f"{result['seconds_per_step']:.0f}s per decode step "
              f"(gemmaios run estimates {result['estimate_seconds_per_step']:.0f}s), "
              f"peak RSS {result['peak_rss_gb']:.2f} GB for a {result['asset_gb']:.2f} GB bundle")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
