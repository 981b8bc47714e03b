import AVFoundation
import Foundation
import GemmaiosCore

// Audio in (issue 28): a file or the microphone → GemmaiosCore.AudioClip (16 kHz mono, cut at
// Contract.audioMaxSamples) → LogMel features + mask. Both sources end in the same decoder: the
// microphone records linear PCM to a file that AudioFileDecoding reads like a picked one, so a
// recorded clip and a picked clip meet one reader and one resampler (AudioResampler, the design
// of the toolkit's `gemmaios.audio.clips.resample`). At the send, AudioEncoder.swift runs the
// bundle's audio asset on the clip and splices its soft tokens (ChatModel.sendClip); a bundle
// without one stops there with `AudioCaptureError.noAudioAsset` (like VisionEncoderError.noVisionAsset).

enum AudioCaptureError: LocalizedError {
    case noAudioAsset(String)
    case unreadableFile(String, String)
    case unsupportedSampleRate(String, Double)
    case emptyClip(String)
    case notFloatSamples(String)
    case bufferAllocation(Int)
    case microphoneDenied
    case recorderFailed(String)
    case notRecording
    case pictureAndClip

    var errorDescription: String? {
        switch self {
        case .noAudioAsset(let why):
            return "this bundle has no audio asset (\(why)); build an audio-capable bundle (E2B/E4B with the "
                + "audio step) or send text (and a picture) without the clip"
        case .unreadableFile(let name, let why):
            return "\(name) could not be opened as audio (\(why)); pick a WAV, M4A, AAC or CAF file"
        case .unsupportedSampleRate(let name, let rate):
            return "\(name) is sampled at \(rate) Hz, not a whole number of hertz; convert it to 44100 or 48000 Hz"
        case .emptyClip(let name):
            return "\(name) holds no audio frames; pick or record a longer clip"
        case .notFloatSamples(let name):
            return "\(name) did not decode to 32-bit float samples; convert it to WAV or M4A"
        case .bufferAllocation(let frames):
            return "could not allocate a \(frames)-frame audio buffer (memory limit?)"
        case .microphoneDenied:
            return "the app may not use the microphone; allow it in Settings → Privacy & Security → Microphone"
        case .recorderFailed(let why):
            return "the microphone recording could not start (\(why)); close other apps that record and try again"
        case .notRecording:
            return "no recording is running; tap the microphone to start one"
        case .pictureAndClip:
            return "a message takes a picture or a clip, not both; remove one and send again"
        }
    }
}

/// A file → AudioClip. AVAudioFile decodes (WAV, M4A/AAC, CAF, and whatever else Core Audio
/// reads) into its processing format, deinterleaved Float32 at the file's own rate; AudioClip
/// averages the channels (Float64, as `clips.read_wav`), resamples to 16 kHz and cuts. Reading
/// stops at `AudioClip.sourceFramesNeeded`: a long file gives the same first 30 s as if read whole.
enum AudioFileDecoding {
    static let chunkFrames = 1 << 16

    static func clip(contentsOf url: URL) throws -> AudioClip {
        let name = url.lastPathComponent
        let file: AVAudioFile
        do {
            file = try AVAudioFile(forReading: url)
        } catch {
            throw AudioCaptureError.unreadableFile(name, error.localizedDescription)
        }
        let format = file.processingFormat
        let rate = format.sampleRate
        guard rate >= 1, rate == rate.rounded(), rate <= Double(Int32.max) else {
            throw AudioCaptureError.unsupportedSampleRate(name, rate)
        }
        let channelCount = Int(format.channelCount)
        let needed = try AudioClip.sourceFramesNeeded(sampleRate: Int(rate))
        let declared = Int(file.length)  // (an estimate for some compressed files: reading stops at the end)
        guard channelCount > 0, declared > 0 else { throw AudioCaptureError.emptyClip(name) }
        let wanted = min(declared, needed)
        guard let buffer = AVAudioPCMBuffer(pcmFormat: format, frameCapacity: AVAudioFrameCount(chunkFrames)) else {
            throw AudioCaptureError.bufferAllocation(chunkFrames)
        }
        var channels = [[Float]](repeating: [], count: channelCount)
        for c in channels.indices { channels[c].reserveCapacity(wanted) }
        var read = 0
        while read < wanted {
            try file.read(into: buffer, frameCount: AVAudioFrameCount(min(chunkFrames, wanted - read)))
            let got = Int(buffer.frameLength)
            if got == 0 { break }
            guard let data = buffer.floatChannelData else { throw AudioCaptureError.notFloatSamples(name) }
            for c in 0..<channelCount {
                channels[c].append(contentsOf: UnsafeBufferPointer(start: data[c], count: got))
            }
            read += got
        }
        guard read > 0 else { throw AudioCaptureError.emptyClip(name) }
        return try AudioClip(channels: channels, sampleRate: Int(rate), truncated: declared > wanted)
    }
}

