import Foundation
import XCTest

@testable import GemmaiosCore

/// How close the Swift front end must come to Hugging Face and scipy (natural-log mel units for
/// features, sample units in [-1, 1] for the resampler). Measured on the 12 vector clips
/// (tests/test_swift_audio.py, docs/app.md): features max abs error 4.8e-7, one Float32 ulp at
/// |feature| in [4, 8) (HF's numpy rfft runs in Float32, ours in Float64; the Float32 window
/// product is the same operation on both sides); masks and frame counts exact. The bound, 1e-4,
/// leaves room for HF's Float32 FFT rounding in a near-floor bin of a louder clip (its error is
/// ~1e-7 of the frame's peak magnitude, divided by mel + 1e-3 in the log) and for another libm;
/// the encoder's input spans about -6.9 … +5, so 1e-4 is far below anything it can tell apart.
/// The resampler computes in Float64 as scipy does on Float64 input: measured max error 2.7e-17
/// (the Float32 outputs agree bit for bit but for a few values near 0); bound 1e-6.
enum LogMelTolerance {
    static let features: Float = 1e-4
    static let resampled: Float = 1e-6
}

final class AudioInputTests: XCTestCase {
    /// Frame counts and masks HF's extractor gives (transformers 5.x, measured on these lengths).
    func testLengthsFollowHF() {
        // (samples, padded, frames, real)
        let cases = [(0, 0, 0, 0), (100, 128, 0, 0), (160, 256, 1, 0), (161, 256, 1, 1), (321, 384, 2, 2),
                     (481, 512, 3, 3), (16000, 16000, 99, 99), (16001, 16128, 100, 100),
                     (500_000, 480_000, 2999, 2999)]
        for (n, padded, frames, real) in cases {
            XCTAssertEqual(LogMelExtractor.paddedSamples(n), padded, "\(n)")
            XCTAssertEqual(LogMelExtractor.melFrames(paddedSamples: padded), frames, "\(n)")
            XCTAssertEqual(LogMelExtractor.realFrames(samples: min(n, Contract.audioMaxSamples), frames: frames), real, "\(n)")
        }
        let extractor = LogMelExtractor()
        let out = extractor.features([Float](repeating: 0.25, count: 16001))
        XCTAssertEqual([out.frames, out.realFrames, out.values.count], [100, 100, 100 * 128])
        let fixed = try? extractor.features([Float](repeating: 0.25, count: 1000), paddedTo: Contract.audioMaxSamples)
        XCTAssertEqual(fixed?.frames, 2999)
        XCTAssertEqual(fixed?.realFrames, 6)
        XCTAssertTrue(fixed?.values[(6 * 128)...].allSatisfy { $0 == 0 } ?? false)
        XCTAssertThrowsError(try extractor.features([1], paddedTo: 0)) {
            XCTAssertEqual($0 as? AudioInputError, .badPadLength(0))
        }
    }

    func testSilenceIsTheFloorAndAToneLandsInItsBin() {
        let extractor = LogMelExtractor()
        let silent = extractor.features([Float](repeating: 0, count: 4800))
        XCTAssertEqual([silent.frames, silent.realFrames], [30, 29])  // 4864 padded samples; the last window runs past the clip
        XCTAssertTrue(silent.values.prefix(29 * 128).allSatisfy { $0 == Float(log(Contract.audioMelFloor)) })
        XCTAssertTrue(silent.frame(29).allSatisfy { $0 == 0 })
        // a 1 kHz tone: every full frame peaks in the mel filter whose span holds 1 kHz
        let tone = (0..<16000).map { Float(0.5 * sin(2 * Double.pi * 1000 * Double($0) / 16000)) }
        let out = extractor.features(tone)
        let binOf1k = 1000 * Contract.audioFFTLength / Contract.audioSampleRate  // 32
        let peaks = (2..<(out.realFrames - 1)).map { i in out.frame(i).indices.max { out.values[$0] < out.values[$1] }! % 128 }
        XCTAssertEqual(Set(peaks).count, 1)
        let peak = peaks[0]
        XCTAssertGreaterThan(extractor.melFilters[binOf1k * 128 + peak], 0.5)
    }

    func testFFTAndFilterBank() {
        let fft = RealFFT(length: 512)
        var mags = [Double](repeating: 0, count: 257)
        let x = (0..<512).map { cos(2 * Double.pi * 32 * Double($0) / 512) + 0.5 }
        fft.magnitudes(x, into: &mags)
        XCTAssertEqual(mags[32], 256, accuracy: 1e-9)
        XCTAssertEqual(mags[0], 256, accuracy: 1e-9)
        XCTAssertEqual(mags.enumerated().filter { $0.offset != 0 && $0.offset != 32 }.map(\.element).max()!, 0, accuracy: 1e-9)
        let extractor = LogMelExtractor()
        XCTAssertEqual(extractor.melFilters.count, 257 * 128)
        XCTAssertEqual(extractor.window[0], 0)
        XCTAssertEqual(extractor.window[160], 1)
        // the HTK scale: 1000 Hz is 1000 mel (within rounding)
        XCTAssertEqual(LogMelExtractor.hertzToMel(1000), 1000, accuracy: 0.1)
        XCTAssertEqual(LogMelExtractor.melToHertz(LogMelExtractor.hertzToMel(4321)), 4321, accuracy: 1e-9)
    }

