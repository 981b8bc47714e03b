// What `import Foundation` gives on Apple platforms and Linux's Foundation lacks: Darwin (re-exported by
// Foundation on Apple) and the Foundation API missing from swift-corelibs-foundation that our code calls.
// Imported implicitly into every type-checked file (see test_swift_typecheck.py); no Swift identifiers.
@_exported import Darwin
import Foundation

extension URL {
    // Foundation, iOS 16+: the app's Documents folder.
    public static var documentsDirectory: URL { fatalError() }
    // Foundation, iOS 16+: the app's Caches folder.
    public static var cachesDirectory: URL { fatalError() }
}

extension ProcessInfo {
    // Foundation: the device's thermal state (Linux Foundation has neither).
    public enum ThermalState: Int, Sendable {
        case nominal, fair, serious, critical
    }
    public var thermalState: ProcessInfo.ThermalState { fatalError() }
    // Foundation: posted when thermalState changes.
    public static var thermalStateDidChangeNotification: NSNotification.Name { fatalError() }

    // Foundation (NSProcessInfo.h), the macOS bench holds off idle sleep with these. Objective-C
    // identifiers written by the naming convention, not read from a page (counted apart).
    // c:@E@NSActivityOptions
    public struct ActivityOptions: OptionSet, Sendable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        // c:@E@NSActivityOptions@NSActivityIdleDisplaySleepDisabled
        public static let idleDisplaySleepDisabled = ActivityOptions(rawValue: 1 << 40)
        // c:@E@NSActivityOptions@NSActivityIdleSystemSleepDisabled
        public static let idleSystemSleepDisabled = ActivityOptions(rawValue: 1 << 20)
        // c:@E@NSActivityOptions@NSActivityUserInitiated
        public static let userInitiated = ActivityOptions(rawValue: 0x00FF_FFFF | (1 << 20))
    }
    // c:objc(cs)NSProcessInfo(im)beginActivityWithOptions:reason:
    public func beginActivity(options: ProcessInfo.ActivityOptions = [], reason: String) -> any NSObjectProtocol {
        fatalError()
    }
    // c:objc(cs)NSProcessInfo(im)endActivity:
    public func endActivity(_ activity: any NSObjectProtocol) { fatalError() }
}

// Combine's ObservableObject and Published, which Foundation re-exports on Apple platforms (typealiases to
// Combine's): declared here in their simplest form.
public protocol ObservableObject: AnyObject {}
@propertyWrapper
public struct Published<Value> {
    public init(wrappedValue: Value) { fatalError() }
    public var wrappedValue: Value { get { fatalError() } set {} }
}
