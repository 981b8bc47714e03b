import CoreAI
import CoreAILanguageModels
import CoreAIShared
import CoreGraphics
import Foundation
import GemmaiosCore
import Metal

enum VisionEncoderError: LocalizedError {
    case noVisionAsset(String)
    case unexpectedGraph(String)
    case unsupportedScalarType(String)
    case bufferAllocation(Int)
    case drawFailed(Int, Int)

    var errorDescription: String? {
        switch self {
        case .noVisionAsset(let why):
            return "this bundle has no usable vision asset (\(why)); build an image-capable bundle "
                + "(E2B/E4B with the vision step) or chat in text"
        case .unexpectedGraph(let why):
            return "the vision asset's graph is not the static-grid one this app feeds (\(why)); re-run `gemmaios build`"
        case .unsupportedScalarType(let type):
            return "the vision asset returns \(type) embeddings; this app copies float16 or float32"
        case .bufferAllocation(let bytes):
            return "could not allocate the \(bytes)-byte \(Contract.imageEmbedsInput) buffer (memory limit?)"
        case .drawFailed(let w, let h):
            return "could not draw the \(w)x\(h) picture into an RGB buffer"
        }
    }
}

/// The picture as 8-bit RGB, the input GemmaiosCore's preprocessing takes: CoreGraphics
/// decodes and colour-manages (sRGB), and draws into RGBX so no alpha premultiplies the colours.
enum PictureDecoding {
    static func rgb8(_ image: CGImage) throws -> RGB8Image {
        let w = image.width, h = image.height
        guard let space = CGColorSpace(name: CGColorSpace.sRGB),
              let context = CGContext(data: nil, width: w, height: h, bitsPerComponent: 8, bytesPerRow: 4 * w,
                                      space: space, bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue),
              let data = context.data
        else { throw VisionEncoderError.drawFailed(w, h) }
        context.draw(image, in: CGRect(x: 0, y: 0, width: w, height: h))
        let rgbx = data.bindMemory(to: UInt8.self, capacity: 4 * w * h)
        var pixels = [UInt8](repeating: 0, count: 3 * w * h)
        for i in 0..<(w * h) {
            pixels[3 * i] = rgbx[4 * i]
            pixels[3 * i + 1] = rgbx[4 * i + 1]
            pixels[3 * i + 2] = rgbx[4 * i + 2]
        }
        return try RGB8Image(width: w, height: h, pixels: pixels)
    }
}

/// The bundle's vision asset (metadata.json `gemmaios.vision.asset`): vision tower + 3x3
/// pooling + projector over the static padded patch grid, one `main` function taking
/// `pixel_values` [1, P, 3*p*p] and `pixel_position_ids` [1, P, 2], returning `image_embeds`
/// [N, hidden] (contract vision block). Its output is copied into an owned buffer the decoder's
/// `main` binds once at load as its static `image_embeds` input (patch 0001), so each new
/// picture only rewrites the contents. Provider-mode bundles only on iPhone (the in-graph table
/// gather with the splice hit the per-encode scratch ceiling).
final class VisionEncoder: @unchecked Sendable {
    let config: ImageInputConfig
    let embeds: MTLBuffer
    private let function: InferenceFunction
    private let descriptor: InferenceFunctionDescriptor
    private let model: PreparedModel

    /// nil when the bundle is text-only (no `gemmaios.vision` in its metadata). `minimumBytes`: the
    /// soft-token rows `main` takes when an audio asset shares them (its budget may be the larger).
    static func load(bundle: URL, metadata: Data, device: MTLDevice, minimumBytes: Int = 0) async throws -> VisionEncoder? {
        guard let config = try ImageInputConfig.from(metadata: metadata) else { return nil }
        let asset = bundle.appendingPathComponent(config.asset)
        guard FileManager.default.fileExists(atPath: asset.path) else {
            throw VisionEncoderError.noVisionAsset("\(config.asset) is missing from the bundle folder")
        }
        return try await VisionEncoder(config: config, asset: asset, device: device, minimumBytes: minimumBytes)
    }

