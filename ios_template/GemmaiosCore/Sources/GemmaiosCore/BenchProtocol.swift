import Foundation

/// The bench protocol's platform-independent parts (issue 16): thermal tracking, sustained-mode
/// tok/s sampling and the launch / sample records. The app feeds them ProcessInfo's thermal
/// state and the engine's token times; `swift test` drives them with made-up clocks.

/// Thermal states in rising severity, as the transcript spells them (ProcessInfo.ThermalState).
public enum ThermalStates {
    public static let ordered = ["nominal", "fair", "serious", "critical"]

    public static func severity(_ state: String) -> Int { ordered.firstIndex(of: state) ?? 0 }
}

/// The thermal state at start, its peak and its latest value; `observe` says when it changed
/// (the bench then writes a thermal record).
public final class ThermalTracker: @unchecked Sendable {
    private let lock = NSLock()
    public private(set) var start: String
    private var _current: String
    private var _peak: String

    public init(start: String) {
        self.start = start
        _current = start
        _peak = start
    }

    public var current: String { lock.withLock { _current } }
    public var peak: String { lock.withLock { _peak } }

    /// Records `state`; true when it differs from the last one seen.
    @discardableResult
    public func observe(_ state: String) -> Bool {
        lock.withLock {
            guard state != _current else { return false }
            _current = state
            if ThermalStates.severity(state) > ThermalStates.severity(_peak) { _peak = state }
            return true
        }
    }
}

/// One sustained-mode sample: tokens decoded in the interval ending at `t` (seconds since launch).
public struct SustainedSample: Equatable, Sendable {
    public var t: Double
    public var intervalSeconds: Double
    public var tokens: Int

    public var tokensPerSecond: Double { intervalSeconds > 0 ? Double(tokens) / intervalSeconds : 0 }

    public func record(thermalState: String, launch: Int) -> [String: Any] {
        [
            "type": Contract.sampleRecord, "t": t, "interval_s": intervalSeconds, "tokens": tokens,
            "tok_s": tokensPerSecond, "thermal_state": thermalState, "launch": launch,
        ]
    }
}

/// Sustained mode: counts decoded tokens into fixed intervals from `start` and ends after
/// `duration` seconds. Time between generations (the next prompt's prefill) counts as time,
/// so the rate is what a user streaming text for that long would see.
public final class SustainedMeter {
    public let start: Double
    public let duration: Double
    public let interval: Double
    private var intervalStart: Double
    private var tokens = 0
    public private(set) var totalTokens = 0
    public private(set) var samples: [SustainedSample] = []

    public init(start: Double, duration: Double, interval: Double) {
        self.start = start
        self.duration = duration
        self.interval = max(interval, 0.001)
        intervalStart = start
    }

    public var end: Double { start + duration }

    /// Whether decoding should go on at time `now`.
    public func running(at now: Double) -> Bool { now < end }

    /// A token decoded at `time`; returns the samples for every interval that closed before it.
    @discardableResult
    public func token(at time: Double) -> [SustainedSample] {
        let closed = close(upTo: time)
        tokens += 1
        totalTokens += 1
        return closed
    }

    /// Closes the intervals that ended before `time` (idle ones as zero-token samples).
    public func close(upTo time: Double) -> [SustainedSample] {
        var out: [SustainedSample] = []
        while time >= intervalStart + interval && intervalStart + interval <= end + 1e-9 {
            out.append(SustainedSample(t: intervalStart + interval, intervalSeconds: interval, tokens: tokens))
            intervalStart += interval
            tokens = 0
        }
        samples += out
        return out
    }

    /// At the end: the remaining full intervals and a last partial one (if it holds any time).
    public func finish(at time: Double) -> [SustainedSample] {
        var out = close(upTo: min(time, end))
        let last = min(time, end) - intervalStart
        if last > 1e-6 {
            let partial = SustainedSample(t: intervalStart + last, intervalSeconds: last, tokens: tokens)
            out.append(partial)
            samples.append(partial)
            intervalStart += last
            tokens = 0
        }
        return out
    }
}

/// The launch and launch_end records that open and close each launch of a run.
public enum LaunchRecords {
    public static func opening(settings: LaunchSettings, thermalState: String, batteryLevel: Double,
                               batteryState: String, secondsSinceProcessStart: Double) -> [String: Any] {
        [
            "type": Contract.launchRecord, "index": settings.launchIndex, "kind": settings.launchKind,
            "first_trial": settings.firstTrial, "trials": settings.trials, "launches": settings.launches,
            "duration_s": settings.durationSeconds, "thermal_state": thermalState,
            "battery_level": batteryLevel, "battery_state": batteryState,
            "seconds_since_launch": secondsSinceProcessStart,
        ]
    }

    public static func closing(settings: LaunchSettings, thermal: ThermalTracker, batteryLevel: Double,
                               batteryState: String, secondsSinceProcessStart: Double) -> [String: Any] {
        [
            "type": Contract.launchEndRecord, "index": settings.launchIndex, "thermal_state": thermal.current,
            "thermal_start": thermal.start, "thermal_peak": thermal.peak,
            "battery_level": batteryLevel, "battery_state": batteryState,
            "seconds_since_launch": secondsSinceProcessStart,
        ]
    }
}
