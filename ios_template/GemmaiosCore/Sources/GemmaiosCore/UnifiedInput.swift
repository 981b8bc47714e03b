import Foundation

// Client-side inputs of the 12B as it ships (gemma4_unified): the Swift twin of
// gemmaios.unified_inputs. Token ids, window and frame size come from the bundle's
// metadata.json `gemmaios.multimodal` (written from the checkpoint by Python), never literals here.
// tests/test_swift_unified.py checks every function against Hugging Face's processor and masks.

public enum UnifiedInputError: Error, LocalizedError, Equatable {
    case placeholderMismatch(images: Int, clips: Int, givenImages: Int, givenClips: Int)
    case emptyAudio
    case cacheTooShort(tokens: Int, slots: Int)

    public var errorDescription: String? {
        switch self {
        case .placeholderMismatch(let i, let a, let gi, let ga):
            return "the prompt has \(i) image and \(a) audio placeholders for \(gi) pictures and \(ga) clips; "
                + "put one placeholder token per picture or clip, in order"
        case .emptyAudio:
            return "the audio clip is empty; pass at least one sample"
        case .cacheTooShort(let t, let s):
            return "a prefill of \(t) tokens does not fit a \(s)-slot cache; use a bundle with a longer context"
        }
    }
}

/// The ids and sizes `gemmaios.multimodal` carries.
public struct UnifiedTokenIds: Sendable, Equatable, Codable {
    public let imageTokenId: Int32
    public let videoTokenId: Int32
    public let audioTokenId: Int32
    public let boiTokenId: Int32
    public let eoiTokenId: Int32
    public let boaTokenId: Int32
    public let eoaTokenId: Int32
    public let padTokenId: Int32

    public init(imageTokenId: Int32, videoTokenId: Int32, audioTokenId: Int32, boiTokenId: Int32, eoiTokenId: Int32,
                boaTokenId: Int32, eoaTokenId: Int32, padTokenId: Int32) {
        self.imageTokenId = imageTokenId
        self.videoTokenId = videoTokenId
        self.audioTokenId = audioTokenId
        self.boiTokenId = boiTokenId
        self.eoiTokenId = eoiTokenId
        self.boaTokenId = boaTokenId
        self.eoaTokenId = eoaTokenId
        self.padTokenId = padTokenId
    }
}

/// One picture as `embed_vision` takes it: rows of side*side*3 values (the 3x3-merged 48-px block in
/// row, column, channel order) and their (x, y) on the merged grid.
public struct UnifiedImage: Sendable, Equatable {
    public let pixelValues: [Float]
    public let positionIds: [Int32]
    public let softTokens: Int
    public let resizedWidth: Int
    public let resizedHeight: Int

    /// Resize (the aspect rule of `ImageGeometry`, the Pillow-exact bicubic), rescale to [0, 1], merge.
    /// `padTo`: pad rows (zeros, position (-1, -1)) up to this many, as HF's processor returns them.
    public static func prepare(_ image: RGB8Image, patchSize: Int = Contract.imagePatchSize,
                               poolingKernel: Int = Contract.imagePoolingKernel,
                               maxSoftTokens: Int = Contract.imageMaxSoftTokens, padTo: Int? = nil) throws -> UnifiedImage {
        let geometry = try ImageGeometry(patchSize: patchSize, poolingKernel: poolingKernel, maxSoftTokens: maxSoftTokens)
        let size = try geometry.targetSize(width: image.width, height: image.height)
        let resized = (size.width == image.width && size.height == image.height)
            ? image : try BicubicResampler.resize(image, width: size.width, height: size.height)
        let side = patchSize * poolingKernel, c = Contract.imageChannels
        let columns = size.width / side, rows = size.height / side
        let n = columns * rows
        let total = max(n, padTo ?? n)
        let rowLength = side * side * c
        let scale = Float(1.0) / Float(Contract.imageRescaleDivisor)  // torch: float32(u8) * float32(1/255)
        var values = [Float](repeating: 0, count: total * rowLength)
        var positions = [Int32](repeating: Int32(Contract.imagePadPosition), count: total * 2)
        resized.pixels.withUnsafeBufferPointer { src in
            for row in 0..<rows {
                for column in 0..<columns {
                    let index = row * columns + column
                    var o = index * rowLength
                    for dy in 0..<side {
                        let start = ((row * side + dy) * size.width + column * side) * c
                        for i in 0..<(side * c) {
                            values[o] = Float(src[start + i]) * scale
                            o += 1
                        }
                    }
                    positions[index * 2] = Int32(column)
                    positions[index * 2 + 1] = Int32(row)
                }
            }
        }
        return UnifiedImage(pixelValues: values, positionIds: positions, softTokens: n, resizedWidth: size.width,
                            resizedHeight: size.height)
    }
}

