// swift-tools-version: 5.9
// The app's platform-independent core: Foundation only, no outside dependencies, so it
// builds and tests with `swift build` / `swift test` on Linux as well as in the iOS app.
// `gemmaios-core-vectors` drives the same code for the toolkit's cross-language tests.

import PackageDescription

let package = Package(
    name: "GemmaiosCore",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [
        .library(name: "GemmaiosCore", targets: ["GemmaiosCore"]),
        .executable(name: "gemmaios-core-vectors", targets: ["GemmaiosVectors"]),
    ],
    targets: [
        .target(name: "GemmaiosCore", path: "Sources/GemmaiosCore"),
        .executableTarget(name: "GemmaiosVectors", dependencies: ["GemmaiosCore"], path: "Sources/GemmaiosVectors"),
        .testTarget(name: "GemmaiosCoreTests", dependencies: ["GemmaiosCore"], path: "Tests/GemmaiosCoreTests"),
    ]
)
