/// Switches read at launch from arguments (`-gemmaios-bench`) or the environment
/// (`GEMMAIOS_BENCH=1`), so devicectl / pymobiledevice3 can start a bench run unattended.
/// Every name comes from `Contract`.
public struct LaunchSettings: Sendable, Equatable {
    public var bench = false
    public var trials: Int
    public var runId: String?
    public var udid = ""
    /// Remove Library/Caches/coreai-cache before engine creation: recovers from partial or
    /// stale GPU specializations; the next load re-specializes cold.
    public var clearSpecCache = false
    /// Prefill through `main` only, even when the bundle has a prefill function (one build, A/B).
    public var prefillOff = false
    /// Bench: alternate the prefill function on (even trials) and off (odd trials) in one run.
    public var abPrefill = false

    public init(arguments: [String], environment: [String: String], defaultTrials: Int) {
        func flag(_ argument: String, _ env: String) -> Bool {
            arguments.contains(argument) || Contract.trueValues.contains(environment[env]?.lowercased() ?? "")
        }
        func value(_ argument: String, _ env: String) -> String? {
            if let index = arguments.firstIndex(of: argument), index + 1 < arguments.count {
                return arguments[index + 1]
            }
            return environment[env]
        }
        trials = defaultTrials
        bench = flag(Contract.benchArgument, Contract.benchEnv)
        clearSpecCache = flag(Contract.clearSpecCacheArgument, Contract.clearSpecCacheEnv)
        prefillOff = flag(Contract.prefillOffArgument, Contract.prefillOffEnv)
        abPrefill = flag(Contract.abPrefillArgument, Contract.abPrefillEnv)
        if let text = value(Contract.trialsArgument, Contract.trialsEnv), let n = Int(text), n > 0 { trials = n }
        runId = value(Contract.runIdArgument, Contract.runIdEnv)
        udid = value(Contract.udidArgument, Contract.udidEnv) ?? ""
    }

    /// The run id to use: the given one when it can name a file, else nil (make a new one).
    public var usableRunId: String? {
        guard let runId, !runId.isEmpty, !runId.contains("/"), runId != ".", runId != ".." else { return nil }
        return runId
    }
}
