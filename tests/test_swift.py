"""Swift checked by a real Swift compiler (issue 15): every Swift file we ship or patch parses
with `swiftc -parse`; the app's portable core (ios_template/GemmaiosCore) builds and passes
`swift test`; and cross-language vectors tie it to the Python side: transcripts Swift writes
pass `read_transcript`, Swift-gathered PLE rows equal numpy's bytes, the payload paths Swift
resolves are the ones `payload_plan` fills, and upstream coreai-models' own metadata
decoders (compiled from the pinned commit) decode every metadata.json we write.

Build products are cached between runs under $GEMMAIOS_SWIFT_CACHE (default
~/.cache/gemmaios/swiftpm): a warm `swift build` + `swift test` takes seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SWIFT_RESULTS
from fixture_bundle import RENDER_PROMPTS, render_bundle
from swift_toolchain import CORE, run, swift_cache, swift_parse, vectors

from gemmaios import contract as c
from gemmaios.app import AppSettings, render_app
from gemmaios.patches import load_series, prepare_engine_package
from gemmaios.payload import payload_plan
from gemmaios.tables import gather, write_tables
from gemmaios.transcript import read_transcript

REPO = Path(__file__).resolve().parents[1]


# ---- the core package ---------------------------------------------------------------------------

def test_swift_package_tests_pass(swift_toolchain, core_build):
    """`swift test` of the core; its XCTest count is printed in the session summary (CI log)."""
    scratch = swift_cache("GemmaiosCore")
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", scratch])
    # the HF image comparison skips without its vectors (tests/test_swift_image.py runs it)
    counts = re.findall(r"Test Suite 'All tests' passed .*?\n\s*Executed (\d+) tests?, with (?:\d+ tests? skipped and )?"
                        r"(\d+) failures", output)
    assert counts, output[-3000:]
    executed, failures = map(int, counts[-1])
    assert failures == 0 and executed >= 20
    names = set(re.findall(r"Test Case '(\w+)\.(\w+)' passed", output))
    assert ("FootprintSamplerTests", "testNoSampleIsDeliveredAfterStopReturns") in names
    SWIFT_RESULTS.append(f"swift test (GemmaiosCore): {executed} XCTest tests passed, {failures} failures "
                         f"— {swift_toolchain.version}")


# ---- swiftc -parse over everything we ship or patch ---------------------------------------------

def test_template_and_core_sources_parse(swift_toolchain):
    files = sorted((REPO / "ios_template").rglob("*.swift"))
    files = [f for f in files if ".build" not in f.parts]
    assert len(files) >= 15
    swift_parse(swift_toolchain, files)


@pytest.mark.parametrize("location", c.BUNDLE_LOCATIONS)
@pytest.mark.parametrize("ple", ["provider", "tbl", "none"])
def test_rendered_app_parses_in_each_configuration(swift_toolchain, tmp_path, location, ple):
    name, bundle = render_bundle(tmp_path, ple)
    settings = AppSettings(bundle_location=location, ple=ple, ple_layers=2 if ple != "none" else 0,
                           ple_dim=4, vocab_size=64, bundle_name=name, bundle_dir=f"bundle/{name}",
                           prompt_set=RENDER_PROMPTS, prepare_engine=False, display_name='Gemma "Ω" \\(x)')
    result = render_app(tmp_path, settings)
    files = sorted((result.project_dir / "GemmaBench").glob("*.swift"))
    assert {f.name for f in files} >= {"AppConfig.swift", "BenchRunner.swift", "EngineHost.swift"}
    swift_parse(swift_toolchain, files)
    config = (result.project_dir / "GemmaBench" / "AppConfig.swift").read_text()
    assert f"BundleLocation.{'appBundle' if location == c.BUNDLED else 'documents'}" in config
    assert f"PLEMode.{ple}" in config


def test_rendered_foundation_files_typecheck_against_the_core(swift_toolchain, core_build, tmp_path):
    """AppConfig.swift + AppRuntime.swift use only Foundation and GemmaiosCore: a full type-check."""
    name, _ = render_bundle(tmp_path, "provider")
    result = render_app(tmp_path, AppSettings(ple="provider", ple_layers=2, ple_dim=4, vocab_size=64,
                                              bundle_name=name, bundle_dir=f"bundle/{name}", prompt_set=RENDER_PROMPTS,
                                              prepare_engine=False))
    src = result.project_dir / "GemmaBench"
    modules = core_build / "Modules" if (core_build / "Modules").is_dir() else core_build
    # Linux Foundation lacks iOS 16's URL.documentsDirectory: a test-only stand-in
    shim = tmp_path / "Shim.swift"
    shim.write_text("import Foundation\nextension URL {\n    static var documentsDirectory: URL {\n"
                    "        FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]\n    }\n}\n")
    run([swift_toolchain.swiftc, "-typecheck", "-I", modules, src / "AppConfig.swift", src / "AppRuntime.swift", shim])


def test_patched_engine_parses_at_the_pinned_commit(swift_toolchain, tmp_path, pinned_engine):
    series = load_series()
    dest = tmp_path / "engine"
    result = prepare_engine_package(dest, series, pinned_engine.root)
    assert result.applied == [p.name for p in series.patches]
    files = sorted(p for p in dest.rglob("*.swift"))
    assert len(files) >= 200
    swift_parse(swift_toolchain, files)
    SWIFT_RESULTS.append(f"swiftc -parse: {len(files)} patched coreai-models files at {series.base[:12]}")


# ---- cross-language vectors ----------------------------------------------------------------------

def test_swift_transcript_passes_read_transcript(core_build, tmp_path):
    prompts = tmp_path / c.PROMPT_SET_FILE
    prompts.write_text(json.dumps(RENDER_PROMPTS.as_json()))
    docs = tmp_path / "Documents"
    path = Path(vectors(core_build, "transcript", docs, "20260101T000000Z", prompts, 200).strip())
    assert path == docs / c.APP_RUNS_DIR / f"20260101T000000Z{c.TRANSCRIPT_SUFFIX}"
    transcript = read_transcript(path)
    assert transcript.header["schema"] == c.TRANSCRIPT_SCHEMA
    assert transcript.complete
    assert len(transcript.memory) >= 50
    # the decode rule: exactly max_new_tokens, straight through EOS ids (1 is one here)
    assert [p.generated_ids for p in transcript.prompts] == [[2, 5, 1, 7], [2, 9, 2, 9]]
    assert transcript.footer["battery_level"] == 0.81
    assert path.read_text().splitlines()[-1].startswith('{"battery_level":0.81,')


def test_swift_gather_equals_numpy_bytes(core_build, tiny_checkpoint, tmp_path):
    written = write_tables(tiny_checkpoint, tmp_path / "tables")
    sidecar = json.loads((tmp_path / "tables" / "embed_per_layer.json").read_text())
    vocab, layers, dim = sidecar["shape"][0], sidecar["num_layers"], sidecar["dim"]
    ids = sorted({0, 1, 2, vocab - 1, *np.random.default_rng(0).integers(0, vocab, 20).tolist()})
    out = tmp_path / "rows.f16"
    vectors(core_build, "gather", tmp_path / "tables", vocab, layers, dim, out, *ids)
    expected = gather(tmp_path / "tables", ids)
    assert expected.dtype == np.float16 and written is not None
    assert out.read_bytes() == expected.tobytes()


def test_swift_resolves_the_paths_payload_plan_fills(core_build, tmp_path):
    name, bundle = render_bundle(tmp_path, "provider")
    prompts = tmp_path / "app" / c.PROMPT_SET_FILE
    prompts.parent.mkdir()
    prompts.write_text(json.dumps(RENDER_PROMPTS.as_json()))
    app, docs = tmp_path / "Dev" / "App.app", tmp_path / "Dev" / "Documents"
    swift = json.loads(vectors(core_build, "paths", app, docs, name))
    for location, root in ((c.BUNDLED, app), (c.PUSHED_TO_DOCUMENTS, docs)):
        plan = payload_plan(tmp_path, location, bundle_dir=bundle, ple="provider", tables_dir=tmp_path / "tables",
                            prompt_set=prompts)
        placed = dict(plan.app_files() if location == c.BUNDLED else plan.documents_files())
        assert not (plan.documents_files() if location == c.BUNDLED else plan.app_files())
        wanted = {root / dest for dest in placed.values()}
        reads = swift[location]
        for key in ("metadata", "table_i8", "table_scale", "prompt_set"):
            assert Path(reads[key]) in wanted, (key, reads[key])
        main = json.loads((bundle / c.BUNDLE_METADATA_FILE).read_text())["assets"]["main"]
        assert any(str(p).startswith(str(Path(reads["bundle"]) / main) + "/") for p in wanted)
        assert not any(p.name.endswith(".aimodel") or ".aimodel/" in str(p) for p in wanted)
    assert swift["transcript"] == str(docs / c.APP_RUNS_DIR / f"RUN{c.TRANSCRIPT_SUFFIX}")


def test_swift_reads_the_launch_environment_bench_sends(core_build):
    env = {c.ENV["bench"]: "1", c.ENV["trials"]: "2", c.ENV["runId"]: "20260101T000000Z",
           c.ENV["udid"]: "00008150-0001", c.ENV["clearSpecCache"]: "0"}
    got = json.loads(vectors(core_build, "launch", 5, env=env))
    assert got == {"bench": True, "trials": 2, "run_id": "20260101T000000Z", "udid": "00008150-0001",
                   "clear_spec_cache": False}
    got = json.loads(vectors(core_build, "launch", 5, c.BENCH_ARG, c.LAUNCH_ARG_PREFIX + "trials", "7",
                             env={k: "" for k in env}))
    assert got["bench"] is True and got["trials"] == 7 and got["run_id"] is None


def test_swift_kv_guard_equals_the_contract_rule(core_build):
    """One engine's prompts in order: the binding only grows, and only an iOS binding above 1024 warns."""
    walk = [(20, 32), (600, 32), (100, 32), (1000, 32), (1500, 256), (40, 32), (9000, 32)]
    args = [f"{p}:{n}" for p, n in walk]
    for platform in ("iOS", "macOS"):
        got = json.loads(vectors(core_build, "kv-guard", platform, 4096, *args))
        want, bound = [], c.KV_INITIAL_CAPACITY
        for p, n in walk:
            bound = c.kv_bound_capacity(p + n, 4096, bound)
            want.append({"capacity": bound, "warning": c.kv_fault_warning(bound, platform),
                         "growth": c.KV_GROWTH_DOUBLING, "max_context": 4096})
        assert got == want
    assert [g["capacity"] for g in got] == [256, 1024, 1024, 2048, 2048, 2048, 4096]
    ios = json.loads(vectors(core_build, "kv-guard", "iOS", 4096, *args))
    assert [g["warning"] is not None for g in ios] == [False, False, False, True, True, True, True]
    assert c.KV_FAULT_ISSUE in ios[3]["warning"] and ios[3]["warning"].startswith(c.KV_FAULT_WARNING)
    # the candidate workaround: the KV cache starts at 384, never binds 2048 or 4096, serves 3072 of 4096
    for max_context in (4096, 8192):
        alt = json.loads(vectors(core_build, "kv-guard", "iOS", max_context, *args, env={"KV_384": "1"}))
        cap, want, bound = c.kv_alt_max_context(max_context), [], c.KV_ALT_INITIAL_CAPACITY
        for p, n in walk:
            bound = c.kv_bound_capacity(p + n, cap, bound)
            want.append({"capacity": bound, "warning": c.kv_fault_warning(bound, "iOS"),
                         "growth": c.KV_GROWTH_ALT, "max_context": cap})
        assert alt == want
    assert [g["capacity"] for g in alt] == [384, 768, 768, 1536, 3072, 3072, 6144]  # max context 8192 → 6144


