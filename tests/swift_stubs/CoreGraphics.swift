// Declaration-only stand-in for Apple's CoreGraphics: what the engine and the app call. CoreGraphics is a C
// framework: its identifiers are `c:` (written by the naming
// convention, not read from a page; counted apart by the identifier check). CGFloat, CGSize,
// CGRect and CGPoint come from Linux Foundation here (from CoreGraphics on Apple); the CoreFoundation
// types CoreGraphics re-exports on Apple are declared here.
import Foundation

// c:@T@CFStringRef
public final class CFString: @unchecked Sendable {}
// c:@T@CFDataRef
public final class CFData: @unchecked Sendable {}
// c:@T@CFDictionaryRef
public final class CFDictionary: @unchecked Sendable {}

// c:@T@CGImageRef
public final class CGImage: @unchecked Sendable {
    // c:@F@CGImageGetWidth
    public var width: Int { fatalError() }
    // c:@F@CGImageGetHeight
    public var height: Int { fatalError() }
    // c:@F@CGImageCreateWithImageInRect
    public func cropping(to rect: CGRect) -> CGImage? { fatalError() }
}

// c:@T@CGColorSpaceRef
public final class CGColorSpace: @unchecked Sendable {
    // c:@F@CGColorSpaceCreateWithName
    public init?(name: CFString) { fatalError() }
    // c:@kCGColorSpaceSRGB
    public static var sRGB: CFString { fatalError() }
}

// c:@E@CGImageAlphaInfo
public enum CGImageAlphaInfo: UInt32, Sendable {
    // c:@E@CGImageAlphaInfo@kCGImageAlphaPremultipliedLast
    case premultipliedLast = 1
    // c:@E@CGImageAlphaInfo@kCGImageAlphaNoneSkipLast
    case noneSkipLast = 5
}

// c:@E@CGInterpolationQuality
public enum CGInterpolationQuality: Int32, Sendable {
    // c:@E@CGInterpolationQuality@kCGInterpolationHigh
    case high = 3
}

// c:@T@CGContextRef
public final class CGContext {
    // c:@F@CGBitmapContextCreate
    public init?(data: UnsafeMutableRawPointer?, width: Int, height: Int, bitsPerComponent: Int, bytesPerRow: Int,
                 space: CGColorSpace, bitmapInfo: UInt32) { fatalError() }
    // c:@F@CGContextSetInterpolationQuality
    public var interpolationQuality: CGInterpolationQuality { get { fatalError() } set {} }
    // c:@F@CGContextDrawImage
    public func draw(_ image: CGImage, in rect: CGRect) { fatalError() }
    // c:@F@CGBitmapContextCreateImage
    public func makeImage() -> CGImage? { fatalError() }
    // c:@F@CGBitmapContextGetData
    public var data: UnsafeMutableRawPointer? { fatalError() }
}
