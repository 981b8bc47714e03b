import os
import shutil
from pathlib import Path

import pytest

from gemmaios.checkpoint import Checkpoint, resolve_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Checkpoint:
    """The built-in tiny Gemma 4 checkpoint, generated once per test session."""
    return resolve_checkpoint("tiny", tiny_dir=tmp_path_factory.mktemp("tiny") / "ckpt")


# ---- Swift (issue 15): a real compiler, or a skip that says how to get one -------------------

from swift_toolchain import REQUIRE_ENV, find_swift, missing_message  # noqa: E402

_SWIFT = find_swift()
SWIFT_RESULTS: list[str] = []  # lines for the terminal summary (e.g. the `swift test` count)


def pytest_report_header(config):
    toolchain, tried = _SWIFT
    if toolchain is None:
        return [f"swift: none — {missing_message(tried)}"]
    return [f"swift: {toolchain.describe()}"]


# ---- the two tiers (issue 24): `make test` runs -m "not full", `make test-all` everything -------

import time  # noqa: E402

TIERS = {"not full": "make test", "": "make test-all"}
_SESSION = {"start": 0.0, "exports": 0}


def pytest_sessionstart(session):
    _SESSION["start"] = time.monotonic()


def pytest_configure(config):
    """Count torch.export.export calls (every conversion and asset export goes through it), so the
    summary shows how many a run makes: a new one is seen the day it is added. Under pytest-xdist
    each worker computes with one torch thread (two workers share the machine's two cores)."""
    import hf_unified
    import torch
    import torch.export

    hf_unified.import_torchvision()  # before transformers looks for it (see hf_unified: CPU torch, CUDA wheel)
    if hasattr(config, "workerinput"):
        torch.set_num_threads(1)

    if getattr(torch.export.export, "_gemmaios_counted", False):
        return
    real = torch.export.export

    def counted(*args, **kwargs):
        _SESSION["exports"] += 1
        return real(*args, **kwargs)

    counted._gemmaios_counted = True
    torch.export.export = counted


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):  # an xdist worker: hand its counts to the controller
        session.config.workeroutput["gemmaios"] = {"exports": _SESSION["exports"], "swift": list(SWIFT_RESULTS)}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller adds up what each xdist worker counted (exports, Swift lines)."""
    counted = getattr(node, "workeroutput", {}).get("gemmaios") or {}
    _SESSION["exports"] += counted.get("exports", 0)
    SWIFT_RESULTS.extend(line for line in counted.get("swift", []) if line not in SWIFT_RESULTS)


def pytest_terminal_summary(terminalreporter):
    config = terminalreporter.config
    markexpr = config.getoption("markexpr", "") or ""
    tier = TIERS.get(markexpr, f"-m {markexpr!r}")
    ran = sum(len(terminalreporter.stats.get(key, [])) for key in ("passed", "failed", "error"))
    if ran:  # each tier's wall time and export count, printed by every run (CI log included)
        terminalreporter.section("tier")
        terminalreporter.write_line(f"{tier}: {ran} tests run in {time.monotonic() - _SESSION['start']:.0f} s wall; "
                                    f"{_SESSION['exports']} torch.export calls (conversions and asset exports)")
    if SWIFT_RESULTS:  # shown even with -q (CI): which compiler ran and what it checked
        terminalreporter.section("Swift")
        terminalreporter.write_line(pytest_report_header(None)[0])
        for line in SWIFT_RESULTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def swift_toolchain():
    """The Swift toolchain; skips (or fails when GEMMAIOS_REQUIRE_SWIFT=1, as in CI) without one."""
    toolchain, tried = _SWIFT
    if toolchain is None:
        message = missing_message(tried)
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
        pytest.skip(message)
    return toolchain


# ---- shared artefacts: each built once per session, read-only; a test that changes one works on a
# copy (devicebuild.copy_build). No module-level caches, no fixtures imported between test modules.

@pytest.fixture(scope="session")
def engine_checkout(tmp_path_factory):
    """The files of apple/coreai-models at the pinned commit that the patches touch (Package.swift among
    them), rebuilt from the patch stack: enough for the app step to prepare its engine package."""
    from gemmaios.patches import load_series, reconstruct_preimage

    root = tmp_path_factory.mktemp("coreai-models")
    for rel, text in reconstruct_preimage(load_series()).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture(scope="session")
def tiny_app_builds(tmp_path_factory) -> dict:
    """The tiny model built for real (int8 bundle, every gate, rendered app) in both bundle locations
    (see tests/devicebuild.py)."""
    from devicebuild import build_tiny_app, copy_build

    root = tmp_path_factory.mktemp("tiny-app")
    bundled = build_tiny_app(root / "bundled", "bundled")
    documents = build_tiny_app(copy_build(bundled, root / "documents"), "documents", only={"checkpoint", "app"})
    return {"bundled": bundled, "documents": documents}


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory):
    """`gemmaios build --model tiny` as `make demo` runs it (int4, provider, h18p, every step; on Linux
    compile, app and sign wait for a Mac), with the step reports of that first run."""
    from shared_builds import demo_build

    return demo_build(tmp_path_factory.mktemp("tiny-demo") / "build")


@pytest.fixture(scope="session")
def tiny_bundle_builds(tmp_path_factory, tiny_build):
    """`get(quant, ple)`: the gated tiny build (checkpoint, tables, oracle, convert with every gate)
    for that quant and PLE mode, made on first use and shared by the session; int4/provider is the
    demo build."""
    from shared_builds import gated_bundle_build

    builds: dict[tuple[str, str], Path] = {("int4", "provider"): tiny_build.path}

    def get(quant: str, ple: str):
        if (quant, ple) not in builds:
            builds[quant, ple] = gated_bundle_build(tmp_path_factory.mktemp(f"tiny-{quant}-{ple}"), quant, ple)
        return builds[quant, ple]

    return get


@pytest.fixture(scope="session")
def vision_build(tmp_path_factory):
    """The int4 tiny-vision build with --vision (oracle with image prompts, tables, convert with the image gate)."""
    from shared_builds import vision_bundle_build

    return vision_bundle_build(tmp_path_factory.mktemp("vision-int4"))


@pytest.fixture(scope="session")
def vision_app_build(vision_build, tmp_path_factory):
    """vision_build with its app rendered for the `documents` bundle location."""
    from devicebuild import copy_build
    from shared_builds import render_vision_app

    return render_vision_app(copy_build(vision_build, tmp_path_factory.mktemp("vision-app") / "build"))


@pytest.fixture(scope="session")
def audio_checkpoint(tmp_path_factory):
    """A tiny E-series checkpoint with an audio tower (gemmaios.audio.tinymodel's config; seeded
    audio tower on the trained tiny decoder until trained tiny-audio weights ship)."""
    from shared_builds import seeded_audio_checkpoint

    return seeded_audio_checkpoint(tmp_path_factory.mktemp("audio-ckpt"))


@pytest.fixture(scope="session")
def audio_asset(audio_checkpoint, tmp_path_factory):
    """The audio asset of audio_checkpoint (fp16, 2 s static frames), exported once: (path, facts)."""
    from gemmaios.audio.export import export_audio_asset
    from gemmaios.audio.preprocess import AudioSpec
    from gemmaios.audio.tinymodel import processor_config

    spec = AudioSpec.from_config(audio_checkpoint.config, processor_config())
    path = tmp_path_factory.mktemp("audio-asset") / "tiny.audio.aimodel"
    return path, export_audio_asset(audio_checkpoint, spec, path)


@pytest.fixture(scope="session")
def audio_bundle(tmp_path_factory):
    """`convert --audio` of a seeded audio checkpoint (fp16) with its tables: (bundle, tables, checkpoint)."""
    from shared_builds import seeded_audio_bundle

    return seeded_audio_bundle(tmp_path_factory.mktemp("audio-bundle"))


@pytest.fixture(scope="session")
def audio_app_build(tmp_path_factory):
    """The int4 build of `--model tiny-audio --audio` (the shipped trained weights), every step and gate, its app rendered for
    the `documents` bundle location (shared_builds.audio_app_build: ~85 s). Copy it before changing it."""
    from shared_builds import audio_app_build

    return audio_app_build(tmp_path_factory.mktemp("audio-app"))


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A minimal LanguageBundle folder (bytes, not a program: see tests/fixture_bundle.py)."""
    from fixture_bundle import NAME, make_bundle

    return make_bundle(tmp_path / "bundle" / NAME)


