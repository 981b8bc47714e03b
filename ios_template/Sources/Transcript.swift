import Foundation

/// Writes `Documents/gemmaios-runs/<run_id>.jsonl` in schema gemmaios.transcript/1
/// (docs/contracts.md): one JSON object per line, header first, footer last. Each line is
/// flushed to disk as written, so a crash or jetsam leaves every finished record readable.
final class TranscriptWriter: @unchecked Sendable {
    static let schema = "gemmaios.transcript/1"
    let url: URL
    private let handle: FileHandle
    private let lock = NSLock()

    init(runId: String) throws {
        let folder = URL.documentsDirectory.appending(path: "gemmaios-runs")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        url = folder.appending(path: "\(runId).jsonl")
        FileManager.default.createFile(atPath: url.path, contents: nil)
        handle = try FileHandle(forWritingTo: url)
    }

    func write(_ record: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        data.append(0x0A)
        try lock.withLock {
            try handle.write(contentsOf: data)
            try handle.synchronize()
        }
    }

    func close() {
        try? handle.close()
    }

    static func timestamp(_ date: Date = Date()) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// A run id that sorts by time and cannot contain a path separator.
    static func newRunId() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return "\(formatter.string(from: Date()))-\(UUID().uuidString.prefix(8))"
    }
}
