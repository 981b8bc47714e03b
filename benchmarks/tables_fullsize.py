"""Full-size PLE table benchmark: the E4B shape (262144 × 42·256) from a synthetic bf16 safetensors file.

Prints the writer's throughput (GB/s of bf16 input), its peak RSS, and the ratio to a plain
numpy copy of the same bytes (positioned reads into a numpy buffer, written to a new file,
same chunking) measured in the same run; then the gather's per-token latency over random ids
with a warm page cache. Targets: writer >= 50% of the copy's speed, peak RSS <= 1.5 GB.

    PYTHONPATH=toolkit python benchmarks/tables_fullsize.py [--dir /tmp] [--rows 262144]

Each measured phase runs in a fresh subprocess so its peak RSS (VmHWM) is its own, and the
page cache is flushed to disk (sync) between phases so one phase's dirty pages do not slow
the next. Needs ~8.5 GB free on --dir (input + tables); the copy's output is deleted at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TENSOR = "model.language_model.embed_tokens_per_layer.weight"


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_synthetic(path: Path, rows: int, cols: int, chunk_rows: int = 2048) -> None:
    """A safetensors file holding one bf16 [rows, cols] tensor, written chunk by chunk."""
    header = {TENSOR: {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [0, rows * cols * 2]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            # Normal values with a per-row spread (so row scales differ), rounded to bf16 by
            # keeping the top 16 bits of each f32.
            values = rng.standard_normal((n, cols), dtype=np.float32)
            values *= rng.uniform(0.005, 0.1, size=(n, 1)).astype(np.float32)
            fh.write((values.view(np.uint32) >> 16).astype("<u2").tobytes())


def phase_copy(src: Path, dst: Path | None, chunk_bytes: int) -> dict:
    """Copy the tensor's bytes through a numpy buffer into `dst` (None: read only, no output file)."""
    from gemmaios.tables import read_safetensors_header

    header, data_start = read_safetensors_header(src)
    begin, end = header[TENSOR]["data_offsets"]
    total = end - begin
    buf = np.empty(chunk_bytes, np.uint8)
    fd = os.open(src, os.O_RDONLY)
    cpu, started = cpu_seconds(), time.perf_counter()
    with open(dst or os.devnull, "wb") as out:
        done = 0
        while done < total:
            n = min(chunk_bytes, total - done)
            got = os.preadv(fd, [memoryview(buf[:n])], data_start + begin + done)
            if dst is not None:
                out.write(memoryview(buf[:got]))
            done += got
    seconds = time.perf_counter() - started
    os.close(fd)
    return {"seconds": seconds, "cpu": cpu_seconds() - cpu, "bytes": total, "peak_rss": peak_rss_bytes()}


def phase_write(src: Path, out_dir: Path, layers: int, dim: int, workers: int | None) -> dict:
    from gemmaios.tables import open_table_source, write_tables_from_source

    source = open_table_source(src, TENSOR, num_layers=layers, dim=dim)
    cpu, started = cpu_seconds(), time.perf_counter()
    result = write_tables_from_source(source, out_dir, reuse=False, workers=workers)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu": cpu_seconds() - cpu, "bytes": source.nbytes, "peak_rss": peak_rss_bytes(),
            "reused": result.reused}


def phase_gather(out_dir: Path, count: int) -> dict:
    from gemmaios.tables import load_tables

    tables = load_tables(out_dir)
    for path in (out_dir / "embed_per_layer.i8", out_dir / "embed_per_layer.scale.f32"):
        with open(path, "rb") as fh:  # warm the page cache
            while fh.read(64 << 20):
                pass
    ids = np.random.default_rng(1).integers(0, tables.vocab, size=count)
    for v in ids[:100]:
        tables.gather(int(v))
    times = np.empty(count)
    for i, v in enumerate(ids):
        t = time.perf_counter_ns()
        tables.gather(int(v))
        times[i] = time.perf_counter_ns() - t
    return {"p50_us": float(np.percentile(times, 50) / 1e3), "p99_us": float(np.percentile(times, 99) / 1e3),
            "mean_us": float(times.mean() / 1e3), "count": count, "peak_rss": peak_rss_bytes()}


