// Declaration-only stand-in for Apple's CoreImage (Objective-C classes, identifiers `c:objc(cs)…`,
// written by the naming convention, not read from a page; counted apart by the identifier check).
@_exported import CoreGraphics
import Foundation

// c:objc(cs)CIImage
open class CIImage: @unchecked Sendable {
    // c:objc(cs)CIImage(im)initWithContentsOfURL:
    public init?(contentsOf url: URL) { fatalError() }
    // c:objc(cs)CIImage(py)extent
    open var extent: CGRect { fatalError() }
}

// c:objc(cs)CIContext
open class CIContext: @unchecked Sendable {
    // c:objc(cs)CIContext(cm)context
    public init() { fatalError() }
    // c:objc(cs)CIContext(im)createCGImage:fromRect:
    open func createCGImage(_ image: CIImage, from fromRect: CGRect) -> CGImage? { fatalError() }
}
