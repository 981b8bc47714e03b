"""Run a built bundle on this machine through Core AI's own runtime, the way the app does.

`BundleRunner` loads a bundle folder (metadata.json + the `.aimodel`) with
`coreai.authoring.AIModelAsset.load(p).executable()` and feeds its `main` function one token
per call, exactly as the app's pipelined engine does with `COREAI_CHUNK_THRESHOLD=1`: the
inputs by name (`input_ids [1,1]`, `position_ids [1,P]`, then the per-layer embedding input),
the `keyCache`/`valueCache` states sized for the run and updated in place by the runtime.
The per-layer embedding input comes from the build's PLE tables: `provider` bundles get the
app's gather (`fp16(i8[v] * scale[v] * sqrt(D))`, `gemmaios.tables.PleTables.gather`), `tbl`
bundles get the int8 table and its scales as static inputs.

Where it runs: on Linux, coreai-core compiles the asset into a temporary `.aimodelx` and runs
it on its CPU runtime, whose f16 matmuls accumulate in f16 (noisier than torch fp16; it is
not the iPhone GPU, but it is Apple's own executor of our exact file). On macOS the same calls
load the asset with the system runtime. A full-size bundle is far too slow on a CPU
(E4B int4: ~7 minutes per token on 2 cores, see benchmarks/hostrun_e4b_synthetic.py), so the
runner is a correctness tool for small models; `estimate_step_seconds` says so up front.

Layout: `errors` (constants, named errors), `bundle` (metadata facts), `runner` (BundleRunner),
`transcripts` (host-run records), `gate` (the convert step's bundle-run gate), `bench` (chat
tokenization, host bench), `prefill` (the chunked-prefill gate).
"""

from .bundleinfo import BundleInfo, asset_weight_bytes, estimate_step_seconds, find_bundle
from .errors import BundleGateFailed, HostRunError
from .gate import (
    LOGIT_ERROR_BOUND,
    BundleGateReport,
    build_bundle_check,
    bundle_gate,
    logit_error_bound,
    torch_reference,
)
from .hostbench import (
    AB_SIDES,
    BundleTokenizer,
    HostAbResult,
    HostBenchResult,
    ab_order,
    host_ab_bench,
    host_bench,
)
from .hostfacts import CPU_SECONDS_PER_GB, HOST_PLATFORM, LARGE_BUNDLE_BYTES, Progress
from .prefill import PrefillGateFailed, build_prefill_check, long_prefill_prompt, prefill_gate
from .runner import BundleRunner, EncodedAudio, EncodedImage, HostGeneration
from .transcripts import host_device, run_id_now, transcript_records

__all__ = [
    "CPU_SECONDS_PER_GB", "HOST_PLATFORM", "LARGE_BUNDLE_BYTES", "LOGIT_ERROR_BOUND", "BundleGateFailed",
    "AB_SIDES", "BundleGateReport", "BundleInfo", "BundleRunner", "BundleTokenizer", "EncodedAudio", "EncodedImage",
    "HostAbResult", "HostBenchResult", "HostGeneration", "HostRunError", "PrefillGateFailed", "Progress", "ab_order",
    "asset_weight_bytes", "build_bundle_check", "host_ab_bench",
    "build_prefill_check", "bundle_gate", "estimate_step_seconds", "find_bundle", "host_bench", "host_device",
    "logit_error_bound",
    "long_prefill_prompt", "prefill_gate", "run_id_now", "torch_reference", "transcript_records",
]