def run_phase(*args: str) -> dict:
    subprocess.run(["sync"], check=False)
    proc = subprocess.run([sys.executable, __file__, "--phase", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"phase {args[0]} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the temp files go")
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--layers", type=int, default=42)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="copy/write rounds (best of each is compared)")
    parser.add_argument("--workers", type=int, default=None, help="writer threads (default: min(4, cpus))")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the copy and the tables go (default: next to the input)")
    parser.add_argument("--gather-ids", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        kind, *rest = args.phase
        if kind == "copy":
            result = phase_copy(Path(rest[0]), Path(rest[1]) if rest[1] != "-" else None, int(rest[2]))
        elif kind == "write":
            result = phase_write(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]),
                                 int(rest[4]) or None)
        else:
            result = phase_gather(Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return

    from gemmaios.tables import CHUNK_INPUT_BYTES

    cols = args.layers * args.dim
    in_bytes = args.rows * cols * 2
    needed = in_bytes * 3 // 2 + (64 << 20)
    free = shutil.disk_usage(args.dir).free
    print(f"table {args.rows} × {cols} bf16 = {in_bytes / 1e9:.2f} GB; {free / 1e9:.1f} GB free on {args.dir}")
    if free < needed + in_bytes:  # the copy's output exists briefly too
        raise SystemExit(f"need {(needed + in_bytes) / 1e9:.1f} GB free on {args.dir}")
    work = Path(tempfile.mkdtemp(prefix="gemmaios-tables-bench-", dir=args.dir))
    out_work = Path(tempfile.mkdtemp(prefix="gemmaios-tables-out-", dir=args.out_dir)) if args.out_dir else work
    src, copy_dst, out_dir = work / "model.safetensors", out_work / "copy.bin", out_work / "tables"
    try:
        t = time.perf_counter()
        write_synthetic(src, args.rows, cols)
        print(f"synthetic safetensors written in {time.perf_counter() - t:.1f}s")
        with open(src, "rb") as fh:  # warm cache: both phases read from page cache
            while fh.read(64 << 20):
                pass

        copies, writes = [], []
        for round_ in range(args.rounds):
            copy = run_phase("copy", str(src), str(copy_dst), str(CHUNK_INPUT_BYTES))
            copy_dst.unlink()
            write = run_phase("write", str(src), str(out_dir), str(args.layers), str(args.dim), str(args.workers or 0))
            copies.append(copy)
            writes.append(write)
            print(f"round {round_}: copy {copy['bytes'] / copy['seconds'] / 1e9:.2f} GB/s "
                  f"({copy['seconds']:.2f}s, {copy['cpu']:.2f} CPU-s, peak RSS {copy['peak_rss'] / 1e6:.0f} MB); "
                  f"writer {write['bytes'] / write['seconds'] / 1e9:.2f} GB/s "
                  f"({write['seconds']:.2f}s, {write['cpu']:.2f} CPU-s, peak RSS {write['peak_rss'] / 1e6:.0f} MB)")
        read_only = run_phase("copy", str(src), "-", str(CHUNK_INPUT_BYTES))
        print(f"for reference, reading the same bytes into numpy without writing: "
              f"{read_only['bytes'] / read_only['seconds'] / 1e9:.2f} GB/s ({read_only['cpu']:.2f} CPU-s)")
        best_copy = min(c["seconds"] for c in copies)
        best_write = min(w["seconds"] for w in writes)
        peak = max(w["peak_rss"] for w in writes)
        ratio = best_copy / best_write
        print(f"writer: {in_bytes / best_write / 1e9:.2f} GB/s of input (best of {args.rounds}), "
              f"numpy copy: {in_bytes / best_copy / 1e9:.2f} GB/s → {ratio:.0%} of copy speed "
              f"(target ≥ 50%: {'met' if ratio >= 0.5 else 'NOT met'})")
        print(f"writer peak RSS: {peak / 1e6:.0f} MB (target ≤ 1500 MB: {'met' if peak <= 1.5e9 else 'NOT met'})")

        g = run_phase("gather", str(out_dir), str(args.gather_ids))
        print(f"gather (1 token → fp16 [1,1,{args.layers},{args.dim}], warm cache, {g['count']} random ids): "
              f"p50 {g['p50_us']:.1f} µs, p99 {g['p99_us']:.1f} µs, mean {g['mean_us']:.1f} µs")
    finally:
        if args.keep:
            print(f"kept {work} {out_work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(out_work, ignore_errors=True)


if __name__ == "__main__":
    main()
