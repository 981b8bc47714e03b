import Foundation

// Audio prompts for Gemma 4 E2B/E4B (issue 28): what an audio-capable bundle tells the app
// (metadata.json `gemmaios.audio`, written by the toolkit's gemmaios.audio.export) and the prompt
// side of a clip, as the toolkit's gemmaios.audio.preprocess does it for `gemmaios run --audio`:
// the clip's log-mel features padded to the asset's static length (HF's `padding="max_length"`),
// the soft-token count (the frame mask after the encoder's two stride-2 subsamplings, summed),
// the placeholder expanded to boa + audio x n + eoa, and the k-th audio soft token rewritten to
// V + k: the same id space and `main` rows as images (Contract.audioEmbedsInput).

public enum AudioPromptError: Error, LocalizedError, Equatable {
    case incompleteMetadata(String)
    case clipTooLong(seconds: Double, maxSeconds: Double)
    case clipTooShort(samples: Int)
    case placeholderMismatch(Int)
    case tooManySoftTokens(Int, capacity: Int)

    public var errorDescription: String? {
        switch self {
        case .incompleteMetadata(let key):
            return "the bundle's \(Contract.bundleMetadataFile) has gemmaios.\(Contract.audioMetadataKey) without \(key); "
                + "convert the bundle again with this toolkit"
        case .clipTooLong(let seconds, let maxSeconds):
            return String(format: "the clip lasts %.2f s; this model's audio asset takes at most %g s; "
                + "trim the clip or record a shorter one", seconds, maxSeconds)
        case .clipTooShort(let samples):
            return "the clip holds \(samples) samples, too short to hear; give at least "
                + "\(AudioInputConfig.minSamples) samples (\(1000 * AudioInputConfig.minSamples / Contract.audioSampleRate) ms)"
        case .placeholderMismatch(let n):
            return "the prompt has \(n) audio placeholders; put exactly one where the clip goes"
        case .tooManySoftTokens(let n, let capacity):
            return "the clip needs \(n) soft tokens, the model's \(Contract.audioEmbedsInput) holds \(capacity); "
                + "send a shorter clip"
        }
    }
}

/// The audio markers: the placeholder (and each soft token before the rewrite), the begin and
/// end markers around the expansion, and V.
public struct AudioTokenIds: Sendable, Equatable {
    public let audioTokenId: Int32
    public let boaTokenId: Int32
    public let eoaTokenId: Int32
    public let vocabSize: Int

    public init(audioTokenId: Int32, boaTokenId: Int32, eoaTokenId: Int32, vocabSize: Int) {
        self.audioTokenId = audioTokenId
        self.boaTokenId = boaTokenId
        self.eoaTokenId = eoaTokenId
        self.vocabSize = vocabSize
    }
}

/// One clip as the audio asset takes it and the ids the engine runs for its prompt.
public struct PreparedClip: Sendable, Equatable {
    /// [maxFrames, melBins] features and the frame mask (HF's static padding).
    public let features: LogMelFeatures
    /// Rows of the asset's output that are this clip's soft tokens (the first ones).
    public let softTokens: Int
    /// The prompt, its placeholder expanded and the soft tokens rewritten to V + k.
    public let ids: [Int32]
}

public enum AudioPrompt {
    /// The mask after the encoder's two stride-2 convolutions (kernel 3, padding 1): `mask[::2]`
    /// cut to the output length, twice (gemmaios.audio.preprocess.subsample_mask).
    public static func subsample(_ mask: [Bool]) -> [Bool] {
        var m = mask
        for _ in 0..<2 {
            let outLength = (m.count + 2 - 3) / 2 + 1
            m = Array(stride(from: 0, to: m.count, by: 2).map { m[$0] }.prefix(max(outLength, 0)))
        }
        return m
    }

    /// Soft tokens of a clip: its real frames after subsampling.
    public static func softTokens(_ features: LogMelFeatures) -> Int {
        subsample(features.mask).lazy.filter { $0 }.count
    }

    /// The placeholder (once) → boa + audio x n + eoa (HF's `Gemma4Processor.replace_audio_token`).
    public static func expand(_ ids: [Int32], softTokens n: Int, tokens: AudioTokenIds) throws -> [Int32] {
        let placeholders = ids.filter { $0 == tokens.audioTokenId }.count
        guard placeholders == 1 else { throw AudioPromptError.placeholderMismatch(placeholders) }
        var out: [Int32] = []
        out.reserveCapacity(ids.count + n + 2)
        for id in ids {
            if id == tokens.audioTokenId {
                out.append(tokens.boaTokenId)
                out.append(contentsOf: repeatElement(tokens.audioTokenId, count: n))
                out.append(tokens.eoaTokenId)
            } else {
                out.append(id)
            }
        }
        return out
    }

    /// The id splice: the k-th audio soft token becomes V + k (row k of the soft-token input).
    public static func rewrite(_ ids: [Int32], tokens: AudioTokenIds, capacity: Int) throws -> [Int32] {
        var k = 0
        let out = ids.map { id -> Int32 in
            guard id == tokens.audioTokenId else { return id }
            defer { k += 1 }
            return Int32(tokens.vocabSize + k)
        }
        guard k <= capacity else { throw AudioPromptError.tooManySoftTokens(k, capacity: capacity) }
        return out
    }
}

