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
