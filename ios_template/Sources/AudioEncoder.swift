import CoreAI
import CoreAILanguageModels
import CoreAIShared
import Foundation
import GemmaiosCore
import Metal

enum AudioEncoderError: LocalizedError {
    case noAudioAsset(String)
    case unexpectedGraph(String)
    case unsupportedScalarType(String)
    case bufferAllocation(Int)

    var errorDescription: String? {
        switch self {
        case .noAudioAsset(let why):
            return "this bundle has no usable audio asset (\(why)); build an audio-capable bundle "
                + "(E2B/E4B with --audio) or send text (and a picture) without the clip"
        case .unexpectedGraph(let why):
            return "the audio asset's graph is not the static-frame one this app feeds (\(why)); re-run `gemmaios build`"
        case .unsupportedScalarType(let type):
            return "the audio asset returns \(type) embeddings; this app copies float16 or float32"
        case .bufferAllocation(let bytes):
            return "could not allocate the \(bytes)-byte \(Contract.audioEmbedsInput) buffer (memory limit?)"
        }
    }
}

/// The bundle's audio asset (metadata.json `gemmaios.audio.asset`): the Conformer audio tower and
/// `embed_audio` over the static padded frame count, one `main` function taking
/// `input_features` [1, F, 128] and `input_features_mask` [1, F], returning `audio_embeds`
/// [T, hidden] (contract audio block). As `gemmaios run --audio` does on the host
/// (hostrun.BundleRunner.encode_audio): GemmaiosCore's LogMel (HF's extractor) padded to the
/// asset's length, the asset, and its rows written into the soft-token rows the decoder's `main`
/// binds once at load as its static `image_embeds` input (Contract.audioEmbedsInput: a prompt
/// holds one clip or one picture). With a vision asset too, that buffer is the VisionEncoder's.
final class AudioEncoder: @unchecked Sendable {
    let config: AudioInputConfig
    /// `main`'s soft-token rows, fp16 [embedsRows, hidden] (shared with the VisionEncoder when there is one).
    let embeds: MTLBuffer
    private let function: InferenceFunction
    private let descriptor: InferenceFunctionDescriptor
    private let model: PreparedModel

    /// nil when the bundle takes no audio (no `gemmaios.audio` in its metadata). `rows`: the
    /// soft-token buffer already bound (the vision asset's), else the encoder allocates one.
    static func load(bundle: URL, metadata: Data, device: MTLDevice, rows: MTLBuffer? = nil) async throws -> AudioEncoder? {
        guard let config = try AudioInputConfig.from(metadata: metadata) else { return nil }
        let asset = bundle.appendingPathComponent(config.asset)
        guard FileManager.default.fileExists(atPath: asset.path) else {
            throw AudioEncoderError.noAudioAsset("\(config.asset) is missing from the bundle folder")
        }
        return try await AudioEncoder(config: config, asset: asset, device: device, rows: rows)
    }

    init(config: AudioInputConfig, asset: URL, device: MTLDevice, rows: MTLBuffer?) async throws {
        self.config = config
        model = try await PreparedModel.prepare(at: asset)
        let name = Contract.mainFunction
        guard let descriptor = model.model.functionDescriptor(for: name),
              let function = try model.model.loadFunction(named: name)
        else { throw AudioEncoderError.noAudioAsset("no \(name) function in \(asset.lastPathComponent)") }
        self.descriptor = descriptor
        self.function = function
        let expected = [Contract.audioFeaturesInput, Contract.audioMaskInput]
        guard Set(descriptor.inputNames) == Set(expected), descriptor.outputNames == [Contract.audioOutput],
              case .ndArray(let out) = descriptor.outputDescriptor(of: Contract.audioOutput)
        else {
            throw AudioEncoderError.unexpectedGraph("inputs \(descriptor.inputNames), outputs \(descriptor.outputNames); "
                + "expected \(expected) → \(Contract.audioOutput)")
        }
        guard out.scalarType == .float16 || out.scalarType == .float32 else {
            throw AudioEncoderError.unsupportedScalarType("\(out.scalarType)")
        }
        let outRows = out.shape.count == 2 ? out.shape[0] : -1
        guard outRows == config.maxSoftTokens, out.shape.last == config.hiddenSize, outRows <= config.embedsRows else {
            throw AudioEncoderError.unexpectedGraph("output shape \(out.shape); the metadata says [\(config.maxSoftTokens), "
                + "\(config.hiddenSize)] within \(config.embedsRows) rows")
        }
        // main's soft-token input is fp16 [embedsRows, hidden] (contract); the rows past a clip's are never read
        let bytes = config.embedsRows * config.hiddenSize * MemoryLayout<Float16>.stride
        if let rows {
            guard rows.length >= bytes else {
                throw AudioEncoderError.unexpectedGraph("the \(Contract.audioEmbedsInput) buffer holds \(rows.length) "
                    + "bytes, \(config.embedsRows) fp16 rows of \(config.hiddenSize) need \(bytes)")
            }
            embeds = rows
        } else {
            guard let buffer = device.makeBuffer(length: bytes, options: .storageModeShared) else {
                throw AudioEncoderError.bufferAllocation(bytes)
            }
            memset(buffer.contents(), 0, bytes)  // zeros: what `main` reads when a prompt has no clip
            embeds = buffer
        }
    }

