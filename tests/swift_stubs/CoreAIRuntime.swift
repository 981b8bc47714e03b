// Declaration-only stand-in for Apple's CoreAIRuntime (re-exported by CoreAI), for type-checking on Linux
// (tests/test_swift_typecheck.py). Each declaration is taken from its developer.apple.com/documentation/coreai
// page; the line `// s:…` before it is that page's symbol identifier, checked against this file's compiled
// symbols; a declaration whose page was not found says so and carries none. No bodies that do anything:
// every body traps.
import Foundation
import Metal

// s:13CoreAIRuntime7NDArrayV
public struct NDArray: @unchecked Sendable {
    // s:13CoreAIRuntime7NDArrayV10ScalarTypeO
    // Cases: the pages of float32 and bfloat16 were found (identifiers below); the others are named as
    // upstream's exhaustive switch over the type names them (KVCache+CoreAI.swift), no page consulted.
    public enum ScalarType: Hashable, Sendable {
        case float16
        // s:13CoreAIRuntime7NDArrayV10ScalarTypeO8bfloat16yA2EmF
        case bfloat16
        // s:13CoreAIRuntime7NDArrayV10ScalarTypeO7float32yA2EmF
        case float32
        case float64, float8e5m2, float8e4m3fn, float8e8m0fn, float4e2m1fn, cfloat16, cfloat32, cfloat64
        case bool, int8, int16, int32, int64, int128, uint8, uint16, uint32, uint64, uint128
        case int2, int3, int4, int5, int6, int7, uint1, uint2, uint3, uint4, uint5, uint6, uint7
    }
    // s:13CoreAIRuntime7NDArrayV10descriptorAcA0C10DescriptorV_tcfc
    public init(descriptor: consuming NDArrayDescriptor) { fatalError() }
    // listed on NDArray's page (Topics); its own page not found: identifier unrecorded
    public init(shape: [Int], scalarType: NDArray.ScalarType) { fatalError() }
    // s:13CoreAIRuntime7NDArrayV5shape10scalarType7stridesACSaySiG_AC06ScalarF0OAGtcfc
    public init(shape: [Int], scalarType: NDArray.ScalarType, strides: [Int]) { fatalError() }
    // s:13CoreAIRuntime7NDArrayV5shapeSaySiGvp
    public var shape: [Int] { fatalError() }
    // s:13CoreAIRuntime7NDArrayV7stridesSaySiGvp
    public var strides: [Int] { fatalError() }
    // (its page, scalarType-swift.property, found without its identifier: unrecorded)
    public var scalarType: NDArray.ScalarType { fatalError() }
    // s:13CoreAIRuntime7NDArrayV4view2asAC4ViewVy_xGxm_ts15BitwiseCopyableRzlF
    @_lifetime(borrow self)
    public func view<T>(as type: T.Type = T.self) -> NDArray.View<T> where T: BitwiseCopyable { fatalError() }
    // s:13CoreAIRuntime7NDArrayV11mutableView2asAC07MutableE0Vy_xGxm_ts15BitwiseCopyableRzlF
    @_lifetime(&self)
    public mutating func mutableView<T>(as type: T.Type = T.self) -> NDArray.MutableView<T> where T: BitwiseCopyable { fatalError() }
    // s:13CoreAIRuntime7NDArrayV14mutableRawViewAC07MutableeF0VyF
    @_lifetime(&self)
    public mutating func mutableRawView() -> NDArray.MutableRawView { fatalError() }

    // s:13CoreAIRuntime7NDArrayV4ViewV
    public struct View<Element>: ~Escapable where Element: BitwiseCopyable {
        // s:13CoreAIRuntime7NDArrayV4ViewV17withUnsafePointeryqd__qd__SPyxG_s4SpanVySiGAJtqd_0_YKXEqd_0_YKs5ErrorRd_0_r0_lF
        public func withUnsafePointer<R, E>(_ body: (UnsafePointer<Element>, Span<Int>, Span<Int>) throws(E) -> R) throws(E) -> R where E: Error { fatalError() }
    }
    // s:13CoreAIRuntime7NDArrayV11MutableViewV
    public struct MutableView<Element>: ~Copyable, ~Escapable where Element: BitwiseCopyable {
        // (no page found: identifier unrecorded; the counterpart of View.withUnsafePointer(_:))
        public func withUnsafeMutablePointer<R, E>(_ body: (UnsafeMutablePointer<Element>, Span<Int>, Span<Int>) throws(E) -> R) throws(E) -> R where E: Error { fatalError() }
        // (no page found: identifier unrecorded)
        public mutating func copyElements(fromContentsOf source: some Collection<Element>) { fatalError() }
    }
    // (no page found: identifier unrecorded)
    public struct InterleaveLayout: Hashable, Sendable {}
    // s:13CoreAIRuntime7NDArrayV7RawViewV (the prefix of its scalarType page's identifier)
    public struct RawView: ~Escapable {}
    // s:13CoreAIRuntime7NDArrayV14MutableRawViewV
    public struct MutableRawView: ~Copyable, ~Escapable {
        // s:13CoreAIRuntime7NDArrayV14MutableRawViewV4view2asAC0dF0Vy_xGxm_ts15BitwiseCopyableRzlF
        @_lifetime(copy self)
        public consuming func view<T>(as type: T.Type = T.self) -> NDArray.MutableView<T> where T: BitwiseCopyable { fatalError() }
    }
}

