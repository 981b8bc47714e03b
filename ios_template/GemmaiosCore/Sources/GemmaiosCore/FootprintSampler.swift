import Dispatch
import Foundation

/// Samples the process footprint on a timer and tracks the peak between resets.
///
/// The reader (task_info's phys_footprint on the device) and the clock are injected, so the
/// logic runs and is tested anywhere. `stop()` returns only once no sample can be delivered
/// any more: a sample in flight when it is called finishes first, and none starts after.
/// (Cancelling the timer alone let a running sample write a memory record after the
/// transcript's footer.) `onSample` must not call `stop()`.
public final class FootprintSampler: @unchecked Sendable {
    public typealias Reader = @Sendable () -> UInt64
    public typealias Clock = @Sendable () -> Double
    public typealias Sink = @Sendable (_ seconds: Double, _ bytes: UInt64) -> Void

    private let reader: Reader
    private let clock: Clock
    private let state = NSLock()  // peak
    private let delivery = NSLock()  // held while a sample is read and delivered; guards running/timer
    private var peak: UInt64 = 0
    private var running = false
    private var timer: DispatchSourceTimer?
    private var sink: Sink?

    public init(reader: @escaping Reader, clock: @escaping Clock) {
        self.reader = reader
        self.clock = clock
    }

    public func start(every seconds: Double, queue: DispatchQueue = .global(qos: .utility), onSample: @escaping Sink) {
        let source = DispatchSource.makeTimerSource(queue: queue)
        source.schedule(deadline: .now(), repeating: seconds)
        source.setEventHandler { [weak self] in self?.tick() }
        delivery.withLock {
            sink = onSample
            running = true
            timer = source
        }
        source.resume()
    }

    /// One sample: read, update the peak, deliver. Does nothing once stopped.
    public func tick() {
        delivery.withLock {
            guard running, let sink else { return }
            let bytes = reader()
            state.withLock { peak = max(peak, bytes) }
            sink(clock(), bytes)
        }
    }

    /// After this returns no sample is delivered: safe to write the footer.
    public func stop() {
        let source: DispatchSourceTimer? = delivery.withLock {
            running = false
            sink = nil
            defer { timer = nil }
            return timer
        }
        source?.cancel()
    }

    public var isRunning: Bool { delivery.withLock { running } }

    /// The peak since the last call (sampled now too), then starts a new window.
    public func takePeak() -> UInt64 {
        let now = reader()
        return state.withLock {
            let value = max(peak, now)
            peak = now
            return value
        }
    }
}
