import CoreAI
import CoreAIShared
import CoreGraphics
import Foundation
import GemmaiosCore
import Tokenizers

enum UnifiedEngineError: LocalizedError {
    case missingFunction(String, String)
    case unexpectedGraph(String)
    case unsupportedScalarType(String, String)
    case contextFull(tokens: Int, context: Int)
    case sampleRate(Int)

    var errorDescription: String? {
        switch self {
        case .missingFunction(let name, let asset):
            return "\(asset) has no `\(name)` function; build the 12B with `gemmaios build --target mac --vision --audio`"
        case .unexpectedGraph(let why):
            return "the bundle's multimodal functions are not the ones this app feeds (\(why)); re-run `gemmaios build`"
        case .unsupportedScalarType(let name, let type):
            return "`\(name)` is \(type) in this bundle; this app fills and reads float16/float32, int32/int64 and bool"
        case .contextFull(let tokens, let context):
            return "the prompt with its pictures and clips is \(tokens) tokens, the bundle's context \(context); "
                + "send a smaller picture or a shorter clip"
        case .sampleRate(let rate):
            return "the bundle takes audio at \(rate) Hz; this app's clips are \(Contract.audioSampleRate) Hz"
        }
    }
}

/// One reply of the multimodal path, with its timings (seconds).
struct UnifiedGeneration: Sendable {
    var tokenIds: [Int32] = []
    var promptTokens = 0
    var embedSeconds = 0.0
    var prefillSeconds = 0.0
    var decodeSeconds = 0.0
    /// The reply ended at one of the bundle's stop ids (not at the length cap).
    var stopped = false

    /// The chat's status line, formatted as the text path's ("prefill %.1f tok/s · decode %.1f tok/s"). A rate
    /// is shown only when it was measured: tokens and a non-zero time (decode: the tokens after the first,
    /// one `main` call each), else it is left out.
    var statusLine: String {
        var parts = ["\(promptTokens) prompt tokens", String(format: "embed %.2f s", embedSeconds)]
        if promptTokens > 0 && prefillSeconds > 0 {
            parts.append(String(format: "prefill %.1f tok/s", Double(promptTokens) / prefillSeconds))
        }
        if tokenIds.count > 1 && decodeSeconds > 0 {
            parts.append(String(format: "decode %.1f tok/s", Double(tokenIds.count - 1) / decodeSeconds))
        }
        return parts.joined(separator: " · ")
    }
}

/// The 12B's multi-function bundle (metadata.json `gemmaios.multimodal`; one asset with `main`,
/// `prefill_multimodal`, `embed_vision`, `embed_audio`) driven function by function, as
/// gemmaios.hostrun.multimodal does under Core AI's runtime: each picture / clip through its embedder,
/// the whole prompt through one `prefill_multimodal` call (its bidirectional image blocks need all their
/// rows in one call; the masks replace the built-in causal / sliding ones), then greedy new tokens through
/// `main`, one per call, on the same KV states. The inputs are GemmaiosCore's UnifiedRequest (checked under
/// `swift test` against the oracle's); names are the contract's. The pipelined text engine keeps serving
/// text-only messages through `main`; this one holds its own KV states, sized per prompt.
final class UnifiedEngine: @unchecked Sendable {
    let config: UnifiedBundleConfig
    let maxContext: Int
    private let model: PreparedModel
    private let functions: [String: InferenceFunction]
    private let descriptors: [String: InferenceFunctionDescriptor]

    /// nil when the bundle is not the multi-function one.
    static func config(bundle: URL) throws -> UnifiedBundleConfig? {
        try UnifiedBundleConfig.from(metadata: Data(contentsOf: bundle.appendingPathComponent(Contract.bundleMetadataFile)))
    }

