import Foundation
import XCTest

@testable import GemmaiosCore

private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("gemmaios-core-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

final class LaunchSettingsTests: XCTestCase {
    func testDefaultsWithoutArgumentsOrEnvironment() {
        let s = LaunchSettings(arguments: ["App"], environment: [:], defaultTrials: 3)
        XCTAssertEqual(s, LaunchSettings(arguments: [], environment: ["OTHER": "1"], defaultTrials: 3))
        XCTAssertFalse(s.bench)
        XCTAssertEqual(s.trials, 3)
        XCTAssertNil(s.usableRunId)
        XCTAssertEqual(s.udid, "")
        XCTAssertFalse(s.clearSpecCache)
    }

    func testEnvironmentUsesTheContractNames() {
        let s = LaunchSettings(arguments: [], environment: [
            Contract.benchEnv: "TRUE", Contract.trialsEnv: "5", Contract.runIdEnv: "20260101T000000Z",
            Contract.udidEnv: "00008150-000A", Contract.clearSpecCacheEnv: "1",
        ], defaultTrials: 3)
        XCTAssertTrue(s.bench)
        XCTAssertEqual(s.trials, 5)
        XCTAssertEqual(s.usableRunId, "20260101T000000Z")
        XCTAssertEqual(s.udid, "00008150-000A")
        XCTAssertTrue(s.clearSpecCache)
    }

    func testArgumentsWinOverTheEnvironment() {
        let s = LaunchSettings(
            arguments: ["App", Contract.benchArgument, Contract.trialsArgument, "2", Contract.runIdArgument, "r1"],
            environment: [Contract.trialsEnv: "9", Contract.benchEnv: "0"], defaultTrials: 1)
        XCTAssertTrue(s.bench)
        XCTAssertEqual(s.trials, 2)
        XCTAssertEqual(s.usableRunId, "r1")
    }

    func testBadValuesFallBack() {
        let s = LaunchSettings(arguments: [], environment: [
            Contract.trialsEnv: "0", Contract.runIdEnv: "../escape", Contract.benchEnv: "no",
        ], defaultTrials: 4)
        XCTAssertEqual(s.trials, 4)
        XCTAssertNil(s.usableRunId)
        XCTAssertFalse(s.bench)
    }
}

final class PayloadPathsTests: XCTestCase {
    func testBothLocationsShareOneLayout() {
        let app = URL(fileURLWithPath: "/private/var/containers/Bundle/App.app")
        let docs = URL(fileURLWithPath: "/var/mobile/Documents")
        let bundled = PayloadPaths(location: .appBundle, appBundle: app, documents: docs)
        let documents = PayloadPaths(location: .documents, appBundle: app, documents: docs)
        XCTAssertEqual(bundled.root.deletingLastPathComponent().path, app.path)
        XCTAssertEqual(documents.root.deletingLastPathComponent().path, docs.path)
        let rel = { (paths: PayloadPaths, url: URL) in String(url.path.dropFirst(paths.root.path.count)) }
        XCTAssertEqual(rel(bundled, bundled.tableI8), rel(documents, documents.tableI8))
        XCTAssertEqual(rel(bundled, bundled.promptSet), rel(documents, documents.promptSet))
        XCTAssertEqual(rel(bundled, bundled.bundle(named: "b")), rel(documents, documents.bundle(named: "b")))
        XCTAssertEqual(bundled.bundle(named: "b").lastPathComponent, "b")
        XCTAssertEqual(PayloadPaths.transcript(documents: docs, runId: "r").deletingLastPathComponent(),
                       PayloadPaths.runs(documents: docs))
    }
}

final class DecodeRuleTests: XCTestCase {
    func testBenchDecodesExactlyNTokensThroughEOS() {
        let rule = DecodeRule.bench(maxNewTokens: 4, eosTokenIds: [1, 106])
        XCTAssertEqual(rule.take([5, 1, 106, 7, 8, 9] as [Int32]), [5, 1, 106, 7])
        XCTAssertFalse(rule.stopAtEOS)
    }

    func testChatStopsAtEOS() {
        let rule = DecodeRule.chat(eosTokenIds: [1, 106])
        XCTAssertEqual(rule.take([5, 6, 106, 7] as [Int32]), [5, 6, 106])
        XCTAssertEqual(rule.maxNewTokens, Contract.chatMaxNewTokens)
    }

    func testShortStreamAndZeroBudget() {
        XCTAssertEqual(DecodeRule.bench(maxNewTokens: 8, eosTokenIds: []).take([3, 4] as [Int32]), [3, 4])
        XCTAssertEqual(DecodeRule.bench(maxNewTokens: 0, eosTokenIds: []).take([3, 4] as [Int32]), [])
    }

    func testTokenComparison() {
        XCTAssertNil(TokenComparison.firstDivergence([1, 2, 3], [1, 2, 3]))
        XCTAssertEqual(TokenComparison.firstDivergence([1, 2, 3], [1, 9, 3]), 1)
        XCTAssertEqual(TokenComparison.firstDivergence([1, 2], [1, 2, 3]), 2)
        XCTAssertEqual(TokenComparison.firstDivergence([], [4]), 0)
    }

    func testChatPromptHasExactlyOneBOS() {
        XCTAssertEqual(ChatPrompt.withSingleBOS([2, 2, 105, 9], bos: 2), [2, 105, 9])
        XCTAssertEqual(ChatPrompt.withSingleBOS([105, 9], bos: 2), [2, 105, 9])
        XCTAssertEqual(ChatPrompt.withSingleBOS([2, 105], bos: 2), [2, 105])
        XCTAssertEqual(ChatPrompt.withSingleBOS([], bos: 2), [2])
    }
}

final class PromptSetTests: XCTestCase {
    func testLoadsTheRenderedSet() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent(Contract.promptSetFile)
        let json = #"{"schema":"\#(Contract.promptSetSchema)","name":"oracle","sha256":"ab","max_new_tokens":8,"prompts":[{"id":"p0","prompt_ids":[2,10,11]}]}"#
        try Data(json.utf8).write(to: url)
        let set = try BenchPromptSet.load(from: url)
        XCTAssertEqual(set.maxNewTokens, 8)
        XCTAssertEqual(set.prompts, [.init(id: "p0", promptIds: [2, 10, 11])])
    }

    func testRefusesMissingOrForeignSets() throws {
        let dir = try temporaryDirectory()
        XCTAssertThrowsError(try BenchPromptSet.load(from: dir.appendingPathComponent("none.json"))) {
            XCTAssertEqual($0 as? PromptSetError, .missing(dir.appendingPathComponent("none.json").path))
        }
        let old = Data(#"{"name":"x","sha256":"","max_new_tokens":8,"prompts":[]}"#.utf8)
        XCTAssertThrowsError(try BenchPromptSet.decode(old)) { XCTAssertEqual($0 as? PromptSetError, .wrongSchema(nil)) }
        let empty = Data(#"{"schema":"\#(Contract.promptSetSchema)","name":"x","sha256":"","max_new_tokens":8,"prompts":[{"id":"a","prompt_ids":[]}]}"#.utf8)
        XCTAssertThrowsError(try BenchPromptSet.decode(empty))
    }
}

final class TranscriptWriterTests: XCTestCase {
    func testLinesFooterLastAndNothingAfter() throws {
        let docs = try temporaryDirectory()
        let writer = try TranscriptWriter(documents: docs, runId: "r1")
        XCTAssertEqual(writer.url, PayloadPaths.transcript(documents: docs, runId: "r1"))
        try writer.write(["type": "header", "schema": TranscriptWriter.schema, "n": UInt64(1) << 40])
        try writer.write(["type": "footer", "completed": true, "battery_level": DeviceFacts.batteryLevel(0.81)])
        XCTAssertTrue(writer.isFinished)
        XCTAssertThrowsError(try writer.write(["type": "memory", "t": 1.0])) {
            XCTAssertEqual($0 as? TranscriptWriterError, .afterFooter("memory"))
        }
        writer.close()
        let lines = try String(contentsOf: writer.url, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let footer = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any]
        XCTAssertEqual(footer?["completed"] as? Bool, true)
        XCTAssertTrue(lines[1].contains("\"battery_level\":0.81"), String(lines[1]))
        XCTAssertTrue(lines[0].contains("\"n\":1099511627776"), String(lines[0]))
    }

    func testBatteryLevelIsThePercentage() {
        XCTAssertEqual(DeviceFacts.batteryLevel(Float(0.81)), 0.81)
        XCTAssertEqual(DeviceFacts.batteryLevel(Float(1.0)), 1.0)
        XCTAssertEqual(DeviceFacts.batteryLevel(Float(-1.0)), -1)
        XCTAssertNotEqual(Double(Float(0.81)), 0.81)  // why the rounding is needed
    }

    func testRunIdsCannotNameAPath() {
        let id = TranscriptWriter.newRunId(Date(timeIntervalSince1970: 0))
        XCTAssertTrue(id.hasPrefix("19700101T000000Z-"), id)
        XCTAssertFalse(id.contains("/"))
    }
}

final class FootprintSamplerTests: XCTestCase {
    func testTickUsesTheInjectedReaderAndClock() {
        let values = LockedBox<[UInt64]>([100, 300, 200])
        let seen = LockedBox<[(Double, UInt64)]>([])
        let sampler = FootprintSampler(
            reader: { values.mutate { $0.isEmpty ? 50 : $0.removeFirst() } },
            clock: { 42.5 })
        sampler.start(every: 3600) { t, bytes in seen.mutate { $0.append((t, bytes)) } }
        // the timer fires once right away; wait for it, then drive it by hand
        let deadline = Date().addingTimeInterval(5)
        while seen.value.isEmpty && Date() < deadline { usleep(1000) }
        sampler.tick()
        sampler.tick()
        XCTAssertEqual(seen.value.map(\.1), [100, 300, 200])
        XCTAssertEqual(seen.value.map(\.0), [42.5, 42.5, 42.5])
        XCTAssertEqual(sampler.takePeak(), 300)  // max(300, now=50)
        XCTAssertEqual(sampler.takePeak(), 50)  // the window restarted at the last reading
        sampler.stop()
        sampler.tick()
        XCTAssertEqual(seen.value.count, 3)
        XCTAssertFalse(sampler.isRunning)
    }

    /// The race of issue 15: a sample in flight when stop() is called used to be delivered
    /// after it returned, i.e. after the footer. 500 runs at a 50 µs interval.
    func testNoSampleIsDeliveredAfterStopReturns() {
        var late = 0
        for _ in 0..<500 {
            let footerWritten = LockedBox(false)
            let lateSamples = LockedBox(0)
            let delivered = LockedBox(0)
            let sampler = FootprintSampler(
                reader: { usleep(20); return 1 },
                clock: { 0 })
            sampler.start(every: 0.00005) { _, _ in
                usleep(30)  // a sample that takes a while to write
                if footerWritten.value { lateSamples.mutate { $0 += 1 } }
                delivered.mutate { $0 += 1 }
            }
            while delivered.value < 2 { usleep(10) }
            sampler.stop()
            footerWritten.mutate { $0 = true }
            usleep(200)
            late += lateSamples.value
        }
        XCTAssertEqual(late, 0, "samples delivered after stop() returned")
    }
}

final class PLETests: XCTestCase {
    private func writeTables(shape: PLEShape, in dir: URL) throws -> PayloadPaths {
        let paths = PayloadPaths(root: dir)
        try FileManager.default.createDirectory(at: paths.tables, withIntermediateDirectories: true)
        let table = (0..<shape.tableBytes).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        var scales = Data()
        for v in 0..<shape.vocabSize {
            var s = Float(v + 1) / 127
            withUnsafeBytes(of: &s) { scales.append(contentsOf: $0) }
        }
        try Data(table).write(to: paths.tableI8)
        try scales.write(to: paths.tableScale)
        return paths
    }

    func testGatherMatchesTheFormula() throws {
        let shape = PLEShape(vocabSize: 5, layers: 2, dim: 3)
        let paths = try writeTables(shape: shape, in: try temporaryDirectory())
        let gatherer = try PLERowGatherer(paths: paths, shape: shape)
        let bytes = try gatherer.row(tokenId: 3)
        XCTAssertEqual(bytes.count, shape.tokenBytes)
        let values = bytes.withUnsafeBytes { Array($0.bindMemory(to: Float16.self)) }
        let table = try Data(contentsOf: paths.tableI8)
        for j in 0..<shape.rowLength {
            let i8 = Int8(bitPattern: table[3 * shape.rowLength + j])
            XCTAssertEqual(values[j], Float16(Float(i8) * (Float(4) / 127 * Float(3.0.squareRoot()))))
        }
    }

    func testGatherRefusesAWrongDestinationOrToken() throws {
        let shape = PLEShape(vocabSize: 5, layers: 2, dim: 3)
        let gatherer = try PLERowGatherer(paths: try writeTables(shape: shape, in: try temporaryDirectory()), shape: shape)
        var big = [UInt8](repeating: 0, count: shape.tokenBytes + 2)
        XCTAssertThrowsError(try big.withUnsafeMutableBytes { try gatherer.gather(tokenId: 0, into: $0) }) {
            XCTAssertEqual($0 as? PLEError,
                           .destinationSize(Contract.pleTokensInput, expected: shape.tokenBytes, actual: shape.tokenBytes + 2))
        }
        XCTAssertThrowsError(try gatherer.row(tokenId: -1)) { XCTAssertEqual($0 as? PLEError, .badToken(-1, vocabSize: 5)) }
    }

    /// Image soft tokens are ids >= V after the splice: their PLE row is the pad row, as HF's
    /// get_per_layer_inputs sees pad_token_id there (the gather refused them before issue 17).
    func testIdsFromTheVocabularyOnTakeThePadRow() throws {
        let shape = PLEShape(vocabSize: 5, layers: 2, dim: 3)
        XCTAssertEqual(shape.padTokenId, 0)  // Gemma 4's pad_token_id
        let gatherer = try PLERowGatherer(paths: try writeTables(shape: shape, in: try temporaryDirectory()), shape: shape)
        let pad = try gatherer.row(tokenId: shape.padTokenId)
        XCTAssertNotEqual(pad, try gatherer.row(tokenId: 1))
        for id: Int32 in [5, 6, 5 + 279, Int32.max] {
            XCTAssertEqual(try gatherer.row(tokenId: id), pad, "id \(id)")
        }
        let padTwo = PLEShape(vocabSize: 5, layers: 2, dim: 3, padTokenId: 2)
        XCTAssertEqual(padTwo.tableRow(for: 7), 2)
        XCTAssertEqual(padTwo.tableRow(for: 4), 4)
        XCTAssertNil(padTwo.tableRow(for: -3))
        XCTAssertNil(PLEShape(vocabSize: 5, layers: 2, dim: 3, padTokenId: 9).tableRow(for: 6))
    }

    func testTablesOfTheWrongSizeOrMissingAreRefused() throws {
        let dir = try temporaryDirectory()
        let paths = try writeTables(shape: PLEShape(vocabSize: 5, layers: 2, dim: 3), in: dir)
        XCTAssertThrowsError(try PLERowGatherer(paths: paths, shape: PLEShape(vocabSize: 6, layers: 2, dim: 3))) {
            XCTAssertEqual($0 as? PLEError, .wrongSize(paths.tableI8.path, expected: 36, actual: 30))
        }
        XCTAssertThrowsError(try PLERowGatherer(paths: PayloadPaths(root: dir.appendingPathComponent("x")),
                                                shape: PLEShape(vocabSize: 5, layers: 2, dim: 3))) {
            guard case .missing = $0 as? PLEError else { return XCTFail("\($0)") }
        }
    }

    func testTableLoaderCopiesExactlyAndRefusesOtherSizes() throws {
        let shape = PLEShape(vocabSize: 5, layers: 2, dim: 3)
        let paths = try writeTables(shape: shape, in: try temporaryDirectory())
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: shape.tableBytes, alignment: 16)
        defer { buffer.deallocate() }
        try PLETableLoader.copy(paths.tableI8, length: shape.tableBytes, into: buffer, capacity: shape.tableBytes)
        XCTAssertEqual(Data(bytes: buffer, count: shape.tableBytes), try Data(contentsOf: paths.tableI8))
        XCTAssertThrowsError(try PLETableLoader.copy(paths.tableI8, length: shape.tableBytes, into: buffer,
                                                     capacity: shape.tableBytes - 1))
    }
}

/// A value shared with @Sendable closures in tests.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T { lock.withLock { stored } }
    @discardableResult
    func mutate<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&stored) } }
}

