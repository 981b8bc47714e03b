// Declaration-only stand-in for Apple's Accelerate (vDSP, vImage): C functions, identifiers `c:@F@…`
// (written by the naming convention, not read from a page; counted apart by the identifier check).
import Foundation

// c:@T@vDSP_Length
public typealias vDSP_Length = UInt
// c:@T@vDSP_Stride
public typealias vDSP_Stride = Int

// c:@F@vDSP_vfltu8
public func vDSP_vfltu8(_ __A: UnsafePointer<UInt8>, _ __IA: vDSP_Stride, _ __C: UnsafeMutablePointer<Float>, _ __IC: vDSP_Stride, _ __N: vDSP_Length) { fatalError() }
// c:@F@vDSP_vsmsa
public func vDSP_vsmsa(_ __A: UnsafePointer<Float>, _ __IA: vDSP_Stride, _ __B: UnsafePointer<Float>, _ __C: UnsafePointer<Float>, _ __D: UnsafeMutablePointer<Float>, _ __ID: vDSP_Stride, _ __N: vDSP_Length) { fatalError() }
// c:@F@vDSP_vsadd
public func vDSP_vsadd(_ __A: UnsafePointer<Float>, _ __IA: vDSP_Stride, _ __B: UnsafePointer<Float>, _ __C: UnsafeMutablePointer<Float>, _ __IC: vDSP_Stride, _ __N: vDSP_Length) { fatalError() }
// c:@F@vDSP_vfill
public func vDSP_vfill(_ __A: UnsafePointer<Float>, _ __C: UnsafeMutablePointer<Float>, _ __IC: vDSP_Stride, _ __N: vDSP_Length) { fatalError() }