    init(config: UnifiedBundleConfig, asset: URL, maxContext: Int) async throws {
        if config.takesClips && config.samplingRate != Contract.audioSampleRate {
            throw UnifiedEngineError.sampleRate(config.samplingRate)
        }
        self.config = config
        self.maxContext = maxContext
        model = try await PreparedModel.prepare(at: asset)
        let wanted: [(String, [String])] = [
            (Contract.mainFunction, [Contract.inputIdsInput, Contract.positionIdsInput]),
            (Contract.prefillMultimodalFunction, [Contract.inputIdsInput, Contract.mmEmbedsInput, Contract.mmMaskInput,
                                                  Contract.positionIdsInput, Contract.maskSlidingInput,
                                                  Contract.maskGlobalInput]),
        ] + (config.takesPictures ? [(Contract.embedVisionFunction, [Contract.embedPixelsInput, Contract.embedPositionsInput])] : [])
          + (config.takesClips ? [(Contract.embedAudioFunction, [Contract.embedFramesInput])] : [])
        var functions: [String: InferenceFunction] = [:]
        var descriptors: [String: InferenceFunctionDescriptor] = [:]
        for (name, inputs) in wanted {
            guard let descriptor = model.model.functionDescriptor(for: name),
                  let function = try model.model.loadFunction(named: name)
            else { throw UnifiedEngineError.missingFunction(name, asset.lastPathComponent) }
            guard Set(descriptor.inputNames) == Set(inputs) else {
                throw UnifiedEngineError.unexpectedGraph("\(name) takes \(descriptor.inputNames), expected \(inputs)")
            }
            functions[name] = function
            descriptors[name] = descriptor
        }
        self.functions = functions
        self.descriptors = descriptors
    }

    /// The ids a chat message runs: the tokenizer's chat template around the text (the markers in front
    /// when it has none, as `gemmaios run` places them), read back as text and split at the markers
    /// (gemmaios.unified_inputs.encode_prompt), one <bos> first.
    func promptIds(text: String, pictures: Int, clips: Int, tokenizer: any Tokenizer, bos: Int32) throws -> [Int32] {
        let content = UnifiedBundleConfig.withMarkers(text, pictures: pictures, clips: clips)
        let templated = try tokenizer.applyChatTemplate(messages: [["role": "user", "content": content]])
        let rendered = tokenizer.decode(tokens: templated, skipSpecialTokens: false)
        let ids = config.encode(rendered) { piece in
            tokenizer.encode(text: piece, addSpecialTokens: false).map { Int32($0) }
        }
        return ChatPrompt.withSingleBOS(ids.map(Int.init), bos: Int(bos)).map { Int32($0) }
    }

    /// The embedders' rows for each item of `request`, in prompt order ([rows * hidden] each).
    func embed(_ request: UnifiedRequest) async throws -> [[Float]] {
        var outputs: [[Float]] = []
        let hidden = config.hiddenSize
        for item in request.items {
            switch item {
            case .picture(let index, let rows):
                let picture = request.pictures[index]
                outputs.append(try await run(Contract.embedVisionFunction, inputs: [
                    (Contract.embedPixelsInput, [1, rows, picture.pixelValues.count / max(rows, 1)], .floats(picture.pixelValues)),
                    (Contract.embedPositionsInput, [1, rows, 2], .ints(picture.positionIds)),
                ], output: Contract.embedsOutput, outputShape: [1, rows, hidden]))
            case .clip(let index, let rows):
                let clip = request.clips[index]
                outputs.append(try await run(Contract.embedAudioFunction, inputs: [
                    (Contract.embedFramesInput, [1, rows, config.samplesPerToken], .floats(clip.values)),
                ], output: Contract.embedsOutput, outputShape: [1, rows, hidden]))
            }
        }
        return outputs
    }

