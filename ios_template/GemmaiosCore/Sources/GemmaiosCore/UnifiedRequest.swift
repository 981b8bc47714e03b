import Foundation

// The 12B's multi-function bundle (gemma4_unified, issue 29) as the app calls it: what `embed_vision`,
// `embed_audio`, `prefill_multimodal` and then `main` take for one prompt with pictures and clips. The
// Swift twin of gemmaios.hostrun.multimodal (`vision_inputs`, `audio_inputs`, `prefill_inputs`,
// `MultimodalRunner.embeds_for`), which `gemmaios run --image/--audio` and the build's multimodal gate
// run under Core AI's runtime. Function and input names are the contract's; token ids, sizes and stop
// ids come from the bundle's metadata.json `gemmaios.multimodal` (never literals here).
// tests/test_swift_unified.py checks every input against the Python oracle's on the eight gate prompts.

public enum UnifiedRequestError: Error, LocalizedError, Equatable {
    case incompleteMetadata(String)
    case noFunction(String)
    case embedRows(item: Int, rows: Int, expected: Int)
    case itemCount(given: Int, expected: Int)

    public var errorDescription: String? {
        switch self {
        case .incompleteMetadata(let key):
            return "\(Contract.bundleMetadataFile) gemmaios.\(Contract.multimodalMetadataKey) lacks `\(key)`; convert the bundle again "
                + "with this toolkit (`gemmaios build --target mac --vision --audio`)"
        case .noFunction(let name):
            return "this bundle has no `\(name)` function; build it with the flag for that input (--vision / --audio)"
        case .embedRows(let item, let rows, let expected):
            return "the embedder returned \(rows) values for item \(item), expected \(expected); the bundle's "
                + "hidden size and metadata disagree: convert it again"
        case .itemCount(let given, let expected):
            return "\(given) embedder outputs for \(expected) pictures and clips; embed each item once, in prompt order"
        }
    }
}

/// metadata.json `gemmaios.multimodal`: what the app needs to run the four functions.
public struct UnifiedBundleConfig: Sendable, Equatable {
    public let tokens: UnifiedTokenIds
    public let stopTokenIds: [Int32]
    public let patchSize: Int
    public let poolingKernel: Int
    public let maxSoftTokens: Int
    public let samplesPerToken: Int
    public let samplingRate: Int
    public let slidingWindow: Int
    public let hiddenSize: Int
    public let vocabSize: Int
    /// The asset's functions beside `main` (the `functions` field's keys).
    public let functions: [String]

    public var takesPictures: Bool { functions.contains(Contract.embedVisionFunction) }
    public var takesClips: Bool { functions.contains(Contract.embedAudioFunction) }

    /// nil when the bundle is not the multi-function one (no `gemmaios.multimodal`).
    public static func from(metadata: Data) throws -> UnifiedBundleConfig? {
        guard let root = (try? JSONSerialization.jsonObject(with: metadata)) as? [String: Any],
              let block = (root["gemmaios"] as? [String: Any])?[Contract.multimodalMetadataKey] as? [String: Any]
        else { return nil }
        func int(_ key: String) throws -> Int {
            guard let value = block[key] as? Int else { throw UnifiedRequestError.incompleteMetadata(key) }
            return value
        }
        func id(_ key: String) throws -> Int32 { Int32(try int(key)) }
        guard let stops = block["stop_token_ids"] as? [Int] else {
            throw UnifiedRequestError.incompleteMetadata("stop_token_ids")
        }
        guard let functions = block[Contract.multimodalFunctionsField] as? [String: Any] else {
            throw UnifiedRequestError.incompleteMetadata(Contract.multimodalFunctionsField)
        }
        guard functions[Contract.prefillMultimodalFunction] != nil else {
            throw UnifiedRequestError.noFunction(Contract.prefillMultimodalFunction)
        }
        let tokens = UnifiedTokenIds(
            imageTokenId: try id("image_token_id"), videoTokenId: try id("video_token_id"),
            audioTokenId: try id("audio_token_id"), boiTokenId: try id("boi_token_id"), eoiTokenId: try id("eoi_token_id"),
            boaTokenId: try id("boa_token_id"), eoaTokenId: try id("eoa_token_id"), padTokenId: try id(Contract.splicedPleRowKey))
        return UnifiedBundleConfig(
            tokens: tokens, stopTokenIds: stops.map { Int32($0) }, patchSize: try int("patch_size"),
            poolingKernel: try int("pooling_kernel_size"), maxSoftTokens: try int("max_soft_tokens"),
            samplesPerToken: try int("audio_samples_per_token"), samplingRate: try int("sampling_rate"),
            slidingWindow: try int("sliding_window"), hiddenSize: try int("hidden_size"), vocabSize: try int("vocab_size"),
            functions: functions.keys.sorted())
    }

