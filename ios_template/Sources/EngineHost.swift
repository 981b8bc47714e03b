import CoreAILanguageModels
import CoreAIShared
import Foundation
import GemmaiosCore
import Metal

enum EngineHostError: LocalizedError {
    case bundleMissing(URL)
    case noMetalDevice

    var errorDescription: String? {
        switch self {
        case .bundleMissing(let url):
            return "Core AI bundle not found at \(url.path); push the payload with `gemmaios deploy` (bundle location "
                + "documents) or rebuild the app (bundled)"
        case .noMetalDevice:
            return "this device has no Metal GPU"
        }
    }
}

/// A loaded engine and everything that must outlive it (tables handed to the engine).
final class LoadedEngine: @unchecked Sendable {
    let engine: any InferenceEngine
    let bundle: LanguageBundle
    let loadSeconds: Double
    let coldSpecialization: Bool
    /// The prefill function full prompt chunks run through (nil: `main` only).
    let prefillFunction: String?
    /// Image-capable bundles: the vision asset that fills `image_embeds` (nil: text only).
    let vision: VisionEncoder?
    /// Audio-capable bundles: the audio asset that fills the same rows (Contract.audioEmbedsInput; nil: no audio).
    let audio: AudioEncoder?
    /// The 12B's multi-function bundle (metadata.json gemmaios.multimodal): its pictures-and-clips path
    /// (UnifiedEngine.swift, loaded at the first such message; nil: any other bundle).
    let unified: UnifiedChat?
    /// The KV capacity the engine has bound so far (the pinned engine's growth rule, mirrored:
    /// it only grows while this engine lives). Guarded for apple/coreai-models#124 (KVGuard).
    private(set) var kv: KVCapacity
    private let keepAlive: [AnyObject]

    init(
        engine: any InferenceEngine, bundle: LanguageBundle, loadSeconds: Double, cold: Bool,
        prefillFunction: String?, vision: VisionEncoder? = nil, audio: AudioEncoder? = nil,
        unified: UnifiedChat? = nil, kv: KVCapacity,
        keepAlive: [AnyObject]
    ) {
        self.engine = engine
        self.bundle = bundle
        self.loadSeconds = loadSeconds
        self.coldSpecialization = cold
        self.prefillFunction = prefillFunction
        self.vision = vision
        self.audio = audio
        self.unified = unified
        self.kv = kv
        self.keepAlive = keepAlive
    }

    /// Records a generate of `promptTokens` + `maxNewTokens` (call it before the generate) and
    /// returns the KV capacity it runs at.
    func bindKV(promptTokens: Int, maxNewTokens: Int) -> Int {
        kv.bind(promptTokens: promptTokens, maxNewTokens: maxNewTokens)
    }

    /// The #124 warning for that capacity on this platform, or nil.
    func kvWarning(capacity: Int) -> KVGuard.Warning? {
        KVGuard.warning(capacity: capacity, platform: KVGuard.currentPlatform)
    }
}

enum EngineHost {
    static var specCache: URL { URL.cachesDirectory.appending(path: "coreai-cache") }

    static func removeSpecCache() {
        try? FileManager.default.removeItem(at: specCache)
    }

    /// The bundle's prefill plan (metadata.json's `prefill` role) under these launch settings.
    static func prefillPlan(settings: LaunchSettings) throws -> PrefillPlan {
        let metadata = AppRuntime.payload.bundle(named: AppConfig.bundleName)
            .appendingPathComponent(Contract.bundleMetadataFile)
        guard let data = FileManager.default.contents(atPath: metadata.path) else {
            throw EngineHostError.bundleMissing(metadata.deletingLastPathComponent())
        }
        return try PrefillPlan(metadata: data, settings: settings)
    }

