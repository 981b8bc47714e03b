import CoreAILanguageModels
import Foundation
import GemmaiosCore
import Metal

/// `provider` bundles: fills `ple_tokens [1,1,L,D]` fp16 for one token per engine step from
/// the memory-mapped tables (GemmaiosCore's gather; it throws when the engine's buffer is not
/// exactly one row).
final class PLETokenProvider: @unchecked Sendable {
    let gatherer: PLERowGatherer

    init(paths: PayloadPaths, shape: PLEShape) throws {
        gatherer = try PLERowGatherer(paths: paths, shape: shape)
    }

    /// The engine hook (patch 0002): only `ple_tokens` is filled here.
    var engineProvider: PerTokenInputProvider {
        { [gatherer] name, tokenId, _, destination in
            guard name == Contract.pleTokensInput else { return }
            try gatherer.gather(tokenId: tokenId, into: destination)
        }
    }
}

/// `tbl` bundles: the table and scales read once into owned shared-storage buffers (owned
/// beats a file-backed no-copy buffer, which iOS re-makes resident on every encode).
final class PLEStaticTables: @unchecked Sendable {
    let table: MTLBuffer
    let scales: MTLBuffer

    init(paths: PayloadPaths, device: MTLDevice, shape: PLEShape) throws {
        table = try Self.load(paths.tableI8, bytes: shape.tableBytes, device: device)
        scales = try Self.load(paths.tableScale, bytes: shape.scaleBytes, device: device)
    }

    var engineBuffers: [String: StaticInputBuffer] {
        [Contract.pleTableInput: StaticInputBuffer(table), Contract.pleScaleInput: StaticInputBuffer(scales)]
    }

    private static func load(_ url: URL, bytes: Int, device: MTLDevice) throws -> MTLBuffer {
        guard let buffer = device.makeBuffer(length: bytes, options: .storageModeShared) else {
            throw PLEError.bufferAllocation(url.lastPathComponent, bytes)
        }
        try PLETableLoader.copy(url, length: bytes, into: buffer.contents(), capacity: buffer.length)
        return buffer
    }
}