@pytest.fixture(scope="session")
def tiny_mixed_build(tmp_path_factory) -> Path:
    """`gemmaios build --model tiny --recipe tiny-mixed-248` up to the bundle (~3 min): 2/4/8-bit, symmetric and
    affine, kept tensors; parity gates by KL/top-1, levels read back, the runtime gate by KL/top-1."""
    from shared_builds import recipe_bundle_build

    return recipe_bundle_build(tmp_path_factory.mktemp("tiny-mixed") / "build", "tiny-mixed-248")


@pytest.fixture(scope="session")
def prefill_ladder_build(tmp_path_factory) -> Path:
    """The convert step with --prefill-chunk 16,8 on int4 (--max-context 256): parity gates (chunked gate 1
    too), the bundle-run gate (the trained tiny's oracle) and the runtime prefill gate on the oracle's prompts."""
    from shared_builds import prefill_ladder_bundle_build

    return prefill_ladder_bundle_build(tmp_path_factory.mktemp("prefill-build"))


@pytest.fixture(scope="session")
def prefill_ladder_fp16(tiny_checkpoint, prefill_ladder_build, tmp_path_factory):
    """The fp16 ladder bundle (no HF gates), its runtime prefill gate on the oracle's prompts."""
    from gemmaios import hostrun
    from gemmaios.convert import convert_checkpoint
    from gemmaios.oracle import ORACLE_FILE, load_oracle

    prompts = [(p.id, p.prompt_ids) for p in load_oracle(prefill_ladder_build / ORACLE_FILE).prompts]
    check = hostrun.build_prefill_check(None, prefill_ladder_build / "tables", prompts=prompts)
    return convert_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("prefill-fp16"), "fp16", "provider", 256,
                              gates=False, prefill_chunks="16,8", prefill_check=check)


