import Foundation

/// One message of a chat: role "system", "user" or "assistant" and its text.
public struct ChatMessage: Sendable, Equatable {
    public let role: String
    public let content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    /// The message as a chat template takes it.
    public var dictionary: [String: String] { ["role": role, "content": content] }
}

/// What to prefill so a KV cache holding `cached` ends up holding the template's rendering:
/// `keep` ids stay, `feed` goes after them (never empty: the last fed token's logits pick the
/// first new token). The same rule as the toolkit's `gemmaios.chat.plan_feed`.
public struct FeedPlan: Sendable, Equatable {
    public let keep: Int
    public let feed: [Int]

    public init(cached: [Int], target: [Int]) {
        var keep = 0
        let limit = min(cached.count, target.count)
        while keep < limit && cached[keep] == target[keep] { keep += 1 }
        if keep == target.count { keep = max(target.count - 1, 0) }
        self.keep = keep
        feed = Array(target[keep...])
    }

    public func rolledBack(cached: Int) -> Int { cached - keep }
}

public enum ConversationError: Error, LocalizedError, Equatable {
    case contextFull(needed: Int, budget: Int, context: Int)

    public var errorDescription: String? {
        switch self {
        case .contextFull(let needed, let budget, let context):
            return "this message needs \(needed) tokens plus \(budget) for the reply, more than the context of "
                + "\(context); send a shorter message, or ask for fewer tokens per reply"
        }
    }
}

/// One user turn, planned: the whole rendering, what to feed, how many exchanges were dropped.
public struct TurnPlan: Sendable, Equatable {
    public let target: [Int]
    public let plan: FeedPlan
    public let dropped: Int
}

/// A conversation kept across turns on one KV cache — the toolkit's `gemmaios.chat.Conversation`,
/// held to it by shared vectors (tests/test_chat.py).
///
/// The cache always holds what the chat template renders for the whole conversation: each turn
/// renders it all again and feeds only what differs from the cache (normally the new turn; a
/// reasoning channel the template drops from the history is rolled back and the answer
/// prefilled). At the context limit the oldest exchanges (a user turn and its reply) are dropped
/// and the conversation read again from where it changed; a system turn always stays; a message
/// that does not fit even alone is refused and the conversation left as it was.
public struct Conversation: Sendable {
    public var system: String?
    public private(set) var messages: [ChatMessage] = []
    public private(set) var cached: [Int] = []

    public init(system: String? = nil) {
        self.system = system
    }

    public var allMessages: [ChatMessage] {
        (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + messages
    }

    /// Adds the user's `text` and plans its prefill; `budget` tokens stay free for the reply.
    public mutating func prepare(
        _ text: String, budget: Int, context: Int, render: ([ChatMessage]) throws -> [Int]
    ) throws -> TurnPlan {
        var candidate = messages + [ChatMessage(role: "user", content: text)]
        var dropped = 0
        let systemPart = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        var target: [Int]
        while true {
            target = try render(systemPart + candidate)
            if target.count + budget <= context { break }
            if candidate.count <= 1 {
                throw ConversationError.contextFull(needed: target.count, budget: budget, context: context)
            }
            candidate = candidate.count > 2 ? Array(candidate.dropFirst(2)) : [candidate[candidate.count - 1]]
            dropped += 1
        }
        messages = candidate
        return TurnPlan(target: target, plan: FeedPlan(cached: cached, target: target), dropped: dropped)
    }

    /// The plan's tokens are in the cache.
    public mutating func prefilled(_ turn: TurnPlan) {
        cached = turn.target
    }

    /// The model's reply (its full text, reasoning channel included: the template decides what the
    /// history keeps) and the generated ids that went into the cache (all but the last).
    public mutating func replied(_ text: String, fedIds: [Int]) {
        messages.append(ChatMessage(role: "assistant", content: text))
        cached += fedIds
    }

    public mutating func reset() {
        messages = []
        cached = []
    }
}

/// Routes generated tokens as they come: inside `<|channel>` … `<channel|>` to the reasoning,
/// elsewhere to the answer; the markers to neither (the toolkit's `gemmaios.chat.ReplyRouter`).
public struct ReplyRouter: Sendable {
    public enum Route: String, Sendable { case thought, answer, marker }

    public let channelStart: Int?
    public let channelEnd: Int?
    public private(set) var inside = false
    public private(set) var thought: [Int] = []
    public private(set) var answer: [Int] = []

    public init(channelStart: Int?, channelEnd: Int?) {
        self.channelStart = channelStart
        self.channelEnd = channelEnd
    }

    public mutating func route(_ token: Int) -> Route {
        if let start = channelStart, token == start {
            inside = true
            return .marker
        }
        if let end = channelEnd, token == end, inside {
            inside = false
            return .marker
        }
        if inside {
            thought.append(token)
            return .thought
        }
        answer.append(token)
        return .answer
    }

    /// The reasoning channel's text as shown: its `thought` name line removed, trimmed.
    public static func thoughtText(_ decoded: String) -> String {
        var text = Substring(decoded)
        if text.hasPrefix(Contract.chatThoughtName) { text = text.dropFirst(Contract.chatThoughtName.count) }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
