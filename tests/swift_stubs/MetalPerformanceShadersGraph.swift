// Declaration-only stand-in for Apple's MetalPerformanceShadersGraph: the class names the engine's sampler
// declarations mention (Objective-C classes; identifiers `c:objc(cs)…` written by the
// naming convention, not read from a page; counted apart). Their members
// are not declared: only the patched files' bodies are type-checked, and they call none.
@_exported import MetalPerformanceShaders

// c:objc(cs)MPSGraph
open class MPSGraph: @unchecked Sendable {}
// c:objc(cs)MPSGraphTensor
open class MPSGraphTensor: @unchecked Sendable {}
// c:objc(cs)MPSGraphTensorData
open class MPSGraphTensorData: @unchecked Sendable {}
// c:objc(cs)MPSGraphExecutable
open class MPSGraphExecutable: @unchecked Sendable {}
// c:objc(cs)MPSGraphDevice
open class MPSGraphDevice: @unchecked Sendable {}
