import Foundation
#if canImport(UIKit)
import UIKit

/// Records process start and the last unlock, which the bench writes next to its figures. iOS only: the
/// macOS app has no delegate (no data-protection unlock to observe); its App marks the launch itself.
final class AppDelegate: NSObject, UIApplicationDelegate {
    func application(
        _ application: UIApplication,
        didFinishLaunchingWithOptions launchOptions: [UIApplication.LaunchOptionsKey: Any]? = nil
    ) -> Bool {
        LaunchClock.shared.markLaunch()
        NotificationCenter.default.addObserver(
            forName: UIApplication.protectedDataDidBecomeAvailableNotification,
            object: nil, queue: .main
        ) { _ in LaunchClock.shared.markUnlock() }
        return true
    }
}
#endif

final class LaunchClock: @unchecked Sendable {
    static let shared = LaunchClock()
    private let lock = NSLock()
    private var launch = Date()
    private var unlock: Date?

    func markLaunch() { lock.withLock { launch = Date() } }
    func markUnlock() { lock.withLock { unlock = Date() } }
    var secondsSinceLaunch: Double { lock.withLock { Date().timeIntervalSince(launch) } }
    /// nil until the app has seen the device unlock (apps cannot ask for the last unlock time).
    var secondsSinceUnlock: Double? { lock.withLock { unlock.map { Date().timeIntervalSince($0) } } }
}
