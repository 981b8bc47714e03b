"""Print the decode bandwidth model for a registry model on an architecture.

    python benchmarks/roofline.py                       # E4B int4, untied int4 lm_head, on h18p
    python benchmarks/roofline.py --head fp16           # the tied fp16 head (convert --head-quant fp16)
    python benchmarks/roofline.py --bandwidth 60.9 --measured 15.1
    python benchmarks/roofline.py --contexts 1024,4096,8192,32768   # the KV-by-context table's contexts

The head defaults to --quant, as `gemmaios convert` does since head_quant: int4/int8 bundles
carry an untied per-block-32 copy of the lm_head next to the exact fp16 embedding table.

Bytes per decoded token come from the registry's dimensions alone (gemmaios.roofline);
the bandwidth from the architecture registry or --bandwidth. With a measured decode rate
it also prints the effective bandwidth that rate implies and the efficiency.
"""

from __future__ import annotations

import argparse

from gemmaios.archs import get_arch
from gemmaios.registry import get_model
from gemmaios.roofline import (
    BITS_PER_WEIGHT,
    GB,
    REPORT_CONTEXTS,
    bytes_per_decoded_token,
    context_rows,
    estimate_weight_bytes,
    roofline_tok_s,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="e4b")
    ap.add_argument("--arch", default="h18p")
    ap.add_argument("--quant", default="int4", choices=sorted(BITS_PER_WEIGHT))
    ap.add_argument("--head", choices=sorted(BITS_PER_WEIGHT),
                    help="lm_head storage (default: --quant, as convert's --head-quant default; fp16 = tied)")
    ap.add_argument("--context", type=float, default=256.0, help="mean cached positions while decoding")
    ap.add_argument("--bandwidth", type=float, help="GB/s (default: the arch registry's figure)")
    ap.add_argument("--contexts", default=",".join(map(str, REPORT_CONTEXTS)),
                    help="context lengths of the KV-by-context table (comma-separated)")
    ap.add_argument("--measured", type=float, default=15.1, help="measured decode tok/s (seed 002: 15.1 on iPhone, a 3.7 GB int4 bundle with an untied int4 head)")
    args = ap.parse_args()

    spec, arch = get_model(args.model), get_arch(args.arch)
    head = args.head or args.quant
    est = estimate_weight_bytes(spec, args.quant, head_quant=head)
    total = bytes_per_decoded_token(est.total_bytes, est.kv_bytes_per_position, args.context, est.ple_row_bytes)
    kind_of_head = "tied fp16 head" if head == "fp16" else f"untied {head} head"
    print(f"{spec.key} ({spec.hf_id}) decode, {args.quant} linears, {kind_of_head}, on {arch.name}")
    for name, nbytes in est.parts.items():
        print(f"  {name:28s} {est.params[name] / 1e6:9.1f} M params  {nbytes / GB:7.3f} GB")
    kv = est.kv_bytes_per_position * args.context
    print(f"  {'KV @ context ' + format(args.context, 'g'):28s} {est.kv_bytes_per_position:9d} B/pos     {kv / GB:7.3f} GB")
    print(f"  {'PLE row':28s} {'':19s} {est.ple_row_bytes:7d} B")
    print(f"  {'bytes per decoded token':28s} {'':19s} {total / GB:7.3f} GB")
    print(f"  {'weights stored (bundle)':28s} {'':19s} {est.bundle_bytes / GB:7.3f} GB")
    for line in est.assumptions:
        print(f"    · {line}")
    bandwidth, kind = args.bandwidth, "--bandwidth"
    if bandwidth is None and arch.bandwidth_gbps is not None:
        bandwidth, kind = arch.bandwidth_gbps, "peak, arch registry"
    if bandwidth is None and getattr(arch, "observed_bandwidth_gbps", None) is not None:
        bandwidth, kind = arch.observed_bandwidth_gbps, "observed effective, arch registry"
    rows = context_rows(spec, args.quant, head, tuple(int(c) for c in args.contexts.split(",")))
    print("KV by context (fp16 KV; capacity = what the engine binds, doubling from 256):")
    print(f"  {'context':>8s} {'capacity':>8s} {'KV read/token':>14s} {'(window-only)':>14s} {'KV memory':>10s} "
          f"{'weights':>8s} {'bytes/token':>11s} {'KV share':>8s}" + (" roofline" if bandwidth else ""))
    for r in rows:
        window = f"{r.kv_read_window_bytes / GB:.3f} GB" if r.kv_read_window_bytes is not None else "-"
        print(f"  {r.context:8d} {r.capacity:8d} {r.kv_read_bytes / GB:11.3f} GB {window:>14s} "
              f"{r.kv_state_bytes / GB:7.3f} GB {r.weight_bytes / GB:5.3f} GB {r.bytes_per_token / GB:8.3f} GB "
              f"{r.kv_share:8.1%}" + (f" {roofline_tok_s(r.bytes_per_token, bandwidth):5.1f} tok/s" if bandwidth else ""))
    print("    · KV read: every cache-owning layer reads its own heads × head dim of all cached rows (our graph "
          "masks the sliding layers' old rows rather than skipping them; window-only is what skipping would read)")
    print("    · KV memory: the engine's unified key + value state, padded to the widest layer, at its bound capacity")
    implied = args.measured * total / GB
    print(f"measured {args.measured:g} tok/s ⇒ {implied:.1f} GB/s effective")
    if bandwidth is None:
        print(f"roofline: the registry has no bandwidth figure for {arch.name}; pass --bandwidth GBPS")
        return
    roof = roofline_tok_s(total, bandwidth)
    print(f"roofline at {bandwidth:g} GB/s ({kind}): {roof:.1f} tok/s; measured {args.measured:g} = "
          f"{args.measured / roof:.0%} of it")


if __name__ == "__main__":
    main()
