"""Numerics of the flash-decode kernels' numpy model against float64 attention, at 12B/31B shapes.

Prints, per shape and variant: the largest error, the largest error as a fraction of the stated
per-element bound (gemmaios.kernels.error_bound), the largest bound, and the model's CPU time.
Run: PYTHONPATH=toolkit python benchmarks/flash_decode_numerics.py [--max-kv 32768]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gemmaios import kernels as K


def rms_rows(rng, shape, gain):
    x = rng.standard_normal(shape)
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True)) * gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-kv", type=int, default=32768, help="longest KV cache to try")
    parser.add_argument("--q-gain", type=float, default=0.3, help="query norm gain (1.0: scores ~ N(0, 512))")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'shape':>10} {'T':>6} {'variant':>7} {'max |err|':>10} {'err/bound':>9} {'max bound':>10} {'model s':>8}"
    )
    for name, heads, kv_heads in (("12B", 16, 1), ("31B", 32, 4)):
        for kv_len in (1, 7, 64, 1024, 4096, 32768):
            if kv_len > args.max_kv or (kv_heads > 1 and kv_len > 4096):
                continue
            q = rms_rows(rng, (heads, 512), args.q_gain).astype(np.float16)
            k = rms_rows(rng, (kv_heads, kv_len, 512), 1.0).astype(np.float16)
            v = rng.standard_normal((kv_heads, kv_len, 512)).astype(np.float16)
            ref = K.naive_sdpa(q, k, v)
            for variant in K.KERNEL_SPECS:
                start = time.perf_counter()
                out = K.flash_decode_model(q, k, v, variant)
                seconds = time.perf_counter() - start
                bound = K.error_bound(q, k, v, variant)
                err = np.abs(out.astype(np.float64) - ref)
                print(
                    f"{name:>10} {kv_len:>6} {variant:>7} {err.max():>10.3g} {(err / bound).max():>9.3f} "
                    f"{bound.max():>10.3g} {seconds:>8.2f}"
                )


if __name__ == "__main__":
    main()
