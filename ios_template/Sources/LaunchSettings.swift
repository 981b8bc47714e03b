import Foundation

/// Switches read at launch from arguments (`-gemmaios-bench`) or the environment
/// (`GEMMAIOS_BENCH=1`), so `devicectl`/pymobiledevice3 can start a bench run unattended.
struct LaunchSettings: Sendable {
    var bench = false
    var trials = AppConfig.defaultTrials
    var maxNewTokens = AppConfig.maxNewTokens
    var runId: String?
    var udid = ""
    /// Remove Library/Caches/coreai-cache before engine creation: recovers from partial or
    /// stale GPU specializations (engine create failing with ENOENT or "Unable to use cached
    /// specializations"); the next load re-specializes cold.
    var clearSpecCache = false

    static let current = LaunchSettings(
        arguments: ProcessInfo.processInfo.arguments,
        environment: ProcessInfo.processInfo.environment)

    init(arguments: [String], environment: [String: String]) {
        func flag(_ name: String, _ env: String) -> Bool {
            arguments.contains("-gemmaios-\(name)") || ["1", "true", "yes"].contains(environment[env]?.lowercased() ?? "")
        }
        func value(_ name: String, _ env: String) -> String? {
            if let i = arguments.firstIndex(of: "-gemmaios-\(name)"), i + 1 < arguments.count {
                return arguments[i + 1]
            }
            return environment[env]
        }
        bench = flag("bench", "GEMMAIOS_BENCH")
        clearSpecCache = flag("clear-spec-cache", "GEMMAIOS_CLEAR_SPEC_CACHE")
        if let text = value("trials", "GEMMAIOS_TRIALS"), let n = Int(text), n > 0 { trials = n }
        if let text = value("max-new-tokens", "GEMMAIOS_MAX_NEW_TOKENS"), let n = Int(text), n > 0 {
            maxNewTokens = n
        }
        runId = value("run-id", "GEMMAIOS_RUN_ID")
        udid = value("udid", "GEMMAIOS_UDID") ?? ""
    }
}
