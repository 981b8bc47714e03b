import Foundation
import XCTest

@testable import GemmaiosCore

/// How close the Swift preprocessing must come to Hugging Face's `pixel_values`. The resample
/// reproduces Pillow's integer arithmetic, so the measured max abs error on the seven built-in
/// images is 0 (12,096,000 values; tests/test_swift_image.py prints it). The bound allows one
/// 8-bit level, a margin for a Pillow build that rounds a float64 filter weight differently
/// (e.g. FMA contraction), not a measured need. Positions, soft-token counts and ids: exact.
enum ImageTolerance {
    static let pixelValues: Float = 1.0 / 255.0 + 1e-6
}

final class ImageInputTests: XCTestCase {
    /// HF's `get_aspect_ratio_preserving_size`, its three branches (values from transformers 5.24).
    func testTargetSizeFollowsHFsRule() throws {
        let g = try ImageGeometry()
        XCTAssertEqual(g.maxPatches, 2520)
        XCTAssertEqual(g.patchLength, 768)
        let size = try g.targetSize(width: 150, height: 100)  // upscale, landscape
        XCTAssertEqual([size.width, size.height], [960, 624])
        XCTAssertEqual(try g.softTokens(width: 150, height: 100), 260)
        let square = try g.targetSize(width: 1000, height: 1000)
        XCTAssertEqual([square.width, square.height], [768, 768])
        let thin = try g.targetSize(width: 3000, height: 10)  // height rounds to 0: one row of 48
        XCTAssertEqual([thin.width, thin.height], [13440, 48])
        let tall = try g.targetSize(width: 10, height: 3000)  // width rounds to 0
        XCTAssertEqual([tall.width, tall.height], [48, 13440])
        let extreme = try g.targetSize(width: 1_000_000, height: 1)  // capped at budget * kernel patches
        XCTAssertEqual([extreme.width, extreme.height], [13440, 48])
        XCTAssertThrowsError(try ImageGeometry(maxSoftTokens: 100)) {
            XCTAssertEqual($0 as? ImageInputError, .unsupportedBudget(100))
        }
        XCTAssertThrowsError(try RGB8Image(width: 2, height: 2, pixels: [0, 0, 0]))
    }

    func testPatchesPositionsAndPaddingLayout() throws {
        // 48x96 of a known pattern at budget 70 (630 patches); its own pixels checked after the resize
        let w = 96, h = 48
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for i in pixels.indices { pixels[i] = UInt8((i * 7 + i / 3) % 256) }
        let image = try RGB8Image(width: w, height: h, pixels: pixels)
        let pre = try ImagePreprocessor(maxSoftTokens: 70)
        let out = try pre.preprocess(image)
        let size = try pre.geometry.targetSize(width: w, height: h)
        XCTAssertEqual([out.resizedWidth, out.resizedHeight], [size.width, size.height])
        let columns = size.width / 16, rows = size.height / 16
        XCTAssertEqual(out.realPatches, columns * rows)
        XCTAssertEqual(out.softTokens, columns * rows / 9)
        XCTAssertEqual(out.pixelValues.count, 630 * 768)
        XCTAssertEqual(out.positionIds.count, 630 * 2)
        // row-major patches, (x = column, y = row)
        XCTAssertEqual(Array(out.positionIds[0..<4]), [0, 0, 1, 0])
        XCTAssertEqual(Array(out.positionIds[(columns * 2)..<(columns * 2 + 2)]), [0, 1])
        XCTAssertTrue(out.positionIds[(out.realPatches * 2)...].allSatisfy { $0 == Int32(Contract.imagePadPosition) })
        XCTAssertTrue(out.pixelValues[(out.realPatches * 768)...].allSatisfy { $0 == 0 })
        // patch (row 1, column 2), pixel (dy 3, dx 5), channel 2 is resized pixel (19, 37)
        let resized = try BicubicResampler.resize(image, width: size.width, height: size.height)
        let patch = 1 * columns + 2
        let value = out.pixelValues[patch * 768 + (3 * 16 + 5) * 3 + 2]
        XCTAssertEqual(value, Float(Double(resized.pixels[(19 * size.width + 37) * 3 + 2]) / 255.0))
    }

