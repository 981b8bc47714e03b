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

    /// The toolkit's reader on the same files (tests/test_swift_audio.py writes them): a stereo
    /// 44.1 kHz WAV (`clips.read_wav` averages the channels, `clips.resample` brings it to 16 kHz)
    /// and a 32 s 48 kHz clip that this side reads only up to `sourceFramesNeeded` while the
    /// toolkit resamples it whole; HF's features of the toolkit's samples. `channels` [C, N] holds
    /// the 16-bit PCM as the Float32 values a float reader gives (int / 32768).
    func testMatchesTheToolkitsReader() throws {
        guard let folder = ProcessInfo.processInfo.environment["GEMMAIOS_AUDIO_CLIP_VECTORS"], !folder.isEmpty else {
            throw XCTSkip("GEMMAIOS_AUDIO_CLIP_VECTORS is not set (tests/test_swift_audio.py sets it)")
        }
        let root = URL(fileURLWithPath: folder, isDirectory: true)
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json"))) as? [String: Any]
        let cases = try XCTUnwrap(index?["clips"] as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        for item in cases {
            let name = try XCTUnwrap(item["name"] as? String)
            let rate = try XCTUnwrap(item["rate"] as? Int), count = try XCTUnwrap(item["channels"] as? Int)
            let file = try SafeTensorsFile(url: root.appendingPathComponent(try XCTUnwrap(item["file"] as? String)))
            let interleavedByChannel = try file.floats("channels")
            let frames = interleavedByChannel.count / count
            let needed = try AudioClip.sourceFramesNeeded(sampleRate: rate)
            let read = min(frames, needed)  // what AudioFileDecoding reads
            let channels = (0..<count).map { c in Array(interleavedByChannel[(c * frames)..<(c * frames + read)]) }
            let clip = try AudioClip(channels: channels, sampleRate: rate, truncated: frames > read)
            let expected = try file.floats("waveform")
            XCTAssertEqual(clip.samples.count, expected.count, "\(name): samples")
            XCTAssertEqual(clip.truncated, item["truncated"] as? Bool, "\(name): truncated")
            let sampleError = zip(clip.samples, expected).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(sampleError, LogMelTolerance.resampled, name)
            let features = clip.features()
            XCTAssertEqual(features.mask, try file.ints(Contract.audioMaskInput).map { $0 != 0 }, "\(name): mask")
            let hf = try file.floats(Contract.audioFeaturesInput)
            XCTAssertEqual(features.values.count, hf.count, "\(name): features")
            let featureError = zip(features.values, hf).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(featureError, LogMelTolerance.features, name)
            print("gemmaios-audio-reader: \(name) \(count) channel(s) at \(rate) Hz, \(read) of \(frames) frames read, "
                  + "\(clip.samples.count) samples: max abs sample error \(sampleError), features \(featureError)")
        }
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
