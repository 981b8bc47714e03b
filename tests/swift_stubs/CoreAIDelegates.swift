// Declaration-only stand-in for Apple's CoreAIDelegates (re-exported by CoreAI); see CoreAIRuntime.swift.
import CoreAIRuntime
import Foundation

// s:15CoreAIDelegates15ComputeUnitKindO
public enum ComputeUnitKind: Hashable, Sendable {
    // s:15CoreAIDelegates15ComputeUnitKindO3cpuyA2CmF
    case cpu
    // (no page found: identifier unrecorded)
    case gpu
    // s:15CoreAIDelegates15ComputeUnitKindO12neuralEngineyA2CmF
    case neuralEngine
}

// s:15CoreAIDelegates21SpecializationOptionsV
public struct SpecializationOptions: Hashable, Sendable {
    // s:15CoreAIDelegates21SpecializationOptionsV7defaultACvpZ
    public static var `default`: SpecializationOptions { fatalError() }
    // s:15CoreAIDelegates21SpecializationOptionsV7cpuOnlyACvpZ
    public static var cpuOnly: SpecializationOptions { fatalError() }
    // s:15CoreAIDelegates21SpecializationOptionsV24preferredComputeUnitKindAcA0fgH0O_tcfc
    public init(preferredComputeUnitKind: ComputeUnitKind) { fatalError() }
    // (no page found: identifier unrecorded)
    public var expectFrequentReshapes: Bool { get { fatalError() } set {} }
}

// s:15CoreAIDelegates12AIModelCacheC
public final class AIModelCache: @unchecked Sendable {
    // s:15CoreAIDelegates12AIModelCacheC7defaultACvpZ
    public static var `default`: AIModelCache { fatalError() }
    // s:15CoreAIDelegates12AIModelCacheC13deleteEntries3fory10Foundation3URLV_tKF
    public final func deleteEntries(for modelURL: URL) throws { fatalError() }
    // s:15CoreAIDelegates12AIModelCacheC5model3for7options0A9AIRuntime0C0VSg10Foundation3URLV_AA21SpecializationOptionsVtKF
    public final func model(for modelURL: URL, options: SpecializationOptions) throws -> AIModel? { fatalError() }
}

extension AIModel {
    // s:13CoreAIRuntime7AIModelV0A11AIDelegatesE10contentsOf7optionsAC10Foundation3URLV_AD21SpecializationOptionsVtYaKcfc
    public init(contentsOf modelURL: URL, options: SpecializationOptions = .default) async throws { fatalError() }
    // s:13CoreAIRuntime7AIModelV0A11AIDelegatesE12loadFunction5namedAA09InferenceF0VSgSS_tKF
    public func loadFunction(named functionName: String) throws -> InferenceFunction? { fatalError() }
}
