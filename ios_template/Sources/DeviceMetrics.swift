import Darwin
import Foundation
import GemmaiosCore
#if canImport(UIKit)
import UIKit
#endif
import os

/// Memory, thermal and device facts for the bench transcript.
enum DeviceMetrics {
    /// The process's physical footprint (what jetsam counts), from TASK_VM_INFO.
    static func physFootprint() -> UInt64 {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let status = withUnsafeMutablePointer(to: &info) { pointer in
            pointer.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
                task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
            }
        }
        return status == KERN_SUCCESS ? info.phys_footprint : 0
    }

    /// Bytes the app may still allocate before jetsam (raised by the increased-memory entitlement); null
    /// on macOS, which has no per-app jetsam limit (os_proc_available_memory is iOS-only).
    static func availableMemory() -> Any {
        #if canImport(UIKit)
        return UInt64(os_proc_available_memory())
        #else
        return NSNull()
        #endif
    }

    static func thermalState() -> String {
        switch ProcessInfo.processInfo.thermalState {
        case .nominal: return "nominal"
        case .fair: return "fair"
        case .serious: return "serious"
        case .critical: return "critical"
        @unknown default: return "nominal"
        }
    }

    /// Battery level as a fraction (0.81), -1 when unknown; battery monitoring must be on. macOS: unknown
    /// (UIDevice's battery is iOS's; a Mac's power sources are IOKit's, not read here).
    @MainActor static func batteryLevel() -> Double {
        #if canImport(UIKit)
        return DeviceFacts.batteryLevel(UIDevice.current.batteryLevel)
        #else
        return DeviceFacts.batteryLevel(-1)
        #endif
    }

    @MainActor static func batteryState() -> String {
        #if canImport(UIKit)
        switch UIDevice.current.batteryState {
        case .charging: return "charging"
        case .full: return "full"
        case .unplugged: return "unplugged"
        default: return "unknown"
        }
        #else
        return "unknown"
        #endif
    }

    /// The device's name (UIDevice on iOS; the host name on macOS).
    @MainActor static func deviceName() -> String {
        #if canImport(UIKit)
        return UIDevice.current.name
        #else
        return ProcessInfo.processInfo.hostName
        #endif
    }

    /// e.g. "27.0" (UIDevice's systemVersion on iOS; major.minor[.patch] of the OS on macOS).
    @MainActor static func osVersion() -> String {
        #if canImport(UIKit)
        return UIDevice.current.systemVersion
        #else
        let v = ProcessInfo.processInfo.operatingSystemVersion
        return v.patchVersion > 0 ? "\(v.majorVersion).\(v.minorVersion).\(v.patchVersion)"
            : "\(v.majorVersion).\(v.minorVersion)"
        #endif
    }

    /// Seconds since the kernel started this process (kinfo_proc's p_starttime): a cold launch's
    /// time to first token counts from here, before main() and the app delegate run.
    static func secondsSinceProcessStart() -> Double {
        var info = kinfo_proc()
        var size = MemoryLayout<kinfo_proc>.stride
        var mib: [Int32] = [CTL_KERN, KERN_PROC, KERN_PROC_PID, getpid()]
        guard sysctl(&mib, UInt32(mib.count), &info, &size, nil, 0) == 0 else {
            return LaunchClock.shared.secondsSinceLaunch
        }
        let start = info.kp_proc.p_un.__p_starttime  // C's p_starttime is a macro Swift does not import
        let started = Double(start.tv_sec) + Double(start.tv_usec) / 1e6
        return Date().timeIntervalSince1970 - started
    }

    /// e.g. "iPhone18,2" (hw.machine); on macOS "Mac16,5" (hw.model: a Mac's hw.machine is "arm64").
    static func productType() -> String {
        #if canImport(UIKit)
        var system = utsname()
        uname(&system)
        return withUnsafeBytes(of: &system.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        #else
        var size = 0
        guard sysctlbyname("hw.model", nil, &size, nil, 0) == 0, size > 0 else { return "" }
        var model = [UInt8](repeating: 0, count: size)
        guard sysctlbyname("hw.model", &model, &size, nil, 0) == 0 else { return "" }
        return String(decoding: model.prefix(while: { $0 != 0 }), as: UTF8.self)
        #endif
    }
}

extension FootprintSampler {
    /// The app's sampler: task_info's phys_footprint, timed from launch.
    static func forThisProcess() -> FootprintSampler {
        FootprintSampler(reader: { DeviceMetrics.physFootprint() },
                         clock: { LaunchClock.shared.secondsSinceLaunch })
    }
}
