import Foundation

public enum PrefillPlanError: Error, LocalizedError, Equatable {
    case unreadableMetadata(String)
    case undescribedFunction(String)

    public var errorDescription: String? {
        switch self {
        case .unreadableMetadata(let why):
            return "the bundle's metadata cannot be read for its prefill functions: \(why)"
        case .undescribedFunction(let name):
            return "function_map names prefill function '\(name)' but the bundle's gemmaios.prefill.functions "
                + "does not describe it; convert the bundle again"
        }
    }
}

/// Which prefill function each bench trial runs with (issue 18): the bundle's largest
/// `prefill_C` (the pinned engine loads one) unless the launch turns it off; in A/B mode even
/// trials run with it and odd trials without, so one run of one build compares both.
public struct PrefillPlan: Sendable, Equatable {
    /// The bundle's prefill function and its chunk size C, or nil (a `main`-only bundle).
    public let function: String?
    public let chunk: Int
    public let off: Bool
    public let alternate: Bool

    public init(function: String?, chunk: Int, settings: LaunchSettings) {
        self.function = function
        self.chunk = function == nil ? 0 : chunk
        off = settings.prefillOff
        alternate = settings.abPrefill && function != nil
    }

    /// Reads metadata.json: `language.function_map[Contract.prefillRole]` names the functions,
    /// `gemmaios.prefill.functions[name].chunk` their C; the largest C is used.
    public init(metadata: Data, settings: LaunchSettings) throws {
        guard let root = (try? JSONSerialization.jsonObject(with: metadata)) as? [String: Any] else {
            throw PrefillPlanError.unreadableMetadata("not a JSON object")
        }
        let language = root["language"] as? [String: Any] ?? [:]
        let roles = language["function_map"] as? [String: Any] ?? [:]
        let names: [String]
        if let list = roles[Contract.prefillRole] as? [String] {
            names = list
        } else if let one = roles[Contract.prefillRole] as? String {
            names = [one]
        } else {
            names = []
        }
        let ours = (root["gemmaios"] as? [String: Any])?[Contract.prefillRole] as? [String: Any]
        let described = ours?["functions"] as? [String: Any] ?? [:]
        var best: (name: String, chunk: Int)? = nil
        for name in names {
            guard let chunk = (described[name] as? [String: Any])?["chunk"] as? Int, chunk > 1 else {
                throw PrefillPlanError.undescribedFunction(name)
            }
            if best == nil || chunk > best!.chunk { best = (name, chunk) }
        }
        self.init(function: best?.name, chunk: best?.chunk ?? 0, settings: settings)
    }

    /// The prefill function trial `trial` runs with (nil: `main` only).
    public func function(forTrial trial: Int) -> String? {
        guard let function else { return nil }
        if alternate { return trial % 2 == 0 ? function : nil }
        return off ? nil : function
    }

    /// The warm-up prompt's length for an engine using `function`: C+1 tokens specialise both
    /// the prefill function (one chunk) and `main` (the last token); 1 for `main` only.
    public func warmupLength(for function: String?) -> Int {
        function == nil ? 1 : chunk + 1
    }
}
