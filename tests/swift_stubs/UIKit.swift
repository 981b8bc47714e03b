// Declaration-only stand-in for the little of Apple's UIKit the app's non-UI files call (Objective-C classes;
// identifiers `c:objc(…)` written by the naming convention, not read from a page; counted apart by the
// identifier check). The SwiftUI/PhotosUI views are not type-checked.
@_exported import Foundation

// c:objc(cs)UIApplication
@MainActor open class UIApplication {
    // c:objc(cs)UIApplication(cpy)sharedApplication
    public static var shared: UIApplication { fatalError() }
    // c:objc(cs)UIApplication(py)idleTimerDisabled
    open var isIdleTimerDisabled: Bool { get { fatalError() } set {} }
    // c:@T@UIApplicationLaunchOptionsKey
    public struct LaunchOptionsKey: Hashable, Sendable {
        public init(rawValue: String) { fatalError() }
    }
    // c:@UIApplicationProtectedDataDidBecomeAvailable
    public nonisolated static var protectedDataDidBecomeAvailableNotification: NSNotification.Name { fatalError() }
}

// c:objc(pl)UIApplicationDelegate (its requirements are optional Objective-C methods: none declared here)
@MainActor public protocol UIApplicationDelegate: NSObjectProtocol {}

// c:objc(cs)UIDevice
@MainActor open class UIDevice {
    // c:objc(cs)UIDevice(cpy)currentDevice
    public static var current: UIDevice { fatalError() }
    // c:objc(cs)UIDevice(py)name
    open var name: String { fatalError() }
    // c:objc(cs)UIDevice(py)systemVersion
    open var systemVersion: String { fatalError() }
    // c:objc(cs)UIDevice(py)batteryMonitoringEnabled
    open var isBatteryMonitoringEnabled: Bool { get { fatalError() } set {} }
    // c:objc(cs)UIDevice(py)batteryLevel
    open var batteryLevel: Float { fatalError() }
    // c:objc(cs)UIDevice(py)batteryState
    open var batteryState: UIDevice.BatteryState { fatalError() }
    // c:@E@UIDeviceBatteryState
    public enum BatteryState: Int, Sendable {
        case unknown = 0
        case unplugged = 1
        case charging = 2
        case full = 3
    }
}
