import CoreAILanguageModels
import GemmaiosCore
import ImageIO
import PhotosUI
import SwiftUI
import Tokenizers
import UniformTypeIdentifiers

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
    /// The picture the next message carries (image-capable bundles), upright, sRGB.
    @Published var picture: CGImage?
    /// Thinking on: the chat template's `enable_thinking`; the reasoning is shown apart.
    @Published var thinking = false
    /// The most tokens one reply may take (the toolkit's contract, as `gemmaios run`); a reply cut there says so.
    let maxReplyTokens = Contract.chatMaxNewTokens
    /// The clip the next message carries (AudioInput.swift: 16 kHz samples, log-mel features + mask).
    @Published var clip: AttachedClip?
    @Published var recording = false
    private let microphone = MicrophoneRecorder()
    private var loaded: LoadedEngine?
    private var tokenizer: (any Tokenizer)?
    /// The conversation (GemmaiosCore): its messages and the ids the engine's KV cache holds.
    private var conversation = Conversation()

    /// Forget the conversation: the next message starts a new one.
    func newChat() async {
        conversation.reset()
        transcript = ""
        if let loaded { try? await loaded.engine.reset(to: 0) }
        status = "new conversation"
    }

    /// A picked photo → an upright CGImage (EXIF orientation applied). Photos over 4096 px on
    /// the long side are downsampled by ImageIO first (a 48 MP photo would need ~150 MB as RGB
    /// and the processor shrinks it to at most 2520 patches anyway).
    func attach(_ item: PhotosPickerItem?) async {
        guard let item else { return }  // the selection was cleared after a send
        do {
            guard let data = try await item.loadTransferable(type: Data.self),
                  let source = CGImageSourceCreateWithData(data as CFData, nil),
                  let image = CGImageSourceCreateThumbnailAtIndex(source, 0, [
                      kCGImageSourceCreateThumbnailFromImageAlways: true,
                      kCGImageSourceCreateThumbnailWithTransform: true,
                      kCGImageSourceThumbnailMaxPixelSize: 4096,
                  ] as CFDictionary)
            else {
                status = "error: the photo could not be decoded"
                return
            }
            picture = image
            status = "picture \(image.width)x\(image.height) attached"
        } catch {
            status = "error: \(error.localizedDescription)"
        }
    }

    /// A picked audio file (fileImporter: a security-scoped URL) → 16 kHz → features.
    func attachAudio(_ result: Result<URL, Error>) async {
        do {
            let url = try result.get()
            let scoped = url.startAccessingSecurityScopedResource()
            defer { if scoped { url.stopAccessingSecurityScopedResource() } }
            let attached = AttachedClip(try AudioFileDecoding.clip(contentsOf: url))
            clip = attached
            status = attached.summary + " attached"
        } catch {
            status = "error: \(error.localizedDescription)"
        }
    }

    /// Starts a microphone recording, or stops it and attaches the clip.
    func toggleRecording() async {
        do {
            if recording {
                recording = false
                let attached = AttachedClip(try microphone.stop())
                clip = attached
                status = attached.summary + " recorded"
            } else {
                try await microphone.start()
                recording = true
                status = String(format: "recording (at most %.0f s)…", MicrophoneRecorder.maxSeconds)
            }
        } catch {
            recording = microphone.isRecording
            status = "error: \(error.localizedDescription)"
        }
    }

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
            if let unified = loaded.unified, picture != nil || clip != nil {  // the 12B's own functions (UnifiedEngine.swift)
                try await sendUnified(text, unified: unified, loaded: loaded, tokenizer: tokenizer)
                return
            }
            if let clip {
                if picture != nil {
                    throw AttachedClip.pictureAndClip
                }
                try await sendClip(text, clip: clip, loaded: loaded, tokenizer: tokenizer)
                return
            }
            if let picture {
                try await sendPicture(text, picture: picture, loaded: loaded, tokenizer: tokenizer)
                return
            }
            // The whole conversation through the chat template (one <bos> first), every turn; the
            // engine keeps the KV cache of what it already holds and prefills only the rest.
            let thinking = self.thinking
            let render: ([ChatMessage]) throws -> [Int] = { messages in
                let ids = try tokenizer.applyChatTemplate(
                    messages: messages.map { $0.dictionary as [String: any Sendable] }, tools: nil,
                    additionalContext: thinking ? [Contract.chatThinkingArgument: true] : nil)
                return ChatPrompt.withSingleBOS(ids, bos: Int(AppConfig.bosTokenId))
            }
            let turn = try conversation.prepare(
                text, budget: maxReplyTokens, context: loaded.bundle.maxContextLength, render: render)
            if turn.dropped > 0 {
                transcript += "\n[the context was full: the oldest \(turn.dropped) exchange(s) were dropped]\n"
            }
            if turn.plan.keep < conversation.cached.count {
                // The template no longer renders what the cache holds past `keep` (a reply's
                // reasoning channel, or dropped exchanges): roll the cache back to it.
                try await loaded.engine.reset(to: turn.plan.keep)
            }
            conversation.prefilled(turn)
            transcript += "\n› \(text)\n"
            // apple/coreai-models#124: an iOS KV binding above 1024 positions decodes wrong tokens
            let kvWarning = loaded.kvWarning(
                capacity: loaded.bindKV(promptTokens: turn.target.count, maxNewTokens: maxReplyTokens))
            if let kvWarning { transcript += "⚠︎ \(kvWarning.message)\n" }
            let run = try await Generation.run(
                engine: loaded.engine, prompt: turn.target.map { Int32($0) },
                rule: .chat(eosTokenIds: AppConfig.eosTokenIds))
            let generated = run.tokenIds.map(Int.init)
            let ended = run.tokenIds.last.map { AppConfig.eosTokenIds.contains($0) } ?? false
            let reply = ended ? Array(generated.dropLast()) : generated
            var router = ReplyRouter(channelStart: tokenizer.convertTokenToId(Contract.chatChannelStart),
                                     channelEnd: tokenizer.convertTokenToId(Contract.chatChannelEnd))
            for token in reply { _ = router.route(token) }
            conversation.replied(tokenizer.decode(tokens: reply, skipSpecialTokens: false),
                                 fedIds: Array(generated.dropLast()))
            if !router.thought.isEmpty {
                transcript += "(thinking: " + ReplyRouter.thoughtText(tokenizer.decode(tokens: router.thought)) + ")\n"
            }
            transcript += tokenizer.decode(tokens: router.answer, skipSpecialTokens: true)
                .trimmingCharacters(in: .whitespacesAndNewlines) + "\n"
            if !ended && generated.count == maxReplyTokens {
                transcript += "[reply cut at \(maxReplyTokens) tokens]\n"
            }
            status = ["\(turn.plan.feed.count) new prompt tokens (\(turn.plan.keep) kept)",
                      run.rates(promptTokens: turn.plan.feed.count)].compactMap { $0 }.joined(separator: " · ")
        } catch {
            status = "error: \(error.localizedDescription)"
        }
    }

    /// A message with a picture is answered on its own (the vision prompt is one user turn), and
    /// starts a new conversation.
    private func sendPicture(_ text: String, picture: CGImage, loaded: LoadedEngine, tokenizer: any Tokenizer) async throws {
        // The oracle's prompt: the chat template (generation prompt added) with exactly one
        // <bos> first. The user turn is [image, text] (the template places the image token;
        // GemmaiosCore inserts it after <bos> when a template does not).
        let content = [["type": "image"], ["type": "text", "text": text]] as [[String: String]]
        let body: [Int]
        if let templated = try? tokenizer.applyChatTemplate(messages: [["role": "user", "content": content]]) {
            body = templated
        } else {
            body = tokenizer.encode(text: text, addSpecialTokens: false)
        }
        var ids = ChatPrompt.withSingleBOS(body, bos: Int(AppConfig.bosTokenId)).map { Int32($0) }
        transcript += "\n› \(text) [picture]\n"
        conversation.reset()
        try await loaded.engine.reset(to: 0)
        guard let vision = loaded.vision else {
            throw VisionEncoderError.noVisionAsset("\(AppConfig.bundleName) is text-only")
        }
        // HF's preprocessing + placeholder expansion + the id splice, then the vision asset
        // fills image_embeds; the prompt's soft tokens are ids V..V+N-1
        ids = try await vision.encode(try PictureDecoding.rgb8(picture), promptIds: vision.config.withPlaceholder(ids))
        self.picture = nil
        try await answerSpliced(ids, loaded: loaded, tokenizer: tokenizer)
    }

    /// A message with a clip is answered on its own (the audio prompt is one user turn), and
    /// starts a new conversation, as a picture's does. The clip's log-mel features go through the
    /// audio asset into the soft-token rows; its placeholder becomes boa + audio x n + eoa with the
    /// soft tokens rewritten to V + k (what `gemmaios run --audio` runs on the host).
    private func sendClip(_ text: String, clip: AttachedClip, loaded: LoadedEngine, tokenizer: any Tokenizer) async throws {
        guard let audio = loaded.audio else {
            throw AttachedClip.noAudioAsset(bundleName: AppConfig.bundleName, takesPictures: loaded.vision != nil)
        }
        // The oracle's prompt: the chat template (generation prompt added) with exactly one <bos>
        // first. The user turn is [audio, text] (the template places the audio token; GemmaiosCore
        // inserts it after <bos> when a template does not).
        let content = [["type": "audio"], ["type": "text", "text": text]] as [[String: String]]
        let body: [Int]
        if let templated = try? tokenizer.applyChatTemplate(messages: [["role": "user", "content": content]]) {
            body = templated
        } else {
            body = tokenizer.encode(text: text, addSpecialTokens: false)
        }
        var ids = ChatPrompt.withSingleBOS(body, bos: Int(AppConfig.bosTokenId)).map { Int32($0) }
        transcript += "\n› \(text) [\(clip.summary)]\n"
        conversation.reset()
        try await loaded.engine.reset(to: 0)
        ids = try await audio.encode(clip.clip, promptIds: audio.config.withPlaceholder(ids))
        self.clip = nil
        try await answerSpliced(ids, loaded: loaded, tokenizer: tokenizer)
    }

    /// A picture's or a clip's spliced prompt, answered on its own: the KV guard, one greedy reply to the
    /// stop token, then the engine reset, so the next text message starts a new conversation.
    private func answerSpliced(_ ids: [Int32], loaded: LoadedEngine, tokenizer: any Tokenizer) async throws {
        if let kvWarning = loaded.kvWarning(
            capacity: loaded.bindKV(promptTokens: ids.count, maxNewTokens: maxReplyTokens)) {
            transcript += "⚠︎ \(kvWarning.message)\n"
        }
        let run = try await Generation.run(
            engine: loaded.engine, prompt: ids, rule: .chat(eosTokenIds: AppConfig.eosTokenIds))
        let reply = run.tokenIds.filter { !AppConfig.eosTokenIds.contains($0) }.map(Int.init)
        transcript += tokenizer.decode(tokens: reply) + "\n"
        try await loaded.engine.reset(to: 0)  // the next text message starts a new conversation
        if let rates = run.rates(promptTokens: ids.count) {
            status = rates
        }
    }
}

