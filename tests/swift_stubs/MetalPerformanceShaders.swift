// Declaration-only stand-in for Apple's MetalPerformanceShaders: the names the engine's declarations
// mention (Objective-C / C; identifiers `c:…` written by the
// naming convention, not read from a page; counted apart by the identifier check).
@_exported import Metal

// c:@E@MPSDataType
public struct MPSDataType: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}
// c:objc(cs)MPSNDArrayIdentity
open class MPSNDArrayIdentity: @unchecked Sendable {}
