import CoreAILanguageModels
import Foundation
import GemmaiosCore
import UIKit

/// Runs every prompt of the payload's prompt set for N trials and writes the transcript
/// (docs/contracts.md). Each prompt decodes exactly the set's max_new_tokens (no EOS stop),
/// the oracle's rule; the screen stays awake for the run.
@MainActor
final class BenchRunner: ObservableObject {
    @Published var status = "waiting"
    @Published var finished = false
    @Published var transcriptPath = ""

    func run(settings: LaunchSettings) async {
        let runId = settings.usableRunId ?? TranscriptWriter.newRunId()
        let writer: TranscriptWriter
        do {
            writer = try TranscriptWriter(documents: AppRuntime.documents, runId: runId)
        } catch {
            status = "cannot write the transcript: \(error.localizedDescription)"
            return
        }
        transcriptPath = writer.url.path
        // An unattended run must not be interrupted by auto-lock (which also throttles the GPU).
        let idleTimerWasDisabled = UIApplication.shared.isIdleTimerDisabled
        UIApplication.shared.isIdleTimerDisabled = true
        defer { UIApplication.shared.isIdleTimerDisabled = idleTimerWasDisabled }
        UIDevice.current.isBatteryMonitoringEnabled = true
        let sampler = FootprintSampler.forThisProcess()
        do {
            let promptSet = try BenchPromptSet.load(from: AppRuntime.payload.promptSet)
            let rule = DecodeRule.bench(maxNewTokens: promptSet.maxNewTokens, eosTokenIds: AppConfig.eosTokenIds)
            try writer.write(header(runId: runId, settings: settings, promptSet: promptSet))
            sampler.start(every: 0.5) { seconds, footprint in
                // after the footer the writer refuses records; stop() below makes that moot
                try? writer.write([
                    "type": "memory", "t": seconds,
                    "phys_footprint_bytes": footprint, "available_bytes": DeviceMetrics.availableMemory(),
                ])
            }
            let plan = try EngineHost.prefillPlan(settings: settings)
            var loaded: LoadedEngine? = nil

            var firstTrial: [[Int32]] = []
            var divergent = 0
            for trial in 0..<settings.trials {
                // A/B mode: the prefill setting changes between trials. One engine at a time
                // (two would hold two KV caches), so a switch reloads; each load is recorded.
                if loaded == nil || loaded?.prefillFunction != plan.function(forTrial: trial) {
                    loaded = nil
                    status = "loading \(AppConfig.bundleName)"
                    let engine = try await EngineHost.load(settings: settings, trial: trial)
                    try writer.write([
                        "type": "load", "seconds": engine.loadSeconds, "cold": engine.coldSpecialization,
                        Contract.promptPrefillFunctionField: engine.prefillFunction ?? NSNull(),
                    ])
                    loaded = engine
                }
                guard let loaded else { break }
                for (index, prompt) in promptSet.prompts.enumerated() {
                    status = "trial \(trial + 1)/\(settings.trials) · prompt \(index + 1)/\(promptSet.prompts.count)"
                    if divergent > 0 { status += " · \(divergent) differ from trial 1" }
                    try await loaded.engine.reset(to: 0)  // no prefix reuse between prompts
                    _ = sampler.takePeak()
                    let ids = try await BenchImages.engineIds(for: prompt, engine: loaded, payload: AppRuntime.payload)
                    let run = try await Generation.run(engine: loaded.engine, prompt: ids, rule: rule)
                    if trial == 0 {
                        firstTrial.append(run.tokenIds)
                    } else if TokenComparison.firstDivergence(firstTrial[index], run.tokenIds) != nil {
                        divergent += 1
                    }
                    var line = record(trial: trial, index: index, prompt: prompt, run: run, sampler: sampler)
                    line[Contract.promptPrefillFunctionField] = loaded.prefillFunction ?? NSNull()
                    line["prefill_tokens"] = ids.count  // an image prompt's expanded length
                    try writer.write(line)
                }
            }
            sampler.stop()  // returns once no memory record can follow: the footer is last
            var footer: [String: Any] = [
                "type": "footer", "completed": true, "ended_at": TranscriptWriter.timestamp(),
                "battery_level": DeviceFacts.batteryLevel(UIDevice.current.batteryLevel),
                "battery_state": batteryState(),
            ]
            if let unlock = LaunchClock.shared.secondsSinceUnlock { footer["seconds_since_unlock"] = unlock }
            try writer.write(footer)
            status = "done: \(writer.url.lastPathComponent)" + (divergent > 0 ? " (\(divergent) non-deterministic)" : "")
        } catch {
            sampler.stop()
            // No footer: readers treat the run as unfinished. Say why on screen and in the log.
            status = "failed: \(error.localizedDescription)"
            NSLog("gemmaios bench failed: %@", error.localizedDescription)
        }
        writer.close()
        finished = true
    }

    private func header(runId: String, settings: LaunchSettings, promptSet: BenchPromptSet) -> [String: Any] {
        [
            "type": "header", "schema": TranscriptWriter.schema, "run_id": runId,
            "started_at": TranscriptWriter.timestamp(),
            "device": [
                "product_type": DeviceMetrics.productType(), "name": UIDevice.current.name,
                "os_version": UIDevice.current.systemVersion, "arch": AppConfig.arch, "udid": settings.udid,
            ],
            "bundle": [
                "name": AppConfig.bundleName, "metadata_sha256": AppConfig.metadataSHA256,
                "quant": AppConfig.quant, "ple": AppConfig.pleMode.rawValue,
            ],
            "app": ["version": AppConfig.appVersion, "toolkit_version": AppConfig.toolkitVersion],
            "prompt_set": ["name": promptSet.name, "sha256": promptSet.sha256, "count": promptSet.prompts.count],
            "trials": settings.trials, "max_new_tokens": promptSet.maxNewTokens, "platform": "iOS",
            "ab_prefill": settings.abPrefill,
        ]
    }

    /// Prefill: prompt tokens, from the request to the first token. Decode: the tokens after
    /// the first, from the first token to the last (docs/contracts.md).
    private func record(
        trial: Int, index: Int, prompt: BenchPromptSet.Prompt, run: Generation, sampler: FootprintSampler
    ) -> [String: Any] {
        let first = run.tokenTimes.first ?? 0
        let last = run.tokenTimes.last ?? first
        let gaps = zip(run.tokenTimes.dropFirst(), run.tokenTimes).map { $0 - $1 }
        return [
            "type": "prompt", "trial": trial, "index": index, "prompt_id": prompt.id,
            "prompt_ids": prompt.promptIds.map(Int.init), "generated_ids": run.tokenIds.map(Int.init),
            "prefill_tokens": prompt.promptIds.count, "prefill_seconds": first, "ttft_seconds": first,
            "decode_tokens": max(0, run.tokenIds.count - 1), "decode_seconds": last - first,
            "decode_token_seconds": gaps,
            "peak_phys_footprint_bytes": sampler.takePeak(),
            "os_proc_available_memory_bytes": DeviceMetrics.availableMemory(),
            "thermal_state": DeviceMetrics.thermalState(),
            "seconds_since_launch": LaunchClock.shared.secondsSinceLaunch,
        ]
    }

    private func batteryState() -> String {
        switch UIDevice.current.batteryState {
        case .charging: return "charging"
        case .full: return "full"
        case .unplugged: return "unplugged"
        default: return "unknown"
        }
    }
}
