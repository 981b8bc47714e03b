// Declaration-only stand-in for Apple's os (signposts, OSLog, the unfair lock); no page consulted, so no
// identifiers are recorded here (the C ones are named for reference). Built as the Swift overlay
// of the empty clang module in os_clang/ (so `import os.signpost` resolves as on Apple).
@_exported import os
import Foundation

// c:objc(cs)OS_os_log
public final class OSLog: @unchecked Sendable {
    // (no page consulted: identifier unrecorded)
    public init(subsystem: String, category: String) { fatalError() }
}

// (no page consulted: identifier unrecorded)
public struct OSSignpostID: Sendable {
    // (no page consulted: identifier unrecorded)
    public init(log: OSLog) { fatalError() }
    // (no page consulted: identifier unrecorded)
    public static let exclusive = OSSignpostID(log: OSLog(subsystem: "", category: ""))
}

// (no page consulted: identifier unrecorded)
public struct OSSignpostType: Sendable {
    public static let event = OSSignpostType()
    public static let begin = OSSignpostType()
    public static let end = OSSignpostType()
}

// (no page consulted: identifier unrecorded)
public func os_signpost(_ type: OSSignpostType, dso: UnsafeRawPointer = #dsohandle, log: OSLog, name: StaticString,
                        signpostID: OSSignpostID = .exclusive) { fatalError() }
// (no page consulted: identifier unrecorded)
public func os_signpost(_ type: OSSignpostType, dso: UnsafeRawPointer = #dsohandle, log: OSLog, name: StaticString,
                        signpostID: OSSignpostID = .exclusive, _ format: StaticString,
                        _ arguments: any CVarArg...) { fatalError() }

// (no page consulted: identifier unrecorded)
public struct OSAllocatedUnfairLock<State>: @unchecked Sendable {
    // (no page consulted: identifier unrecorded)
    public init(initialState: State) { fatalError() }
    // (no page consulted: identifier unrecorded)
    public func withLock<R>(_ body: @Sendable (inout State) throws -> R) rethrows -> R where R: Sendable { fatalError() }
}

// c:@F@os_proc_available_memory
public func os_proc_available_memory() -> Int { fatalError() }