extension NDArray: InferenceValue.MutableViewRepresentable {
    @_lifetime(&self)
    public mutating func mutableView() -> InferenceValue.MutableView { fatalError() }
}

// s:13CoreAIRuntime17NDArrayDescriptorV
public struct NDArrayDescriptor: Hashable, Sendable {
    // s:13CoreAIRuntime17NDArrayDescriptorV5shapeSaySiGvp
    public var shape: [Int] { fatalError() }
    // s:13CoreAIRuntime17NDArrayDescriptorV10scalarTypeAA0C0V06ScalarF0Ovp
    public var scalarType: NDArray.ScalarType { fatalError() }
    // s:13CoreAIRuntime17NDArrayDescriptorV16preferredStridesSaySiGvp
    public var preferredStrides: [Int] { fatalError() }
    // s:13CoreAIRuntime17NDArrayDescriptorV16minimumByteCountSivp
    public var minimumByteCount: Int { fatalError() }
    // s:13CoreAIRuntime17NDArrayDescriptorV26resolvingDynamicDimensionsyACSaySiGF
    public func resolvingDynamicDimensions(_ newShape: [Int]) -> NDArrayDescriptor { fatalError() }
}

// s:13CoreAIRuntime14InferenceValueV (the prefix of InferenceValue.Descriptor's page identifier)
public struct InferenceValue: ~Copyable {
    // s:13CoreAIRuntime14InferenceValueV11MutableViewV
    public struct MutableView: ~Copyable, ~Escapable {}
    // s:13CoreAIRuntime14InferenceValueV24MutableViewRepresentableP
    public protocol MutableViewRepresentable: ~Copyable {
        // s:13CoreAIRuntime14InferenceValueV24MutableViewRepresentableP07mutableF0AC0eF0VyF
        @_lifetime(&self)
        mutating func mutableView() -> InferenceValue.MutableView
    }
    // s:13CoreAIRuntime14InferenceValueV10DescriptorO
    public enum Descriptor: Hashable, Sendable {
        // s:13CoreAIRuntime14InferenceValueV10DescriptorO7ndArrayyAeA07NDArrayE0VcAEmF
        case ndArray(NDArrayDescriptor)
    }
}

// s:13CoreAIRuntime27InferenceFunctionDescriptorV
public struct InferenceFunctionDescriptor: Sendable {
    // s:13CoreAIRuntime27InferenceFunctionDescriptorV10inputNamesSaySSGvp
    public var inputNames: [String] { fatalError() }
    // s:13CoreAIRuntime27InferenceFunctionDescriptorV11outputNamesSaySSGvp
    public var outputNames: [String] { fatalError() }
    // s:13CoreAIRuntime27InferenceFunctionDescriptorV10stateNamesSaySSGvp
    public var stateNames: [String] { fatalError() }
    // s:13CoreAIRuntime27InferenceFunctionDescriptorV05inputE02ofAA0C5ValueV0E0OSgSS_tF
    public func inputDescriptor(of name: String) -> InferenceValue.Descriptor? { fatalError() }
    // s:13CoreAIRuntime27InferenceFunctionDescriptorV06outputE02ofAA0C5ValueV0E0OSgSS_tF
    public func outputDescriptor(of name: String) -> InferenceValue.Descriptor? { fatalError() }
    // (no page found: identifier unrecorded)
    public func stateDescriptor(of name: String) -> InferenceValue.Descriptor? { fatalError() }
}

// s:13CoreAIRuntime13ComputeStreamC
public final class ComputeStream: @unchecked Sendable {
    // s:13CoreAIRuntime13ComputeStreamC12commandQueueACSo010MTLCommandF0_p_tcfc
    public init(commandQueue: any MTLCommandQueue) { fatalError() }
    // s:13CoreAIRuntime13ComputeStreamC20currentWorkCompletedyyYaF
    public func currentWorkCompleted() async { fatalError() }
}

// s:13CoreAIRuntime17InferenceFunctionV
public struct InferenceFunction: @unchecked Sendable {
    // s:13CoreAIRuntime17InferenceFunctionV10descriptorAA0cD10DescriptorVvp
    public let descriptor: InferenceFunctionDescriptor