# ---- upstream's own metadata decoders --------------------------------------------------------------

_TOKENIZERS_STUB = """\
// Test stub for swift-transformers' Tokenizers: only what the bundle decoders mention.
import Foundation
public protocol Tokenizer: Sendable {
    var eosTokenId: Int? { get }
    func convertTokenToId(_ token: String) -> Int?
}
public enum AutoTokenizer {
    public static func from(modelFolder: URL) async throws -> any Tokenizer { throw CocoaError(.featureUnsupported) }
    public static func from(pretrained: String) async throws -> any Tokenizer { throw CocoaError(.featureUnsupported) }
}
"""

_DECODE_MAIN = """\
// Decodes bundle folders with upstream's LanguageBundle and prints what it read, as JSON.
import CoreAIShared
import Foundation
import UpstreamLanguage
var out: [[String: Any]] = []
for path in CommandLine.arguments.dropFirst() {
    let bundle = try LanguageBundle(at: URL(fileURLWithPath: path, isDirectory: true))
    out.append([
        "name": bundle.name, "asset": bundle.modelAssetPath, "tokenizer": bundle.tokenizer,
        "vocab_size": bundle.vocabSize, "max_context_length": bundle.maxContextLength,
        "main_url": try bundle.requireModelURL(for: "main").path,
        "function": bundle.language.functionMap?.name(for: "main") ?? "",
        "embedded_tokenizer": bundle.tokenizerPath?.path ?? "",
    ])
}
let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
print(String(decoding: data, as: UTF8.self))
"""

