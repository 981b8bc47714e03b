import Foundation
import XCTest

@testable import GemmaiosCore

final class BenchLaunchSettingsTests: XCTestCase {
    func testASingleLaunchRunIsWarmAndWritesItsOwnFooter() {
        let s = LaunchSettings(arguments: [], environment: [Contract.benchEnv: "1"], defaultTrials: 3)
        XCTAssertEqual(s.launchKind, Contract.launchKindWarm)
        XCTAssertFalse(s.appendsToTranscript)
        XCTAssertTrue(s.writesFooter)
        XCTAssertEqual(s.trialNumbers, 0..<3)
        XCTAssertEqual(s.durationSeconds, 0)
        XCTAssertEqual(s.sampleIntervalSeconds, Contract.sustainedSampleInterval)
    }

    func testAColdLaunchRunsOneTrialAndAppendsWithoutTheFooter() {
        let s = LaunchSettings(arguments: [], environment: [
            Contract.benchEnv: "1", Contract.trialsEnv: "5", Contract.coldLaunchEnv: "1",
            Contract.launchIndexEnv: "1", Contract.launchesEnv: "4", Contract.firstTrialEnv: "1",
        ], defaultTrials: 3)
        XCTAssertEqual(s.launchKind, Contract.launchKindCold)
        XCTAssertEqual(s.trials, 1)
        XCTAssertEqual(s.trialNumbers, 1..<2)
        XCTAssertTrue(s.appendsToTranscript)
        XCTAssertFalse(s.writesFooter)
    }

    func testTheLastLaunchWritesTheFooterAndSustainedSettingsParse() {
        let s = LaunchSettings(arguments: [Contract.durationArgument, "20", Contract.sampleIntervalArgument, "2"],
                               environment: [Contract.launchIndexEnv: "3", Contract.launchesEnv: "4",
                                             Contract.firstTrialEnv: "3"], defaultTrials: 2)
        XCTAssertTrue(s.writesFooter)
        XCTAssertEqual(s.trialNumbers, 3..<5)
        XCTAssertEqual(s.durationSeconds, 20)
        XCTAssertEqual(s.sampleIntervalSeconds, 2)
    }

    func testBadValuesFallBackToOneLaunchAndNoSustainedPhase() {
        let s = LaunchSettings(arguments: [], environment: [
            Contract.launchesEnv: "0", Contract.launchIndexEnv: "-2", Contract.durationEnv: "x",
            Contract.sampleIntervalEnv: "0",
        ], defaultTrials: 1)
        XCTAssertEqual(s.launches, 1)
        XCTAssertEqual(s.launchIndex, 0)
        XCTAssertEqual(s.durationSeconds, 0)
        XCTAssertEqual(s.sampleIntervalSeconds, Contract.sustainedSampleInterval)
    }
}

final class ThermalTrackerTests: XCTestCase {
    func testPeakIsTheMostSevereStateSeenAndChangesAreReported() {
        let t = ThermalTracker(start: "nominal")
        XCTAssertFalse(t.observe("nominal"))
        XCTAssertTrue(t.observe("serious"))
        XCTAssertTrue(t.observe("fair"))
        XCTAssertEqual(t.start, "nominal")
        XCTAssertEqual(t.peak, "serious")
        XCTAssertEqual(t.current, "fair")
    }
}

final class SustainedMeterTests: XCTestCase {
    func testTokensAreCountedIntoFixedIntervalsUntilTheDurationEnds() {
        let meter = SustainedMeter(start: 100, duration: 5, interval: 2)
        var samples: [SustainedSample] = []
        // 10 tok/s for 3 s, then a 1.5 s pause (a prefill), then 10 tok/s again
        var time = 100.05
        while time < 103 { samples += meter.token(at: time); time += 0.1 }
        time = 104.55
        while meter.running(at: time) { samples += meter.token(at: time); time += 0.1 }
        XCTAssertFalse(meter.running(at: 105))
        samples += meter.finish(at: time)
        XCTAssertEqual(samples.map(\.t), [102, 104, 105].map(Double.init))
        XCTAssertEqual(samples.map(\.intervalSeconds), [2, 2, 1])
        XCTAssertEqual(samples[0].tokens, 20)
        XCTAssertEqual(samples[1].tokens, 10)  // 102–103 decoding, 103–104 paused
        XCTAssertEqual(samples[2].tokens, 5)  // 104.55 … 104.95
        XCTAssertEqual(samples[0].tokensPerSecond, 10, accuracy: 1e-9)
        XCTAssertEqual(meter.totalTokens, 35)
        XCTAssertEqual(meter.samples, samples)
    }

    func testAnIdleIntervalIsAZeroSampleNotAGap() {
        let meter = SustainedMeter(start: 0, duration: 6, interval: 2)
        _ = meter.token(at: 0.5)
        let closed = meter.token(at: 4.5)
        XCTAssertEqual(closed.map(\.tokens), [1, 0])
        let record = closed[1].record(thermalState: "fair", launch: 2)
        XCTAssertEqual(record["type"] as? String, Contract.sampleRecord)
        XCTAssertEqual(record["tok_s"] as? Double, 0)
        XCTAssertEqual(record["launch"] as? Int, 2)
    }
}

final class MultiLaunchTranscriptTests: XCTestCase {
    func testALaterLaunchAppendsAndNeedsTheFirstLaunchesFile() throws {
        let docs = FileManager.default.temporaryDirectory.appendingPathComponent("gemmaios-bp-\(UUID().uuidString)")
        XCTAssertThrowsError(try TranscriptWriter(documents: docs, runId: "r", append: true)) { error in
            XCTAssertEqual(error as? TranscriptWriterError,
                           .nothingToAppendTo(PayloadPaths.transcript(documents: docs, runId: "r").path))
        }
        let first = try TranscriptWriter(documents: docs, runId: "r")
        try first.write(["type": "header", "n": 0])
        first.close()
        let settings = LaunchSettings(arguments: [], environment: [
            Contract.launchIndexEnv: "1", Contract.launchesEnv: "2", Contract.coldLaunchEnv: "1",
        ], defaultTrials: 1)
        let second = try TranscriptWriter(documents: docs, runId: "r", append: settings.appendsToTranscript)
        try second.write(LaunchRecords.opening(settings: settings, thermalState: "nominal", batteryLevel: 0.8,
                                               batteryState: "unplugged", secondsSinceProcessStart: 0.2))
        second.close()
        let lines = try String(contentsOf: second.url, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let launch = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any]
        XCTAssertEqual(launch?["type"] as? String, Contract.launchRecord)
        XCTAssertEqual(launch?["kind"] as? String, Contract.launchKindCold)
        XCTAssertEqual(launch?["index"] as? Int, 1)
    }
}