/// What an audio-capable bundle tells the app: metadata.json `gemmaios.audio` holds the audio
/// asset's file, the marker ids, V, the static clip length (samples and frames), the soft-token
/// rows of `main`'s input and its width, and the pad id whose PLE row ids >= V take. nil for a
/// bundle that takes no audio.
public struct AudioInputConfig: Sendable, Equatable {
    /// Samples a clip needs at least (two frames), as gemmaios.audio.preprocess.prepare.
    public static let minSamples = 2 * Contract.audioFrameLength

    public let tokens: AudioTokenIds
    /// The asset's static clip length in samples (its features' padding) and frames.
    public let maxSamples: Int
    public let maxFrames: Int
    /// Rows of the asset's output that can be soft tokens.
    public let maxSoftTokens: Int
    /// Rows and width of `main`'s soft-token input (shared with images: max of both budgets).
    public let embedsRows: Int
    public let hiddenSize: Int
    /// The PLE row every id >= V gathers (HF: the pad token's).
    public let padTokenId: Int32
    /// The audio asset, relative to the bundle folder.
    public let asset: String

    public init(tokens: AudioTokenIds, maxSamples: Int, maxFrames: Int, maxSoftTokens: Int, embedsRows: Int,
                hiddenSize: Int, padTokenId: Int32, asset: String) {
        self.tokens = tokens
        self.maxSamples = maxSamples
        self.maxFrames = maxFrames
        self.maxSoftTokens = maxSoftTokens
        self.embedsRows = embedsRows
        self.hiddenSize = hiddenSize
        self.padTokenId = padTokenId
        self.asset = asset
    }

    public var maxSeconds: Double { Double(maxSamples) / Double(Contract.audioSampleRate) }

    public static func from(metadata: Data) throws -> AudioInputConfig? {
        guard let root = (try? JSONSerialization.jsonObject(with: metadata)) as? [String: Any],
              let audio = (root["gemmaios"] as? [String: Any])?[Contract.audioMetadataKey] as? [String: Any]
        else { return nil }
        func int(_ key: String) throws -> Int {
            guard let value = audio[key] as? Int else { throw AudioPromptError.incompleteMetadata(key) }
            return value
        }
        guard let asset = audio[Contract.audioAssetField] as? String else {
            throw AudioPromptError.incompleteMetadata(Contract.audioAssetField)
        }
        let tokens = AudioTokenIds(audioTokenId: Int32(try int("audio_token_id")), boaTokenId: Int32(try int("boa_token_id")),
                                   eoaTokenId: Int32(try int("eoa_token_id")), vocabSize: try int("vocab_size"))
        let config = AudioInputConfig(
            tokens: tokens, maxSamples: try int("max_samples"), maxFrames: try int("max_frames"),
            maxSoftTokens: try int("max_soft_tokens"), embedsRows: try int("embeds_rows"),
            hiddenSize: try int("hidden_size"), padTokenId: Int32(try int(Contract.splicedPleRowKey)), asset: asset)
        guard try int("feature_size") == Contract.audioMelBins else { throw AudioPromptError.incompleteMetadata("feature_size") }
        return config
    }

    /// One clip (16 kHz mono) and a prompt holding the audio placeholder once → the asset's
    /// inputs and the ids the engine runs. A clip longer than the asset's static length is refused
    /// (as `gemmaios run --audio` refuses it), never cut silently.
    public func prepare(_ clip: AudioClip, promptIds: [Int32]) throws -> PreparedClip {
        guard clip.samples.count <= maxSamples else {
            throw AudioPromptError.clipTooLong(seconds: clip.seconds, maxSeconds: maxSeconds)
        }
        return try prepare(samples: clip.samples, promptIds: promptIds)
    }

    /// The same from 16 kHz samples (a bench clip file's).
    public func prepare(samples: [Float], promptIds: [Int32]) throws -> PreparedClip {
        guard samples.count <= maxSamples else {
            throw AudioPromptError.clipTooLong(seconds: Double(samples.count) / Double(Contract.audioSampleRate),
                                               maxSeconds: maxSeconds)
        }
        guard samples.count >= AudioInputConfig.minSamples else { throw AudioPromptError.clipTooShort(samples: samples.count) }
        let features = try LogMelExtractor().features(samples, paddedTo: maxSamples)
        guard features.frames == maxFrames else {
            throw AudioPromptError.incompleteMetadata("max_frames (\(maxFrames); the features have \(features.frames))")
        }
        let n = AudioPrompt.softTokens(features)
        let expanded = try AudioPrompt.expand(promptIds, softTokens: n, tokens: tokens)
        let ids = try AudioPrompt.rewrite(expanded, tokens: tokens, capacity: min(maxSoftTokens, embedsRows))
        return PreparedClip(features: features, softTokens: n, ids: ids)
    }

    /// `ids` with the audio placeholder after the first token (<bos>) unless it has one already:
    /// for chat templates that do not place audio themselves.
    public func withPlaceholder(_ ids: [Int32]) -> [Int32] {
        guard !ids.contains(tokens.audioTokenId) else { return ids }
        var out = ids
        out.insert(tokens.audioTokenId, at: min(1, out.count))
        return out
    }
}
