import Foundation

public enum TranscriptWriterError: Error, LocalizedError, Equatable {
    case afterFooter(String)
    case nothingToAppendTo(String)

    public var errorDescription: String? {
        switch self {
        case .afterFooter(let type):
            return "a \(type) record after the footer (the footer is the last line of a transcript)"
        case .nothingToAppendTo(let path):
            return "a later launch of a multi-launch run found no transcript to append to at \(path)"
        }
    }
}

/// Writes `Documents/<Contract.runsFolder>/<run_id>.jsonl` in schema `Contract.transcriptSchema`
/// (docs/contracts.md): one JSON object per line, header first, footer last. Each line is
/// flushed to disk as written, so a crash or jetsam leaves every finished record readable.
/// Once the footer is written every further record is refused: readers reject a log with a
/// line after its footer.
public final class TranscriptWriter: @unchecked Sendable {
    public static let schema = Contract.transcriptSchema
    public let url: URL
    private let handle: FileHandle
    private let lock = NSLock()
    private var finished = false

    /// `append`: a later launch of a multi-launch run continues the transcript launch 0 started
    /// (which must exist); otherwise the file starts empty.
    public init(documents: URL, runId: String, append: Bool = false) throws {
        let folder = PayloadPaths.runs(documents: documents)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        url = PayloadPaths.transcript(documents: documents, runId: runId)
        if append {
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw TranscriptWriterError.nothingToAppendTo(url.path)
            }
        } else {
            _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        }
        handle = try FileHandle(forWritingTo: url)
        if append { try handle.seekToEnd() }
    }

    /// Writes one record; a record whose type is "footer" ends the transcript.
    public func write(_ record: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        data.append(0x0A)
        try lock.withLock {
            guard !finished else { throw TranscriptWriterError.afterFooter(record["type"] as? String ?? "?") }
            try handle.write(contentsOf: data)
            try handle.synchronize()
            if record["type"] as? String == "footer" { finished = true }
        }
    }

    public var isFinished: Bool { lock.withLock { finished } }

    public func close() {
        try? handle.close()
    }

    public static func timestamp(_ date: Date = Date()) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// A run id that sorts by time and cannot contain a path separator.
    public static func newRunId(_ date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return "\(formatter.string(from: date))-\(UUID().uuidString.prefix(8))"
    }
}

/// Device facts as the transcript records them.
public enum DeviceFacts {
    /// UIDevice's battery level is a Float in 1% steps (-1 when unknown): record it as the
    /// percentage it stands for (0.81, not 0.8100000023841858).
    public static func batteryLevel(_ raw: Float) -> Double {
        raw < 0 ? -1 : (Double(raw) * 100).rounded() / 100
    }
}
