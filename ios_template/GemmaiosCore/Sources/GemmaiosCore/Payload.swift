import Foundation

/// Where the payload (bundle, PLE tables, prompt set) lives on the device.
public enum BundleLocation: Sendable, Equatable {
    /// Inside the .app: `<App>.app/<Contract.payloadFolder>/` (copied in by Xcode).
    case appBundle
    /// Pushed by `gemmaios deploy`: `Documents/<Contract.payloadFolder>/`.
    case documents
}

/// The contract's paths (docs/contracts.md, toolkit/gemmaios/contract.py), resolved on a root.
public struct PayloadPaths: Sendable, Equatable {
    public let root: URL

    public init(root: URL) {
        self.root = root
    }

    public init(location: BundleLocation, appBundle: URL, documents: URL) {
        switch location {
        case .appBundle: root = appBundle.appendingPathComponent(Contract.payloadFolder, isDirectory: true)
        case .documents: root = documents.appendingPathComponent(Contract.payloadFolder, isDirectory: true)
        }
    }

    public func bundle(named name: String) -> URL {
        root.appendingPathComponent(Contract.bundlesFolder, isDirectory: true)
            .appendingPathComponent(name, isDirectory: true)
    }

    public var tables: URL { root.appendingPathComponent(Contract.tablesFolder, isDirectory: true) }
    public var tableI8: URL { tables.appendingPathComponent(Contract.tableI8File) }
    public var tableScale: URL { tables.appendingPathComponent(Contract.tableScaleFile) }
    public var promptSet: URL { root.appendingPathComponent(Contract.promptSetFile) }

    /// `Documents/<Contract.runsFolder>/`: where bench transcripts go, whatever the location.
    public static func runs(documents: URL) -> URL {
        documents.appendingPathComponent(Contract.runsFolder, isDirectory: true)
    }

    public static func transcript(documents: URL, runId: String) -> URL {
        runs(documents: documents).appendingPathComponent(runId + Contract.transcriptSuffix)
    }
}