    /// Embedders → one `prefill_multimodal` → greedy through `main` until a stop id or `maxNewTokens`.
    func generate(_ request: UnifiedRequest, maxNewTokens: Int,
                  onToken: (@Sendable (Int32) -> Void)? = nil) async throws -> UnifiedGeneration {
        let s = request.length
        guard s < maxContext else { throw UnifiedEngineError.contextFull(tokens: s, context: maxContext) }
        let newTokens = min(maxNewTokens, maxContext - s)
        var result = UnifiedGeneration()
        result.promptTokens = s
        let started = ContinuousClock.now
        let mmEmbeds = try request.mmEmbeds(try await embed(request))
        let embedded = ContinuousClock.now
        // the KV states both functions use, sized for this prompt and its reply (zeros: empty slots)
        var key = try state(Contract.keyCacheState, capacity: s + newTokens)
        var value = try state(Contract.valueCacheState, capacity: s + newTokens)
        let vocab = config.vocabSize
        var logits = try await run(Contract.prefillMultimodalFunction, inputs: [
            (Contract.inputIdsInput, [1, s], .ints(request.inputIds)),
            (Contract.mmEmbedsInput, [1, s, config.hiddenSize], .floats(mmEmbeds)),
            (Contract.mmMaskInput, [1, s], .bools(request.mmMask)),
            (Contract.positionIdsInput, [1, s], .ints(request.positionIds)),
            (Contract.maskSlidingInput, [1, 1, s, s], .bools(request.maskSliding)),
            (Contract.maskGlobalInput, [1, 1, s, s], .bools(request.maskGlobal)),
        ], output: Contract.logitsOutput, outputShape: [1, 1, vocab], key: &key, value: &value)
        let prefilled = ContinuousClock.now
        while newTokens > 0 {
            let token = UnifiedRequest.argmax(logits)
            result.tokenIds.append(token)
            onToken?(token)
            if Contract.chatStopsAtEOS && config.stopTokenIds.contains(token) {
                result.stopped = true
                break
            }
            if result.tokenIds.count == newTokens { break }
            let step = UnifiedRequest.decodeInputs(token: token, length: s + result.tokenIds.count)
            logits = try await run(Contract.mainFunction, inputs: [
                (Contract.inputIdsInput, [1, 1], .ints(step.inputIds)),
                (Contract.positionIdsInput, [1, step.positionIds.count], .ints(step.positionIds)),
            ], output: Contract.logitsOutput, outputShape: [1, 1, vocab], key: &key, value: &value)
        }
        let done = ContinuousClock.now
        result.embedSeconds = Self.seconds(embedded - started)
        result.prefillSeconds = Self.seconds(prefilled - embedded)
        result.decodeSeconds = Self.seconds(done - prefilled)
        return result
    }

    // ---- Core AI calls ---------------------------------------------------------------------------------

    enum Values {
        case floats([Float])
        case ints([Int32])
        case bools([Bool])
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// A zeroed KV state at `capacity` positions (the dynamic sequence dimension of
    /// `prefill_multimodal`'s state; `main` declares the same states).
    private func state(_ name: String, capacity: Int) throws -> NDArray {
        guard let descriptor = descriptors[Contract.prefillMultimodalFunction],
              case .ndArray(let d) = descriptor.stateDescriptor(of: name)
        else { throw UnifiedEngineError.unexpectedGraph("no state \(name) on \(Contract.prefillMultimodalFunction)") }
        var array = NDArray(descriptor: d.resolvingDynamicDimensions(d.shape.map { $0 > 0 ? $0 : capacity }))
        let count = array.shape.reduce(1, *)
        switch array.scalarType {
        case .float16: fillNDArray(&array, as: Float16.self, count: count) { _ in 0 }
        case .float32: fillNDArray(&array, as: Float.self, count: count) { _ in 0 }
        default: throw UnifiedEngineError.unsupportedScalarType(name, "\(array.scalarType)")
        }
        return array
    }

    private func input(_ function: String, _ name: String, shape: [Int], _ values: Values) throws -> NDArray {
        guard let descriptor = descriptors[function], case .ndArray(let d) = descriptor.inputDescriptor(of: name) else {
            throw UnifiedEngineError.unexpectedGraph("\(function) has no input \(name)")
        }
        var array = NDArray(descriptor: d.resolvingDynamicDimensions(shape))
        switch (values, d.scalarType) {
        case (.floats(let v), .float16): fillNDArray(&array, as: Float16.self, with: v.map { Float16($0) })
        case (.floats(let v), .float32): fillNDArray(&array, as: Float.self, with: v)
        case (.ints(let v), .int32): fillNDArray(&array, as: Int32.self, with: v)
        case (.ints(let v), .int64): fillNDArray(&array, as: Int64.self, with: v.map { Int64($0) })
        case (.bools(let v), .bool): fillNDArray(&array, as: Bool.self, with: v)
        default: throw UnifiedEngineError.unsupportedScalarType("\(function).\(name)", "\(d.scalarType)")
        }
        return array
    }

    private func outputArray(_ function: String, _ name: String, shape: [Int]) throws -> NDArray {
        guard let descriptor = descriptors[function], case .ndArray(let d) = descriptor.outputDescriptor(of: name) else {
            throw UnifiedEngineError.unexpectedGraph("\(function) has no output \(name)")
        }
        return NDArray(descriptor: d.resolvingDynamicDimensions(shape))
    }

