// Cross-language vectors: runs GemmaiosCore's real code on inputs the toolkit's tests give
// and writes what it produced, for Python to check (tests/test_swift.py).
//
//   gemmaios-core-vectors gather <tables dir> <vocab> <layers> <dim> <out file> <id>...
//   gemmaios-core-vectors transcript <documents> <run id> <prompt set file> <samples>
//   gemmaios-core-vectors paths <app bundle> <documents> <bundle name>
//   gemmaios-core-vectors launch <default trials> [arguments...]   (environment from the process)
//   gemmaios-core-vectors bench-launch <default trials>              (the bench protocol's settings, environment)
//   gemmaios-core-vectors sustained <start> <duration> <interval> <finish> <token time>...
//   gemmaios-core-vectors kv-guard <platform> <max context> <prompt tokens>:<new tokens>...  (one engine, in order;
//                         environment KV_384=1: the 384 start, the #124 candidate workaround)
import Foundation
import GemmaiosCore

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(2)
}

func printJSON(_ object: Any) {
    do {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } catch {
        fail("cannot encode JSON: \(error)")
    }
}

var args = Array(CommandLine.arguments.dropFirst())
guard let command = args.first else { fail("usage: gemmaios-core-vectors gather|transcript|paths|launch ...") }
args.removeFirst()

