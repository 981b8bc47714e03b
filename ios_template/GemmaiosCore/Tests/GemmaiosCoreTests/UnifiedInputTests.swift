import Foundation
import XCTest

@testable import GemmaiosCore

/// The 12B's client-side inputs (UnifiedInput.swift) against Hugging Face's Gemma4Unified processor
/// and masks: vectors written by tests/test_swift_unified.py (GEMMAIOS_UNIFIED_VECTORS). Pixel values
/// within UnifiedImageTolerance (HF resizes with torchvision's uint8 bicubic, ours is Pillow's: measured
/// at most 2 levels apart); positions, frames, ids, types and masks exact.
enum UnifiedImageTolerance {
    static let pixelValues: Float = 2.0 / 255.0 + 1e-6
}

final class UnifiedInputTests: XCTestCase {
    func testMasksByHand() throws {
        // text, a 3-token image block, text; window 2
        let types: [Int32] = [0, 1, 1, 1, 0]
        let m = try UnifiedPrompt.masks(types, slidingWindow: 2)
        XCTAssertTrue(m.global[1 * 5 + 3])  // inside the block: both ways
        XCTAssertTrue(m.sliding[1 * 5 + 3])
        XCTAssertFalse(m.global[0 * 5 + 1])  // text before the block: causal
        XCTAssertFalse(m.sliding[4 * 5 + 1])  // after the block: windowed
        XCTAssertThrowsError(try UnifiedPrompt.masks(types, slidingWindow: 2, kvLength: 4))
        XCTAssertThrowsError(try UnifiedAudio.frames([], samplesPerToken: 4))
    }

    func testMatchesHuggingFace() throws {
        guard let folder = ProcessInfo.processInfo.environment["GEMMAIOS_UNIFIED_VECTORS"], !folder.isEmpty else {
            throw XCTSkip("GEMMAIOS_UNIFIED_VECTORS is not set (tests/test_swift_unified.py sets it)")
        }
        let root = URL(fileURLWithPath: folder, isDirectory: true)
        let index = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json"))) as? [String: Any])
        let ids = try XCTUnwrap(index["tokens"] as? [String: Int])
        func id(_ key: String) throws -> Int32 { Int32(try XCTUnwrap(ids[key], key)) }
        let tokens = UnifiedTokenIds(imageTokenId: try id("image_token_id"), videoTokenId: try id("video_token_id"),
                                     audioTokenId: try id("audio_token_id"), boiTokenId: try id("boi_token_id"),
                                     eoiTokenId: try id("eoi_token_id"), boaTokenId: try id("boa_token_id"),
                                     eoaTokenId: try id("eoa_token_id"), padTokenId: try id(Contract.splicedPleRowKey))
        var worst: Float = 0, differing = 0, compared = 0
        let images = try XCTUnwrap(index["images"] as? [[String: Any]])
        for item in images {
            let file = try SafeTensorsFile(url: root.appendingPathComponent(try XCTUnwrap(item["file"] as? String)))
            let budget = try XCTUnwrap(item["max_soft_tokens"] as? Int)
            let out = try UnifiedImage.prepare(try file.rgbImage(), maxSoftTokens: budget, padTo: budget)
            let expected = try file.floats(Contract.visionPixelsInput)
            XCTAssertEqual(expected.count, out.pixelValues.count)
            for (a, b) in zip(out.pixelValues, expected) {
                let d = abs(a - b)
                worst = max(worst, d)
                if d != 0 { differing += 1 }
            }
            compared += expected.count
            XCTAssertEqual(try file.ints(Contract.embedPositionsInput), out.positionIds.map(Int64.init))
            XCTAssertEqual(try file.ints("num_soft_tokens"), [Int64(out.softTokens)])
        }
        XCTAssertLessThanOrEqual(worst, UnifiedImageTolerance.pixelValues)
        let audio = try SafeTensorsFile(url: root.appendingPathComponent("audio.safetensors"))
        let frames = try UnifiedAudio.frames(try audio.floats("waveform"), samplesPerToken: try XCTUnwrap(index["samples_per_token"] as? Int))
        XCTAssertEqual(frames.values, try audio.floats(Contract.audioFeaturesInput))
        let prompts = try XCTUnwrap(index["prompts"] as? [[String: Any]])
        for item in prompts {
            let name = try XCTUnwrap(item["name"] as? String)
            let file = try SafeTensorsFile(url: root.appendingPathComponent(try XCTUnwrap(item["file"] as? String)))
            let prompt = try file.ints("prompt").map { Int32($0) }
            let expanded = try UnifiedPrompt.expand(prompt, imageTokens: try XCTUnwrap(item["image_tokens"] as? [Int]),
                                                    audioTokens: try XCTUnwrap(item["audio_tokens"] as? [Int]), tokens: tokens)
            XCTAssertEqual(expanded.map(Int64.init), try file.ints(Contract.inputIdsInput), name)
            let types = UnifiedPrompt.types(expanded, tokens: tokens)
            XCTAssertEqual(types.map(Int64.init), try file.ints("mm_token_type_ids"), name)
            let masks = try UnifiedPrompt.masks(types, slidingWindow: try XCTUnwrap(item["sliding_window"] as? Int))
            XCTAssertEqual(masks.sliding.map { Int64($0 ? 1 : 0) }, try file.ints(Contract.maskSlidingInput), "\(name): sliding")
            XCTAssertEqual(masks.global.map { Int64($0 ? 1 : 0) }, try file.ints(Contract.maskGlobalInput), "\(name): global")
            XCTAssertFalse(UnifiedPrompt.graphIds(expanded, tokens: tokens).contains(tokens.imageTokenId))
        }
        print("gemmaios-unified-vectors: \(images.count) images, \(compared) pixel values, max abs error \(worst), "
              + "\(differing) differ, tolerance \(UnifiedImageTolerance.pixelValues); \(prompts.count) prompts, masks exact")
    }
}
