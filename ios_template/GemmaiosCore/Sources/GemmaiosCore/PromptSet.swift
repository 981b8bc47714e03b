import Foundation

public enum PromptSetError: Error, LocalizedError, Equatable {
    case missing(String)
    case unreadable(String, String)
    case wrongSchema(String?)
    case invalid(String)

    public var errorDescription: String? {
        switch self {
        case .missing(let path):
            return "the prompt set is missing at \(path); deploy the payload with `gemmaios deploy` or rebuild the app"
        case .unreadable(let path, let why):
            return "the prompt set \(path) cannot be read: \(why)"
        case .wrongSchema(let found):
            return "the prompt set has schema \(found ?? "none"), this app reads \(Contract.promptSetSchema); re-render the app"
        case .invalid(let why):
            return "the prompt set is invalid: \(why)"
        }
    }
}

/// The bench prompt set the toolkit renders (from the oracle): token ids, not text, so the
/// device runs exactly what the fp32 reference ran.
public struct BenchPromptSet: Codable, Sendable, Equatable {
    public struct Prompt: Codable, Sendable, Equatable {
        public let id: String
        public let promptIds: [Int32]
        /// Image prompts (issue 17): a payload-relative safetensors file whose `image` tensor
        /// (uint8 [H, W, 3]) the app preprocesses; `promptIds` then holds its placeholder.
        public let image: String?
        /// Audio prompts (issue 28): a payload-relative safetensors file whose `samples` tensor
        /// (float32 [N], 16 kHz mono) the app turns into log-mel features; `promptIds` then holds
        /// the audio placeholder.
        public let audio: String?

        public init(id: String, promptIds: [Int32], image: String? = nil, audio: String? = nil) {
            self.id = id
            self.promptIds = promptIds
            self.image = image
            self.audio = audio
        }

        enum CodingKeys: String, CodingKey {
            case id, image, audio
            case promptIds = "prompt_ids"
        }
    }

    public let schema: String?
    public let name: String
    public let sha256: String
    public let maxNewTokens: Int
    public let prompts: [Prompt]

    enum CodingKeys: String, CodingKey {
        case schema, name, sha256, prompts
        case maxNewTokens = "max_new_tokens"
    }

    public static func decode(_ data: Data) throws -> BenchPromptSet {
        let set = try JSONDecoder().decode(BenchPromptSet.self, from: data)
        guard set.schema == Contract.promptSetSchema else { throw PromptSetError.wrongSchema(set.schema) }
        guard set.maxNewTokens > 0 else { throw PromptSetError.invalid("max_new_tokens is \(set.maxNewTokens)") }
        if let empty = set.prompts.first(where: { $0.promptIds.isEmpty }) {
            throw PromptSetError.invalid("prompt \(empty.id) has no tokens")
        }
        if let both = set.prompts.first(where: { $0.image != nil && $0.audio != nil }) {
            throw PromptSetError.invalid("prompt \(both.id) names a picture and a clip; a prompt holds one or the other")
        }
        return set
    }

    /// Reads `<payload>/<Contract.promptSetFile>`.
    public static func load(from url: URL) throws -> BenchPromptSet {
        guard FileManager.default.fileExists(atPath: url.path) else { throw PromptSetError.missing(url.path) }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw PromptSetError.unreadable(url.path, error.localizedDescription)
        }
        do {
            return try decode(data)
        } catch let error as PromptSetError {
            throw error
        } catch {
            throw PromptSetError.unreadable(url.path, String(describing: error))
        }
    }
}
