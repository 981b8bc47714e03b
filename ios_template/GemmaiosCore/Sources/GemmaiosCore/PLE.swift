import Foundation
#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum PLEError: Error, LocalizedError, Equatable {
    case missing(String)
    case wrongSize(String, expected: Int, actual: Int)
    case mapFailed(String, Int32)
    case badToken(Int32, vocabSize: Int)
    case destinationSize(String, expected: Int, actual: Int)
    case bufferAllocation(String, Int)

    public var errorDescription: String? {
        switch self {
        case .missing(let path):
            return "PLE table \((path as NSString).lastPathComponent) is missing (expected at \(path)); "
                + "push the payload with `gemmaios deploy` or rebuild the app"
        case .wrongSize(let path, let expected, let actual):
            return "\((path as NSString).lastPathComponent) has \(actual) bytes, the bundle needs \(expected); "
                + "re-run `gemmaios build` and re-deploy"
        case .mapFailed(let path, let code):
            return "mmap of \((path as NSString).lastPathComponent) failed (errno \(code))"
        case .badToken(let id, let vocab):
            return "token id \(id) has no PLE row (the table has 0..<\(vocab); ids >= \(vocab) take the pad row, "
                + "negative ids none); the prompt's ids do not match this bundle"
        case .destinationSize(let input, let expected, let actual):
            return "the engine's \(input) buffer has \(actual) bytes, the PLE row needs exactly \(expected); "
                + "the bundle and the tables do not match (re-run `gemmaios build`)"
        case .bufferAllocation(let name, let bytes):
            return "could not allocate a \(bytes)-byte buffer for \(name) (memory limit?)"
        }
    }
}

/// Table geometry: int8 [V, L*D] rows, float32 [V] scales, fp16 [1,1,L,D] per token.
public struct PLEShape: Sendable, Equatable {
    public let vocabSize: Int
    public let layers: Int
    public let dim: Int
    /// The row ids >= V (image soft tokens after the id splice) take: HF's pad row. 0 is Gemma 4's
    /// pad_token_id; image bundles name theirs in metadata (ImageInputConfig.padTokenId).
    public let padTokenId: Int32

    public init(vocabSize: Int, layers: Int, dim: Int, padTokenId: Int32 = 0) {
        self.vocabSize = vocabSize
        self.layers = layers
        self.dim = dim
        self.padTokenId = padTokenId
    }

    /// The table row token `id` reads (contract `ple_row`): its own, or the pad row for ids >= V
    /// (image soft tokens after the splice; HF's get_per_layer_inputs sees pad_token_id there);
    /// nil for a negative id or a pad id outside the table.
    public func tableRow(for id: Int32) -> Int? {
        guard id >= 0 else { return nil }
        let row = Int(id) < vocabSize ? Int(id) : Int(padTokenId)
        return row >= 0 && row < vocabSize ? row : nil
    }

    public var rowLength: Int { layers * dim }
    public var tableBytes: Int { vocabSize * rowLength }
    public var scaleBytes: Int { vocabSize * MemoryLayout<Float>.size }
    /// What `ple_tokens` [1,1,L,D] fp16 holds for one token.
    public var tokenBytes: Int { rowLength * MemoryLayout<Float16>.size }
    /// sqrt(D) as the tables step applies it (`np.float32(math.sqrt(D))`).
    public var rowScale: Float { Float(Double(dim).squareRoot()) }
}

/// A read-only memory map of a whole file of a known size; unmapped when released.
public final class MappedFile: @unchecked Sendable {
    public let pointer: UnsafeRawPointer
    public let length: Int

    public init(url: URL, expectedLength: Int) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { throw PLEError.missing(url.path) }
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw PLEError.mapFailed(url.path, errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw PLEError.mapFailed(url.path, errno) }
        guard Int(info.st_size) == expectedLength else {
            throw PLEError.wrongSize(url.path, expected: expectedLength, actual: Int(info.st_size))
        }
        guard expectedLength > 0 else { throw PLEError.wrongSize(url.path, expected: 1, actual: 0) }
        guard let base = mmap(nil, expectedLength, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw PLEError.mapFailed(url.path, errno)
        }
        pointer = UnsafeRawPointer(base)
        length = expectedLength
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: pointer), length) }
}

/// `provider` bundles: token v's `ple_tokens` row is fp16(i8[v] * scale[v] * sqrt(D))
/// (docs/contracts.md), gathered from memory-mapped tables; ids >= V (image soft tokens)
/// gather the pad row (`PLEShape.tableRow`).
public final class PLERowGatherer: @unchecked Sendable {
    public let shape: PLEShape
    private let table: MappedFile
    private let scales: MappedFile

    public init(paths: PayloadPaths, shape: PLEShape) throws {
        self.shape = shape
        table = try MappedFile(url: paths.tableI8, expectedLength: shape.tableBytes)
        scales = try MappedFile(url: paths.tableScale, expectedLength: shape.scaleBytes)
    }

    /// Writes token `id`'s row into `destination`, which must hold exactly one fp16 row.
    public func gather(tokenId id: Int32, into destination: UnsafeMutableRawBufferPointer) throws {
        guard let index = shape.tableRow(for: id) else { throw PLEError.badToken(id, vocabSize: shape.vocabSize) }
        guard destination.count == shape.tokenBytes else {
            throw PLEError.destinationSize(Contract.pleTokensInput, expected: shape.tokenBytes, actual: destination.count)
        }
        let n = shape.rowLength
        let row = table.pointer.advanced(by: index * n).assumingMemoryBound(to: Int8.self)
        let factor = scales.pointer.assumingMemoryBound(to: Float.self)[index] * shape.rowScale
        let out = destination.bindMemory(to: Float16.self)
        for j in 0..<n {
            out[j] = Float16(Float(row[j]) * factor)
        }
    }

    /// Convenience for tests and tools: the fp16 bytes of one token's row.
    public func row(tokenId id: Int32) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: shape.tokenBytes)
        try bytes.withUnsafeMutableBytes { try gather(tokenId: id, into: $0) }
        return bytes
    }
}

/// `tbl` bundles: the table and scales copied once into owned buffers the engine binds
/// (owned beats a file-backed no-copy buffer, which iOS re-makes resident on every encode).
public enum PLETableLoader {
    /// Copies `url` (exactly `length` bytes) into `destination` (`capacity` bytes) in 64 MB slices.
    public static func copy(_ url: URL, length: Int, into destination: UnsafeMutableRawPointer, capacity: Int) throws {
        guard capacity == length else {
            throw PLEError.destinationSize(url.lastPathComponent, expected: length, actual: capacity)
        }
        let mapped = try MappedFile(url: url, expectedLength: length)
        let chunk = 64 << 20
        var offset = 0
        while offset < length {
            let n = min(chunk, length - offset)
            destination.advanced(by: offset).copyMemory(from: mapped.pointer.advanced(by: offset), byteCount: n)
            offset += n
        }
    }
}
