import Foundation
import XCTest

@testable import GemmaiosCore

/// The app's calls to the 12B's four functions (UnifiedRequest.swift) against the Python oracle's
/// (gemmaios.hostrun.multimodal) on the eight gate prompts: vectors written by tests/test_swift_unified.py
/// (GEMMAIOS_UNIFIED_REQUESTS). Pixel values within UnifiedImageTolerance (Pillow's bicubic here,
/// torchvision's there); everything else exact.
final class UnifiedRequestTests: XCTestCase {
    private var metadata: Data {
        let block: [String: Any] = [
            "image_token_id": 9, "video_token_id": 10, "audio_token_id": 11, "boi_token_id": 5, "eoi_token_id": 6,
            "boa_token_id": 7, "eoa_token_id": 8, Contract.splicedPleRowKey: 0, "stop_token_ids": [1, 4], "patch_size": 4,
            "pooling_kernel_size": 3, "max_soft_tokens": 70, "audio_samples_per_token": 4, "sampling_rate": 16000,
            "sliding_window": 3, "hidden_size": 2, "vocab_size": 12,
            Contract.multimodalFunctionsField: [Contract.prefillMultimodalFunction: [String: Any](),
                                                Contract.embedAudioFunction: [String: Any]()],
        ]
        return try! JSONSerialization.data(withJSONObject: ["gemmaios": [Contract.multimodalMetadataKey: block]])
    }

