// Declaration-only stand-in for Apple's Metal: the protocols and members the engine and the app call.
// Metal's declarations are Objective-C (identifiers `c:objc(pl)MTLBuffer`…); on Apple they are imported,
// here they are Swift protocols. The `c:` identifiers are written by the naming convention, not read from a
// page (counted apart by the identifier check); where a CoreAI identifier names a Metal type (`__C.MTLBuffer`),
// the check compares it demangled with this module for `__C`.
import Foundation

// c:objc(pl)MTLResource
public protocol MTLResource: AnyObject, Sendable {}

// c:@E@MTLResourceOptions
public struct MTLResourceOptions: OptionSet, Sendable {
    public let rawValue: UInt
    public init(rawValue: UInt) { self.rawValue = rawValue }
    // c:@E@MTLResourceOptions@MTLResourceStorageModeShared
    public static let storageModeShared = MTLResourceOptions(rawValue: 0)
}

// c:objc(pl)MTLBuffer
public protocol MTLBuffer: MTLResource {
    // c:objc(pl)MTLBuffer(im)contents
    func contents() -> UnsafeMutableRawPointer
    // c:objc(pl)MTLBuffer(py)length
    var length: Int { get }
}

// c:objc(pl)MTLCommandBuffer
public protocol MTLCommandBuffer: AnyObject, Sendable {
    // c:objc(pl)MTLCommandBuffer(im)addCompletedHandler:
    func addCompletedHandler(_ block: @escaping @Sendable (any MTLCommandBuffer) -> Void)
    // c:objc(pl)MTLCommandBuffer(py)error
    var error: (any Error)? { get }
    // c:objc(pl)MTLCommandBuffer(im)commit
    func commit()
    // c:objc(pl)MTLCommandBuffer(im)waitUntilCompleted
    func waitUntilCompleted()
}

// c:objc(pl)MTLCommandQueue
public protocol MTLCommandQueue: AnyObject, Sendable {
    // c:objc(pl)MTLCommandQueue(py)label
    var label: String? { get set }
    // c:objc(pl)MTLCommandQueue(im)commandBuffer
    func makeCommandBuffer() -> (any MTLCommandBuffer)?
}

// c:objc(pl)MTLDevice
public protocol MTLDevice: AnyObject, Sendable {
    // c:objc(pl)MTLDevice(im)newBufferWithLength:options:
    func makeBuffer(length: Int, options: MTLResourceOptions) -> (any MTLBuffer)?
    // c:objc(pl)MTLDevice(im)newBufferWithBytes:length:options:
    func makeBuffer(bytes pointer: UnsafeRawPointer, length: Int, options: MTLResourceOptions) -> (any MTLBuffer)?
    // c:objc(pl)MTLDevice(im)newCommandQueue
    func makeCommandQueue() -> (any MTLCommandQueue)?
}

// c:@F@MTLCreateSystemDefaultDevice
public func MTLCreateSystemDefaultDevice() -> (any MTLDevice)? { fatalError() }
