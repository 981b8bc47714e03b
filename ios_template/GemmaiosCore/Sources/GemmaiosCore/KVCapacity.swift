/// The KV capacity the pinned engine binds, mirrored (`gemmaios.contract.kv_bound_capacity`):
/// the pipelined engine's GrowingKVCache starts at `EngineOptions.kvCacheSize` positions (default
/// `Contract.kvInitialCapacity`) and, before each generate, doubles until it holds
/// min(prompt + new tokens, maxContext). It never shrinks while the engine lives (`reset(to:)`
/// keeps the buffers), so one long prompt leaves every later prompt of that engine at the grown
/// binding.
public struct KVCapacity: Sendable, Equatable {
    public let maxContext: Int
    public let initial: Int
    public private(set) var bound: Int

    public init(maxContext: Int, initial: Int = Contract.kvInitialCapacity) {
        self.maxContext = maxContext
        self.initial = max(initial, 1)
        self.bound = self.initial
    }

    /// The candidate #124 workaround (`bench --ab-kv`): the engine starts at
    /// `Contract.kvAlternateInitialCapacity`, so it binds 384, 768, 1536, 3072, … and never 2048 or
    /// 4096; the context it serves is capped at the largest such size within the bundle's.
    public static func alternate(bundleMaxContext: Int) -> KVCapacity {
        var capacity = Contract.kvAlternateInitialCapacity
        while capacity * 2 <= bundleMaxContext { capacity *= 2 }
        return KVCapacity(maxContext: min(capacity, bundleMaxContext), initial: Contract.kvAlternateInitialCapacity)
    }

    /// `Contract.kvGrowthDoubling` (upstream's start) or `Contract.kvGrowthAlternate` (the 384 start).
    public var growth: String {
        initial == Contract.kvAlternateInitialCapacity ? Contract.kvGrowthAlternate : Contract.kvGrowthDoubling
    }

    /// `EngineOptions.kvCacheSize` for this start (nil: the engine's default).
    public var engineKVCacheSize: Int? { initial == Contract.kvInitialCapacity ? nil : initial }

    /// The capacity `needed` positions would bind, from `current`.
    public static func grown(from current: Int, needed: Int, maxContext: Int) -> Int {
        let target = min(needed, maxContext)
        var capacity = max(current, 1)
        while capacity < target { capacity *= 2 }
        return capacity
    }

    /// Records a generate of `promptTokens` + `maxNewTokens` and returns the binding it runs at.
    @discardableResult
    public mutating func bind(promptTokens: Int, maxNewTokens: Int) -> Int {
        bound = Self.grown(from: bound, needed: promptTokens + maxNewTokens, maxContext: maxContext)
        return bound
    }
}

/// The iOS guard for apple/coreai-models#124: on iPhone 17 Pro / iOS 27 beta an on-device
/// compiled pipelined decode bundle whose KV state is bound at 2048 or 4096 positions decodes
/// wrong tokens from the first one; <= 1024 is token-exact, macOS is correct at every size.
public enum KVGuard {
    public struct Warning: Sendable, Equatable {
        /// `Contract.kvFaultWarning`: the name the transcript and the report use.
        public let name: String
        public let capacity: Int

        public var message: String {
            "\(name): the KV cache is bound at \(capacity) positions; on iOS 27 beta an on-device compiled "
                + "pipelined bundle decodes wrong tokens at 2048 or 4096 (\(Contract.kvFaultIssue)); stay within "
                + "\(Contract.iosKVSafeCapacity) tokens of context until a phone run shows it fixed"
        }
    }

    /// The warning for a binding of `capacity` positions on `platform` ("iOS", "macOS", ...), or nil.
    public static func warning(capacity: Int, platform: String) -> Warning? {
        guard platform == "iOS", capacity > Contract.iosKVSafeCapacity else { return nil }
        return Warning(name: Contract.kvFaultWarning, capacity: capacity)
    }

    /// The platform name the transcript records and the guard checks.
    public static var currentPlatform: String {
        #if os(iOS)
            return "iOS"
        #elseif os(macOS)
            return "macOS"
        #else
            return "Linux"
        #endif
    }
}
