import Foundation

// The app's audio seam (issue 28): whatever the platform decodes or records (AVAudioFile, the
// microphone; ios_template/Sources/AudioInput.swift) arrives here as Float PCM per channel at the
// source's rate and leaves as 16 kHz mono samples, cut at the contract's maximum clip length, and
// their log-mel features + mask (LogMel.swift). It follows the toolkit's side step for step, so the
// oracle and the app see the same samples: channels averaged in Float64 then rounded to Float32
// (`gemmaios.audio.clips.read_wav`), the whole source resampled by AudioResampler (scipy's
// `resample_poly` design, `clips.resample`), then HF's cut at Contract.audioMaxSamples. A source
// longer than the cut only needs its first `sourceFramesNeeded` frames: the resampler's output up
// to the cut does not depend on the frames after them, so reading stops there.

public enum AudioClipError: Error, LocalizedError, Equatable {
    case noChannels
    case unequalChannels([Int])

    public var errorDescription: String? {
        switch self {
        case .noChannels:
            return "the audio has no channels; pass at least one channel of samples"
        case .unequalChannels(let counts):
            return "the audio's channels hold different frame counts (\(counts)); pass channels of one length"
        }
    }
}

public struct AudioClip: Sendable, Equatable {
    /// 16 kHz mono (Contract.audioSampleRate), at most Contract.audioMaxSamples samples.
    public let samples: [Float]
    /// The rate the source was decoded or recorded at (Hz).
    public let sourceRate: Int
    /// The source held more than the cut: the samples stop at Contract.audioMaxSamples.
    public let truncated: Bool

    public var seconds: Double { Double(samples.count) / Double(Contract.audioSampleRate) }

    /// Channels of equal length (Float PCM at `sampleRate`) → mono → 16 kHz → cut. `truncated`:
    /// the caller stopped reading at `sourceFramesNeeded` (the source had more).
    public init(channels: [[Float]], sampleRate: Int, truncated: Bool = false) throws {
        guard sampleRate > 0 else { throw AudioInputError.badSampleRate(sampleRate) }
        guard let first = channels.first else { throw AudioClipError.noChannels }
        let frames = first.count
        guard channels.allSatisfy({ $0.count == frames }) else {
            throw AudioClipError.unequalChannels(channels.map(\.count))
        }
        let mono: [Float]
        if channels.count == 1 {
            mono = first
        } else {
            let n = Double(channels.count)
            mono = (0..<frames).map { i in
                var sum = 0.0
                for channel in channels { sum += Double(channel[i]) }
                return Float(sum / n)
            }
        }
        let resampled = try AudioResampler(from: sampleRate).resample(mono)
        let cut = resampled.count > Contract.audioMaxSamples
        samples = cut ? Array(resampled.prefix(Contract.audioMaxSamples)) : resampled
        sourceRate = sampleRate
        self.truncated = truncated || cut
    }

    /// Source frames (at `sampleRate`) whose resampled output covers the first `outputCount`
    /// 16 kHz samples exactly as the whole source's would: output m reads input frames up to
    /// (m * down + halfLength) / up (AudioResampler.resample).
    public static func sourceFramesNeeded(sampleRate: Int, outputCount: Int = Contract.audioMaxSamples) throws -> Int {
        let resampler = try AudioResampler(from: sampleRate)
        guard outputCount > 0 else { return 0 }
        if resampler.up == 1 && resampler.down == 1 { return outputCount }
        return ((outputCount - 1) * resampler.down + resampler.halfLength) / resampler.up + 1
    }

    /// HF's default call: features over the clip padded to a multiple of audioPadMultiple.
    public func features(_ extractor: LogMelExtractor = LogMelExtractor()) -> LogMelFeatures {
        extractor.features(samples)
    }

    /// An asset's static shape (HF's `padding="max_length"`): every clip gives the same frame
    /// count, the mask marks the real ones.
    public func features(paddedTo maxSamples: Int, _ extractor: LogMelExtractor = LogMelExtractor()) throws -> LogMelFeatures {
        try extractor.features(samples, paddedTo: maxSamples)
    }
}