    private static func floats(_ array: NDArray, name: String) throws -> [Float] {
        let count = array.shape.reduce(1, *)
        switch array.scalarType {
        case .float16: return readNDArray(array, as: Float16.self, count: count).map { Float($0) }
        case .float32: return readNDArray(array, as: Float.self, count: count)
        default: throw UnifiedEngineError.unsupportedScalarType(name, "\(array.scalarType)")
        }
    }

    /// An embedder call (no states): its one output as floats.
    private func run(_ function: String, inputs: [(String, [Int], Values)], output: String,
                     outputShape: [Int]) async throws -> [Float] {
        guard let callable = functions[function] else { throw UnifiedEngineError.missingFunction(function, "the asset") }
        var arrays: [String: NDArray] = [:]
        for (name, shape, values) in inputs { arrays[name] = try input(function, name, shape: shape, values) }
        var result = try outputArray(function, output, shape: outputShape)
        var views = InferenceFunction.MutableViews()
        views.insert(&result, for: output)
        _ = try await callable.run(inputs: arrays, outputViews: consume views)
        return try Self.floats(result, name: "\(function).\(output)")
    }

    /// A decoder call (`prefill_multimodal` or `main`) on the KV states: the last row's logits.
    private func run(_ function: String, inputs: [(String, [Int], Values)], output: String, outputShape: [Int],
                     key: inout NDArray, value: inout NDArray) async throws -> [Float] {
        guard let callable = functions[function] else { throw UnifiedEngineError.missingFunction(function, "the asset") }
        var arrays: [String: NDArray] = [:]
        for (name, shape, values) in inputs { arrays[name] = try input(function, name, shape: shape, values) }
        var result = try outputArray(function, output, shape: outputShape)
        var states = InferenceFunction.MutableViews()
        states.insert(&key, for: Contract.keyCacheState)
        states.insert(&value, for: Contract.valueCacheState)
        var views = InferenceFunction.MutableViews()
        views.insert(&result, for: output)
        _ = try await callable.run(inputs: arrays, states: consume states, outputViews: consume views)
        return try Self.floats(result, name: "\(function).\(output)")
    }
}

/// The chat's multimodal message on the unified bundle, UI-free: pictures (decoded CGImages) and clips
/// (16 kHz samples) → the prompt → a reply. Loaded on the first such message and kept (LoadedEngine.unified).
final class UnifiedChat: @unchecked Sendable {
    let config: UnifiedBundleConfig
    private let asset: URL
    private let maxContext: Int
    private var engine: UnifiedEngine?

    /// nil when the bundle is not the multi-function one.
    static func load(bundle: URL, asset: URL, maxContext: Int) throws -> UnifiedChat? {
        guard let config = try UnifiedEngine.config(bundle: bundle) else { return nil }
        return UnifiedChat(config: config, asset: asset, maxContext: maxContext)
    }

    private init(config: UnifiedBundleConfig, asset: URL, maxContext: Int) {
        self.config = config
        self.asset = asset
        self.maxContext = maxContext
    }

    func loaded() async throws -> UnifiedEngine {
        if let engine { return engine }
        let made = try await UnifiedEngine(config: config, asset: asset, maxContext: maxContext)
        engine = made
        return made
    }

    /// One message with its pictures and clips, answered on its own: (the reply's text, the run).
    func reply(to text: String, pictures: [CGImage], clips: [AudioClip], tokenizer: any Tokenizer, bos: Int32,
               maxNewTokens: Int) async throws -> (text: String, run: UnifiedGeneration) {
        let engine = try await loaded()
        let ids = try engine.promptIds(text: text, pictures: pictures.count, clips: clips.count, tokenizer: tokenizer, bos: bos)
        let request = try UnifiedRequest(promptIds: ids, pictures: try pictures.map { try PictureDecoding.rgb8($0) },
                                         clips: clips.map(\.samples), config: config)
        let run = try await engine.generate(request, maxNewTokens: maxNewTokens)
        let reply = run.tokenIds.filter { !config.stopTokenIds.contains($0) }.map(Int.init)
        return (tokenizer.decode(tokens: reply, skipSpecialTokens: true), run)
    }
}