@pytest.fixture(scope="session")
def int4_main_only_256(tiny_checkpoint, tmp_path_factory):
    """The int4 bundle with main only at --max-context 256 (no gates): the ladder's size reference."""
    from gemmaios.convert import convert_checkpoint

    return convert_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("prefill-none"), "int4", "provider", 256,
                              gates=False)


@pytest.fixture(scope="session")
def prefill_app_build(tiny_app_builds, tmp_path_factory) -> Path:
    """The session's documents build converted again with --prefill-chunk 8 (gates on: the trained
    tiny passes the bundle-run gate and the chunked runtime gate), its app re-rendered."""
    from devicebuild import copy_build
    from shared_builds import with_prefill_chunk

    return with_prefill_chunk(copy_build(tiny_app_builds["documents"], tmp_path_factory.mktemp("prefill-app") / "build"))


@pytest.fixture(scope="session")
def tiny_dense_dirs(tmp_path_factory) -> dict:
    """The tiny 12B- and 31B-shaped checkpoints (random weights), each folder named after its variant."""
    from gemmaios.tiny import generate_tiny_checkpoint

    base = tmp_path_factory.mktemp("tiny_dense")
    return {variant: generate_tiny_checkpoint(base / variant, variant) for variant in ("12b", "31b")}


@pytest.fixture(scope="session")
def mac_12b_build(tiny_dense_dirs, tmp_path_factory) -> Path:
    """`gemmaios convert --model <tiny 12b> --quant int8 --max-context 64 --target mac` (default kernel g8),
    every gate; the bundle-run gate cannot run a kernel bundle on Linux and says so."""
    from shared_builds import mac_bundle_build

    return mac_bundle_build(tmp_path_factory.mktemp("mac-12b") / "build", tiny_dense_dirs["12b"])


