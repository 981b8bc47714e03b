"""Convert a synthetic full-size Gemma 4 E4B checkpoint; print wall time and peak RSS.

The checkpoint has the real E4B text config and tensor shapes (gemmaios.registry
MODELS["e4b"]: vocab 262144, 42 layers, hidden 2560, intermediate 10240, 8 heads / 2 KV
heads, head dims 256/512, 18 KV-shared layers without K/V weights as in the QAT release,
PLE 256, sliding window 512) and random bf16 weights, written shard by shard. The
conversion runs in a child process so its peak RSS is measured alone.

    python benchmarks/convert_e4b_synthetic.py --work /tmp/e4b-synth [--quant int4] [--ple provider]

Target: peak RSS <= 12 GB. Needs ~16 GB of disk for the checkpoint plus ~4 GB for the bundle.
Measured on this tree (2 shared cores, checkpoint in page cache), int4: provider with the
untied int4 head (the default) peak RSS 8.66 GB, wall 128 s, bundle 3.955 GB; provider with
`--head-quant fp16` (tied) 7.88 GB, 110 s; tbl 8.66 GB, 153 s. The peak is now coreai-torch's
to_coreai building the MLIR constants. (Before dropping our int8 levels ahead of coreai-torch's
int4 packing and lowering the mmap threshold to 4 MiB: 13.2-14.2 GB.)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARD_BYTES = 2 << 30


def e4b_text_config() -> dict:
    from transformers import Gemma4TextConfig

    from gemmaios.registry import MODELS

    spec = MODELS["e4b"]
    cfg = Gemma4TextConfig(
        vocab_size=spec.vocab_size,
        vocab_size_per_layer_input=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        global_head_dim=spec.global_head_dim,
        hidden_size_per_layer_input=spec.hidden_size_per_layer_input,
        num_kv_shared_layers=spec.num_kv_shared_layers,
        sliding_window=512,
        max_position_embeddings=131072,
        final_logit_softcapping=spec.final_logit_softcapping,
        tie_word_embeddings=True,
    )
    data = cfg.to_dict()
    data["architectures"] = ["Gemma4ForCausalLM"]
    return data


def tensor_shapes(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    from gemmaios.decode_model import DecodeSpec

    spec = DecodeSpec.from_text_config(config)
    h, v, ple = spec.hidden_size, spec.vocab_size, spec.ple_dim
    inter = config["intermediate_size"]
    shapes = [
        ("model.embed_tokens.weight", (v, h)),
        ("model.embed_tokens_per_layer.weight", (spec.ple_vocab, spec.num_layers * ple)),
        ("model.per_layer_model_projection.weight", (spec.num_layers * ple, h)),
        ("model.per_layer_projection_norm.weight", (ple,)),
        ("model.norm.weight", (h,)),
    ]
    for lay in spec.layers:
        p = f"model.layers.{lay.index}."
        d, heads = lay.head_dim, spec.num_heads
        shapes += [
            (p + "self_attn.q_proj.weight", (heads * d, h)),
            (p + "self_attn.q_norm.weight", (d,)),
            (p + "self_attn.o_proj.weight", (h, heads * d)),
            (p + "mlp.gate_proj.weight", (inter, h)),
            (p + "mlp.up_proj.weight", (inter, h)),
            (p + "mlp.down_proj.weight", (h, inter)),
            (p + "per_layer_input_gate.weight", (ple, h)),
            (p + "per_layer_projection.weight", (h, ple)),
            (p + "layer_scalar", (1,)),
        ]
        shapes += [
            (p + name + ".weight", (h,))
            for name in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                         "post_feedforward_layernorm", "post_per_layer_input_norm")
        ]
        if lay.owns_kv:  # the QAT release prunes K/V weights of KV-shared layers
            shapes += [
                (p + "self_attn.k_proj.weight", (lay.kv_heads * d, h)),
                (p + "self_attn.v_proj.weight", (lay.kv_heads * d, h)),
                (p + "self_attn.k_norm.weight", (d,)),
            ]
    return shapes


def write_checkpoint(out: Path) -> float:
    """Write config, tokenizer and bf16 shards; returns seconds."""
    import torch
    from safetensors.torch import save_file

    from gemmaios.tiny import ensure_tiny_checkpoint

    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    config = e4b_text_config()
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tiny = ensure_tiny_checkpoint(out.parent / "tiny-tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(tiny / name, out / name)
    # One random pool, rolled and tiled per tensor: random-looking weights without
    # generating 8e9 random numbers.
    gen = torch.Generator().manual_seed(0)
    pool = (torch.randn(1 << 26, generator=gen) * 0.02).to(torch.bfloat16)
    shard: dict = {}
    size, offset, index = 0, 0, {}

    def flush() -> None:
        nonlocal shard, size
        name = f"model-{len(set(index.values())) + 1:05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        index.update(dict.fromkeys(shard, name))
        print(f"  wrote {name} ({size / 1e9:.2f} GB)", flush=True)
        shard, size = {}, 0

    for name, shape in tensor_shapes(config):
        n = 1
        for d in shape:
            n *= d
        if name.endswith("norm.weight") or name.endswith("layer_scalar"):
            tensor = torch.ones(shape, dtype=torch.bfloat16)
        else:
            rolled = pool.roll(-(offset % pool.numel()))
            tensor = (rolled.repeat(-(-n // pool.numel())) if n > pool.numel() else rolled)[:n].reshape(shape)
            offset += 7919
        if size and size + n * 2 > SHARD_BYTES:
            flush()
        shard[name] = tensor
        size += n * 2
    flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}, indent=1))
    return time.time() - start


def own_peak_rss_bytes() -> int:
    """This process's own peak RSS since it was exec'd.

    Linux keeps `ru_maxrss` across exec, so a child started by a parent that had just written
    the 14 GB checkpoint reports the parent's high-water mark; VmHWM belongs to the new address
    space and starts again at exec. macOS has no /proc: there ru_maxrss (bytes) is the fallback.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_child(cmd: list[str]) -> tuple[int, dict]:
    """Run the child, echo its output, return (exit code, its final JSON line)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    result: dict = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("{"):
            result = json.loads(line)
    return proc.wait(), result


def convert_child(checkpoint_dir: Path, out_dir: Path, quant: str, ple: str, max_context: int,
                  head_quant: str | None = None, prefill_chunk: str = "0") -> None:
    """Runs in the child process: convert and print a JSON line with timings and peak RSS."""
    import threading

    import psutil

    from gemmaios.checkpoint import load_checkpoint
    from gemmaios.convert import convert_checkpoint

    proc = psutil.Process()
    samples: list[tuple[float, float, str]] = []
    stage = {"name": "start"}
    t0 = time.time()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append((round(time.time() - t0, 1), proc.memory_info().rss / 1e9, stage["name"]))

    threading.Thread(target=sample, daemon=True).start()

    def progress(name: str, done: int, total: int) -> None:
        stage["name"] = name
        if name == "layers":
            print(f"  layer {done}/{total}  rss {proc.memory_info().rss / 1e9:.2f} GB  t={time.time() - t0:.0f}s", flush=True)
        else:
            print(f"  {name}  rss {proc.memory_info().rss / 1e9:.2f} GB  t={time.time() - t0:.0f}s", flush=True)

    ckpt = load_checkpoint(checkpoint_dir, model_id="synthetic-e4b")
    result = convert_checkpoint(ckpt, out_dir, quant, ple, max_context, progress=progress, gates=False,
                                head_quant=head_quant, prefill_chunks=prefill_chunk)
    stop.set()
    peak_by_stage: dict[str, float] = {}
    for _, rss, name in samples:
        peak_by_stage[name] = max(peak_by_stage.get(name, 0.0), round(rss, 2))
    bundle_bytes = sum(p.stat().st_size for p in result.bundle_dir.rglob("*") if p.is_file())
    print(json.dumps({
        "seconds": result.seconds,
        "peak_rss_gb": round(own_peak_rss_bytes() / 1e9, 2),
        "peak_rss_by_stage_gb": peak_by_stage,
        "bundle": str(result.bundle_dir),
        "bundle_gb": round(bundle_bytes / 1e9, 3),
        "asset_gate": result.gates.get("asset"),
    }), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/gemmaios-e4b-synthetic"))
    ap.add_argument("--quant", default="int4")
    ap.add_argument("--ple", default="provider")
    ap.add_argument("--head-quant", help="lm_head storage (default: --quant; fp16 = tied)")
    ap.add_argument("--max-context", type=int, default=4096)
    ap.add_argument("--prefill-chunk", default="0", help="prefill_C functions beside main: 0 (off), 8, 16 or 16,8")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint and bundle afterwards")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    ckpt_dir, out_dir = args.work / "checkpoint", args.work / "bundle"
    if args.child:
        convert_child(ckpt_dir, out_dir, args.quant, args.ple, args.max_context, args.head_quant, args.prefill_chunk)
        return
    if not (ckpt_dir / "model.safetensors.index.json").is_file():
        print(f"writing synthetic E4B checkpoint to {ckpt_dir} ...", flush=True)
        seconds = write_checkpoint(ckpt_dir)
        print(f"checkpoint written in {seconds:.0f}s", flush=True)
    print(f"converting ({args.quant}, {args.ple}, max context {args.max_context}, prefill chunk "
          f"{args.prefill_chunk}) ...", flush=True)
    start = time.time()
    cmd = [sys.executable, __file__, "--child", "--work", str(args.work), "--quant", args.quant,
           "--ple", args.ple, "--max-context", str(args.max_context)]
    if args.head_quant:
        cmd += ["--head-quant", args.head_quant]
    cmd += ["--prefill-chunk", args.prefill_chunk]
    code, result = run_child(cmd)
    wall = time.time() - start
    # The converter's own peak (its VmHWM), not RUSAGE_CHILDREN: that one inherits this
    # process's peak from writing the checkpoint.
    child_peak = result.get("peak_rss_gb")
    shown = f"{child_peak:.2f} GB" if child_peak is not None else "unknown (the child printed no result)"
    print(f"conversion wall time: {wall:.0f}s   peak RSS (converter): {shown}   exit {code}")
    if child_peak is not None:
        print("target peak RSS <= 12 GB: " + ("met" if child_peak <= 12 else "NOT met"))
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
