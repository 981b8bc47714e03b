import Foundation
import XCTest

@testable import GemmaiosCore

/// The prompt side of a clip (AudioPrompt.swift) against the toolkit's gemmaios.audio.preprocess
/// (prepare, expand_prompt, splice_ids): tests/test_audiobench.py writes the vectors.
final class AudioPromptTests: XCTestCase {
    let tokens = AudioTokenIds(audioTokenId: 9, boaTokenId: 7, eoaTokenId: 8, vocabSize: 100)

    func testExpandAndRewriteTheOnePlaceholder() throws {
        let expanded = try AudioPrompt.expand([2, 5, 9, 6], softTokens: 3, tokens: tokens)
        XCTAssertEqual(expanded, [2, 5, 7, 9, 9, 9, 8, 6])
        XCTAssertEqual(try AudioPrompt.rewrite(expanded, tokens: tokens, capacity: 3), [2, 5, 7, 100, 101, 102, 8, 6])
        XCTAssertThrowsError(try AudioPrompt.rewrite(expanded, tokens: tokens, capacity: 2)) {
            XCTAssertEqual($0 as? AudioPromptError, .tooManySoftTokens(3, capacity: 2))
        }
        XCTAssertThrowsError(try AudioPrompt.expand([2, 9, 9], softTokens: 1, tokens: tokens)) {
            XCTAssertEqual($0 as? AudioPromptError, .placeholderMismatch(2))
        }
        XCTAssertThrowsError(try AudioPrompt.expand([2, 3], softTokens: 1, tokens: tokens)) {
            XCTAssertEqual($0 as? AudioPromptError, .placeholderMismatch(0))
        }
    }

    func testSubsampleHalvesTwice() {
        // 200 frames → 100 → 50 (the tiny model's 2 s: 199 frames → 50 soft tokens)
        XCTAssertEqual(AudioPrompt.subsample([Bool](repeating: true, count: 199)).count, 50)
        XCTAssertEqual(AudioPrompt.subsample([true, true, true, true, true, false, false, false]), [true, true])
    }

    func testMetadataWithoutAudioIsNilAndAnIncompleteBlockIsNamed() throws {
        let none = try JSONSerialization.data(withJSONObject: ["gemmaios": [String: Any]()])
        XCTAssertNil(try AudioInputConfig.from(metadata: none))
        let partial = try JSONSerialization.data(withJSONObject: [
            "gemmaios": [Contract.audioMetadataKey: [Contract.audioAssetField: "b.audio.aimodel", "audio_token_id": 9]]])
        XCTAssertThrowsError(try AudioInputConfig.from(metadata: partial)) {
            XCTAssertEqual($0 as? AudioPromptError, .incompleteMetadata("boa_token_id"))
        }
    }

    /// GEMMAIOS_AUDIO_PROMPT_VECTORS: metadata.json (a bundle's gemmaios.audio block as the
    /// toolkit writes it) and cases.json, per case the clip's samples (16 kHz Float32), the prompt
    /// with its placeholder once, and the toolkit's soft-token count, frame mask and engine ids.
    func testMatchesTheToolkit() throws {
        guard let folder = ProcessInfo.processInfo.environment["GEMMAIOS_AUDIO_PROMPT_VECTORS"], !folder.isEmpty else {
            throw XCTSkip("GEMMAIOS_AUDIO_PROMPT_VECTORS is not set (tests/test_audiobench.py sets it)")
        }
        let root = URL(fileURLWithPath: folder, isDirectory: true)
        let metadata = try Data(contentsOf: root.appendingPathComponent(Contract.bundleMetadataFile))
        let config = try XCTUnwrap(try AudioInputConfig.from(metadata: metadata))
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json")))
        let cases = try XCTUnwrap((index as? [String: Any])?["cases"] as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        var checked = 0
        for item in cases {
            let name = try XCTUnwrap(item["name"] as? String)
            let file = try SafeTensorsFile(url: root.appendingPathComponent("\(name).safetensors"))
            let samples = try file.clipSamples()
            let prompt = try XCTUnwrap(item["prompt_ids"] as? [Int]).map { Int32($0) }
            if let refused = item["refused"] as? String {
                XCTAssertThrowsError(try config.prepare(samples: samples, promptIds: prompt), name) {
                    XCTAssertTrue("\($0)".hasPrefix(refused), "\(name): \($0)")
                }
                checked += 1
                continue
            }
            let prepared = try config.prepare(samples: samples, promptIds: prompt)
            XCTAssertEqual(prepared.features.frames, config.maxFrames, name)
            XCTAssertEqual(prepared.features.mask, try file.ints(Contract.audioMaskInput).map { $0 != 0 }, "\(name): mask")
            XCTAssertEqual(prepared.softTokens, try XCTUnwrap(item["soft_tokens"] as? Int), "\(name): soft tokens")
            XCTAssertEqual(prepared.ids.map(Int.init), try XCTUnwrap(item["engine_ids"] as? [Int]), "\(name): ids")
            XCTAssertThrowsError(try file.clipSamples(Contract.audioMaskInput)) {  // U8 [F]: not a clip
                XCTAssertEqual($0 as? SafeTensorsError, .wrongType("\(name).safetensors", Contract.audioMaskInput,
                                                                    expected: "F32 [N]", actual: "U8 [\(config.maxFrames)]"))
            }
            checked += 1
        }
        print("audio prompt vectors: \(checked) cases match the toolkit")
    }
}