# Declarations the decoders use that live in files needing Apple frameworks (CoreAI,
# CoreGraphics): only these plain enums are taken from those files.
_DECODER_DECLS = {
    "CoreAIShared": [("swift/Sources/CoreAIShared/Image/ImagePreprocessor.swift", "public enum ImageStrategy")],
    "UpstreamLanguage": [("swift/Sources/CoreAILanguageModels/Handlers/StateHandlerFactory.swift", "public enum StateKind")],
}


def _declaration(text: str, start: str) -> str:
    """The top-level declaration starting with `start` through its closing `}` line."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i in range(first, len(lines)) if lines[i] == "}")
    return "\n".join(lines[first:last + 1]) + "\n"


_DECODER_FILES = {
    "CoreAIShared": ["swift/Sources/CoreAIShared/Bundle/BundleKind.swift",
                     "swift/Sources/CoreAIShared/Bundle/FunctionMap.swift",
                     "swift/Sources/CoreAIShared/Bundle/ModelBundle.swift"],
    "UpstreamLanguage": ["swift/Sources/CoreAILanguageModels/Bundle/LanguageBundle.swift",
                         "swift/Sources/CoreAILanguageModels/Bundle/LanguageConfig.swift",
                         "swift/Sources/CoreAILanguageModels/Bundle/ModelBundle+Language.swift"],
}


@pytest.fixture(scope="module")
def upstream_decoder(swift_toolchain, tmp_path_factory, pinned_engine) -> Path:
    """A package built from the pinned commit's own Foundation-only bundle files (read from the
    pinned engine at test time, never copied into this repository) + a Tokenizers stub."""
    pkg = tmp_path_factory.mktemp("upstream-decoders")
    upstream = pinned_engine.read

    for target, files in _DECODER_FILES.items():
        (pkg / "Sources" / target).mkdir(parents=True)
        for rel in files:
            (pkg / "Sources" / target / Path(rel).name).write_text(upstream(rel))
        decls = "".join(_declaration(upstream(rel), start) for rel, start in _DECODER_DECLS[target])
        (pkg / "Sources" / target / "UpstreamDeclarations.swift").write_text(decls)
    (pkg / "Sources" / "Tokenizers").mkdir()
    (pkg / "Sources" / "Tokenizers" / "Tokenizers.swift").write_text(_TOKENIZERS_STUB)
    (pkg / "Sources" / "decode-metadata").mkdir()
    (pkg / "Sources" / "decode-metadata" / "main.swift").write_text(_DECODE_MAIN)
    (pkg / "Package.swift").write_text("""// swift-tools-version: 6.0
