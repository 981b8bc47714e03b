// Declaration-only stand-in for swift-transformers' Tokenizers (huggingface/swift-transformers, not Apple's:
// no developer.apple.com identifiers). Signatures as in its public source, Sources/Tokenizers/Tokenizer.swift;
// only what the engine and the app call.
import Foundation

public typealias Message = [String: any Sendable]
public typealias ToolSpec = [String: any Sendable]

public enum TokenizerError: Error {
    case missingChatTemplate
    case chatTemplate(String)
}

public protocol Tokenizer: Sendable {
    func encode(text: String) -> [Int]
    func encode(text: String, addSpecialTokens: Bool) -> [Int]
    func decode(tokens: [Int]) -> String
    func decode(tokens: [Int], skipSpecialTokens: Bool) -> String
    func convertTokenToId(_ token: String) -> Int?
    func convertIdToToken(_ id: Int) -> String?
    var bosToken: String? { get }
    var bosTokenId: Int? { get }
    var eosToken: String? { get }
    var eosTokenId: Int? { get }
    var unknownToken: String? { get }
    var unknownTokenId: Int? { get }
    func applyChatTemplate(messages: [Message]) throws -> [Int]
    func applyChatTemplate(messages: [Message], tools: [ToolSpec]?) throws -> [Int]
    func applyChatTemplate(messages: [Message], tools: [ToolSpec]?, additionalContext: [String: any Sendable]?) throws -> [Int]
}

public struct AutoTokenizer {}
extension AutoTokenizer {
    // (the source's `hubApi: HubApi = .shared` parameter is left out: nothing here passes one)
    public static func from(modelFolder: URL) async throws -> any Tokenizer { fatalError() }
    public static func from(pretrained model: String) async throws -> any Tokenizer { fatalError() }
}
