import GemmaiosCore
import SwiftUI
#if canImport(UIKit)
import UIKit
#endif

@main
struct GemmaiosApp: App {
    #if canImport(UIKit)
    @UIApplicationDelegateAdaptor(AppDelegate.self) private var appDelegate
    #else
    init() { LaunchClock.shared.markLaunch() }  // macOS: no app delegate (AppDelegate.swift)
    #endif

    var body: some Scene {
        WindowGroup {
            if AppRuntime.launch.bench {
                BenchView(settings: AppRuntime.launch)
            } else {
                ChatView()
            }
        }
    }
}
