/// The decode rules (Contract.benchStopsAtEOS / chatStopsAtEOS): the bench decodes exactly
/// `maxNewTokens` per prompt with no EOS stop, like the oracle; chat ends a reply at EOS.
public struct DecodeRule: Sendable, Equatable {
    public let maxNewTokens: Int
    public let stopAtEOS: Bool
    public let eosTokenIds: Set<Int32>

    public init(maxNewTokens: Int, stopAtEOS: Bool, eosTokenIds: Set<Int32>) {
        self.maxNewTokens = maxNewTokens
        self.stopAtEOS = stopAtEOS
        self.eosTokenIds = eosTokenIds
    }

    public static func bench(maxNewTokens: Int, eosTokenIds: Set<Int32>) -> DecodeRule {
        DecodeRule(maxNewTokens: maxNewTokens, stopAtEOS: Contract.benchStopsAtEOS, eosTokenIds: eosTokenIds)
    }

    public static func chat(eosTokenIds: Set<Int32>) -> DecodeRule {
        DecodeRule(maxNewTokens: Contract.chatMaxNewTokens, stopAtEOS: Contract.chatStopsAtEOS, eosTokenIds: eosTokenIds)
    }

    /// Whether generation ends once `tokenId` became the `count`-th generated token.
    public func shouldStop(after tokenId: Int32, count: Int) -> Bool {
        count >= maxNewTokens || (stopAtEOS && eosTokenIds.contains(tokenId))
    }

    /// Applies the rule to a stream of tokens (what the engine produced, in order).
    public func take<S: Sequence>(_ tokens: S) -> [Int32] where S.Element == Int32 {
        var out: [Int32] = []
        guard maxNewTokens > 0 else { return out }
        for token in tokens {
            out.append(token)
            if shouldStop(after: token, count: out.count) { break }
        }
        return out
    }
}

/// Token-level comparison of two generations (determinism across trials, or against a reference).
public enum TokenComparison {
    /// The first index where `a` and `b` differ (a length difference counts at the shorter end), or nil.
    public static func firstDivergence(_ a: [Int32], _ b: [Int32]) -> Int? {
        for (index, pair) in zip(a, b).enumerated() where pair.0 != pair.1 {
            return index
        }
        return a.count == b.count ? nil : min(a.count, b.count)
    }
}

/// Prompt ids as the oracle builds them: the chat template's ids with exactly one BOS first
/// (templates render `<bos>` themselves; tokenizers may add another).
public enum ChatPrompt {
    public static func withSingleBOS(_ ids: [Int], bos: Int) -> [Int] {
        var body = ids[...]
        while body.first == bos { body = body.dropFirst() }
        return [bos] + body
    }
}
