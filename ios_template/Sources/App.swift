import GemmaiosCore
import SwiftUI
import UIKit

@main
struct GemmaiosApp: App {
    @UIApplicationDelegateAdaptor(AppDelegate.self) private var appDelegate

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