    /// Loads the engine; `trial` picks the prefill setting in A/B mode (PrefillPlan).
    static func load(settings: LaunchSettings, trial: Int = 0) async throws -> LoadedEngine {
        if settings.clearSpecCache {
            removeSpecCache()
        }
        // The pipelined engine reads this when it plans prefill: S=1 bundles must prefill as
        // one-token steps, and it has to be set before the engine exists.
        setenv(Contract.chunkThresholdVariable, Contract.chunkThresholdValue, 1)

        let payload = AppRuntime.payload
        let bundleURL = payload.bundle(named: AppConfig.bundleName)
        guard FileManager.default.fileExists(atPath: bundleURL.path) else {
            throw EngineHostError.bundleMissing(bundleURL)
        }
        let cold = !FileManager.default.fileExists(atPath: specCache.path)
        let started = ContinuousClock.now
        let bundle = try LanguageBundle(at: bundleURL)
        let plan = try prefillPlan(settings: settings)
        let prefillFunction = plan.function(forTrial: trial)

        var keepAlive: [AnyObject] = []
        var staticBuffers: [String: StaticInputBuffer] = [:]
        var provider: PerTokenInputProvider? = nil
        // Image- and audio-capable bundles (metadata.json gemmaios.vision / gemmaios.audio): ids >= V
        // (spliced image or audio soft tokens) gather the PLE pad row the bundle names
        let metadata = try Data(contentsOf: bundleURL.appendingPathComponent(Contract.bundleMetadataFile))
        let imageConfig = try ImageInputConfig.from(metadata: metadata)
        let audioConfig = try AudioInputConfig.from(metadata: metadata)
        let pleShape = PLEShape(
            vocabSize: AppConfig.pleShape.vocabSize, layers: AppConfig.pleShape.layers, dim: AppConfig.pleShape.dim,
            padTokenId: imageConfig?.padTokenId ?? audioConfig?.padTokenId ?? AppConfig.pleShape.padTokenId)
        switch AppConfig.pleMode {
        case .provider:
            let gather = try PLETokenProvider(paths: payload, shape: pleShape)
            keepAlive.append(gather)
            provider = gather.engineProvider
        case .tbl:
            guard let device = MTLCreateSystemDefaultDevice() else { throw EngineHostError.noMetalDevice }
            let tables = try PLEStaticTables(paths: payload, device: device, shape: pleShape)
            keepAlive.append(tables)
            staticBuffers = tables.engineBuffers
        case .none:
            break
        }
        // ... and `main` binds `image_embeds` once; each picture rewrites its contents before its
        // prompt runs (VisionEncoder.encode).
        var vision: VisionEncoder? = nil
        if imageConfig != nil {
            guard let device = MTLCreateSystemDefaultDevice() else { throw EngineHostError.noMetalDevice }
            // with an audio asset too, the rows `main` binds are the larger budget (metadata embeds_rows)
            let audioBytes = audioConfig.map { $0.embedsRows * $0.hiddenSize * MemoryLayout<Float16>.stride } ?? 0
            vision = try await VisionEncoder.load(bundle: bundleURL, metadata: metadata, device: device,
                                                  minimumBytes: audioBytes)
            staticBuffers.merge(vision?.engineBuffers ?? [:]) { _, image in image }
        }
        // ... and a clip's rows go to the same input (one clip or one picture per prompt): into the
        // vision asset's buffer when there is one, else the audio encoder's own (AudioEncoder.encode).
        var audio: AudioEncoder? = nil
        if audioConfig != nil {
            guard let device = MTLCreateSystemDefaultDevice() else { throw EngineHostError.noMetalDevice }
            audio = try await AudioEncoder.load(bundle: bundleURL, metadata: metadata, device: device, rows: vision?.embeds)
            if vision == nil { staticBuffers.merge(audio?.engineBuffers ?? [:]) { _, clip in clip } }
        }

        // apple/coreai-models#124's candidate workaround (A/B: odd trials): the KV cache starts at 384,
        // so its doubling never binds 2048 or 4096; the context is capped at the largest such size.
        let kv = settings.kv384(forTrial: trial)
            ? KVCapacity.alternate(bundleMaxContext: bundle.maxContextLength)
            : KVCapacity(maxContext: bundle.maxContextLength)
        let config = ModelConfig(
            name: bundle.name,
            tokenizer: bundle.tokenizer,
            vocabSize: bundle.vocabSize,
            maxContextLength: kv.maxContext,
            source: ModelSource(hfModelId: bundle.tokenizer, modelDefinition: .pyTorch),
            serializedModel: [bundle.modelAssetPath],
            function: bundle.language.functionMap?.name(for: Contract.mainFunction) ?? Contract.mainFunction)
        var options = EngineOptions(
            variant: "coreai-pipelined",
            kvCacheSize: kv.engineKVCacheSize,
            staticInputBuffers: staticBuffers,
            perTokenInputProvider: provider)
        // Full chunks of C prompt tokens through the bundle's prefill_C (patch 0004); the
        // prompt's last token, and every token when this is nil, through `main`.
        options.prefillFunction = prefillFunction

        // The multi-function 12B: text through this engine's `main`; a message with a picture or a clip
        // through its own functions (UnifiedChat), on the same asset.
        let unified = try UnifiedChat.load(
            bundle: bundleURL, asset: try bundle.requireModelURL(for: ModelBundle.ComponentKey.main),
            maxContext: bundle.maxContextLength)

        let engine = try await EngineFactory.createEngine(
            config: try JSONEncoder().encode(config),
            modelURL: try bundle.requireModelURL(for: ModelBundle.ComponentKey.main),
            options: options)

        // Warm-up is one real generate of C+1 prompt tokens (1 without a prefill function), so
        // both functions are specialised. Never engine.warmup(): it warms query length 256,
        // which a static [1,1] input_ids graph rejects with a fatal error.
        _ = try await Generation.run(
            engine: engine,
            prompt: Array(repeating: AppConfig.warmupTokenId, count: plan.warmupLength(for: prefillFunction)),
            rule: DecodeRule(maxNewTokens: 1, stopAtEOS: false, eosTokenIds: []))
        try await engine.reset(to: 0)

        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return LoadedEngine(
            engine: engine, bundle: bundle, loadSeconds: seconds, cold: cold, prefillFunction: prefillFunction,
            vision: vision, audio: audio, unified: unified, kv: kv, keepAlive: keepAlive)
    }
}

