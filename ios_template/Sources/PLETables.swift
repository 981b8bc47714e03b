import CoreAILanguageModels
import Foundation
import Metal

enum PLETableError: LocalizedError {
    case missing(URL)
    case wrongSize(URL, expected: Int, actual: Int)
    case mapFailed(URL, Int32)
    case bufferAllocation(String, Int)
    case badToken(Int32)

    var errorDescription: String? {
        switch self {
        case .missing(let url):
            return "PLE table \(url.lastPathComponent) is missing (expected at \(url.path)); push the tables with `gemmaios deploy`"
        case .wrongSize(let url, let expected, let actual):
            return "\(url.lastPathComponent) has \(actual) bytes, the bundle needs \(expected); re-run `gemmaios build` and re-deploy"
        case .mapFailed(let url, let errno):
            return "mmap of \(url.lastPathComponent) failed (errno \(errno))"
        case .bufferAllocation(let name, let bytes):
            return "could not allocate a \(bytes)-byte Metal buffer for \(name) (memory limit?)"
        case .badToken(let id):
            return "token id \(id) is outside the PLE table"
        }
    }
}

/// A read-only memory map of a whole file; unmapped when released.
final class MappedFile: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    let length: Int

    init(url: URL, expectedLength: Int) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { throw PLETableError.missing(url) }
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw PLETableError.mapFailed(url, errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw PLETableError.mapFailed(url, errno) }
        guard Int(info.st_size) == expectedLength else {
            throw PLETableError.wrongSize(url, expected: expectedLength, actual: Int(info.st_size))
        }
        guard let base = mmap(nil, expectedLength, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw PLETableError.mapFailed(url, errno)
        }
        pointer = UnsafeRawPointer(base)
        length = expectedLength
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: pointer), length) }
}

/// `provider` bundles: fills `ple_tokens [1,1,L,D]` fp16 for one token per engine step.
///
/// Row v of the int8 table times scale[v] times sqrt(D) is HF's per-layer input for token v
/// (docs/contracts.md); the graph does everything after that.
final class PLETokenProvider: @unchecked Sendable {
    let table: MappedFile
    let scales: MappedFile
    let rowLength: Int
    let vocabSize: Int
    let rowScale: Float

    init(directory: URL, vocabSize: Int, layers: Int, dim: Int) throws {
        self.vocabSize = vocabSize
        rowLength = layers * dim
        rowScale = Float(dim).squareRoot()
        table = try MappedFile(
            url: directory.appending(path: AppConfig.pleTableFile), expectedLength: vocabSize * layers * dim)
        scales = try MappedFile(
            url: directory.appending(path: AppConfig.pleScaleFile),
            expectedLength: vocabSize * MemoryLayout<Float>.size)
    }

    /// Writes token `id`'s row into `destination` as fp16 (exactly rowLength values).
    func gather(tokenId id: Int32, into destination: UnsafeMutableRawBufferPointer) throws {
        guard id >= 0, Int(id) < vocabSize else { throw PLETableError.badToken(id) }
        let row = table.pointer.advanced(by: Int(id) * rowLength).assumingMemoryBound(to: Int8.self)
        let scale = scales.pointer.assumingMemoryBound(to: Float.self)[Int(id)] * rowScale
        let out = destination.bindMemory(to: Float16.self)
        for j in 0..<min(rowLength, out.count) {
            out[j] = Float16(Float(row[j]) * scale)
        }
    }

    /// The engine hook (patch 0002): only `ple_tokens` is filled here.
    var engineProvider: PerTokenInputProvider {
        { [self] name, tokenId, _, destination in
            guard name == AppConfig.pleTokensInput else { return }
            try gather(tokenId: tokenId, into: destination)
        }
    }
}

/// `tbl` bundles: the table and scales read once into owned shared-storage buffers (owned
/// beats a file-backed no-copy buffer, which iOS re-makes resident on every encode).
final class PLEStaticTables: @unchecked Sendable {
    let table: MTLBuffer
    let scales: MTLBuffer

    init(directory: URL, device: MTLDevice, vocabSize: Int, layers: Int, dim: Int) throws {
        table = try Self.load(directory.appending(path: AppConfig.pleTableFile),
                              bytes: vocabSize * layers * dim, device: device)
        scales = try Self.load(directory.appending(path: AppConfig.pleScaleFile),
                               bytes: vocabSize * MemoryLayout<Float>.size, device: device)
    }

    var engineBuffers: [String: StaticInputBuffer] {
        [AppConfig.pleTableInput: StaticInputBuffer(table), AppConfig.pleScaleInput: StaticInputBuffer(scales)]
    }

    private static func load(_ url: URL, bytes: Int, device: MTLDevice) throws -> MTLBuffer {
        let mapped = try MappedFile(url: url, expectedLength: bytes)
        guard let buffer = device.makeBuffer(length: bytes, options: .storageModeShared) else {
            throw PLETableError.bufferAllocation(url.lastPathComponent, bytes)
        }
        // Copy in 64 MB slices so the file's pages can be dropped as we go.
        let chunk = 64 << 20
        var offset = 0
        while offset < bytes {
            let n = min(chunk, bytes - offset)
            buffer.contents().advanced(by: offset).copyMemory(from: mapped.pointer.advanced(by: offset), byteCount: n)
            offset += n
        }
        return buffer
    }
}
