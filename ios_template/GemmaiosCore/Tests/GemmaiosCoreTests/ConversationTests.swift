import Foundation
import XCTest

@testable import GemmaiosCore

final class ConversationTests: XCTestCase {
    func testFeedPlanFeedsWhatTheCacheLacks() {
        XCTAssertEqual(FeedPlan(cached: [], target: [2, 5, 6]).feed, [2, 5, 6])
        let plan = FeedPlan(cached: [2, 5, 6, 7], target: [2, 5, 6, 7, 106, 8, 9])
        XCTAssertEqual(plan.keep, 4)
        XCTAssertEqual(plan.feed, [106, 8, 9])
        let rolled = FeedPlan(cached: [2, 5, 100, 7, 101, 8], target: [2, 5, 8, 106])  // a dropped reasoning channel
        XCTAssertEqual(rolled.keep, 2)
        XCTAssertEqual(rolled.feed, [8, 106])
        XCTAssertEqual(rolled.rolledBack(cached: 6), 4)
        let same = FeedPlan(cached: [2, 5, 6], target: [2, 5, 6])  // nothing new: the last token again
        XCTAssertEqual(same.keep, 2)
        XCTAssertEqual(same.feed, [6])
    }

    /// One id per word, 1 per turn marker (tests/test_chat.py's `_render_words`).
    private func words(_ messages: [ChatMessage]) -> [Int] {
        var ids = [2]
        for m in messages { ids += [1] + m.content.split(separator: " ").map(\.count) }
        return ids + [1]
    }

    func testTheOldestExchangesGoAtTheContextLimitAndTheSystemTurnStays() throws {
        var conversation = Conversation(system: "be brief")
        var turn = try conversation.prepare("one two three", budget: 4, context: 40, render: words)
        XCTAssertEqual(turn.dropped, 0)
        conversation.prefilled(turn)
        conversation.replied("four five", fedIds: [4, 4])
        turn = try conversation.prepare("six seven", budget: 4, context: 40, render: words)
        XCTAssertEqual(turn.plan.keep, turn.target.count - turn.plan.feed.count)
        conversation.prefilled(turn)
        conversation.replied("eight nine ten eleven twelve thirteen", fedIds: [5, 4])
        turn = try conversation.prepare("fourteen fifteen", budget: 8, context: 20, render: words)
        XCTAssertEqual(turn.dropped, 2)
        XCTAssertEqual(conversation.messages.map(\.content), ["fourteen fifteen"])
        XCTAssertEqual(Array(turn.target.prefix(4)), [2, 1, 2, 5])
        conversation.prefilled(turn)
        XCTAssertThrowsError(try conversation.prepare("a b c d e f g h", budget: 4, context: 12, render: words)) {
            XCTAssertEqual($0 as? ConversationError, .contextFull(needed: 14, budget: 4, context: 12))
        }
        XCTAssertEqual(conversation.messages.map(\.content), ["fourteen fifteen"])
        conversation.reset()
        XCTAssertTrue(conversation.messages.isEmpty && conversation.cached.isEmpty)
    }

    func testTheRouterKeepsTheReasoningApart() {
        var router = ReplyRouter(channelStart: 100, channelEnd: 101)
        XCTAssertEqual([100, 7, 8, 101, 9, 10].map { router.route($0) },
                       [.marker, .thought, .thought, .marker, .answer, .answer])
        XCTAssertEqual(router.thought, [7, 8])
        XCTAssertEqual(router.answer, [9, 10])
        XCTAssertEqual(ReplyRouter.thoughtText("thought\nRome.\n"), "Rome.")
    }

    /// Against the toolkit: GEMMAIOS_CHAT_VECTORS names a JSON file tests/test_chat.py writes from
    /// real conversations (the tiny model's chat template through HF, its replies through Core AI's
    /// runtime): the steps, every rendering the steps ask for, and what gemmaios.chat planned.
    func testMatchesTheToolkitsConversations() throws {
        guard let path = ProcessInfo.processInfo.environment["GEMMAIOS_CHAT_VECTORS"], !path.isEmpty else {
            throw XCTSkip("GEMMAIOS_CHAT_VECTORS is not set (tests/test_chat.py sets it)")
        }
        let root = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        let scenarios = try XCTUnwrap(root["scenarios"] as? [[String: Any]])
        XCTAssertFalse(scenarios.isEmpty)
        var checkedTurns = 0
        for scenario in scenarios {
            let name = scenario["name"] as? String ?? "?"
            let table = try XCTUnwrap(scenario["render"] as? [String: [Int]], name)
            let steps = try XCTUnwrap(scenario["steps"] as? [[String: Any]], name)
            var conversation = Conversation(system: scenario["system"] as? String)
            for (index, step) in steps.enumerated() {
                let label = "\(name) step \(index)"
                switch step["op"] as? String {
                case "ask":
                    let expected = try XCTUnwrap(step["expect"] as? [String: Any], label)
                    let render: ([ChatMessage]) throws -> [Int] = { messages in
                        let key = messages.map { "\($0.role)\u{1F}\($0.content)" }.joined(separator: "\u{1E}")
                        return try XCTUnwrap(table[key], "\(label): no rendering for \(key.debugDescription)")
                    }
                    do {
                        let turn = try conversation.prepare(
                            try XCTUnwrap(step["text"] as? String), budget: try XCTUnwrap(step["budget"] as? Int),
                            context: try XCTUnwrap(step["context"] as? Int), render: render)
                        let before = conversation.cached.count
                        conversation.prefilled(turn)
                        XCTAssertEqual(turn.target, expected["target"] as? [Int], label)
                        XCTAssertEqual(turn.plan.keep, expected["keep"] as? Int, label)
                        XCTAssertEqual(turn.plan.feed, expected["feed"] as? [Int], label)
                        XCTAssertEqual(turn.dropped, expected["dropped"] as? Int, label)
                        XCTAssertEqual(turn.plan.rolledBack(cached: before), expected["rolled_back"] as? Int, label)
                    } catch let error as ConversationError {
                        guard case .contextFull(let needed, _, _) = error else { throw error }
                        XCTAssertEqual(needed, expected["context_full"] as? Int, label)
                    }
                    checkedTurns += 1
                case "reply":
                    let generated = try XCTUnwrap(step["generated"] as? [Int], label)
                    var router = ReplyRouter(channelStart: step["channel_start"] as? Int,
                                             channelEnd: step["channel_end"] as? Int)
                    for token in try XCTUnwrap(step["reply_ids"] as? [Int], label) { _ = router.route(token) }
                    XCTAssertEqual(router.thought, step["thought"] as? [Int], label)
                    XCTAssertEqual(router.answer, step["answer"] as? [Int], label)
                    conversation.replied(try XCTUnwrap(step["text"] as? String), fedIds: Array(generated.dropLast()))
                case "reset":
                    conversation.reset()
                default:
                    XCTFail("\(label): unknown step")
                }
            }
            XCTAssertEqual(conversation.cached, scenario["cached"] as? [Int], name)
        }
        XCTAssertGreaterThan(checkedTurns, 6)
    }
}
