import Foundation
import GemmaiosCore

/// The contract resolved on this app: where the payload is, and the launch switches.
enum AppRuntime {
    /// `<App>.app/<payload>` or `Documents/<payload>`, per AppConfig.bundleLocation.
    static var payload: PayloadPaths {
        PayloadPaths(location: AppConfig.bundleLocation, appBundle: Bundle.main.bundleURL,
                     documents: URL.documentsDirectory)
    }

    static var documents: URL { URL.documentsDirectory }

    static let launch = LaunchSettings(
        arguments: ProcessInfo.processInfo.arguments,
        environment: ProcessInfo.processInfo.environment,
        defaultTrials: AppConfig.defaultTrials)
}