final class PrefillPlanTests: XCTestCase {
    private func metadata(_ roles: String, _ functions: String) -> Data {
        Data("""
            {"language": {"function_map": {"main": "main"\(roles)}},
             "gemmaios": {"prefill": {"functions": {\(functions)}}}}
            """.utf8)
    }

    func testLargestChunkIsUsedAndWarmupCoversBothFunctions() throws {
        let settings = LaunchSettings(arguments: [], environment: [:], defaultTrials: 1)
        let plan = try PrefillPlan(
            metadata: metadata(#", "prefill": ["prefill_8", "prefill_16"]"#,
                #""prefill_8": {"chunk": 8}, "prefill_16": {"chunk": 16}"#),
            settings: settings)
        XCTAssertEqual(plan.function, "prefill_16")
        XCTAssertEqual(plan.function(forTrial: 0), "prefill_16")
        XCTAssertEqual(plan.function(forTrial: 1), "prefill_16")
        XCTAssertEqual(plan.warmupLength(for: "prefill_16"), 17)
        XCTAssertEqual(plan.warmupLength(for: nil), 1)
    }

    func testOffSwitchAndAlternation() throws {
        let data = metadata(#", "prefill": ["prefill_8"]"#, #""prefill_8": {"chunk": 8}"#)
        let off = try PrefillPlan(
            metadata: data, settings: LaunchSettings(arguments: [Contract.prefillOffArgument], environment: [:], defaultTrials: 1))
        XCTAssertNil(off.function(forTrial: 0))
        let ab = try PrefillPlan(
            metadata: data, settings: LaunchSettings(arguments: [], environment: [Contract.abPrefillEnv: "1"], defaultTrials: 4))
        XCTAssertEqual((0..<4).map { ab.function(forTrial: $0) }, ["prefill_8", nil, "prefill_8", nil])
    }

    func testMainOnlyBundleAndUndescribedFunction() throws {
        let settings = LaunchSettings(arguments: [], environment: [Contract.abPrefillEnv: "1"], defaultTrials: 2)
        let none = try PrefillPlan(metadata: metadata("", ""), settings: settings)
        XCTAssertNil(none.function(forTrial: 0))
        XCTAssertNil(none.function(forTrial: 1))
        XCTAssertFalse(none.alternate)
        XCTAssertThrowsError(try PrefillPlan(metadata: metadata(#", "prefill": ["prefill_4"]"#, ""), settings: settings)) {
            XCTAssertEqual($0 as? PrefillPlanError, .undescribedFunction("prefill_4"))
        }
    }
}

final class KVGuardTests: XCTestCase {
    func testBindingOnlyGrowsAndWarnsOnIOSAbove1024() {
        var kv = KVCapacity(maxContext: 4096)
        XCTAssertEqual(kv.growth, Contract.kvGrowthDoubling)
        XCTAssertNil(kv.engineKVCacheSize)
        XCTAssertEqual(kv.bind(promptTokens: 20, maxNewTokens: 32), 256)
        XCTAssertEqual(kv.bind(promptTokens: 1000, maxNewTokens: 32), 2048)
        XCTAssertEqual(kv.bind(promptTokens: 20, maxNewTokens: 32), 2048)  // reset(to:) keeps the buffers
        XCTAssertEqual(kv.bind(promptTokens: 9000, maxNewTokens: 32), 4096)  // the engine asks for its max
        XCTAssertNil(KVGuard.warning(capacity: 1024, platform: "iOS"))
        XCTAssertNil(KVGuard.warning(capacity: 4096, platform: "macOS"))
        let warning = KVGuard.warning(capacity: 2048, platform: "iOS")
        XCTAssertEqual(warning?.name, Contract.kvFaultWarning)
        XCTAssertTrue(warning?.message.contains(Contract.kvFaultIssue) ?? false)
    }

    func testThe384StartNeverBinds2048Or4096() {
        var kv = KVCapacity.alternate(bundleMaxContext: 4096)
        XCTAssertEqual(kv.maxContext, 3072)
        XCTAssertEqual(kv.engineKVCacheSize, Contract.kvAlternateInitialCapacity)
        XCTAssertEqual(kv.growth, Contract.kvGrowthAlternate)
        let bound = [10, 700, 1500, 2800, 3000].map { kv.bind(promptTokens: $0, maxNewTokens: 32) }
        XCTAssertEqual(bound, [384, 768, 1536, 3072, 3072])
        XCTAssertEqual(KVCapacity.alternate(bundleMaxContext: 1024).maxContext, 768)
    }

    func testABKVAlternatesTheStartPerTrial() {
        let ab = LaunchSettings(arguments: [Contract.abKVArgument], environment: [:], defaultTrials: 4)
        XCTAssertEqual((0..<4).map { ab.kv384(forTrial: $0) }, [false, true, false, true])
        let on = LaunchSettings(arguments: [], environment: [Contract.kv384Env: "1"], defaultTrials: 1)
        XCTAssertTrue(on.kv384(forTrial: 0))
        XCTAssertFalse(LaunchSettings(arguments: [], environment: [:], defaultTrials: 1).kv384(forTrial: 1))
    }
}