@pytest.fixture(scope="session")
def unified_mm_bundle(tmp_path_factory) -> Path:
    """The tiny gemma4_unified's four-function Mac bundle (shared_builds.unified_mm_bundle_build): with the
    trained model, the pipeline with every gate (805 s here, the other worker waiting for it).

    Made once per run, not once per xdist worker: test_unified_bundle.py and test_app_mac.py may land on
    different workers, so the first to ask builds it in the run's shared temp root under a file lock and
    the other waits for it and reads the same folder."""
    from filelock import FileLock
    from shared_builds import unified_mm_bundle_build

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    out, done = root / "unified-mm-shared", root / "unified-mm-shared.bundle"
    with FileLock(str(root / "unified-mm-shared.lock")):
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)  # a build stopped half-way by an earlier failure
            bundle = unified_mm_bundle_build(out)
            done.write_text(str(bundle))
    return Path(done.read_text())


# ---- the loopback device simulator and the loopback SSH "Mac" -----------------------------------

@pytest.fixture
def sim(monkeypatch):
    """The loopback device simulator, reached through the real pymobiledevice3 client (lockdown transport)."""
    import tempfile

    from devicesim import DeviceSim

    from gemmaios import device as dev

    # a short folder: UNIX socket paths are limited to ~100 characters
    folder = Path(tempfile.mkdtemp(prefix="gsim", dir="/tmp"))
    simulator = DeviceSim(folder / "mux.sock").start()
    simulator.folder = folder
    monkeypatch.setenv("USBMUXD_SOCKET_ADDRESS", str(folder / "mux.sock"))
    monkeypatch.setenv(dev.TRANSPORT_ENV, "lockdown")
    monkeypatch.setenv(dev.PAIR_TIMEOUT_ENV, "0")  # an untrusted device fails at once
    yield simulator
    simulator.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def build(tiny_app_builds, tmp_path) -> Path:
    """A copy of the session's documents build (deploy pushes its payload), with a short prompt set."""
    from device_helpers import make_build

    from gemmaios import contract

    return make_build(tiny_app_builds, tmp_path, contract.PUSHED_TO_DOCUMENTS)


@pytest.fixture
def bundled_build(tiny_app_builds, tmp_path) -> Path:
    from device_helpers import make_build

    from gemmaios import contract

    return make_build(tiny_app_builds, tmp_path, contract.BUNDLED)


@pytest.fixture(scope="module")
def loopback_mac(tmp_path_factory):
    """sshd on loopback with the labelled xcrun/xcodebuild stand-ins first on its PATH."""
    from loopback_sshd import start_loopback_mac

    proc, mac = start_loopback_mac(tmp_path_factory.mktemp("sshd"))
    yield mac
    proc.terminate()
    proc.wait(timeout=10)


# ---- the pinned upstream engine (apple/coreai-models at the base of patches/series) -----------

@pytest.fixture(scope="session")
def pinned_engine(tmp_path_factory):
    """The pinned upstream tree (read-only), from $GEMMAIOS_ENGINE_SOURCE, the user cache or the vendor
    snapshot; skips where none exists, fails under CI=true (the upstream checks must run there)."""
    from upstream_engine import materialise, missing_message

    from gemmaios.patches import load_series

    series = load_series()
    engine = materialise(series, tmp_path_factory.mktemp("pinned-engine"))
    if engine is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {missing_message(series)}", pytrace=False)
        pytest.skip(missing_message(series))
    SWIFT_RESULTS.append(f"upstream engine: {engine.origin}")
    return engine


# ---- the Swift core package ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def core_build(swift_toolchain) -> Path:
    """`swift build` of GemmaiosCore (library + vectors tool); returns the products folder."""
    from swift_toolchain import CORE, run, swift_cache

    scratch = swift_cache("GemmaiosCore")
    run([swift_toolchain.swift, "build", "--package-path", CORE, "--scratch-path", scratch])
    bin_dir = Path(run([swift_toolchain.swift, "build", "--package-path", CORE, "--scratch-path", scratch,
                        "--show-bin-path"]).strip().splitlines()[-1])
    assert (bin_dir / "gemmaios-core-vectors").is_file()
    return bin_dir
