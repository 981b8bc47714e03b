// The CoreAI umbrella: re-exports the modules Apple's pages name (CoreAIRuntime, CoreAIDelegates, CoreAIAsset).
@_exported import CoreAIAsset
@_exported import CoreAIDelegates
@_exported import CoreAIRuntime
