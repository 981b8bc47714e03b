// Declaration-only stand-in for Apple's AVFoundation: what CoreAIShared's video frame extractor calls.
// Objective-C classes (identifiers `c:objc(cs)…`, written by the naming convention, not read from a page)
// and Swift overlay API (no page consulted: unrecorded).
import CoreGraphics
@_exported import CoreMedia
@_exported import Foundation

// c:@T@AVMediaType
public struct AVMediaType: Hashable, Sendable {
    // c:@AVMediaTypeVideo
    public static var video: AVMediaType { fatalError() }
}

// Swift overlay API below without a recorded identifier (no page consulted): AVPartialAsyncProperty,
// AVAsyncProperty, load(_:), loadTracks(withMediaType:), images(for:).
public class AVPartialAsyncProperty<Root>: @unchecked Sendable {}
public class AVAsyncProperty<Root, Value>: AVPartialAsyncProperty<Root>, @unchecked Sendable {}
// c:objc(cs)AVAsset
open class AVAsset: @unchecked Sendable {
    public func load<T>(_ property: AVAsyncProperty<AVAsset, T>) async throws -> T { fatalError() }
    public func loadTracks(withMediaType mediaType: AVMediaType) async throws -> [AVAssetTrack] { fatalError() }
}
extension AVPartialAsyncProperty where Root == AVAsset {
    public static var duration: AVAsyncProperty<AVAsset, CMTime> { fatalError() }
}
// c:objc(cs)AVURLAsset
open class AVURLAsset: AVAsset, @unchecked Sendable {
    // c:objc(cs)AVURLAsset(im)initWithURL:options:
    public init(url URL: URL, options: [String: Any]? = nil) { fatalError() }
}
// c:objc(cs)AVAssetTrack
open class AVAssetTrack: @unchecked Sendable {
    public func load<T>(_ property: AVAsyncProperty<AVAssetTrack, T>) async throws -> T { fatalError() }
}
extension AVPartialAsyncProperty where Root == AVAssetTrack {
    public static var nominalFrameRate: AVAsyncProperty<AVAssetTrack, Float> { fatalError() }
}
// c:objc(cs)AVAssetImageGenerator
open class AVAssetImageGenerator: @unchecked Sendable {
    // c:objc(cs)AVAssetImageGenerator(im)initWithAsset:
    public init(asset: AVAsset) { fatalError() }
    // c:objc(cs)AVAssetImageGenerator(py)appliesPreferredTrackTransform
    open var appliesPreferredTrackTransform: Bool { get { fatalError() } set {} }
    // c:objc(cs)AVAssetImageGenerator(py)requestedTimeToleranceBefore
    open var requestedTimeToleranceBefore: CMTime { get { fatalError() } set {} }
    // c:objc(cs)AVAssetImageGenerator(py)requestedTimeToleranceAfter
    open var requestedTimeToleranceAfter: CMTime { get { fatalError() } set {} }
    public func images(for times: [CMTime]) -> AVAssetImageGenerator.Images { fatalError() }
    public struct Images: AsyncSequence, Sendable {
        public typealias Element = ImageResult
        public struct AsyncIterator: AsyncIteratorProtocol {
            public mutating func next() async -> ImageResult? { fatalError() }
        }
        public func makeAsyncIterator() -> AsyncIterator { fatalError() }
    }
    public struct ImageResult: Sendable {
        public var image: CGImage { get throws { fatalError() } }
    }
}
