import Foundation

// Audio input for Gemma 4 E2B/E4B (issue 28): the app's copy of Hugging Face's Gemma 4 audio
// feature extractor (transformers 5.x `Gemma4AudioFeatureExtractor`, its defaults: the facts are
// `Contract.audio*`, generated from toolkit/gemmaios/contract.py). Foundation only (no
// Accelerate), so `swift test` checks it on Linux against HF's own output
// (tests/test_swift_audio.py). Capturing and decoding audio is the platform's job; this starts
// from Float PCM, mono, at 16 kHz (`AudioResampler` brings 44.1/48 kHz there).
//
// Steps, each as HF does them: cut the clip at audioMaxSamples → zero-pad it to a multiple of
// audioPadMultiple (or to a static length) → frameLength/2 zeros in front (semicausal) → frames
// of frameLength samples every hopLength (Float32 samples times the Float32 periodic Hann
// window) → |rfft| over fftLength points → HTK-mel triangular filters (Float64, no norm) →
// log(mel + melFloor) → Float32. Frame i is real when its whole window lies in the clip; the
// features of the others are 0 and the mask says which are which.
//
// HF's numpy rfft runs in Float32 and this FFT in Float64: on the project's clips the features
// agree within 4.8e-7 (one Float32 ulp); the test's bound is 1e-4 (LogMelTolerance, docs/app.md).

public enum AudioInputError: Error, LocalizedError, Equatable {
    case badSampleRate(Int)
    case badPadLength(Int)

    public var errorDescription: String? {
        switch self {
        case .badSampleRate(let rate):
            return "an audio sample rate of \(rate) Hz is not usable; pass the rate the samples were recorded at "
                + "(e.g. 44100 or 48000; the model hears \(Contract.audioSampleRate) Hz)"
        case .badPadLength(let n):
            return "a static audio length of \(n) samples is not usable; pass a positive length "
                + "(at most \(Contract.audioMaxSamples) samples, \(Contract.audioMaxSamples / Contract.audioSampleRate) s)"
        }
    }
}

/// Log-mel features of one clip: `values` row-major [frames, melBins]; `mask[i]` says frame i is
/// real audio (the features of the other frames are 0).
public struct LogMelFeatures: Sendable, Equatable {
    public let values: [Float]
    public let mask: [Bool]
    public let melBins: Int

    public var frames: Int { mask.count }
    public var realFrames: Int { mask.lazy.filter { $0 }.count }

    public func frame(_ i: Int) -> ArraySlice<Float> { values[(i * melBins)..<((i + 1) * melBins)] }
}

/// HF's Gemma 4 audio feature extractor with its default parameters (`Contract.audio*`).
public struct LogMelExtractor: Sendable {
    public let sampleRate = Contract.audioSampleRate
    public let melBins = Contract.audioMelBins
    public let frameLength = Contract.audioFrameLength
    public let hopLength = Contract.audioHopLength
    public let fftLength = Contract.audioFFTLength
    public var frequencyBins: Int { fftLength / 2 + 1 }
    /// The periodic Hann window, Float32 as HF keeps it.
    public let window: [Float]
    /// HF's `mel_filters`: row-major [frequencyBins, melBins], Float64.
    public let melFilters: [Double]
    // per mel filter, the frequency bins where it is non-zero (the rest multiply by 0)
    private let filterSpans: [Range<Int>]
    private let fft: RealFFT

    public init() {
        let n = frameLength
        window = (0..<n).map { Float(0.5 - 0.5 * cos(2.0 * Double.pi * Double($0) / Double(n))) }
        melFilters = LogMelExtractor.htkMelFilterBank(
            frequencyBins: fftLength / 2 + 1, melBins: melBins, minFrequency: Contract.audioMinFrequency,
            maxFrequency: Contract.audioMaxFrequency, sampleRate: sampleRate)
        let bins = fftLength / 2 + 1, mels = melBins, filters = melFilters
        filterSpans = (0..<mels).map { m in
            let nonzero = (0..<bins).filter { filters[$0 * mels + m] != 0 }
            guard let first = nonzero.first, let last = nonzero.last else { return 0..<0 }
            return first..<(last + 1)
        }
        fft = RealFFT(length: fftLength)
    }

    // ---- lengths (contract.audio_padded_samples / audio_mel_frames / audio_real_frames) ----------

    /// The samples framed for a clip of `count` samples: cut at audioMaxSamples, padded up to a
    /// multiple of audioPadMultiple (HF's default call).
    public static func paddedSamples(_ count: Int) -> Int {
        roundUp(min(max(count, 0), Contract.audioMaxSamples))
    }

    /// Mel frames over `paddedSamples` samples.
    public static func melFrames(paddedSamples: Int) -> Int {
        let n = paddedSamples + Contract.audioFrameLength / 2 - (Contract.audioFrameLength + 1)
        return n < 0 ? 0 : n / Contract.audioHopLength + 1
    }

    /// Real frames among the first `frames` for a clip of `count` samples (already cut).
    public static func realFrames(samples count: Int, frames: Int) -> Int {
        let half = Contract.audioFrameLength / 2
        guard count > half else { return 0 }
        return min(frames, (count - half - 1) / Contract.audioHopLength + 1)
    }

    static func roundUp(_ n: Int) -> Int {
        let m = Contract.audioPadMultiple
        return (n + m - 1) / m * m
    }

    // ---- features -----------------------------------------------------------------------------------

    /// HF's default call (`feature_extractor([samples])`): the clip cut at audioMaxSamples and
    /// padded to a multiple of audioPadMultiple; frames as many as that length holds.
    public func features(_ samples: [Float]) -> LogMelFeatures {
        let count = min(samples.count, Contract.audioMaxSamples)
        return extract(samples, count: count, padded: LogMelExtractor.paddedSamples(count))
    }

