// Declaration-only stand-in for what Apple's Darwin module has and Linux's Glibc lacks: the Mach task and
// timebase API and the BSD sysctl process record the engine and the app read. C declarations from the SDK
// headers (mach/task_info.h, mach/mach_time.h, sys/sysctl.h); identifiers `c:…` written by the naming convention,
// no developer.apple.com page consulted (counted apart by the identifier check). On Apple, Foundation re-exports Darwin: the type-check imports this
// module implicitly into every file (see test_swift_typecheck.py).
@_exported import Glibc

// c:@T@integer_t
public typealias integer_t = Int32
// c:@T@natural_t
public typealias natural_t = UInt32
// c:@T@kern_return_t
public typealias kern_return_t = Int32
// c:@T@mach_port_t
public typealias mach_port_t = UInt32
// c:@T@task_name_t
public typealias task_name_t = mach_port_t
// c:@T@task_flavor_t
public typealias task_flavor_t = natural_t
// c:@T@task_info_t
public typealias task_info_t = UnsafeMutablePointer<integer_t>
// c:@T@mach_msg_type_number_t
public typealias mach_msg_type_number_t = natural_t
// c:@T@mach_vm_size_t
public typealias mach_vm_size_t = UInt64
// c:@T@policy_t
public typealias policy_t = Int32
// c:macro@KERN_SUCCESS
public var KERN_SUCCESS: Int32 { 0 }
// c:macro@TASK_VM_INFO
public var TASK_VM_INFO: Int32 { 22 }
// c:macro@MACH_TASK_BASIC_INFO
public var MACH_TASK_BASIC_INFO: Int32 { 20 }
// c:@mach_task_self_
public var mach_task_self_: mach_port_t { 0 }

// c:@S@time_value
public struct time_value_t: Sendable {
    public var seconds: integer_t
    public var microseconds: integer_t
    public init() { seconds = 0; microseconds = 0 }
}

// c:@S@task_vm_info
public struct task_vm_info_data_t: Sendable {
    // c:@S@task_vm_info@FI@phys_footprint
    public var phys_footprint: UInt64
    public init() { phys_footprint = 0 }
}

// c:@F@task_info
public func task_info(_ target_task: task_name_t, _ flavor: task_flavor_t, _ task_info_out: task_info_t!,
                      _ task_info_outCnt: UnsafeMutablePointer<mach_msg_type_number_t>!) -> kern_return_t { fatalError() }

// c:@S@mach_timebase_info
public struct mach_timebase_info_data_t: Sendable {
    public var numer: UInt32
    public var denom: UInt32
    public init() { numer = 0; denom = 0 }
}
// c:@F@mach_timebase_info
@discardableResult
public func mach_timebase_info(_ info: UnsafeMutablePointer<mach_timebase_info_data_t>!) -> kern_return_t { fatalError() }
// c:@F@mach_absolute_time
public func mach_absolute_time() -> UInt64 { fatalError() }

// c:@S@extern_proc
public struct extern_proc: Sendable {
    // c:@S@extern_proc@U@p_un
    public struct __Unnamed_union_p_un: Sendable {
        public var __p_starttime: timeval
    }
    public var p_un: __Unnamed_union_p_un
}
// c:@S@kinfo_proc
public struct kinfo_proc: Sendable {
    public var kp_proc: extern_proc
    public init() { fatalError() }
}
// c:macro@CTL_KERN
public var CTL_KERN: Int32 { 1 }
// c:macro@KERN_PROC
public var KERN_PROC: Int32 { 14 }
// c:macro@KERN_PROC_PID
public var KERN_PROC_PID: Int32 { 1 }
// c:@F@sysctlbyname
public func sysctlbyname(_ name: UnsafePointer<CChar>!, _ oldp: UnsafeMutableRawPointer!,
                         _ oldlenp: UnsafeMutablePointer<Int>!, _ newp: UnsafeMutableRawPointer!,
                         _ newlen: Int) -> Int32 { fatalError() }
// c:@F@sysctl
public func sysctl(_ name: UnsafeMutablePointer<Int32>!, _ namelen: UInt32, _ oldp: UnsafeMutableRawPointer!,
                   _ oldlenp: UnsafeMutablePointer<Int>!, _ newp: UnsafeMutableRawPointer!, _ newlen: Int) -> Int32 { fatalError() }
