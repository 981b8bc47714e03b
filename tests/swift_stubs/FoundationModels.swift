// Declaration-only stand-in for Apple's FoundationModels: the names the engine's declarations mention
// (CoreAILanguageModel's FoundationModels bridge, which the app does not use). Requirements are not
// declared: only the patched files' bodies are type-checked, and they call none.
import Foundation

// s:16FoundationModels13LanguageModelP
public protocol LanguageModel: Sendable {}
// s:16FoundationModels21LanguageModelExecutorP
public protocol LanguageModelExecutor: Sendable {}
// s:16FoundationModels38LanguageModelExecutorGenerationChannelV
public struct LanguageModelExecutorGenerationChannel: Sendable {}
// no page consulted: LanguageModelExecutorGenerationRequest, LanguageModelCapabilities, Transcript,
// GenerationSchema, GenerationOptions (identifiers unrecorded)
public struct LanguageModelExecutorGenerationRequest: Sendable {}
public struct LanguageModelCapabilities: Sendable {
    public struct Capability: Hashable, Sendable {}
    public init(_ capabilities: [Capability]) { fatalError() }
}
public struct Transcript: Sendable {
    public struct Entry: Sendable {}
    public struct Segment: Sendable {}
    public struct ToolDefinition: Sendable {}
}
public struct GenerationSchema: Sendable {}
public struct GenerationOptions: Sendable {}
