import Foundation

public enum SafeTensorsError: Error, LocalizedError, Equatable {
    case malformed(String, String)
    case missingTensor(String, String)
    case wrongType(String, String, expected: String, actual: String)

    public var errorDescription: String? {
        switch self {
        case .malformed(let file, let why):
            return "\(file) is not a safetensors file (\(why)); re-run `gemmaios build` and re-deploy"
        case .missingTensor(let file, let name):
            return "\(file) has no tensor \(name); re-run `gemmaios build` and re-deploy"
        case .wrongType(let file, let name, let expected, let actual):
            return "\(file): tensor \(name) is \(actual), expected \(expected)"
        }
    }
}

/// A safetensors file (8-byte little-endian header length, JSON header, raw little-endian
/// tensors): how the oracle saves image tensors (`oracle/images/<name>.safetensors`) and how a
/// bench prompt's image payload travels. Read whole; these files are a few MB.
public struct SafeTensorsFile: Sendable {
    public struct Tensor: Sendable {
        public let dtype: String
        public let shape: [Int]
        public let bytes: Data
    }

    public let name: String
    public let tensors: [String: Tensor]

    public init(data: Data, name: String = "safetensors") throws {
        self.name = name
        guard data.count >= 8 else { throw SafeTensorsError.malformed(name, "\(data.count) bytes") }
        let n = data.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        guard n > 0, 8 + n <= data.count,
              let header = (try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n)))) as? [String: Any]
        else { throw SafeTensorsError.malformed(name, "bad header") }
        var tensors: [String: Tensor] = [:]
        for (key, value) in header where key != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2,
                  offsets[0] <= offsets[1], 8 + n + offsets[1] <= data.count
            else { throw SafeTensorsError.malformed(name, "bad entry \(key)") }
            tensors[key] = Tensor(dtype: dtype, shape: shape,
                                  bytes: data.subdata(in: (8 + n + offsets[0])..<(8 + n + offsets[1])))
        }
        self.tensors = tensors
    }

    public init(url: URL) throws {
        try self.init(data: Data(contentsOf: url), name: url.lastPathComponent)
    }

    public func tensor(_ key: String) throws -> Tensor {
        guard let t = tensors[key] else { throw SafeTensorsError.missingTensor(name, key) }
        return t
    }

    public func floats(_ key: String) throws -> [Float] {
        let t = try tensor(key)
        guard t.dtype == "F32" else { throw SafeTensorsError.wrongType(name, key, expected: "F32", actual: t.dtype) }
        return t.bytes.withUnsafeBytes { raw in
            (0..<(t.bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    public func doubles(_ key: String) throws -> [Double] {
        let t = try tensor(key)
        guard t.dtype == "F64" else { throw SafeTensorsError.wrongType(name, key, expected: "F64", actual: t.dtype) }
        return t.bytes.withUnsafeBytes { raw in
            (0..<(t.bytes.count / 8)).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
        }
    }

    /// Integer tensors (I64, I32, U8) widened to Int64.
    public func ints(_ key: String) throws -> [Int64] {
        let t = try tensor(key)
        return try t.bytes.withUnsafeBytes { raw -> [Int64] in
            switch t.dtype {
            case "I64": return (0..<(t.bytes.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            case "I32": return (0..<(t.bytes.count / 4)).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            case "U8": return raw.map { Int64($0) }
            default: throw SafeTensorsError.wrongType(name, key, expected: "I64, I32 or U8", actual: t.dtype)
            }
        }
    }

    /// The `Contract.benchImageTensor` tensor, uint8 [H, W, 3], as an RGB8 picture (a bench image prompt's file).
    public func rgbImage(_ key: String = Contract.benchImageTensor) throws -> RGB8Image {
        let t = try tensor(key)
        guard t.dtype == "U8", t.shape.count == 3, t.shape[2] == Contract.imageChannels else {
            throw SafeTensorsError.wrongType(name, key, expected: "U8 [H, W, 3]", actual: "\(t.dtype) \(t.shape)")
        }
        return try RGB8Image(width: t.shape[1], height: t.shape[0], pixels: [UInt8](t.bytes))
    }

    /// The `Contract.benchAudioTensor` tensor, float32 [N]: a bench audio prompt's clip (16 kHz mono).
    public func clipSamples(_ key: String = Contract.benchAudioTensor) throws -> [Float] {
        let t = try tensor(key)
        guard t.dtype == "F32", t.shape.count == 1 else {
            throw SafeTensorsError.wrongType(name, key, expected: "F32 [N]", actual: "\(t.dtype) \(t.shape)")
        }
        return try floats(key)
    }
}