    /// A rendered prompt's text whose `<image>` / `<audio>` markers stand for the items, in order → token ids
    /// with one placeholder per item (gemmaios.unified_inputs.encode_prompt before its expansion): the text
    /// between markers through `tokenize` (no special tokens added), each marker as its placeholder id.
    public func encode(_ text: String, tokenize: (String) -> [Int32]) -> [Int32] {
        var ids: [Int32] = []
        var rest = Substring(text)
        while !rest.isEmpty {
            let image = rest.range(of: Contract.imageMarker), audio = rest.range(of: Contract.audioMarker)
            let next = [image, audio].compactMap { $0 }.min { $0.lowerBound < $1.lowerBound }
            guard let marker = next else {
                ids += tokenize(String(rest))
                break
            }
            if marker.lowerBound > rest.startIndex { ids += tokenize(String(rest[..<marker.lowerBound])) }
            ids.append(marker == image ? tokens.imageTokenId : tokens.audioTokenId)
            rest = rest[marker.upperBound...]
        }
        return ids
    }

    /// The user's text with the markers in front when it has none (`gemmaios run`'s rule: the picture first,
    /// then the clip, each on its own line).
    public static func withMarkers(_ text: String, pictures: Int, clips: Int) -> String {
        var out = text
        if clips > 0 && !out.contains(Contract.audioMarker) {
            out = String(repeating: Contract.audioMarker + "\n", count: clips) + out
        }
        if pictures > 0 && !out.contains(Contract.imageMarker) {
            out = String(repeating: Contract.imageMarker + "\n", count: pictures) + out
        }
        return out
    }
}

/// One item of a prompt, in prompt order: the embedder it goes through and its soft-token rows.
public enum UnifiedItem: Sendable, Equatable {
    case picture(index: Int, rows: Int)
    case clip(index: Int, rows: Int)

    public var function: String {
        switch self {
        case .picture: return Contract.embedVisionFunction
        case .clip: return Contract.embedAudioFunction
        }
    }

    public var rows: Int {
        switch self {
        case .picture(_, let rows), .clip(_, let rows): return rows
        }
    }
}

/// One prompt's inputs for the four functions (a whole prompt at positions 0..S-1, one prefill call).
public struct UnifiedRequest: Sendable {
    public let config: UnifiedBundleConfig
    /// HF's input_ids: placeholders expanded (BOI + image x n + EOI, BOA + audio x n + EOA).
    public let expandedIds: [Int32]
    public let types: [Int32]
    /// Each picture's real rows (no padding): `embed_vision`'s pixel_values / image_position_ids.
    public let pictures: [UnifiedImage]
    /// Each clip's frames (row-major [T, samples_per_token]): `embed_audio`'s input_features.
    public let clips: [(values: [Float], count: Int)]
    /// The embedder calls in prompt order (the order their rows fill mm_embeds).
    public let items: [UnifiedItem]
    /// prefill_multimodal: soft tokens replaced by the pad id.
    public let inputIds: [Int32]
    public let mmMask: [Bool]
    public let positionIds: [Int32]
    /// [S, S] row-major, true = attend.
    public let maskSliding: [Bool]
    public let maskGlobal: [Bool]