    func testResampleKeepsFlatColoursAndShrinksBoxesLikePillow() throws {
        let flat = try RGB8Image(width: 37, height: 23, pixels: Array(repeating: [200, 13, 255], count: 37 * 23).flatMap { $0 })
        let bigger = try BicubicResampler.resize(flat, width: 101, height: 55)
        XCTAssertEqual(Set(stride(from: 0, to: bigger.pixels.count, by: 3).map { bigger.pixels[$0] }), [200])
        XCTAssertEqual(Set(stride(from: 2, to: bigger.pixels.count, by: 3).map { bigger.pixels[$0] }), [255])
        // Keys' cubic (a = -0.5) at 0, 1, 2 and the normalised weights of a 2x shrink
        XCTAssertEqual(BicubicResampler.cubic(0), 1)
        XCTAssertEqual(BicubicResampler.cubic(1), 0)
        XCTAssertEqual(BicubicResampler.cubic(-2), 0)
        let taps = BicubicResampler.taps(inSize: 8, outSize: 4)
        XCTAssertEqual(taps.taps, 9)  // support 2 * 2 (antialias): ceil(4) * 2 + 1
        let row = Array(taps.weights[(1 * taps.taps)..<(1 * taps.taps + taps.count[1])])
        XCTAssertLessThanOrEqual(abs(row.reduce(0, +) - (1 << BicubicResampler.precisionBits)), 4)
    }

    func testExpansionAndTheIdSplice() throws {
        let tokens = ImageTokenIds(imageTokenId: 9, boiTokenId: 7, eoiTokenId: 8, vocabSize: 20)
        let expanded = try ImagePrompt.expand([2, 5, 9, 6, 9], softTokens: [2, 3], tokens: tokens)
        XCTAssertEqual(expanded, [2, 5, 7, 9, 9, 8, 6, 7, 9, 9, 9, 8])
        XCTAssertEqual(try ImagePrompt.rewrite(expanded, tokens: tokens, capacity: 5),
                       [2, 5, 7, 20, 21, 8, 6, 7, 22, 23, 24, 8])
        XCTAssertThrowsError(try ImagePrompt.rewrite(expanded, tokens: tokens, capacity: 4)) {
            XCTAssertEqual($0 as? ImageInputError, .tooManySoftTokens(5, capacity: 4))
        }
        XCTAssertThrowsError(try ImagePrompt.expand([2, 9], softTokens: [], tokens: tokens)) {
            XCTAssertEqual($0 as? ImageInputError, .placeholderMismatch(placeholders: 1, images: 0))
        }
    }

