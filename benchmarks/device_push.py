"""Deploy throughput against the loopback device simulator (no phone needed).

Prints MiB/s for a first push (with and without the sha256 read-back), the cost of a
re-deploy where everything is already on the device (the app-only-change case), and of a
resume after an unplug half-way. Loopback figures bound the toolkit's own overhead (AFC
framing, hashing, manifest writes); a real iPhone is limited by USB instead.

    PYTHONPATH=toolkit:tests python benchmarks/device_push.py [--mib 256]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from devicesim import DeviceSim, SimDevice  # noqa: E402

from gemmaios import device as dev  # noqa: E402
from gemmaios.pipeline import Manifest, StepRecord  # noqa: E402
from gemmaios.steprecords import AppDetails, ConvertDetails, EngineDetails, SignDetails  # noqa: E402


def make_build(root: Path, mib: int) -> Path:
    build = root / "build"
    bundle = build / "bundle/gemma4_bench_decode_int4"
    (bundle / "gemma4_bench_decode_int4.aimodelc").mkdir(parents=True)
    (build / "tables").mkdir()
    block = os.urandom(1 << 20)
    with open(bundle / "gemma4_bench_decode_int4.aimodelc/weights.bin", "wb") as fh:
        for _ in range(mib * 3 // 4):
            fh.write(block)
    with open(build / "tables/embed_per_layer.i8", "wb") as fh:
        for _ in range(mib - mib * 3 // 4):
            fh.write(block[::-1])
    (bundle / "metadata.json").write_text(json.dumps({"assets": {"main": "gemma4_bench_decode_int4.aimodelc"}}))
    (bundle / "tokenizer").mkdir()
    (bundle / "tokenizer/tokenizer.json").write_text("{}")
    (build / "tables/embed_per_layer.scale.f32").write_bytes(b"\0" * 4096)
    (build / "app").mkdir()
    (build / "app/prompts.json").write_text("{}")
    # the records deploy reads: the bundle (convert), where the app reads its payload (app), its id (sign)
    name, rel = "gemma4_bench_decode_int4", "bundle/gemma4_bench_decode_int4"
    manifest = Manifest(build)
    manifest.set_meta("options", {"arch": "h18p"})
    for step, details in (
        ("convert", ConvertDetails(bundle_dir=rel, name=name, aimodel=f"{rel}/{name}.aimodel",
                                   metadata=f"{rel}/metadata.json", quant="int4", head_quant="int4", ple="provider",
                                   max_context=4096)),
        ("app", AppDetails(project="app/GemmaBench", xcodeproj="app/GemmaBench/GemmaBench.xcodeproj",
                           engine=EngineDetails("ready", "engine/coreai-models"), bundle_location="documents")),
        ("sign", SignDetails(ipa="sign/export/GemmaBench.ipa", ipa_sha256="", bundle_id="dev.gemmaios.bench",
                             executable="B", version="1.0", method="development",
                             export_options="sign/ExportOptions.plist")),
    ):
        manifest.record(step, StepRecord(status="done", fingerprint="bench", inputs={}, details=details))
    return build


def timed(label: str, fn, mib: float | None = None):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    rate = f"  {mib / seconds:8.1f} MiB/s" if mib else ""
    print(f"{label:<44} {seconds:7.2f} s{rate}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="payload size")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gbench", dir="/tmp"))
    try:
        sim = DeviceSim(root / "mux.sock").start()
        device = sim.add(SimDevice(udid="00008150-000A1B2C3D4E5F60", root=root / "device"))
        device.apps["dev.gemmaios.bench"] = {"CFBundleIdentifier": "dev.gemmaios.bench", "CFBundleExecutable": "B"}
        (device.container("dev.gemmaios.bench") / "Documents").mkdir(parents=True)
        os.environ.update({"USBMUXD_SOCKET_ADDRESS": str(root / "mux.sock"), dev.TRANSPORT_ENV: "lockdown"})
        build = make_build(root, args.mib)
        print(f"payload {args.mib} MiB, chunk {dev.CHUNK_BYTES >> 20} MiB, loopback simulator")
        timed("hash the payload (first time)", lambda: dev.local_files(build), args.mib)
        timed("first deploy, no read-back", lambda: dev.deploy(build, verify=False, allow_uncompiled=True), args.mib)
        shutil.rmtree(device.container("dev.gemmaios.bench") / "Documents")
        (device.container("dev.gemmaios.bench") / "Documents").mkdir()
        timed("first deploy, sha256 read-back", lambda: dev.deploy(build, allow_uncompiled=True), args.mib)
        timed("re-deploy, all identical (skipped)", lambda: dev.deploy(build, allow_uncompiled=True))
        weights = next(build.rglob("weights.bin"))
        data = weights.read_bytes()
        weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the weights changed: their file goes again
        device.unplug_after_bytes = len(data) // 2
        try:
            dev.deploy(build, verify=False, allow_uncompiled=True)
        except dev.DeviceDisconnected:
            pass
        result = timed("resume after an unplug half-way", lambda: dev.deploy(build, verify=False, allow_uncompiled=True))
        print(f"  resumed at {result.push.resumed} bytes, sent {result.push.bytes_sent / (1 << 20):.1f} MiB")
        sim.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
