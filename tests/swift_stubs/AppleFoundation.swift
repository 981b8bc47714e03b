// What `import Foundation` gives on Apple platforms and Linux's Foundation lacks: Darwin (re-exported by
// Foundation on Apple) and the Foundation API missing from swift-corelibs-foundation that our code calls.
// Imported implicitly into every type-checked file (see test_swift_typecheck.py); no identifiers.
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
}

// Combine's ObservableObject and Published, which Foundation re-exports on Apple platforms (typealiases to
// Combine's): declared here in their simplest form.
public protocol ObservableObject: AnyObject {}
@propertyWrapper
public struct Published<Value> {
    public init(wrappedValue: Value) { fatalError() }
    public var wrappedValue: Value { get { fatalError() } set {} }
}
