import Foundation

// Image input for Gemma 4 E2B/E4B (issue 17): the app's copy of Hugging Face's Gemma 4 image
// processor (transformers 5.24 `Gemma4ImageProcessorPil`, the backend AutoProcessor picks
// without torchvision), Foundation only so `swift test` checks it on Linux against HF's own
// output (tests/test_swift_image.py). Decoding PNG/JPEG is the platform's job (CoreGraphics in
// the app); this starts from 8-bit RGB pixels.
//
// Steps, each as HF does them: aspect-preserving target size (sides multiples of
// patch * kernel, at most budget * kernel^2 patches) → PIL's bicubic resample (antialiased,
// 8-bit fixed point, reproduced operation for operation) → u8 * (1/255) → 16x16 patches in
// (row, col, channel) order → positions (x = col, y = row) → zero patches / position -1 up to
// the static grid. Then the prompt: each image placeholder id becomes boi + N image tokens +
// eoi, and the k-th image token is rewritten to V + k (the graph's `image_embeds` row k).

public enum ImageInputError: Error, LocalizedError, Equatable {
    case badPixelBuffer(width: Int, height: Int, bytes: Int)
    case unsupportedBudget(Int)
    case tooThin(width: Int, height: Int)
    case placeholderMismatch(placeholders: Int, images: Int)
    case tooManySoftTokens(Int, capacity: Int)
    case incompleteMetadata(String)

    public var errorDescription: String? {
        switch self {
        case .badPixelBuffer(let w, let h, let bytes):
            return "an RGB8 image of \(w)x\(h) needs \(w * h * Contract.imageChannels) bytes, got \(bytes); "
                + "draw the picture into a \(w)x\(h) 8-bit RGB buffer (no alpha, no row padding)"
        case .unsupportedBudget(let n):
            return "an image budget of \(n) soft tokens is not one the model's processor accepts "
                + "(\(Contract.imageSupportedSoftTokens)); rebuild with a supported budget"
        case .tooThin(let w, let h):
            return "a \(w)x\(h) image is too thin to fit the patch grid (both sides round to 0); "
                + "crop it to a less extreme aspect ratio"
        case .placeholderMismatch(let placeholders, let images):
            return "the prompt has \(placeholders) image placeholder(s) for \(images) image(s); "
                + "put exactly one placeholder where each image goes"
        case .tooManySoftTokens(let n, let capacity):
            return "the prompt's images need \(n) soft tokens, the model's \(Contract.imageEmbedsInput) holds \(capacity); "
                + "send fewer images per prompt"
        case .incompleteMetadata(let key):
            return "the bundle's \(Contract.bundleMetadataFile) has gemmaios.\(Contract.visionMetadataKey) without \(key); "
                + "convert the bundle again with this toolkit"
        }
    }
}

/// An 8-bit RGB picture: rows top to bottom, pixels R, G, B interleaved, no padding.
public struct RGB8Image: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0, pixels.count == width * height * Contract.imageChannels else {
            throw ImageInputError.badPixelBuffer(width: width, height: height, bytes: pixels.count)
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// The patch grid: patch side, pooling kernel and soft-token budget (all from the contract).
public struct ImageGeometry: Sendable, Equatable {
    public let patchSize: Int
    public let poolingKernel: Int
    public let maxSoftTokens: Int

    public init(patchSize: Int = Contract.imagePatchSize, poolingKernel: Int = Contract.imagePoolingKernel,
                maxSoftTokens: Int = Contract.imageMaxSoftTokens) throws {
        guard Contract.imageSupportedSoftTokens.contains(maxSoftTokens) else {
            throw ImageInputError.unsupportedBudget(maxSoftTokens)
        }
        self.patchSize = patchSize
        self.poolingKernel = poolingKernel
        self.maxSoftTokens = maxSoftTokens
    }

    /// Rows of the static grid: budget * kernel^2 patches.
    public var maxPatches: Int { maxSoftTokens * poolingKernel * poolingKernel }
    /// Values per patch: patch * patch * RGB.
    public var patchLength: Int { patchSize * patchSize * Contract.imageChannels }