import PackageDescription
let package = Package(name: "UpstreamDecoders", targets: [
    .target(name: "CoreAIShared"),
    .target(name: "Tokenizers"),
    .target(name: "UpstreamLanguage", dependencies: ["CoreAIShared", "Tokenizers"]),
    .executableTarget(name: "decode-metadata", dependencies: ["CoreAIShared", "UpstreamLanguage"]),
])
""")
    scratch = swift_cache(f"upstream-decoders-{load_series().base[:12]}")
    run([swift_toolchain.swift, "build", "--package-path", pkg, "--scratch-path", scratch])
    bin_dir = Path(run([swift_toolchain.swift, "build", "--package-path", pkg, "--scratch-path", scratch,
                        "--show-bin-path"]).strip().splitlines()[-1])
    return bin_dir / "decode-metadata"


@pytest.mark.parametrize("ple", ["provider", "tbl"])
def test_upstream_decoders_read_every_metadata_json_we_write(upstream_decoder, tmp_path, ple):
    """convert's metadata.json (the .aimodel), compile's rewrite (the .aimodelc) and its Mac copy."""
    from gemmaios.archs import get_arch
    from gemmaios.compile import point_metadata_at

    name, bundle = render_bundle(tmp_path, ple, compiled=False)
    compiled = tmp_path / "compiled" / name
    shutil.copytree(bundle, compiled)
    aimodelc = f"{name}.h18p.aimodelc"
    (compiled / aimodelc).mkdir()
    metadata, mac = point_metadata_at(compiled, f"{name}.aimodel", aimodelc, get_arch("h18p"))
    mac_view = tmp_path / "mac" / name  # a bundle folder whose metadata.json is the Mac form
    shutil.copytree(compiled, mac_view)
    shutil.copy(mac, mac_view / c.BUNDLE_METADATA_FILE)
    decoded = json.loads(run([upstream_decoder, bundle, compiled, mac_view]))
    assert [d["asset"] for d in decoded] == [f"{name}.aimodel", aimodelc, f"{name}.aimodel"]
    for d, folder in zip(decoded, (bundle, compiled, mac_view), strict=True):
        assert d["name"] == name and d["vocab_size"] == 64 and d["max_context_length"] == 128
        assert d["function"] == c.MAIN_FUNCTION
        assert Path(d["main_url"]) == folder / d["asset"]
        # upstream looks for the embedded tokenizer where the contract puts it
        assert Path(d["embedded_tokenizer"]) == folder / c.BUNDLE_TOKENIZER_DIR


def test_upstream_decoders_read_the_12b_multimodal_metadata(upstream_decoder, tmp_path):
    """The seed's 12B bundle: upstream's text path still finds `main` beside the multimodal roles and
    our `gemmaios.multimodal` block (issue 29)."""
    from transformers import Gemma4UnifiedConfig

    from gemmaios.bundlemetadata import write_metadata
    from gemmaios.convert.multimodal import multimodal_metadata
    from gemmaios.tiny import tiny_unified_config_kwargs
    from gemmaios.unified_inputs import UnifiedSpec

    name, bundle = render_bundle(tmp_path, "provider", compiled=False)
    spec = UnifiedSpec.from_config(Gemma4UnifiedConfig(**tiny_unified_config_kwargs()).to_dict())
    roles = {f: [f] for f in ("prefill_multimodal", "embed_vision", "embed_audio")}
    write_metadata(bundle, name=name, aimodel=f"{name}.aimodel", tokenizer="tiny", vocab_size=64, max_context=128,
                   gemmaios={"quant": "int4", "multimodal": multimodal_metadata(spec, {f: {} for f in roles})},
                   roles=roles)
    decoded = json.loads(run([upstream_decoder, bundle]))
    assert len(decoded) == 1
    d = decoded[0]
    assert d["name"] == name and d["function"] == c.MAIN_FUNCTION and d["vocab_size"] == 64
    assert Path(d["main_url"]) == bundle / f"{name}.aimodel"
    written = json.loads((bundle / "metadata.json").read_text())
    assert written["language"]["function_map"]["embed_audio"] == ["embed_audio"]
    assert written["gemmaios"]["multimodal"]["image_token_id"] == spec.image_token_id


def test_swift_string_literals_mean_the_python_text(swift_toolchain, tmp_path):
    """Every escape `swift_string` emits compiles, and the program sees exactly the Python text."""
    from gemmaios.app import swift_string

    texts = ['plain', 'q"uote \\\\ back', "\\(interp)", "\x00\x01\x1f\x7f", "tab\tnl\ncr\r", "\u2028\u2029",
             "Ω ü 漢字 \U0001F600 e\u0301", "$(x) `y` */ /*", "\ufeff\u200b", "end\\"]
    source = "import Foundation\nlet texts: [String] = [\n" + ",\n".join(swift_string(t) for t in texts) + "\n]\n"
    source += "for t in texts { print(t.utf8.map { String(format: \"%02x\", $0) }.joined()) }\n"
    (tmp_path / "main.swift").write_text(source)
    run([swift_toolchain.swiftc, "-o", tmp_path / "strings", tmp_path / "main.swift"])
    lines = run([tmp_path / "strings"]).split()
    assert lines == [t.encode().hex() for t in texts]


@pytest.mark.parametrize("required", [False, True])
def test_without_a_toolchain_swift_tests_skip_or_fail_in_ci(tmp_path, required):
    """No compiler: a skip naming scripts/swift-toolchain.sh; with GEMMAIOS_REQUIRE_SWIFT=1 (CI) a failure."""
    env = {**os.environ, "GEMMAIOS_SWIFT": str(tmp_path / "no-toolchain"), "GEMMAIOS_REQUIRE_SWIFT": "1" if required else ""}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         f"{Path(__file__)}::test_template_and_core_sources_parse"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert "no Swift 6.2+ toolchain found" in out and "scripts/swift-toolchain.sh" in out
    if required:
        assert result.returncode == 1 and "1 error" in out and "GEMMAIOS_REQUIRE_SWIFT=1 but no Swift" in out
    else:
        assert result.returncode == 0 and "1 skipped" in out


def test_swift_parse_reports_a_syntax_error(swift_toolchain, tmp_path):
    (tmp_path / "Good.swift").write_text("let a = 1\n")
    (tmp_path / "Bad.swift").write_text("func (\n")
    with pytest.raises(AssertionError, match="expected identifier in function declaration"):
        swift_parse(swift_toolchain, [tmp_path / "Good.swift", tmp_path / "Bad.swift"])


def test_chroot_script_and_the_finder_agree_on_where_the_wrappers_go(tmp_path, monkeypatch):
    """scripts/swift-toolchain.sh (not run here: it needs root and 4 GB) is valid bash and puts
    its wrappers where tests/swift_toolchain.py looks for them."""
    from swift_toolchain import CHROOT_SCRIPT, chroot_bin

    assert subprocess.run(["bash", "-n", str(CHROOT_SCRIPT)]).returncode == 0
    monkeypatch.setenv("GEMMAIOS_SWIFT_CHROOT", str(tmp_path / "sid"))
    shown = subprocess.run(["bash", str(CHROOT_SCRIPT), "--print-bin"], capture_output=True, text=True)
    assert Path(shown.stdout.strip()) == chroot_bin() == tmp_path / "sid" / "bin"
    text = CHROOT_SCRIPT.read_text()
    assert "debootstrap" in text and "swiftlang" in text and "Check-Valid-Until=false" in text
    assert "lib_Testing_Foundation.so" in text