    /// What EngineOptions.staticInputBuffers gets for `main` (when no VisionEncoder binds it).
    var engineBuffers: [String: StaticInputBuffer] { [Contract.audioEmbedsInput: StaticInputBuffer(embeds)] }

    /// The clip's log-mel features (GemmaiosCore, HF's extractor) through the audio asset into the
    /// soft-token rows; returns the ids the engine runs for `promptIds` (which holds the audio
    /// placeholder): expanded to boa + audio x n + eoa, soft tokens rewritten to V + k.
    func encode(_ clip: AudioClip, promptIds: [Int32]) async throws -> [Int32] {
        try await encode(try config.prepare(clip, promptIds: promptIds))
    }

    /// The same from 16 kHz samples (a bench clip file's).
    func encode(samples: [Float], promptIds: [Int32]) async throws -> [Int32] {
        try await encode(try config.prepare(samples: samples, promptIds: promptIds))
    }

    private func encode(_ prepared: PreparedClip) async throws -> [Int32] {
        let featuresInput = Contract.audioFeaturesInput, maskInput = Contract.audioMaskInput
        let output = Contract.audioOutput
        guard case .ndArray(let featuresDesc) = descriptor.inputDescriptor(of: featuresInput),
              case .ndArray(let maskDesc) = descriptor.inputDescriptor(of: maskInput),
              case .ndArray(let outDesc) = descriptor.outputDescriptor(of: output)
        else { throw AudioEncoderError.unexpectedGraph("the audio asset's descriptors are not arrays") }
        let frames = config.maxFrames, bins = prepared.features.melBins
        var featuresArray = NDArray(descriptor: featuresDesc.resolvingDynamicDimensions([1, frames, bins]))
        if featuresDesc.scalarType == .float16 {
            fillNDArray(&featuresArray, as: Float16.self, with: prepared.features.values.map { Float16($0) })
        } else {
            fillNDArray(&featuresArray, as: Float.self, with: prepared.features.values)
        }
        var maskArray = NDArray(descriptor: maskDesc.resolvingDynamicDimensions([1, frames]))
        if maskDesc.scalarType == .int64 {
            fillNDArray(&maskArray, as: Int64.self, with: prepared.features.mask.map { $0 ? 1 : 0 })
        } else {
            fillNDArray(&maskArray, as: Int32.self, with: prepared.features.mask.map { $0 ? 1 : 0 })
        }
        var result = NDArray(descriptor: outDesc.resolvingDynamicDimensions(outDesc.shape.map { max($0, 1) }))
        var views = InferenceFunction.MutableViews()
        views.insert(&result, for: output)
        _ = try await function.run(inputs: [featuresInput: featuresArray, maskInput: maskArray],
                                   outputViews: consume views)
        // rows past the clip's soft tokens belong to padding frames; no id points at them
        let count = config.maxSoftTokens * config.hiddenSize
        let rows: [Float16] = outDesc.scalarType == .float16
            ? readNDArray(result, as: Float16.self, count: count)
            : readNDArray(result, as: Float.self, count: count).map { Float16($0) }
        rows.withUnsafeBytes { embeds.contents().copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return prepared.ids
    }
}