    /// HF's `get_aspect_ratio_preserving_size`: the largest sides that are multiples of
    /// patch * kernel and give at most `maxPatches` patches (same float64 arithmetic).
    public func targetSize(width: Int, height: Int) throws -> (width: Int, height: Int) {
        let targetPixels = maxPatches * patchSize * patchSize
        let factor = (Double(targetPixels) / Double(height * width)).squareRoot()
        let side = poolingKernel * patchSize
        var targetHeight = Int((factor * Double(height) / Double(side)).rounded(.down)) * side
        var targetWidth = Int((factor * Double(width) / Double(side)).rounded(.down)) * side
        if targetHeight == 0 && targetWidth == 0 { throw ImageInputError.tooThin(width: width, height: height) }
        let maxSide = (maxPatches / (poolingKernel * poolingKernel)) * side
        if targetHeight == 0 {
            targetHeight = side
            targetWidth = min(Int((Double(width) / Double(height)).rounded(.down)) * side, maxSide)
        } else if targetWidth == 0 {
            targetWidth = side
            targetHeight = min(Int((Double(height) / Double(width)).rounded(.down)) * side, maxSide)
        }
        guard targetHeight * targetWidth <= targetPixels else {
            throw ImageInputError.tooThin(width: width, height: height)
        }
        return (targetWidth, targetHeight)
    }

    /// Soft tokens an image of this size becomes (what the prompt's placeholder expands to).
    public func softTokens(width: Int, height: Int) throws -> Int {
        let size = try targetSize(width: width, height: height)
        return (size.width / patchSize) * (size.height / patchSize) / (poolingKernel * poolingKernel)
    }
}

/// Pillow's bicubic resample (`Image.resize(..., BICUBIC)`, libImaging/Resample.c): separable,
/// horizontal pass then vertical, Keys' cubic with a = -0.5, support widened by the scale when
/// shrinking (antialias), weights normalised then rounded to 22-bit fixed point, each pass
/// rounded and clipped to 8 bits. Reproduced step for step so the result matches HF's.
public enum BicubicResampler {
    static let precisionBits = 32 - 8 - 2

    static func cubic(_ value: Double) -> Double {
        let a = -0.5
        let x = abs(value)
        if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
        if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0.0
    }

    /// For each output index: first input index, tap count, and `taps` fixed-point weights.
    struct Taps {
        let first: [Int]
        let count: [Int]
        let taps: Int
        let weights: [Int]
    }

    static func taps(inSize: Int, outSize: Int) -> Taps {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 2.0 * filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int](repeating: 0, count: outSize * taps)
        var k = [Double](repeating: 0, count: taps)
        for out in 0..<outSize {
            let center = (Double(out) + 0.5) * scale
            let inverse = 1.0 / filterScale
            let lo = max(Int(center - support + 0.5), 0)  // Int() truncates toward zero, as C's (int)
            let n = min(Int(center + support + 0.5), inSize) - lo
            var sum = 0.0
            for x in 0..<n {
                let w = cubic((Double(x + lo) - center + 0.5) * inverse)
                k[x] = w
                sum += w
            }
            let one = Double(1 << precisionBits)
            for x in 0..<n {
                let w = sum != 0.0 ? k[x] / sum : k[x]
                weights[out * taps + x] = w < 0 ? Int(-0.5 + w * one) : Int(0.5 + w * one)
            }
            first[out] = lo
            count[out] = n
        }
        return Taps(first: first, count: count, taps: taps, weights: weights)
    }

    @inline(__always)
    static func clip8(_ sum: Int) -> UInt8 {
        UInt8(clamping: sum >> precisionBits)
    }

    public static func resize(_ image: RGB8Image, width: Int, height: Int) throws -> RGB8Image {
        let c = Contract.imageChannels
        var current = image.pixels
        var currentWidth = image.width
        if width != image.width {
            let t = taps(inSize: image.width, outSize: width)
            var out = [UInt8](repeating: 0, count: width * image.height * c)
            pass(from: current, into: &out, taps: t, outer: image.height, outputs: width, channels: c,
                 inputStep: c, inputStride: image.width * c, outputStride: width * c)
            current = out
            currentWidth = width
        }
        if height != image.height {
            let t = taps(inSize: image.height, outSize: height)
            var out = [UInt8](repeating: 0, count: currentWidth * height * c)
            // vertical: every byte of a row is one "channel", rows are the taps
            pass(from: current, into: &out, taps: t, outer: 1, outputs: height, channels: currentWidth * c,
                 inputStep: currentWidth * c, inputStride: 0, outputStride: 0)
            current = out
        }
        return try RGB8Image(width: width, height: height, pixels: current)
    }