    /// A static shape for an asset: HF's `padding="max_length", max_length=maxSamples`. The clip
    /// is cut at maxSamples (rounded up to a multiple of audioPadMultiple) and zero-padded to it,
    /// so every clip gives `melFrames(paddedSamples: roundUp(maxSamples))` frames.
    public func features(_ samples: [Float], paddedTo maxSamples: Int) throws -> LogMelFeatures {
        guard maxSamples > 0 else { throw AudioInputError.badPadLength(maxSamples) }
        let padded = LogMelExtractor.roundUp(maxSamples)
        return extract(samples, count: min(samples.count, padded), padded: padded)
    }

    private func extract(_ samples: [Float], count: Int, padded: Int) -> LogMelFeatures {
        let frames = LogMelExtractor.melFrames(paddedSamples: padded)
        let real = LogMelExtractor.realFrames(samples: count, frames: frames)
        var values = [Float](repeating: 0, count: frames * melBins)
        var mask = [Bool](repeating: false, count: frames)
        let shift = frameLength / 2  // the semicausal zeros in front
        var frame = [Double](repeating: 0, count: fftLength)
        var magnitude = [Double](repeating: 0, count: frequencyBins)
        samples.withUnsafeBufferPointer { x in
            for i in 0..<real {
                mask[i] = true
                let start = i * hopLength - shift  // index into the clip of the frame's first sample
                for j in 0..<frameLength {
                    let k = start + j
                    let sample: Float = (k >= 0 && k < count) ? x[k] : 0
                    frame[j] = Double(sample * window[j])  // HF: float32 frame * float32 window
                }
                for j in frameLength..<fftLength { frame[j] = 0 }
                fft.magnitudes(frame, into: &magnitude)
                for m in 0..<melBins {
                    var sum = 0.0
                    for b in filterSpans[m] { sum += magnitude[b] * melFilters[b * melBins + m] }
                    values[i * melBins + m] = Float(log(sum + Contract.audioMelFloor))
                }
            }
        }
        return LogMelFeatures(values: values, mask: mask, melBins: melBins)
    }

    // ---- the mel filter bank (HF's `mel_filter_bank(norm=None, mel_scale="htk")`) ------------------

    static func hertzToMel(_ f: Double) -> Double { 2595.0 * log10(1.0 + f / 700.0) }
    static func melToHertz(_ m: Double) -> Double { 700.0 * (pow(10.0, m / 2595.0) - 1.0) }

    /// numpy's linspace: start + i * step, the last point exactly `stop`.
    static func linspace(_ start: Double, _ stop: Double, _ count: Int) -> [Double] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (stop - start) / Double(count - 1)
        var out = (0..<count).map { Double($0) * step + start }
        out[count - 1] = stop
        return out
    }

    /// Triangles in Hz between HTK-mel-spaced corners; row-major [frequencyBins, melBins].
    public static func htkMelFilterBank(frequencyBins: Int, melBins: Int, minFrequency: Double,
                                        maxFrequency: Double, sampleRate: Int) -> [Double] {
        let corners = linspace(hertzToMel(minFrequency), hertzToMel(maxFrequency), melBins + 2).map(melToHertz)
        let binFrequencies = linspace(0, Double(sampleRate / 2), frequencyBins)
        var out = [Double](repeating: 0, count: frequencyBins * melBins)
        for k in 0..<frequencyBins {
            for m in 0..<melBins {
                let down = -(corners[m] - binFrequencies[k]) / (corners[m + 1] - corners[m])
                let up = (corners[m + 2] - binFrequencies[k]) / (corners[m + 2] - corners[m + 1])
                out[k * melBins + m] = max(0, min(down, up))
            }
        }
        return out
    }
}

/// A radix-2 FFT of a real frame (Float64), for the magnitudes |X[0...n/2]|.
struct RealFFT: Sendable {
    let length: Int
    private let cosines: [Double]
    private let sines: [Double]
    private let reversed: [Int]

    init(length: Int) {
        precondition(length >= 2 && length & (length - 1) == 0, "the FFT length must be a power of two")
        self.length = length
        cosines = (0..<(length / 2)).map { cos(-2.0 * Double.pi * Double($0) / Double(length)) }
        sines = (0..<(length / 2)).map { sin(-2.0 * Double.pi * Double($0) / Double(length)) }
        let bits = length.trailingZeroBitCount
        reversed = (0..<length).map { i in
            var r = 0
            for b in 0..<bits where i & (1 << b) != 0 { r |= 1 << (bits - 1 - b) }
            return r
        }
    }

    /// |rfft(x)|: `into` gets length/2 + 1 magnitudes.
    func magnitudes(_ x: [Double], into out: inout [Double]) {
        var re = [Double](repeating: 0, count: length)
        var im = [Double](repeating: 0, count: length)
        for i in 0..<length { re[reversed[i]] = x[i] }
        var size = 2
        while size <= length {
            let half = size / 2, stride = length / size
            var start = 0
            while start < length {
                for j in 0..<half {
                    let c = cosines[j * stride], s = sines[j * stride]
                    let a = start + j, b = a + half
                    let tr = re[b] * c - im[b] * s
                    let ti = re[b] * s + im[b] * c
                    re[b] = re[a] - tr
                    im[b] = im[a] - ti
                    re[a] += tr
                    im[a] += ti
                }
                start += size
            }
            size *= 2
        }
        for k in 0...(length / 2) { out[k] = (re[k] * re[k] + im[k] * im[k]).squareRoot() }
    }
}