struct ChatView: View {
    @StateObject private var model = ChatModel()
    @State private var draft = ""
    @State private var pickedPhoto: PhotosPickerItem?
    @State private var pickingAudio = false

    var body: some View {
        VStack(spacing: 8) {
            Text(AppConfig.displayName).font(.headline)
            ScrollView {
                Text(model.transcript).frame(maxWidth: .infinity, alignment: .leading).textSelection(.enabled)
            }
            Text(model.status).font(.caption.monospaced()).foregroundStyle(.secondary)
            if let picture = model.picture {
                Image(decorative: picture, scale: 1).resizable().scaledToFit().frame(maxHeight: 96)
            }
            if let clip = model.clip {
                HStack {
                    Text(clip.summary).font(.caption.monospaced())
                    Button("Remove") { model.clip = nil }.disabled(model.busy)
                }
            }
            HStack {
                Button { pickingAudio = true } label: { Image(systemName: "waveform") }
                    .disabled(model.busy || model.recording)
                    .fileImporter(isPresented: $pickingAudio, allowedContentTypes: [.audio]) { result in
                        Task { await model.attachAudio(result) }
                    }
                Button { Task { await model.toggleRecording() } } label: {
                    Image(systemName: model.recording ? "stop.circle" : "mic")
                }
                .disabled(model.busy)
                PhotosPicker(selection: $pickedPhoto, matching: .images) {
                    Image(systemName: "photo")
                }
                .disabled(model.busy)
                .onChange(of: pickedPhoto) { _, item in
                    Task { await model.attach(item) }
                }
                .onChange(of: model.picture == nil) { _, sent in
                    if sent { pickedPhoto = nil }  // so the same photo can be picked again
                }
                Toggle("Think", isOn: $model.thinking).toggleStyle(.button).disabled(model.busy)
                Button("New") { Task { await model.newChat() } }.disabled(model.busy)
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

/// The multi-function 12B (metadata.json gemmaios.multimodal): a message with a picture and/or a clip
/// goes through its embedders, `prefill_multimodal` and `main` (UnifiedChat, UnifiedEngine.swift), answered
/// on its own like a picture message on E2B/E4B; the next text message starts a new conversation.
extension ChatModel {
    func sendUnified(_ text: String, unified: UnifiedChat, loaded: LoadedEngine, tokenizer: any Tokenizer) async throws {
        let pictures = picture.map { [$0] } ?? [], clips = clip.map { [$0.clip] } ?? []
        transcript += "\n› \(text)" + (pictures.isEmpty ? "" : " [picture]") + (clips.isEmpty ? "" : " [clip]") + "\n"
        conversation.reset()
        try await loaded.engine.reset(to: 0)
        status = "embedding and prefilling (the first such message loads the multimodal functions)…"
        let (reply, run) = try await unified.reply(
            to: text, pictures: pictures, clips: clips, tokenizer: tokenizer, bos: AppConfig.bosTokenId,
            maxNewTokens: maxReplyTokens)
        picture = nil
        clip = nil
        transcript += reply.trimmingCharacters(in: .whitespacesAndNewlines) + "\n"
        if !run.stopped && run.tokenIds.count == maxReplyTokens {
            transcript += "[reply cut at \(maxReplyTokens) tokens]\n"
        }
        status = run.statusLine
    }
}