    public var length: Int { expandedIds.count }

    /// `promptIds` hold one image / audio placeholder per picture / clip (UnifiedBundleConfig.encode);
    /// `pictures` are 8-bit RGB as decoded, `clips` mono samples at the bundle's sampling rate.
    public init(promptIds: [Int32], pictures: [RGB8Image], clips: [[Float]], config: UnifiedBundleConfig) throws {
        if !pictures.isEmpty && !config.takesPictures { throw UnifiedRequestError.noFunction(Contract.embedVisionFunction) }
        if !clips.isEmpty && !config.takesClips { throw UnifiedRequestError.noFunction(Contract.embedAudioFunction) }
        let prepared = try pictures.map {
            try UnifiedImage.prepare($0, patchSize: config.patchSize, poolingKernel: config.poolingKernel,
                                     maxSoftTokens: config.maxSoftTokens)
        }
        let framed = try clips.map { try UnifiedAudio.frames($0, samplesPerToken: config.samplesPerToken) }
        let tokens = config.tokens
        let expanded = try UnifiedPrompt.expand(promptIds, imageTokens: prepared.map(\.softTokens),
                                                audioTokens: framed.map(\.count), tokens: tokens)
        var items: [UnifiedItem] = []
        var i = 0, a = 0
        for id in promptIds {
            if id == tokens.imageTokenId {
                items.append(.picture(index: i, rows: prepared[i].softTokens))
                i += 1
            } else if id == tokens.audioTokenId {
                items.append(.clip(index: a, rows: framed[a].count))
                a += 1
            }
        }
        let types = UnifiedPrompt.types(expanded, tokens: tokens)
        let masks = try UnifiedPrompt.masks(types, slidingWindow: config.slidingWindow)
        self.config = config
        self.expandedIds = expanded
        self.types = types
        self.pictures = prepared
        self.clips = framed
        self.items = items
        self.inputIds = UnifiedPrompt.graphIds(expanded, tokens: tokens)
        self.mmMask = types.map { $0 != UnifiedPrompt.text }
        self.positionIds = (0..<expanded.count).map { Int32($0) }
        self.maskSliding = masks.sliding
        self.maskGlobal = masks.global
    }

    /// mm_embeds [S, hidden] row-major: the embedders' outputs (one per item, in `items` order, each
    /// [rows, hidden]) at the soft tokens' rows, zeros elsewhere (gemmaios.unified_inputs.scatter_embeddings).
    public func mmEmbeds(_ outputs: [[Float]]) throws -> [Float] {
        guard outputs.count == items.count else {
            throw UnifiedRequestError.itemCount(given: outputs.count, expected: items.count)
        }
        let hidden = config.hiddenSize
        var out = [Float](repeating: 0, count: length * hidden)
        var row = 0
        for (k, (item, values)) in zip(items, outputs).enumerated() {
            guard values.count == item.rows * hidden else {
                throw UnifiedRequestError.embedRows(item: k, rows: values.count, expected: item.rows * hidden)
            }
            var taken = 0
            while taken < item.rows {
                while !mmMask[row] { row += 1 }
                out.replaceSubrange(row * hidden..<(row + 1) * hidden,
                                    with: values[taken * hidden..<(taken + 1) * hidden])
                taken += 1
                row += 1
            }
        }
        return out
    }

    /// `main`'s inputs for the token at position `length - 1` after the prefill (one per call):
    /// input_ids [1, 1], position_ids [1, length] = 0..length-1 (gemmaios.hostrun's `_step`).
    public static func decodeInputs(token: Int32, length: Int) -> (inputIds: [Int32], positionIds: [Int32]) {
        ([token], (0..<length).map { Int32($0) })
    }

    /// Greedy: the first index of the largest logit (numpy's argmax).
    public static func argmax(_ logits: [Float]) -> Int32 {
        var best = 0
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return Int32(best)
    }
}