    func testResamplerRatesLengthsAndGain() throws {
        let r48 = try AudioResampler(from: 48000)
        XCTAssertEqual([r48.up, r48.down, r48.halfLength, r48.filter.count], [1, 3, 30, 61])
        let r44 = try AudioResampler(from: 44100)
        XCTAssertEqual([r44.up, r44.down, r44.halfLength], [160, 441, 4410])
        XCTAssertEqual(r44.outputCount(44100), 16000)
        XCTAssertEqual(r44.outputCount(1), 1)
        XCTAssertEqual(try AudioResampler(from: 16000).resample([1, 2, 3]), [1, 2, 3])
        XCTAssertThrowsError(try AudioResampler(from: 0)) { XCTAssertEqual($0 as? AudioInputError, .badSampleRate(0)) }
        // a constant keeps its level away from the edges; a tone above 8 kHz is filtered out
        let flat = r48.resample([Float](repeating: 0.5, count: 4800))
        XCTAssertEqual(flat.count, 1600)
        XCTAssertLessThan(flat[100..<1500].map { abs($0 - 0.5) }.max()!, 1e-3)
        let high = (0..<48000).map { Float(0.5 * sin(2 * Double.pi * 12000 * Double($0) / 48000)) }
        XCTAssertLessThan(r48.resample(high)[100..<15900].map { abs($0) }.max()!, 5e-3)
        XCTAssertEqual(AudioResampler.besselI0(0), 1)
        XCTAssertEqual(AudioResampler.besselI0(5), 27.239871823604442, accuracy: 1e-12)
    }

    /// Against Hugging Face's extractor and scipy's resample_poly: GEMMAIOS_AUDIO_VECTORS names
    /// the folder tests/test_swift_audio.py writes: cases.json; extractor.safetensors (HF's
    /// window and mel_filters); per clip <name>.safetensors with `waveform` (16 kHz Float32),
    /// HF's log-mel features [F, 128] and their frame mask [F] (u8), and for clips recorded
    /// at another rate its `source` and scipy's `waveform` of it.
    func testMatchesHuggingFace() throws {
        guard let folder = ProcessInfo.processInfo.environment["GEMMAIOS_AUDIO_VECTORS"], !folder.isEmpty else {
            throw XCTSkip("GEMMAIOS_AUDIO_VECTORS is not set (tests/test_swift_audio.py sets it)")
        }
        let root = URL(fileURLWithPath: folder, isDirectory: true)
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json"))) as? [String: Any]
        let cases = try XCTUnwrap(index?["clips"] as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        let extractor = LogMelExtractor()

        let hf = try SafeTensorsFile(url: root.appendingPathComponent("extractor.safetensors"))
        XCTAssertEqual(try hf.floats("window"), extractor.window)
        let filters = try hf.doubles("mel_filters")
        XCTAssertEqual(filters.count, extractor.melFilters.count)
        let filterError = zip(filters, extractor.melFilters).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(filterError, 1e-12)

        var worst: Float = 0, worstClip = "", values = 0, frames = 0
        var resampled = 0, worstSample: Float = 0, worstEndToEnd: Float = 0
        for item in cases {
            let name = try XCTUnwrap(item["name"] as? String)
            let file = try SafeTensorsFile(url: root.appendingPathComponent(try XCTUnwrap(item["file"] as? String)))
            let waveform = try file.floats("waveform")
            let expected = try file.floats(Contract.audioFeaturesInput)
            let mask = try file.ints(Contract.audioMaskInput).map { $0 != 0 }
            let out: LogMelFeatures
            if let padTo = item["pad_to"] as? Int {
                out = try extractor.features(waveform, paddedTo: padTo)
            } else {
                out = extractor.features(waveform)
            }
            XCTAssertEqual(out.mask, mask, "\(name): mask")
            XCTAssertEqual(out.values.count, expected.count, "\(name): features")
            guard out.values.count == expected.count else { continue }
            let error = zip(out.values, expected).map { abs($0 - $1) }.max() ?? 0
            if error > worst { worst = error; worstClip = name }
            values += expected.count
            frames += out.frames
            var line = "gemmaios-audio-clip: \(name) \(waveform.count) samples, \(out.frames) frames (\(out.realFrames) real), "
                + "max abs error \(error)"

            if let rate = item["source_rate"] as? Int {
                let source = try file.floats("source")
                let ours = try AudioResampler(from: rate).resample(source)
                XCTAssertEqual(ours.count, waveform.count, "\(name): resampled length")
                let sampleError = zip(ours, waveform).map { abs($0 - $1) }.max() ?? .infinity
                worstSample = max(worstSample, sampleError)
                // the whole app path: our resampler, then our features, against HF on scipy's samples
                let chained = item["pad_to"] is Int ? try extractor.features(ours, paddedTo: item["pad_to"] as! Int)
                    : extractor.features(ours)
                XCTAssertEqual(chained.mask, mask, "\(name): mask after our resampler")
                let endToEnd = zip(chained.values, expected).map { abs($0 - $1) }.max() ?? .infinity
                worstEndToEnd = max(worstEndToEnd, endToEnd)
                resampled += 1
                line += "; from \(rate) Hz: resampler max abs error \(sampleError), resampled+features \(endToEnd)"
            }
            print(line)
        }
        XCTAssertLessThanOrEqual(worst, LogMelTolerance.features)
        XCTAssertLessThanOrEqual(worstSample, LogMelTolerance.resampled)
        XCTAssertLessThanOrEqual(worstEndToEnd, LogMelTolerance.features)
        print("gemmaios-audio-vectors: \(cases.count) clips, \(frames) frames, \(values) features, max abs error \(worst) "
              + "(\(worstClip)), tolerance \(LogMelTolerance.features); \(resampled) resampled, max abs sample error "
              + "\(worstSample), tolerance \(LogMelTolerance.resampled); resampled+features max abs error \(worstEndToEnd)")
    }
}