do {
    switch command {
    case "gather":
        guard args.count >= 6, let vocab = Int(args[1]), let layers = Int(args[2]), let dim = Int(args[3]) else {
            fail("gather <tables dir> <vocab> <layers> <dim> <out file> <id>...")
        }
        let gatherer = try PLERowGatherer(
            paths: PayloadPaths(root: URL(fileURLWithPath: args[0]).deletingLastPathComponent()),
            shape: PLEShape(vocabSize: vocab, layers: layers, dim: dim))
        var out = Data()
        for text in args[5...] {
            guard let id = Int32(text) else { fail("not a token id: \(text)") }
            out.append(contentsOf: try gatherer.row(tokenId: id))
        }
        try out.write(to: URL(fileURLWithPath: args[4]))
    case "transcript":
        guard args.count == 4, let samples = Int(args[3]) else {
            fail("transcript <documents> <run id> <prompt set file> <samples>")
        }
        let documents = URL(fileURLWithPath: args[0])
        let set = try BenchPromptSet.load(from: URL(fileURLWithPath: args[2]))
        let writer = try TranscriptWriter(documents: documents, runId: args[1])
        try writer.write([
            "type": "header", "schema": TranscriptWriter.schema, "run_id": args[1],
            "started_at": TranscriptWriter.timestamp(),
            "device": ["product_type": "Linux", "name": "swift test", "os_version": "", "arch": "h18p", "udid": "VECTOR"],
            "bundle": ["name": "vector", "metadata_sha256": "", "quant": "int4", "ple": "provider"],
            "app": ["version": "0.0.0", "toolkit_version": "0.0.0"],
            "prompt_set": ["name": set.name, "sha256": set.sha256, "count": set.prompts.count],
            "trials": 1, "max_new_tokens": set.maxNewTokens, "platform": "Linux",
        ])
        let counter = NSLock()
        nonisolated(unsafe) var reads: UInt64 = 0
        let sampler = FootprintSampler(
            reader: { counter.withLock { reads += 1; return 1_000_000 + reads } },
            clock: { Date().timeIntervalSince1970 })
        try writer.write(["type": "load", "seconds": 0.5, "cold": true])
        sampler.start(every: 0.00005) { t, bytes in
            try? writer.write(["type": "memory", "t": t, "phys_footprint_bytes": bytes, "available_bytes": UInt64(1) << 32])
        }
        let rule = DecodeRule.bench(maxNewTokens: set.maxNewTokens, eosTokenIds: [1])
        for (index, prompt) in set.prompts.enumerated() {
            // a stand-in stream: echoes the prompt, EOS ids included, longer than the rule allows
            let stream = Array(repeating: prompt.promptIds, count: set.maxNewTokens + 1).joined()
            let generated = rule.take(stream)
            try writer.write([
                "type": "prompt", "trial": 0, "index": index, "prompt_id": prompt.id,
                "prompt_ids": prompt.promptIds.map(Int.init), "generated_ids": generated.map(Int.init),
                "prefill_tokens": prompt.promptIds.count, "prefill_seconds": 0.01, "ttft_seconds": 0.01,
                "decode_tokens": max(0, generated.count - 1), "decode_seconds": 0.02,
                "decode_token_seconds": [Double](repeating: 0.001, count: max(0, generated.count - 1)),
                "peak_phys_footprint_bytes": sampler.takePeak(),
                "thermal_state": "nominal", "seconds_since_launch": 1.0,
            ])
        }
        while counter.withLock({ reads }) < UInt64(samples) { usleep(100) }
        sampler.stop()
        try writer.write([
            "type": "footer", "completed": true, "ended_at": TranscriptWriter.timestamp(),
            "battery_level": DeviceFacts.batteryLevel(Float(0.81)), "battery_state": "unplugged",
        ])
        writer.close()
        print(writer.url.path)
    case "paths":
        guard args.count == 3 else { fail("paths <app bundle> <documents> <bundle name>") }
        var out: [String: Any] = [:]
        for (name, location) in [("bundled", BundleLocation.appBundle), ("documents", BundleLocation.documents)] {
            let paths = PayloadPaths(
                location: location, appBundle: URL(fileURLWithPath: args[0]), documents: URL(fileURLWithPath: args[1]))
            out[name] = [
                "bundle": paths.bundle(named: args[2]).path, "table_i8": paths.tableI8.path,
                "table_scale": paths.tableScale.path, "prompt_set": paths.promptSet.path,
                "metadata": paths.bundle(named: args[2]).appendingPathComponent(Contract.bundleMetadataFile).path,
            ]
        }
        out["transcript"] = PayloadPaths.transcript(documents: URL(fileURLWithPath: args[1]), runId: "RUN").path
        printJSON(out)
    case "launch":
        guard let trials = args.first.flatMap(Int.init) else { fail("launch <default trials> [arguments...]") }
        let settings = LaunchSettings(
            arguments: Array(args.dropFirst()), environment: ProcessInfo.processInfo.environment, defaultTrials: trials)
        printJSON([
            "bench": settings.bench, "trials": settings.trials, "run_id": settings.usableRunId ?? NSNull(),
            "udid": settings.udid, "clear_spec_cache": settings.clearSpecCache,
        ])
    case "bench-launch":
        guard let trials = args.first.flatMap(Int.init) else { fail("bench-launch <default trials>") }
        let s = LaunchSettings(arguments: [], environment: ProcessInfo.processInfo.environment, defaultTrials: trials)
        printJSON([
            "kind": s.launchKind, "launch_index": s.launchIndex, "launches": s.launches,
            "trials": Array(s.trialNumbers), "appends": s.appendsToTranscript, "writes_footer": s.writesFooter,
            "duration": s.durationSeconds, "sample_interval": s.sampleIntervalSeconds,
        ])
    case "sustained":
        let numbers = args.compactMap(Double.init)
        guard numbers.count == args.count, numbers.count >= 4 else {
            fail("sustained <start> <duration> <interval> <finish> <token time>...")
        }
        let meter = SustainedMeter(start: numbers[0], duration: numbers[1], interval: numbers[2])
        for time in numbers.dropFirst(4) where time < meter.end { _ = meter.token(at: time) }
        _ = meter.finish(at: numbers[3])
        printJSON(meter.samples.map { ["t": $0.t, "interval_s": $0.intervalSeconds, "tokens": $0.tokens] })
    case "kv-guard":
        guard args.count >= 2, let maxContext = Int(args[1]) else {
            fail("kv-guard <platform> <max context> <prompt tokens>:<new tokens>...")
        }
        var kv = ProcessInfo.processInfo.environment["KV_384"] == "1"
            ? KVCapacity.alternate(bundleMaxContext: maxContext) : KVCapacity(maxContext: maxContext)
        var out: [[String: Any]] = []
        for pair in args[2...] {
            let parts = pair.split(separator: ":").compactMap { Int($0) }
            guard parts.count == 2 else { fail("not <prompt tokens>:<new tokens>: \(pair)") }
            let capacity = kv.bind(promptTokens: parts[0], maxNewTokens: parts[1])
            let warning = KVGuard.warning(capacity: capacity, platform: args[0])
            out.append(["capacity": capacity, "warning": warning?.message ?? NSNull(), "growth": kv.growth,
                        "max_context": kv.maxContext])
        }
        printJSON(out)
    default:
        fail("unknown command \(command)")
    }
} catch {
    fail("error: \(error.localizedDescription)")
}