/// One greedy generation with per-token timestamps, ended by a DecodeRule (the bench's:
/// exactly N tokens, no EOS stop, like the oracle; chat's: stop at EOS).
struct Generation: Sendable {
    var tokenIds: [Int32] = []
    var tokenTimes: [Double] = []  // seconds since the request, one per generated token

    /// "prefill X tok/s · decode Y tok/s" for the chat's status line, each rate only when it was measured
    /// (tokens and a non-zero time: prefill up to the first token, decode the tokens after it); nil when
    /// neither was.
    func rates(promptTokens: Int) -> String? {
        guard let first = tokenTimes.first, let last = tokenTimes.last else { return nil }
        var parts: [String] = []
        if promptTokens > 0 && first > 0 {
            parts.append(String(format: "prefill %.1f tok/s", Double(promptTokens) / first))
        }
        if tokenIds.count > 1 && last > first {
            parts.append(String(format: "decode %.1f tok/s", Double(tokenIds.count - 1) / (last - first)))
        }
        return parts.isEmpty ? nil : parts.joined(separator: " · ")
    }

    static func run(
        engine: any InferenceEngine, prompt: [Int32], rule: DecodeRule,
        onToken: (@Sendable (Int32) -> Void)? = nil
    ) async throws -> Generation {
        var result = Generation()
        guard rule.maxNewTokens > 0 else { return result }
        let start = ContinuousClock.now
        let sequence = try await engine.generate(
            with: prompt, samplingConfiguration: .greedy,
            inferenceOptions: InferenceOptions(maxTokens: rule.maxNewTokens))
        for try await output in sequence {
            let elapsed = ContinuousClock.now - start
            result.tokenIds.append(output.tokenId)
            result.tokenTimes.append(
                Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            onToken?(output.tokenId)
            if rule.shouldStop(after: output.tokenId, count: result.tokenIds.count) {
                break
            }
        }
        return result
    }
}
