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
    /// Start the KV cache at `Contract.kvAlternateInitialCapacity` (never binds 2048 or 4096; #124).
    public var kv384 = false
    /// Bench: alternate the KV cache's start, 256 (even trials) and 384 (odd trials), in one run.
    public var abKV = false
    /// Multi-launch runs (`gemmaios bench --cold N`): this launch's number; 0 starts the transcript,
    /// later launches append to it.
    public var launchIndex = 0
    /// Launches in the run: the last one writes the footer.
    public var launches = 1
    /// This launch is one cold trial, timed from process start (model load included).
    public var coldLaunch = false
    /// The number of this launch's first trial (trial numbers stay unique across launches).
    public var firstTrial = 0
    /// Sustained mode: after the trials, decode continuously for this many seconds (0: off).
    public var durationSeconds = 0
    /// Sustained mode: seconds between tok/s samples.
    public var sampleIntervalSeconds = Contract.sustainedSampleInterval

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
        kv384 = flag(Contract.kv384Argument, Contract.kv384Env)
        abKV = flag(Contract.abKVArgument, Contract.abKVEnv)
        if let text = value(Contract.trialsArgument, Contract.trialsEnv), let n = Int(text), n > 0 { trials = n }
        runId = value(Contract.runIdArgument, Contract.runIdEnv)
        udid = value(Contract.udidArgument, Contract.udidEnv) ?? ""
        func count(_ argument: String, _ env: String, minimum: Int) -> Int? {
            value(argument, env).flatMap { Int($0) }.flatMap { $0 >= minimum ? $0 : nil }
        }
        coldLaunch = flag(Contract.coldLaunchArgument, Contract.coldLaunchEnv)
        if coldLaunch { trials = 1 }  // a cold launch is one trial
        launches = count(Contract.launchesArgument, Contract.launchesEnv, minimum: 1) ?? 1
        launchIndex = min(count(Contract.launchIndexArgument, Contract.launchIndexEnv, minimum: 0) ?? 0, launches - 1)
        firstTrial = count(Contract.firstTrialArgument, Contract.firstTrialEnv, minimum: 0) ?? 0
        durationSeconds = count(Contract.durationArgument, Contract.durationEnv, minimum: 0) ?? 0
        sampleIntervalSeconds = count(Contract.sampleIntervalArgument, Contract.sampleIntervalEnv, minimum: 1)
            ?? Contract.sustainedSampleInterval
    }

    /// The launch's kind as the transcript's launch record names it.
    public var launchKind: String { coldLaunch ? Contract.launchKindCold : Contract.launchKindWarm }
    /// Later launches of a multi-launch run add to the transcript launch 0 started.
    public var appendsToTranscript: Bool { launchIndex > 0 }
    /// Only the run's last launch ends the transcript.
    public var writesFooter: Bool { launchIndex == launches - 1 }
    /// Whether `trial` starts the KV cache at 384 (A/B: odd trials; else `kv384`).
    public func kv384(forTrial trial: Int) -> Bool { abKV ? trial % 2 == 1 : kv384 }
    /// The trial numbers this launch runs.
    public var trialNumbers: Range<Int> { firstTrial..<(firstTrial + trials) }

    /// The run id to use: the given one when it can name a file, else nil (make a new one).
    public var usableRunId: String? {
        guard let runId, !runId.isEmpty, !runId.contains("/"), runId != ".", runId != ".." else { return nil }
        return runId
    }
}
