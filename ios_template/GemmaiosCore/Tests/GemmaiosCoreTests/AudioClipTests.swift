import Foundation
import XCTest

@testable import GemmaiosCore

/// The app's audio seam (AudioClip): channels → mono → 16 kHz → the cut, as the toolkit does it.
final class AudioClipTests: XCTestCase {
    /// Deterministic noise in [-0.5, 0.5) (a linear congruential generator).
    static func noise(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
    }

    func testChannelsAreAveragedInFloat64AndA16kHzMonoClipPassesUnchanged() throws {
        let left = AudioClipTests.noise(4000, seed: 1), right = AudioClipTests.noise(4000, seed: 2)
        let mono = try AudioClip(channels: [left], sampleRate: Contract.audioSampleRate)
        XCTAssertEqual(mono.samples, left)
        XCTAssertFalse(mono.truncated)
        XCTAssertEqual(mono.seconds, 0.25)
        let stereo = try AudioClip(channels: [left, right], sampleRate: Contract.audioSampleRate)
        XCTAssertEqual(stereo.samples, zip(left, right).map { Float((Double($0) + Double($1)) / 2) })
        XCTAssertEqual(stereo.sourceRate, Contract.audioSampleRate)
    }

    func testOtherRatesGoThroughTheResampler() throws {
        let x = AudioClipTests.noise(22050, seed: 3)
        let clip = try AudioClip(channels: [x, x], sampleRate: 44100)  // 0.5 s, two equal channels
        XCTAssertEqual(clip.samples, try AudioResampler(from: 44100).resample(x))
        XCTAssertEqual(clip.samples.count, 8000)
        XCTAssertEqual(clip.sourceRate, 44100)
        let features = clip.features()
        XCTAssertEqual(features.frames, LogMelExtractor.melFrames(paddedSamples: LogMelExtractor.paddedSamples(8000)))
        XCTAssertEqual(features, LogMelExtractor().features(clip.samples))
        let fixed = try clip.features(paddedTo: Contract.audioMaxSamples)
        XCTAssertEqual(fixed.frames, LogMelExtractor.melFrames(paddedSamples: Contract.audioMaxSamples))
        XCTAssertEqual(fixed.realFrames, features.realFrames)
    }

    /// Reading a long source stops at sourceFramesNeeded: the output up to the cut is the whole
    /// source's, bit for bit; ten frames fewer and it is not.
    func testTheFramesNeededGiveTheWholeSourcesOutputUpToTheCut() throws {
        let count = 700
        XCTAssertEqual(try AudioClip.sourceFramesNeeded(sampleRate: Contract.audioSampleRate, outputCount: count), count)
        XCTAssertGreaterThanOrEqual(try AudioClip.sourceFramesNeeded(sampleRate: 44100),
                                    Contract.audioMaxSamples * 441 / 160)
        for rate in [44100, 48000, 22050, 8000] {
            let needed = try AudioClip.sourceFramesNeeded(sampleRate: rate, outputCount: count)
            let x = AudioClipTests.noise(needed + 3000, seed: UInt64(rate))
            let resampler = try AudioResampler(from: rate)
            let whole = Array(resampler.resample(x).prefix(count))
            XCTAssertEqual(whole.count, count, "\(rate)")
            XCTAssertEqual(Array(resampler.resample(Array(x.prefix(needed))).prefix(count)), whole, "\(rate)")
            XCTAssertNotEqual(Array(resampler.resample(Array(x.prefix(needed - 10))).prefix(count)), whole, "\(rate)")
        }
    }

    func testALongClipIsCutAtTheContractsMaximum() throws {
        let clip = try AudioClip(channels: [[Float](repeating: 0.1, count: Contract.audioMaxSamples + 500)],
                                 sampleRate: Contract.audioSampleRate)
        XCTAssertEqual(clip.samples.count, Contract.audioMaxSamples)
        XCTAssertTrue(clip.truncated)
        let told = try AudioClip(channels: [[0.1, 0.2]], sampleRate: Contract.audioSampleRate, truncated: true)
        XCTAssertTrue(told.truncated)  // the reader stopped early: the clip says so
    }

    func testBadInputIsANamedError() {
        XCTAssertThrowsError(try AudioClip(channels: [], sampleRate: 48000)) {
            XCTAssertEqual($0 as? AudioClipError, .noChannels)
        }
        XCTAssertThrowsError(try AudioClip(channels: [[0, 0], [0]], sampleRate: 48000)) {
            XCTAssertEqual($0 as? AudioClipError, .unequalChannels([2, 1]))
            XCTAssertTrue($0.localizedDescription.contains("[2, 1]"))
        }
        XCTAssertThrowsError(try AudioClip(channels: [[0]], sampleRate: 0)) {
            XCTAssertEqual($0 as? AudioInputError, .badSampleRate(0))
        }
    }
}