    init(config: ImageInputConfig, asset: URL, device: MTLDevice, minimumBytes: Int = 0) async throws {
        self.config = config
        model = try await PreparedModel.prepare(at: asset)
        let name = Contract.mainFunction
        guard let descriptor = model.model.functionDescriptor(for: name),
              let function = try model.model.loadFunction(named: name)
        else { throw VisionEncoderError.noVisionAsset("no \(name) function in \(asset.lastPathComponent)") }
        self.descriptor = descriptor
        self.function = function
        let expected = [Contract.visionPixelsInput, Contract.visionPositionsInput]
        guard Set(descriptor.inputNames) == Set(expected), descriptor.outputNames == [Contract.visionOutput],
              case .ndArray(let out) = descriptor.outputDescriptor(of: Contract.visionOutput)
        else {
            throw VisionEncoderError.unexpectedGraph("inputs \(descriptor.inputNames), outputs \(descriptor.outputNames); "
                + "expected \(expected) → \(Contract.visionOutput)")
        }
        let elementBytes: Int
        switch out.scalarType {
        case .float16: elementBytes = 2
        case .float32: elementBytes = 4
        default: throw VisionEncoderError.unsupportedScalarType("\(out.scalarType)")
        }
        let bytes = max(out.shape.reduce(1) { $0 * max($1, 1) } * elementBytes, minimumBytes)
        guard let buffer = device.makeBuffer(length: bytes, options: .storageModeShared) else {
            throw VisionEncoderError.bufferAllocation(bytes)
        }
        memset(buffer.contents(), 0, bytes)  // zeros: what `main` reads when a prompt has no image
        embeds = buffer
    }

    /// What EngineOptions.staticInputBuffers gets for `main`.
    var engineBuffers: [String: StaticInputBuffer] { [Contract.imageEmbedsInput: StaticInputBuffer(embeds)] }

    /// Preprocesses `picture` (GemmaiosCore, HF's processor step for step), runs the vision
    /// asset into `image_embeds`, and returns the ids the engine runs for `promptIds` (which
    /// holds the image placeholder): expanded, soft tokens rewritten to V + k.
    func encode(_ picture: RGB8Image, promptIds: [Int32]) async throws -> [Int32] {
        let (pre, ids) = try config.prepare(picture, promptIds: promptIds)
        let pixelInput = Contract.visionPixelsInput, positionInput = Contract.visionPositionsInput
        let output = Contract.visionOutput
        guard case .ndArray(let pixelDesc) = descriptor.inputDescriptor(of: pixelInput),
              case .ndArray(let positionDesc) = descriptor.inputDescriptor(of: positionInput),
              case .ndArray(let outDesc) = descriptor.outputDescriptor(of: output)
        else { throw VisionEncoderError.unexpectedGraph("the vision asset's descriptors are not arrays") }
        let grid = config.geometry.maxPatches
        var pixelArray = NDArray(descriptor: pixelDesc.resolvingDynamicDimensions([1, grid, config.geometry.patchLength]))
        if pixelDesc.scalarType == .float16 {
            fillNDArray(&pixelArray, as: Float16.self, with: pre.pixelValues.map { Float16($0) })
        } else {
            fillNDArray(&pixelArray, as: Float.self, with: pre.pixelValues)
        }
        var positionArray = NDArray(descriptor: positionDesc.resolvingDynamicDimensions([1, grid, 2]))
        if positionDesc.scalarType == .int64 {
            fillNDArray(&positionArray, as: Int64.self, with: pre.positionIds.map { Int64($0) })
        } else {
            fillNDArray(&positionArray, as: Int32.self, with: pre.positionIds)
        }
        var result = NDArray(descriptor: outDesc.resolvingDynamicDimensions(outDesc.shape.map { max($0, 1) }))
        var views = InferenceFunction.MutableViews()
        views.insert(&result, for: output)
        _ = try await function.run(inputs: [pixelInput: pixelArray, positionInput: positionArray],
                                   outputViews: consume views)
        // rows past the image's soft tokens belong to padding patches; no id points at them
        let count = outDesc.shape.reduce(1) { $0 * max($1, 1) }
        if outDesc.scalarType == .float16 {
            let values = readNDArray(result, as: Float16.self, count: count)
            values.withUnsafeBytes { embeds.contents().copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        } else {
            let values = readNDArray(result, as: Float.self, count: count)
            values.withUnsafeBytes { embeds.contents().copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        return ids
    }
}