    func testConfigFromMetadataAndTheChatPlaceholder() throws {
        // the vision block's metadata (convert: gemmaios.vision = asset, the ImageSpec, pad_token_id, …)
        let vision: [String: Any] = [
            Contract.visionAssetField: "tiny_vision.aimodel", "image_token_id": 258880, "boi_token_id": 255999,
            "eoi_token_id": 258882, "vocab_size": 262144, "max_soft_tokens": 70, "patch_size": 16,
            "pooling_kernel_size": 3, Contract.splicedPleRowKey: 0, "hidden_size": 2560,
        ]
        let root: [String: Any] = ["language": ["vocab_size": 262144], "gemmaios": [Contract.visionMetadataKey: vision]]
        let metadata = try JSONSerialization.data(withJSONObject: root)
        let config = try XCTUnwrap(try ImageInputConfig.from(metadata: metadata))
        XCTAssertEqual(config.tokens, ImageTokenIds(imageTokenId: 258880, boiTokenId: 255999, eoiTokenId: 258882,
                                                    vocabSize: 262144))
        XCTAssertEqual(config.geometry.maxSoftTokens, 70)
        XCTAssertEqual(config.padTokenId, 0)
        XCTAssertEqual(config.asset, "tiny_vision.aimodel")
        XCTAssertNil(try ImageInputConfig.from(metadata: Data(#"{"language": {"vocab_size": 5}, "gemmaios": {}}"#.utf8)))
        var partial = vision
        partial["boi_token_id"] = nil
        let broken = try JSONSerialization.data(withJSONObject: ["gemmaios": [Contract.visionMetadataKey: partial]])
        XCTAssertThrowsError(try ImageInputConfig.from(metadata: broken)) {
            XCTAssertEqual($0 as? ImageInputError, .incompleteMetadata("boi_token_id"))
        }
        XCTAssertEqual(config.withPlaceholder([2, 10, 11]), [2, 258880, 10, 11])
        XCTAssertEqual(config.withPlaceholder([2, 258880, 11]), [2, 258880, 11])
        // a flat picture through the whole path: 70 budget, 2:1 → soft tokens and ids line up
        let picture = try RGB8Image(width: 200, height: 100, pixels: [UInt8](repeating: 90, count: 200 * 100 * 3))
        let (pre, ids) = try config.prepare(picture, promptIds: config.withPlaceholder([2, 10]))
        XCTAssertEqual(ids.count, 2 + 1 + pre.softTokens + 1)
        XCTAssertEqual(Array(ids[0..<3]), [2, 255999, 262144])
        let lastSoft: Int32 = 262144 + Int32(pre.softTokens) - 1
        XCTAssertEqual(Array(ids.suffix(3)), [lastSoft, 258882, 10])
        let level = Float(Double(90) / 255)
        XCTAssertTrue(pre.pixelValues.prefix(pre.realPatches * 768).allSatisfy { $0 == level })
    }

    func testSafeTensorsRefusesTruncatedFiles() throws {
        XCTAssertThrowsError(try SafeTensorsFile(data: Data([1, 2, 3]), name: "x.safetensors")) {
            XCTAssertEqual($0 as? SafeTensorsError, .malformed("x.safetensors", "3 bytes"))
        }
        var data = Data([200, 0, 0, 0, 0, 0, 0, 0])
        data.append(Data("{}".utf8))
        XCTAssertThrowsError(try SafeTensorsFile(data: data, name: "y")) {
            XCTAssertEqual($0 as? SafeTensorsError, .malformed("y", "bad header"))
        }
        let header = Data(#"{"image":{"dtype":"U8","shape":[1,2,3],"data_offsets":[0,6]}}"#.utf8)
        var good = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Data($0) }
        good.append(header)
        good.append(Data([1, 2, 3, 4, 5, 6]))
        let file = try SafeTensorsFile(data: good, name: "z")
        XCTAssertEqual(try file.rgbImage(), try RGB8Image(width: 2, height: 1, pixels: [1, 2, 3, 4, 5, 6]))
        XCTAssertThrowsError(try file.floats("image"))
        XCTAssertThrowsError(try file.tensor(Contract.visionPixelsInput)) {
            XCTAssertEqual($0 as? SafeTensorsError, .missingTensor("z", Contract.visionPixelsInput))
        }
    }

    func testPromptSetCarriesAnOptionalImage() throws {
        let json = #"{"schema": "\#(Contract.promptSetSchema)", "name": "n", "sha256": "0", "max_new_tokens": 2, "#
            + #""prompts": [{"id": "a", "prompt_ids": [2, 5]}, {"id": "b", "prompt_ids": [2, 9], "image": "images/b.safetensors"}]}"#
        let set = try BenchPromptSet.decode(Data(json.utf8))
        XCTAssertEqual(set.prompts.map(\.image), [nil, "images/b.safetensors"])
    }

    /// Against Hugging Face's processor: GEMMAIOS_IMAGE_VECTORS names a folder of image-oracle
    /// files (`oracle/images/<name>.safetensors`: pixel_values, pixel_position_ids, input_ids,
    /// spliced_input_ids, num_soft_tokens) with the source picture added as `image`, and
    /// cases.json (marker ids, V, budget), written by tests/test_swift_image.py.
    func testMatchesHuggingFacesProcessor() throws {
        guard let folder = ProcessInfo.processInfo.environment["GEMMAIOS_IMAGE_VECTORS"], !folder.isEmpty else {
            throw XCTSkip("GEMMAIOS_IMAGE_VECTORS is not set (tests/test_swift_image.py sets it)")
        }
        let root = URL(fileURLWithPath: folder, isDirectory: true)
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json"))) as? [String: Any]
        let cases = try XCTUnwrap(index?["cases"] as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        var worst: Float = 0
        var differing = 0
        var compared = 0
        for item in cases {
            let name = try XCTUnwrap(item["name"] as? String)
            let file = try SafeTensorsFile(url: root.appendingPathComponent(try XCTUnwrap(item["file"] as? String)))
            let pre = try ImagePreprocessor(maxSoftTokens: try XCTUnwrap(item["max_soft_tokens"] as? Int))
            let out = try pre.preprocess(try file.rgbImage())

            let expected = try file.floats(Contract.visionPixelsInput)  // [P, 768] or [1, P, 768]
            XCTAssertEqual(try file.tensor(Contract.visionPixelsInput).shape.suffix(2), [pre.geometry.maxPatches, pre.geometry.patchLength])
            XCTAssertEqual(expected.count, out.pixelValues.count, name)
            for (a, b) in zip(out.pixelValues, expected) {
                let d = abs(a - b)
                worst = max(worst, d)
                if d != 0 { differing += 1 }
            }
            compared += expected.count
            XCTAssertEqual(try file.ints(Contract.visionPositionsInput), out.positionIds.map(Int64.init), "\(name): positions")
            XCTAssertEqual(try file.ints("num_soft_tokens"), [Int64(out.softTokens)], "\(name): soft tokens")

            let tokens = ImageTokenIds(imageTokenId: Int32(try XCTUnwrap(item["image_token_id"] as? Int)),
                                       boiTokenId: Int32(try XCTUnwrap(item["boi_token_id"] as? Int)),
                                       eoiTokenId: Int32(try XCTUnwrap(item["eoi_token_id"] as? Int)),
                                       vocabSize: try XCTUnwrap(item["vocab_size"] as? Int))
            // HF's expanded ids with boi + image x n + eoi folded back to one placeholder: the
            // prompt the app starts from; Swift expands it with its own soft-token count
            let hf = try file.ints(Contract.inputIdsInput).map { Int32($0) }
            var prompt: [Int32] = []
            var inside = false
            for id in hf {
                if id == tokens.boiTokenId { inside = true; prompt.append(tokens.imageTokenId) }
                else if id == tokens.eoiTokenId { inside = false }
                else if !inside { prompt.append(id) }
            }
            let expanded = try ImagePrompt.expand(prompt, softTokens: [out.softTokens], tokens: tokens)
            XCTAssertEqual(expanded, hf, "\(name): expanded ids")
            let engine = try ImagePrompt.engineIds(prompt, images: [out], tokens: tokens, capacity: pre.geometry.maxSoftTokens)
            XCTAssertEqual(engine.map(Int64.init), try file.ints("spliced_" + Contract.inputIdsInput), "\(name): spliced ids")
        }
        XCTAssertLessThanOrEqual(worst, ImageTolerance.pixelValues)
        print("gemmaios-image-vectors: \(cases.count) images, \(compared) pixel values, max abs error \(worst), "
              + "\(differing) differ, tolerance \(ImageTolerance.pixelValues)")
    }
}
