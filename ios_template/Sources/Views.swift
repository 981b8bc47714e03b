import CoreAILanguageModels
import GemmaiosCore
import SwiftUI
import Tokenizers

/// Bench mode: starts by itself, shows progress, leaves the transcript in Documents.
struct BenchView: View {
    let settings: LaunchSettings
    @StateObject private var runner = BenchRunner()

    var body: some View {
        VStack(alignment: .leading, spacing: 12) {
            Text("\(AppConfig.displayName) · bench").font(.headline)
            Text(runner.status).font(.body.monospaced())
            if !runner.transcriptPath.isEmpty {
                Text(runner.transcriptPath).font(.caption.monospaced()).foregroundStyle(.secondary)
            }
        }
        .padding()
        .task { await runner.run(settings: settings) }
    }
}

@MainActor
final class ChatModel: ObservableObject {
    @Published var transcript = ""
    @Published var status = "not loaded"
    @Published var busy = false
    private var loaded: LoadedEngine?
    private var tokenizer: (any Tokenizer)?

    func send(_ text: String) async {
        busy = true
        defer { busy = false }
        do {
            if loaded == nil {
                status = "loading \(AppConfig.bundleName)…"
                let engine = try await EngineHost.load(settings: AppRuntime.launch)
                tokenizer = try await engine.bundle.loadTokenizer()
                loaded = engine
                status = String(format: "loaded in %.1f s", engine.loadSeconds)
            }
            guard let loaded, let tokenizer else { return }
            // The oracle's prompt: the chat template (generation prompt added) with exactly one
            // <bos> first; without a template, <bos> + the text's own tokens.
            let body: [Int]
            if let templated = try? tokenizer.applyChatTemplate(messages: [["role": "user", "content": text]]) {
                body = templated
            } else {
                body = tokenizer.encode(text: text, addSpecialTokens: false)
            }
            let ids = ChatPrompt.withSingleBOS(body, bos: Int(AppConfig.bosTokenId))
            transcript += "\n› \(text)\n"
            try await loaded.engine.reset(to: 0)
            let run = try await Generation.run(
                engine: loaded.engine, prompt: ids.map { Int32($0) }, rule: .chat(eosTokenIds: AppConfig.eosTokenIds))
            let reply = run.tokenIds.filter { !AppConfig.eosTokenIds.contains($0) }.map(Int.init)
            transcript += tokenizer.decode(tokens: reply) + "\n"
            if let first = run.tokenTimes.first, let last = run.tokenTimes.last, run.tokenIds.count > 1 {
                status = String(format: "prefill %.1f tok/s · decode %.1f tok/s",
                                Double(ids.count) / max(first, 1e-9),
                                Double(run.tokenIds.count - 1) / max(last - first, 1e-9))
            }
        } catch {
            status = "error: \(error.localizedDescription)"
        }
    }
}

struct ChatView: View {
    @StateObject private var model = ChatModel()
    @State private var draft = ""

    var body: some View {
        VStack(spacing: 8) {
            Text(AppConfig.displayName).font(.headline)
            ScrollView {
                Text(model.transcript).frame(maxWidth: .infinity, alignment: .leading).textSelection(.enabled)
            }
            Text(model.status).font(.caption.monospaced()).foregroundStyle(.secondary)
            HStack {
                TextField("Message", text: $draft).textFieldStyle(.roundedBorder)
                Button("Send") {
                    let text = draft
                    draft = ""
                    Task { await model.send(text) }
                }
                .disabled(model.busy || draft.isEmpty)
            }
        }
        .padding()
    }
}