    // s:13CoreAIRuntime17InferenceFunctionV10AsyncValueC
    public final class AsyncValue: @unchecked Sendable {
        // s:13CoreAIRuntime17InferenceFunctionV10AsyncValueCyAeA7NDArrayVcfc
        public init(_ ndArray: consuming NDArray) { fatalError() }
        // (no page found: identifier unrecorded; as AsyncMutableValue's initializer below)
        @unsafe public init(unsafeBuffer: consuming any MTLBuffer, byteOffset: Int = 0, scalarType: NDArray.ScalarType, shape: [Int], strides: [Int] = [], interleaveLayout: NDArray.InterleaveLayout? = nil) { fatalError() }
    }
    // s:13CoreAIRuntime17InferenceFunctionV17AsyncMutableValueV
    public struct AsyncMutableValue: ~Copyable {
        // s:13CoreAIRuntime17InferenceFunctionV17AsyncMutableValueV12unsafeBuffer10byteOffset10scalarType5shape7strides16interleaveLayoutAESo9MTLBuffer_p_SiAA7NDArrayV06ScalarM0OSaySiGAqN010InterleaveQ0VSgtcfc
        @unsafe public init(unsafeBuffer: consuming any MTLBuffer, byteOffset: Int = 0, scalarType: NDArray.ScalarType, shape: [Int], strides: [Int] = [], interleaveLayout: NDArray.InterleaveLayout? = nil) { fatalError() }
    }
    // s:13CoreAIRuntime17InferenceFunctionV17AsyncMutableViewsV
    public struct AsyncMutableViews: ~Copyable, ~Escapable {
        // (no page found: identifier unrecorded)
        @_lifetime(immortal)
        public init() { fatalError() }
        // s:13CoreAIRuntime17InferenceFunctionV17AsyncMutableViewsV6insert_3foryAC0eF5ValueVz_SStF
        @_lifetime(self: copy self, &mutableValue)
        public mutating func insert(_ mutableValue: inout InferenceFunction.AsyncMutableValue, for name: String) { fatalError() }
    }
    // s:13CoreAIRuntime17InferenceFunctionV12MutableViewsV
    public struct MutableViews: ~Copyable, ~Escapable {
        // (no page found: identifier unrecorded)
        @_lifetime(immortal)
        public init() { fatalError() }
        // s:13CoreAIRuntime17InferenceFunctionV12MutableViewsV6insert_3foryxz_SStAA0C5ValueV0E17ViewRepresentableRzRi_zlF
        @_lifetime(self: copy self, &value)
        public mutating func insert(_ value: inout some InferenceValue.MutableViewRepresentable & ~Copyable, for name: String) { fatalError() }
        // s:13CoreAIRuntime17InferenceFunctionV12MutableViewsV6insert_3foryAA7NDArrayV0E7RawViewVn_SStF
        @_lifetime(self: copy self, copy mutableRawView)
        public mutating func insert(_ mutableRawView: consuming NDArray.MutableRawView, for name: String) { fatalError() }
        // s:13CoreAIRuntime17InferenceFunctionV12MutableViewsV6insert_3foryAA7NDArrayV0E4ViewVy_xGn_SSts15BitwiseCopyableRzlF
        @_lifetime(self: copy self, copy mutableView)
        public mutating func insert<Element>(_ mutableView: consuming NDArray.MutableView<Element>, for name: String) where Element: BitwiseCopyable { fatalError() }
    }
    // (no page found: identifier unrecorded)
    public struct Outputs: ~Copyable {}

    // s:13CoreAIRuntime17InferenceFunctionV3run6inputs6states11outputViewsAC7OutputsVSDySSAA7NDArrayVG_AC07MutableI0VnANntYaKF
    public func run(inputs: [String: NDArray], states: consuming InferenceFunction.MutableViews = MutableViews(), outputViews: consuming InferenceFunction.MutableViews = MutableViews()) async throws -> InferenceFunction.Outputs { fatalError() }
    // s:13CoreAIRuntime17InferenceFunctionV6encode6inputs6states11outputViews2toSDySSAC10AsyncValueCGAK_AC0k7MutableI0VnAMnAA13ComputeStreamCtKF
    public func encode(inputs: [String: InferenceFunction.AsyncValue], states: consuming InferenceFunction.AsyncMutableViews = AsyncMutableViews(), outputViews: consuming InferenceFunction.AsyncMutableViews = AsyncMutableViews(), to stream: ComputeStream) throws -> [String: InferenceFunction.AsyncValue] { fatalError() }
}

// s:13CoreAIRuntime7AIModelV
public struct AIModel: @unchecked Sendable {
    // s:13CoreAIRuntime7AIModelV13functionNamesSaySSGvp
    public var functionNames: [String] { fatalError() }
    // s:13CoreAIRuntime7AIModelV18functionDescriptor3forAA017InferenceFunctionE0VSgSS_tF
    public func functionDescriptor(for functionName: String) -> InferenceFunctionDescriptor? { fatalError() }
}