    /// One separable pass: for each of `outer` lines and each output index, the weighted sum of
    /// `taps` inputs `inputStep` apart, per channel, rounded and clipped to 8 bits.
    private static func pass(from input: [UInt8], into output: inout [UInt8], taps t: Taps, outer: Int, outputs: Int,
                             channels: Int, inputStep: Int, inputStride: Int, outputStride: Int) {
        let half = 1 << (precisionBits - 1)
        input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                t.weights.withUnsafeBufferPointer { w in
                    for line in 0..<outer {
                        let inLine = line * inputStride, outLine = line * outputStride
                        for o in 0..<outputs {
                            let first = inLine + t.first[o] * inputStep, base = o * t.taps, n = t.count[o]
                            let outBase = outLine + o * channels
                            for ch in 0..<channels {
                                var sum = half
                                var at = first + ch
                                for i in 0..<n {
                                    sum &+= Int(src[at]) &* w[base + i]
                                    at += inputStep
                                }
                                dst[outBase + ch] = clip8(sum)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One image as the vision asset takes it: the static padded grid and what the prompt needs.
public struct PreprocessedImage: Sendable, Equatable {
    /// float32 [maxPatches, patch*patch*3]: real patches first, then zeros.
    public let pixelValues: [Float]
    /// int32 [maxPatches, 2]: (x = patch column, y = patch row), then (-1, -1) for padding.
    public let positionIds: [Int32]
    /// Patches that carry the picture (the rest is padding).
    public let realPatches: Int
    /// Soft tokens the image becomes: its placeholder expands to this many image tokens.
    public let softTokens: Int
    /// The resized picture's size.
    public let resizedWidth: Int
    public let resizedHeight: Int
}

public struct ImagePreprocessor: Sendable, Equatable {
    public let geometry: ImageGeometry

    public init(geometry: ImageGeometry) {
        self.geometry = geometry
    }

    public init(maxSoftTokens: Int = Contract.imageMaxSoftTokens) throws {
        geometry = try ImageGeometry(maxSoftTokens: maxSoftTokens)
    }

    public func preprocess(_ image: RGB8Image) throws -> PreprocessedImage {
        let size = try geometry.targetSize(width: image.width, height: image.height)
        let resized = (size.width == image.width && size.height == image.height)
            ? image : try BicubicResampler.resize(image, width: size.width, height: size.height)
        let p = geometry.patchSize, c = Contract.imageChannels
        let columns = size.width / p, rows = size.height / p
        let realPatches = columns * rows
        let scale = 1.0 / Double(Contract.imageRescaleDivisor)  // HF: float64 multiply, then float32
        let levels = (0...255).map { Float(Double($0) * scale) }
        var pixels = [Float](repeating: 0, count: geometry.maxPatches * geometry.patchLength)
        var positions = [Int32](repeating: Int32(Contract.imagePadPosition), count: geometry.maxPatches * 2)
        resized.pixels.withUnsafeBufferPointer { src in
            for row in 0..<rows {
                for column in 0..<columns {
                    let patch = row * columns + column
                    var o = patch * geometry.patchLength
                    for dy in 0..<p {
                        let start = ((row * p + dy) * size.width + column * p) * c
                        for i in 0..<(p * c) {
                            pixels[o] = levels[Int(src[start + i])]
                            o += 1
                        }
                    }
                    positions[patch * 2] = Int32(column)
                    positions[patch * 2 + 1] = Int32(row)
                }
            }
        }
        let kernel = geometry.poolingKernel * geometry.poolingKernel
        return PreprocessedImage(pixelValues: pixels, positionIds: positions, realPatches: realPatches,
                                 softTokens: realPatches / kernel, resizedWidth: size.width, resizedHeight: size.height)
    }
}

/// The token ids of Gemma 4's image markers (the bundle's metadata / tokenizer give them).
public struct ImageTokenIds: Sendable, Equatable, Codable {
    /// What the prompt holds where an image goes, and what each soft token is before the rewrite.
    public let imageTokenId: Int32
    public let boiTokenId: Int32
    public let eoiTokenId: Int32
    /// V: the text vocabulary; soft token k becomes V + k.
    public let vocabSize: Int

    public init(imageTokenId: Int32, boiTokenId: Int32, eoiTokenId: Int32, vocabSize: Int) {
        self.imageTokenId = imageTokenId
        self.boiTokenId = boiTokenId
        self.eoiTokenId = eoiTokenId
        self.vocabSize = vocabSize
    }
}

public enum ImagePrompt {
    /// HF's placeholder expansion: each `imageTokenId` in `ids` (one per image, in order)
    /// becomes boi + softTokens[i] image tokens + eoi.
    public static func expand(_ ids: [Int32], softTokens: [Int], tokens: ImageTokenIds) throws -> [Int32] {
        let placeholders = ids.filter { $0 == tokens.imageTokenId }.count
        guard placeholders == softTokens.count else {
            throw ImageInputError.placeholderMismatch(placeholders: placeholders, images: softTokens.count)
        }
        var out: [Int32] = []
        out.reserveCapacity(ids.count + softTokens.reduce(0, +) + 2 * softTokens.count)
        var image = 0
        for id in ids {
            if id == tokens.imageTokenId {
                out.append(tokens.boiTokenId)
                out.append(contentsOf: repeatElement(tokens.imageTokenId, count: softTokens[image]))
                out.append(tokens.eoiTokenId)
                image += 1
            } else {
                out.append(id)
            }
        }
        return out
    }

    /// The id splice (contract vision block): the k-th image token becomes V + k,
    /// so the graph takes its embedding from `image_embeds` row k. `capacity` = its rows.
    public static func rewrite(_ ids: [Int32], tokens: ImageTokenIds, capacity: Int) throws -> [Int32] {
        var k = 0
        let out = ids.map { id -> Int32 in
            guard id == tokens.imageTokenId else { return id }
            defer { k += 1 }
            return Int32(tokens.vocabSize + k)
        }
        guard k <= capacity else { throw ImageInputError.tooManySoftTokens(k, capacity: capacity) }
        return out
    }

    /// Expansion then rewrite: the ids the engine runs for a prompt with these images.
    public static func engineIds(_ ids: [Int32], images: [PreprocessedImage], tokens: ImageTokenIds,
                                 capacity: Int) throws -> [Int32] {
        let expanded = try expand(ids, softTokens: images.map(\.softTokens), tokens: tokens)
        return try rewrite(expanded, tokens: tokens, capacity: capacity)
    }
}

/// What an image-capable bundle tells the app: metadata.json `gemmaios.vision` (contract vision
/// block) holds the vision asset's file, the marker ids, V, the soft-token budget (also the rows
/// of `image_embeds`), the patch grid and the pad id whose PLE row ids >= V take. nil for a
/// text-only bundle.
public struct ImageInputConfig: Sendable, Equatable {
    public let tokens: ImageTokenIds
    public let geometry: ImageGeometry
    /// The PLE row every id >= V gathers (HF: the pad token's).
    public let padTokenId: Int32
    /// The vision asset, relative to the bundle folder.
    public let asset: String

    public init(tokens: ImageTokenIds, geometry: ImageGeometry, padTokenId: Int32, asset: String) {
        self.tokens = tokens
        self.geometry = geometry
        self.padTokenId = padTokenId
        self.asset = asset
    }

    public static func from(metadata: Data) throws -> ImageInputConfig? {
        guard let root = (try? JSONSerialization.jsonObject(with: metadata)) as? [String: Any],
              let vision = (root["gemmaios"] as? [String: Any])?[Contract.visionMetadataKey] as? [String: Any]
        else { return nil }
        let language = root["language"] as? [String: Any] ?? [:]
        func int(_ key: String) throws -> Int {
            guard let value = vision[key] as? Int else { throw ImageInputError.incompleteMetadata(key) }
            return value
        }
        guard let asset = vision[Contract.visionAssetField] as? String else {
            throw ImageInputError.incompleteMetadata(Contract.visionAssetField)
        }
        guard let vocab = (vision["vocab_size"] as? Int) ?? (language["vocab_size"] as? Int) else {
            throw ImageInputError.incompleteMetadata("vocab_size")
        }
        let geometry = try ImageGeometry(patchSize: vision["patch_size"] as? Int ?? Contract.imagePatchSize,
                                         poolingKernel: vision["pooling_kernel_size"] as? Int ?? Contract.imagePoolingKernel,
                                         maxSoftTokens: vision["max_soft_tokens"] as? Int ?? Contract.imageMaxSoftTokens)
        let tokens = ImageTokenIds(imageTokenId: Int32(try int("image_token_id")), boiTokenId: Int32(try int("boi_token_id")),
                                   eoiTokenId: Int32(try int("eoi_token_id")), vocabSize: vocab)
        return ImageInputConfig(tokens: tokens, geometry: geometry,
                                padTokenId: Int32(try int(Contract.splicedPleRowKey)), asset: asset)
    }

    /// One picture and a prompt holding its placeholder → the vision asset's inputs and the
    /// ids the engine runs (expanded, soft tokens rewritten to V + k).
    public func prepare(_ image: RGB8Image, promptIds: [Int32]) throws -> (image: PreprocessedImage, ids: [Int32]) {
        let pre = try ImagePreprocessor(geometry: geometry).preprocess(image)
        let ids = try ImagePrompt.engineIds(promptIds, images: [pre], tokens: tokens, capacity: geometry.maxSoftTokens)
        return (pre, ids)
    }

    /// `ids` with the image placeholder after the first token (<bos>) unless it has one already:
    /// for chat templates that do not place images themselves.
    public func withPlaceholder(_ ids: [Int32]) -> [Int32] {
        guard !ids.contains(tokens.imageTokenId) else { return ids }
        var out = ids
        out.insert(tokens.imageTokenId, at: min(1, out.count))
        return out
    }
}
