// Declaration-only stand-in for Apple's CoreAIAsset (re-exported by CoreAI); see CoreAIRuntime.swift.
import Foundation

// s:11CoreAIAsset12AIModelAssetV
public struct AIModelAsset: Sendable {
    // s:11CoreAIAsset12AIModelAssetV10contentsOfAC10Foundation3URLV_tKcfc
    public init(contentsOf url: URL) throws { fatalError() }
    // s:11CoreAIAsset12AIModelAssetV7summary19includingStatisticsAC7SummaryVSgSb_tKF
    public func summary(includingStatistics: Bool) throws -> AIModelAsset.Summary? { fatalError() }

    // s:11CoreAIAsset12AIModelAssetV7SummaryV
    public struct Summary: Sendable {
        // s:11CoreAIAsset12AIModelAssetV7SummaryV9functionsSayAC18FunctionDescriptorVGvp
        public var functions: [AIModelAsset.FunctionDescriptor] { fatalError() }
    }
    // s:11CoreAIAsset12AIModelAssetV18FunctionDescriptorV
    public struct FunctionDescriptor: Hashable, Sendable {
        // (no page found: identifier unrecorded)
        public var name: String { fatalError() }
    }
}
