import Foundation
import GemmaiosCore

/// Bench image prompts (issue 17), kept apart from BenchRunner so the bench protocol can change
/// around it: a prompt-set entry with `image` names a payload-relative safetensors file whose
/// `image` tensor (uint8 [H, W, 3], the oracle's source image) the app preprocesses exactly as
/// chat does; its `prompt_ids` hold the image placeholder once.
enum BenchImages {
    /// The ids the engine runs for `prompt`: its own for a text prompt; for an image prompt the
    /// picture is preprocessed, the vision asset fills `image_embeds`, and the ids come back
    /// expanded with the soft tokens rewritten to V + k. Call after the engine's reset.
    static func engineIds(for prompt: BenchPromptSet.Prompt, engine: LoadedEngine, payload: PayloadPaths)
        async throws -> [Int32]
    {
        if let clip = prompt.audio { return try await BenchAudio.engineIds(for: prompt, clip: clip, engine: engine, payload: payload) }
        guard let image = prompt.image else { return prompt.promptIds }
        guard let vision = engine.vision else {
            throw VisionEncoderError.noVisionAsset("prompt \(prompt.id) has an image, \(AppConfig.bundleName) is text-only")
        }
        guard !image.split(separator: "/").contains("..") else {
            throw VisionEncoderError.noVisionAsset("prompt \(prompt.id) names an image outside the payload: \(image)")
        }
        let file = try SafeTensorsFile(url: payload.root.appendingPathComponent(image))
        return try await vision.encode(try file.rgbImage(), promptIds: vision.config.withPlaceholder(prompt.promptIds))
    }
}

/// Bench audio prompts (issue 28): a prompt-set entry with `audio` names a payload-relative
/// safetensors file whose `samples` tensor (float32 [N], 16 kHz mono, the audio oracle's clip) the
/// app turns into log-mel features exactly as chat does (GemmaiosCore LogMel, AudioInputConfig);
/// its `prompt_ids` hold the audio placeholder once.
enum BenchAudio {
    /// The clip's features through the audio asset into the soft-token rows; the ids come back
    /// expanded (boa + audio x n + eoa) with the soft tokens rewritten to V + k. Call after the engine's reset.
    static func engineIds(for prompt: BenchPromptSet.Prompt, clip: String, engine: LoadedEngine, payload: PayloadPaths)
        async throws -> [Int32]
    {
        guard let audio = engine.audio else {
            throw AudioEncoderError.noAudioAsset("prompt \(prompt.id) has a clip, \(AppConfig.bundleName) takes no audio")
        }
        guard !clip.split(separator: "/").contains("..") else {
            throw AudioEncoderError.noAudioAsset("prompt \(prompt.id) names a clip outside the payload: \(clip)")
        }
        let file = try SafeTensorsFile(url: payload.root.appendingPathComponent(clip))
        return try await audio.encode(samples: try file.clipSamples(),
                                      promptIds: audio.config.withPlaceholder(prompt.promptIds))
    }
}
