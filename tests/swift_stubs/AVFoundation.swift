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

// ---- audio in (issue 28): what ios_template/Sources/AudioInput.swift calls. On Apple these live in
// AVFAudio, which AVFoundation re-exports. Each identifier below was read from the declaration's
// developer.apple.com/documentation/avfaudio page (`preciseIdentifier`), except where a line says
// "by the naming convention"; the declarations are the pages' Swift declarations.

// c:@T@AVAudioFrameCount (by the naming convention)
public typealias AVAudioFrameCount = UInt32
// c:@T@AVAudioFramePosition (by the naming convention)
public typealias AVAudioFramePosition = Int64
// c:@T@AVAudioChannelCount (by the naming convention)
public typealias AVAudioChannelCount = UInt32

// c:objc(cs)AVAudioFormat
open class AVAudioFormat {
    // c:objc(cs)AVAudioFormat(im)initStandardFormatWithSampleRate:channels:
    public init?(standardFormatWithSampleRate sampleRate: Double, channels: AVAudioChannelCount) { fatalError() }
    // c:objc(cs)AVAudioFormat(py)sampleRate (by the naming convention)
    open var sampleRate: Double { fatalError() }
    // c:objc(cs)AVAudioFormat(py)channelCount (by the naming convention)
    open var channelCount: AVAudioChannelCount { fatalError() }
}

// c:objc(cs)AVAudioPCMBuffer
open class AVAudioPCMBuffer {
    // c:objc(cs)AVAudioPCMBuffer(im)initWithPCMFormat:frameCapacity:
    public init?(pcmFormat format: AVAudioFormat, frameCapacity: AVAudioFrameCount) { fatalError() }
    // c:objc(cs)AVAudioPCMBuffer(py)frameLength (by the naming convention)
    open var frameLength: AVAudioFrameCount { get { fatalError() } set {} }
    // c:objc(cs)AVAudioPCMBuffer(py)floatChannelData
    open var floatChannelData: UnsafePointer<UnsafeMutablePointer<Float>>? { fatalError() }
}

// c:objc(cs)AVAudioFile
open class AVAudioFile {
    // c:objc(cs)AVAudioFile(im)initForReading:error:
    public init(forReading fileURL: URL) throws { fatalError() }
    // c:objc(cs)AVAudioFile(py)processingFormat (by the naming convention)
    open var processingFormat: AVAudioFormat { fatalError() }
    // c:objc(cs)AVAudioFile(py)length (by the naming convention)
    open var length: AVAudioFramePosition { fatalError() }
    // c:objc(cs)AVAudioFile(im)readIntoBuffer:frameCount:error:
    open func read(into buffer: AVAudioPCMBuffer, frameCount frames: AVAudioFrameCount) throws { fatalError() }
}

// c:objc(cs)AVAudioSession
open class AVAudioSession {
    // c:objc(cs)AVAudioSession(cm)sharedInstance
    open class func sharedInstance() -> AVAudioSession { fatalError() }
    // c:objc(cs)AVAudioSession(im)setCategory:mode:options:error:
    open func setCategory(_ category: AVAudioSession.Category, mode: AVAudioSession.Mode,
                          options: AVAudioSession.CategoryOptions = []) throws { fatalError() }
    // c:objc(cs)AVAudioSession(im)setActive:withOptions:error:
    open func setActive(_ active: Bool, options: AVAudioSession.SetActiveOptions = []) throws { fatalError() }
    // c:objc(cs)AVAudioSession(py)sampleRate (by the naming convention)
    open var sampleRate: Double { fatalError() }

    // c:@T@AVAudioSessionCategory (by the naming convention)
    public struct Category: Hashable, RawRepresentable, Sendable {
        public init(rawValue: String) { fatalError() }
        public var rawValue: String { fatalError() }
        // c:@AVAudioSessionCategoryRecord (by the naming convention)
        public static let record = Category(rawValue: "")
    }
    // c:@T@AVAudioSessionMode (by the naming convention)
    public struct Mode: Hashable, RawRepresentable, Sendable {
        public init(rawValue: String) { fatalError() }
        public var rawValue: String { fatalError() }
        // c:@AVAudioSessionModeDefault (by the naming convention)
        public static let `default` = Mode(rawValue: "")
    }
    // c:@E@AVAudioSessionCategoryOptions (by the naming convention)
    public struct CategoryOptions: OptionSet, Sendable {
        public init(rawValue: UInt) { fatalError() }
        public var rawValue: UInt { fatalError() }
    }
    // c:@E@AVAudioSessionSetActiveOptions
    public struct SetActiveOptions: OptionSet, Sendable {
        public init(rawValue: UInt) { fatalError() }
        public var rawValue: UInt { fatalError() }
        // c:@E@AVAudioSessionSetActiveOptions@AVAudioSessionSetActiveOptionNotifyOthersOnDeactivation
        public static var notifyOthersOnDeactivation: AVAudioSession.SetActiveOptions { fatalError() }
    }
}

// c:objc(cs)AVAudioApplication
open class AVAudioApplication {
    // c:objc(cs)AVAudioApplication(cm)requestRecordPermissionWithCompletionHandler:
    // (the page's method, `requestRecordPermission(completionHandler:)`, in its async form, as the page's
    // example calls it: `await AVAudioApplication.requestRecordPermission()`)
    open class func requestRecordPermission() async -> Bool { fatalError() }
}

// c:objc(cs)AVAudioRecorder
open class AVAudioRecorder {
    // c:objc(cs)AVAudioRecorder(im)initWithURL:format:error:
    public init(url: URL, format: AVAudioFormat) throws { fatalError() }
    // c:objc(cs)AVAudioRecorder(im)recordForDuration:
    open func record(forDuration duration: TimeInterval) -> Bool { fatalError() }
    // c:objc(cs)AVAudioRecorder(im)stop (by the naming convention)
    open func stop() { fatalError() }
    // c:objc(cs)AVAudioRecorder(py)recording (by the naming convention)
    open var isRecording: Bool { fatalError() }
}
