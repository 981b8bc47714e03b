// Declaration-only stand-in for Apple's CoreMedia (C; identifiers `c:…` written by the naming
// convention, not read from a page; counted apart by the identifier check).
import Foundation

// c:@SA@CMTime
public struct CMTime: Sendable {
    // c:@F@CMTimeMakeWithSeconds
    public init(seconds: Double, preferredTimescale: Int32) { fatalError() }
}
// c:@F@CMTimeGetSeconds
public func CMTimeGetSeconds(_ time: CMTime) -> Float64 { fatalError() }