public enum UnifiedAudio {
    /// Raw mono samples → frames of `samplesPerToken` (row-major [T, samplesPerToken]), the tail zero-padded.
    public static func frames(_ samples: [Float], samplesPerToken: Int) throws -> (values: [Float], count: Int) {
        guard !samples.isEmpty else { throw UnifiedInputError.emptyAudio }
        let count = (samples.count + samplesPerToken - 1) / samplesPerToken
        var values = samples
        values.append(contentsOf: [Float](repeating: 0, count: count * samplesPerToken - samples.count))
        return (values, count)
    }
}

public enum UnifiedPrompt {
    public static let text: Int32 = 0, image: Int32 = 1, video: Int32 = 2, audio: Int32 = 3

    /// One image / audio token per item → `BOI + image x n + EOI` / `BOA + audio x n + EOA`.
    public static func expand(_ ids: [Int32], imageTokens: [Int], audioTokens: [Int], tokens: UnifiedTokenIds) throws -> [Int32] {
        let images = ids.filter { $0 == tokens.imageTokenId }.count, clips = ids.filter { $0 == tokens.audioTokenId }.count
        guard images == imageTokens.count, clips == audioTokens.count else {
            throw UnifiedInputError.placeholderMismatch(images: images, clips: clips, givenImages: imageTokens.count,
                                                        givenClips: audioTokens.count)
        }
        var out: [Int32] = []
        var i = 0, a = 0
        for id in ids {
            if id == tokens.imageTokenId {
                out.append(tokens.boiTokenId)
                out.append(contentsOf: [Int32](repeating: tokens.imageTokenId, count: imageTokens[i]))
                out.append(tokens.eoiTokenId)
                i += 1
            } else if id == tokens.audioTokenId {
                out.append(tokens.boaTokenId)
                out.append(contentsOf: [Int32](repeating: tokens.audioTokenId, count: audioTokens[a]))
                out.append(tokens.eoaTokenId)
                a += 1
            } else {
                out.append(id)
            }
        }
        return out
    }

    /// mm_token_type_ids: 0 text, 1 image, 2 video, 3 audio (soft tokens only).
    public static func types(_ ids: [Int32], tokens: UnifiedTokenIds) -> [Int32] {
        ids.map { $0 == tokens.imageTokenId ? image : $0 == tokens.videoTokenId ? video : $0 == tokens.audioTokenId ? audio : text }
    }

    /// The ids `prefill_multimodal` takes: soft tokens replaced by the pad id.
    public static func graphIds(_ ids: [Int32], tokens: UnifiedTokenIds) -> [Int32] {
        zip(ids, types(ids, tokens: tokens)).map { $1 == text ? $0 : tokens.padTokenId }
    }

    /// (sliding, global) row-major [S, kvLength], true = attend: global = causal OR same image/video
    /// block; sliding = (causal AND k > q - window) OR same block (HF Gemma4UnifiedModel.forward).
    public static func masks(_ types: [Int32], slidingWindow: Int, kvLength: Int? = nil) throws -> (sliding: [Bool], global: [Bool]) {
        let s = types.count, k = kvLength ?? types.count
        guard k >= s else { throw UnifiedInputError.cacheTooShort(tokens: s, slots: k) }
        var block = [Int](repeating: -1, count: s)
        var current = -1
        for q in 0..<s {
            let visual = types[q] == image || types[q] == video
            if visual {
                if q == 0 || !(types[q - 1] == image || types[q - 1] == video) { current += 1 }
                block[q] = current
            }
        }
        var sliding = [Bool](repeating: false, count: s * k), global = sliding
        for q in 0..<s {
            for kv in 0..<k {
                let same = kv < s && block[q] >= 0 && block[q] == block[kv]
                let causal = kv <= q
                global[q * k + kv] = causal || same
                sliding[q * k + kv] = (causal && kv > q - slidingWindow) || same
            }
        }
        return (sliding, global)
    }
}