/// The microphone: record permission (AVAudioApplication; NSMicrophoneUsageDescription in the
/// generated Info.plist), an AVAudioSession in the record category, and AVAudioRecorder writing
/// mono Float32 PCM at the session's hardware rate to a CAF file for at most the contract's
/// maximum clip length; `stop()` reads that file back through AudioFileDecoding.
@MainActor
final class MicrophoneRecorder {
    private var recorder: AVAudioRecorder?
    private let url = FileManager.default.temporaryDirectory.appendingPathComponent("microphone.caf")

    /// Contract.audioMaxSamples at Contract.audioSampleRate (30 s): the recorder stops by itself there.
    nonisolated static var maxSeconds: TimeInterval { Double(Contract.audioMaxSamples) / Double(Contract.audioSampleRate) }
    /// The macOS recording rate (no AVAudioSession there to ask for the hardware's): 48 kHz, which
    /// AudioResampler takes to 16 kHz by 1/3.
    nonisolated static let macSampleRate: Double = 48_000

    var isRecording: Bool { recorder?.isRecording ?? false }

    func start() async throws {
        guard await AVAudioApplication.requestRecordPermission() else { throw AudioCaptureError.microphoneDenied }
        #if canImport(UIKit)
        let session = AVAudioSession.sharedInstance()
        try session.setCategory(.record, mode: .default)
        try session.setActive(true)
        let rate = session.sampleRate
        #else
        // macOS has no AVAudioSession: record at MicrophoneRecorder.macSampleRate (AudioResampler brings
        // it to 16 kHz, as any file's rate)
        let rate = MicrophoneRecorder.macSampleRate
        #endif
        guard let format = AVAudioFormat(standardFormatWithSampleRate: rate, channels: 1) else {
            throw AudioCaptureError.recorderFailed("no mono float format at \(rate) Hz")
        }
        let recorder = try AVAudioRecorder(url: url, format: format)
        guard recorder.record(forDuration: MicrophoneRecorder.maxSeconds) else {
            throw AudioCaptureError.recorderFailed("AVAudioRecorder.record(forDuration:) returned false")
        }
        self.recorder = recorder
    }

    /// Stops (or collects a recording that reached maxSeconds) and decodes it.
    func stop() throws -> AudioClip {
        guard let recorder else { throw AudioCaptureError.notRecording }
        recorder.stop()
        self.recorder = nil
        #if canImport(UIKit)
        try? AVAudioSession.sharedInstance().setActive(false, options: .notifyOthersOnDeactivation)
        #endif
        defer { try? FileManager.default.removeItem(at: url) }
        return try AudioFileDecoding.clip(contentsOf: url)
    }
}

/// A clip attached to the next message: its 16 kHz samples and the log-mel features + mask the
/// audio asset takes (HF's default padding; the asset's static shape is `clip.features(paddedTo:)`).
struct AttachedClip: Sendable {
    let clip: AudioClip
    let features: LogMelFeatures

    init(_ clip: AudioClip) {
        self.clip = clip
        features = clip.features()
    }

    var summary: String {
        let source = clip.sourceRate == Contract.audioSampleRate ? "" : " from \(clip.sourceRate) Hz"
        let cut = clip.truncated ? ", cut at \(Int(MicrophoneRecorder.maxSeconds)) s" : ""
        return String(format: "clip %.1f s", clip.seconds) + source + cut
            + " · \(features.realFrames) of \(features.frames) frames"
    }

    /// A message with both a picture and a clip (the soft-token rows hold one of them).
    static var pictureAndClip: AudioCaptureError { .pictureAndClip }

    /// The bundle takes no audio (no `gemmaios.audio` in its metadata, so no AudioEncoder loaded).
    static func noAudioAsset(bundleName: String, takesPictures: Bool) -> AudioCaptureError {
        .noAudioAsset(takesPictures ? "\(bundleName) takes text and pictures" : "\(bundleName) is text-only")
    }
}