    func testByHand() throws {
        XCTAssertNil(try UnifiedBundleConfig.from(metadata: Data(#"{"gemmaios": {}}"#.utf8)))
        let config = try XCTUnwrap(try UnifiedBundleConfig.from(metadata: metadata))
        XCTAssertTrue(config.takesClips)
        XCTAssertFalse(config.takesPictures)
        XCTAssertEqual(config.stopTokenIds, [1, 4])
        // markers: split where they stand, text pieces through the tokenizer
        let text = UnifiedBundleConfig.withMarkers("hi", pictures: 0, clips: 1)
        XCTAssertEqual(text, Contract.audioMarker + "\nhi")
        let ids = config.encode("a" + text) { piece in piece.unicodeScalars.map { Int32($0.value % 4) } }
        XCTAssertEqual(ids, [Int32(97 % 4), 11, Int32(10 % 4), Int32(104 % 4), Int32(105 % 4)])
        // a 5-sample clip: 2 frames of 4 → BOA + 2 audio + EOA; its rows land at the soft tokens
        let request = try UnifiedRequest(promptIds: [2, 11, 3], pictures: [], clips: [[1, 2, 3, 4, 5]], config: config)
        XCTAssertEqual(request.expandedIds, [2, 7, 11, 11, 8, 3])
        XCTAssertEqual(request.inputIds, [2, 7, 0, 0, 8, 3])
        XCTAssertEqual(request.mmMask, [false, false, true, true, false, false])
        XCTAssertEqual(request.items, [.clip(index: 0, rows: 2)])
        XCTAssertEqual(request.clips[0].values, [1, 2, 3, 4, 5, 0, 0, 0])
        XCTAssertEqual(try request.mmEmbeds([[1, 2, 3, 4]]), [0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0])
        XCTAssertThrowsError(try request.mmEmbeds([[1, 2, 3]]))
        XCTAssertThrowsError(try request.mmEmbeds([]))
        // audio is causal and windowed (no bidirectional block): row 5 sees 3..5 only
        XCTAssertEqual(Array(request.maskSliding[30..<36]), [false, false, false, true, true, true])
        XCTAssertEqual(Array(request.maskGlobal[30..<36]), [true, true, true, true, true, true])
        // a picture for a bundle without embed_vision is refused by name
        let picture = try RGB8Image(width: 12, height: 12, pixels: [UInt8](repeating: 7, count: 432))
        XCTAssertThrowsError(try UnifiedRequest(promptIds: [2, 9], pictures: [picture], clips: [], config: config)) {
            XCTAssertEqual($0 as? UnifiedRequestError, .noFunction(Contract.embedVisionFunction))
        }
        XCTAssertEqual(UnifiedRequest.decodeInputs(token: 3, length: 4).positionIds, [0, 1, 2, 3])
        XCTAssertEqual(UnifiedRequest.argmax([0, 2, 2, -1]), 1)
    }

    func testMatchesTheOracle() throws {
        guard let folder = ProcessInfo.processInfo.environment["GEMMAIOS_UNIFIED_REQUESTS"], !folder.isEmpty else {
            throw XCTSkip("GEMMAIOS_UNIFIED_REQUESTS is not set (tests/test_swift_unified.py sets it)")
        }
        let root = URL(fileURLWithPath: folder, isDirectory: true)
        let config = try XCTUnwrap(try UnifiedBundleConfig.from(metadata: Data(contentsOf: root.appendingPathComponent(Contract.bundleMetadataFile))))
        let index = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("requests.json"))) as? [String: Any])
        let prompts = try XCTUnwrap(index["prompts"] as? [[String: Any]])
        var pictures = 0, clips = 0, rows = 0
        var worst: Float = 0
        for item in prompts {
            let name = try XCTUnwrap(item["name"] as? String)
            let file = try SafeTensorsFile(url: root.appendingPathComponent(try XCTUnwrap(item["file"] as? String)))
            XCTAssertEqual(config.stopTokenIds.map(Int.init), try XCTUnwrap(item["stop_token_ids"] as? [Int]), name)
            // the rendered text → ids with one placeholder per item, the text pieces through the tokenizer's ids
            let pieces = try XCTUnwrap(item["pieces"] as? [String: [Int]])
            var unknown: [String] = []
            let promptIds = config.encode(try XCTUnwrap(item["text"] as? String)) { piece in
                guard let ids = pieces[piece] else {
                    unknown.append(piece)
                    return []
                }
                return ids.map { Int32($0) }
            }
            XCTAssertEqual(unknown, [], name)
            XCTAssertEqual(promptIds.map(Int64.init), try file.ints("prompt"), name)
            // the items as the app hands them over: decoded pictures, 16 kHz samples
            let order = try XCTUnwrap(item["items"] as? [String])
            var images: [RGB8Image] = [], samples: [[Float]] = [], outputs: [[Float]] = []
            for (k, kind) in order.enumerated() {
                if kind == "image" {
                    images.append(try file.rgbImage("picture\(k)"))
                } else {
                    samples.append(try file.floats("clip\(k)"))
                }
                outputs.append(try file.floats("\(k).embeds"))
            }
            let request = try UnifiedRequest(promptIds: promptIds, pictures: images, clips: samples, config: config)
            XCTAssertEqual(request.expandedIds.map(Int64.init), try file.ints("expanded"), name)
            // embed_vision / embed_audio inputs, in prompt order
            var p = 0, c = 0
            for (k, unit) in request.items.enumerated() {
                switch unit {
                case .picture(let index, let n):
                    XCTAssertEqual(index, p, name)
                    let image = request.pictures[index]
                    XCTAssertEqual(image.softTokens, n, name)
                    let expected = try file.floats("\(k).\(Contract.embedPixelsInput)")
                    XCTAssertEqual(image.pixelValues.count, expected.count, name)
                    for (a, b) in zip(image.pixelValues, expected) { worst = max(worst, abs(a - b)) }
                    XCTAssertEqual(image.positionIds.map(Int64.init), try file.ints("\(k).\(Contract.embedPositionsInput)"), name)
                    p += 1
                case .clip(let index, let n):
                    XCTAssertEqual(index, c, name)
                    XCTAssertEqual(request.clips[index].count, n, name)
                    XCTAssertEqual(request.clips[index].values, try file.floats("\(k).\(Contract.embedFramesInput)"), name)
                    c += 1
                }
                XCTAssertEqual(unit.function, order[k] == "image" ? Contract.embedVisionFunction : Contract.embedAudioFunction)
            }
            pictures += p
            clips += c
            // prefill_multimodal
            XCTAssertEqual(request.inputIds.map(Int64.init), try file.ints(Contract.inputIdsInput), name)
            XCTAssertEqual(request.positionIds.map(Int64.init), try file.ints(Contract.positionIdsInput), name)
            XCTAssertEqual(request.mmMask.map { Int64($0 ? 1 : 0) }, try file.ints(Contract.mmMaskInput), name)
            XCTAssertEqual(request.maskSliding.map { Int64($0 ? 1 : 0) }, try file.ints(Contract.maskSlidingInput), name)
            XCTAssertEqual(request.maskGlobal.map { Int64($0 ? 1 : 0) }, try file.ints(Contract.maskGlobalInput), name)
            XCTAssertEqual(try request.mmEmbeds(outputs), try file.floats(Contract.mmEmbedsInput), name)
            // main's first step after the prefill: the new token at position S
            XCTAssertEqual(UnifiedRequest.decodeInputs(token: 0, length: request.length + 1).positionIds.map(Int64.init),
                           try file.ints("decode_positions"), name)
            rows += request.length
        }
        XCTAssertLessThanOrEqual(worst, UnifiedImageTolerance.pixelValues)
        print("gemmaios-unified-requests: \(prompts.count) prompts (\(pictures) pictures, \(clips) clips), \(rows) prefill rows, "
              + "pixel max abs error \(worst)")
    }
}
