import CoreAILanguageModels
import Foundation
import GemmaiosCore
#if canImport(UIKit)
import UIKit
#endif

/// Runs every prompt of the payload's prompt set for N trials and writes the transcript
/// (docs/contracts.md). Each prompt decodes exactly the set's max_new_tokens (no EOS stop),
/// the oracle's rule; the screen stays awake for the run. One launch of a multi-launch run
/// (cold launches: one trial each, timed from process start) adds its launch to the run's
/// transcript; sustained mode (`durationSeconds`) decodes on after the trials, sampling tok/s.
/// Thermal state and battery are recorded at each launch's start and end, thermal changes as
/// they happen. A failure writes no footer but a failure record (the reason, the prompt it was
/// on) as the last line, which `gemmaios bench` stops on at once; the app stays on screen.
@MainActor
final class BenchRunner: ObservableObject {
    @Published var status = "waiting"
    @Published var finished = false
    @Published var transcriptPath = ""

    func run(settings: LaunchSettings) async {
        let runId = settings.usableRunId ?? TranscriptWriter.newRunId()
        let writer: TranscriptWriter
        do {
            // A later launch of a multi-launch run (`gemmaios bench --cold N`) continues the
            // transcript launch 0 started; only the last launch writes the footer.
            writer = try TranscriptWriter(
                documents: AppRuntime.documents, runId: runId, append: settings.appendsToTranscript)
        } catch {
            status = "cannot write the transcript: \(error.localizedDescription)"
            return
        }
        transcriptPath = writer.url.path
        // An unattended run must not be interrupted by auto-lock (which also throttles the GPU).
        #if canImport(UIKit)
        let idleTimerWasDisabled = UIApplication.shared.isIdleTimerDisabled
        UIApplication.shared.isIdleTimerDisabled = true
        defer { UIApplication.shared.isIdleTimerDisabled = idleTimerWasDisabled }
        UIDevice.current.isBatteryMonitoringEnabled = true
        #else
        // macOS: no idle timer; the run holds off idle system and display sleep while it lasts
        let activity = ProcessInfo.processInfo.beginActivity(
            options: [.userInitiated, .idleDisplaySleepDisabled], reason: "gemmaios bench run")
        defer { ProcessInfo.processInfo.endActivity(activity) }
        #endif
        let sampler = FootprintSampler.forThisProcess()
        let launch = settings.launchIndex
        let thermal = ThermalTracker(start: DeviceMetrics.thermalState())
        // Every thermal transition is a record (the report plots them); prompts and samples poll too.
        let thermalObserver = NotificationCenter.default.addObserver(
            forName: ProcessInfo.thermalStateDidChangeNotification, object: nil, queue: nil
        ) { _ in
            let state = DeviceMetrics.thermalState()
            if thermal.observe(state) {
                try? writer.write([
                    "type": Contract.thermalRecord, "t": DeviceMetrics.secondsSinceProcessStart(), "state": state,
                    "launch": launch,
                ])
            }
        }
        defer { NotificationCenter.default.removeObserver(thermalObserver) }
        var current: (trial: Int, index: Int, id: String)? = nil  // the prompt under way: a failure names it
        do {
            let promptSet = try BenchPromptSet.load(from: AppRuntime.payload.promptSet)
            let rule = DecodeRule.bench(maxNewTokens: promptSet.maxNewTokens, eosTokenIds: AppConfig.eosTokenIds)
            if !settings.appendsToTranscript {
                try writer.write(header(runId: runId, settings: settings, promptSet: promptSet))
            }
            try writer.write(LaunchRecords.opening(
                settings: settings, thermalState: thermal.start, batteryLevel: DeviceMetrics.batteryLevel(),
                batteryState: DeviceMetrics.batteryState(),
                secondsSinceProcessStart: DeviceMetrics.secondsSinceProcessStart()))
            sampler.start(every: 0.5) { seconds, footprint in
                // after the footer the writer refuses records; stop() below makes that moot
                try? writer.write([
                    "type": "memory", "t": seconds, "launch": launch,
                    "phys_footprint_bytes": footprint, "available_bytes": DeviceMetrics.availableMemory(),
                ])
            }
            let plan = try EngineHost.prefillPlan(settings: settings)
            var loaded: LoadedEngine? = nil

            var firstTrial: [Int: [Int32]] = [:]  // by prompt index (prompts past the context never run)
            var divergent = 0
            var pastContext: Set<String> = []  // prompts longer than the bundle's context: left out, named
            for trial in settings.trialNumbers {
                // A/B mode: the prefill setting changes between trials. One engine at a time
                // (two would hold two KV caches), so a switch reloads; each load is recorded.
                let kvGrowth = settings.kv384(forTrial: trial) ? Contract.kvGrowthAlternate : Contract.kvGrowthDoubling
                if loaded == nil || loaded?.prefillFunction != plan.function(forTrial: trial)
                    || loaded?.kv.growth != kvGrowth
                {
                    loaded = nil
                    status = "loading \(AppConfig.bundleName)"
                    let engine = try await EngineHost.load(settings: settings, trial: trial)
                    try writer.write([
                        "type": "load", "seconds": engine.loadSeconds, "cold": engine.coldSpecialization,
                        Contract.promptPrefillFunctionField: engine.prefillFunction ?? NSNull(), "launch": launch,
                        Contract.promptKVGrowthField: engine.kv.growth,
                    ])
                    loaded = engine
                }
                guard let loaded else { break }
                for (index, prompt) in promptSet.prompts.enumerated() {
                    status = "trial \(trial + 1)/\(settings.trialNumbers.upperBound) · prompt \(index + 1)/"
                        + "\(promptSet.prompts.count)" + (settings.coldLaunch ? " · cold launch" : "")
                    if divergent > 0 { status += " · \(divergent) differ from trial 1" }
                    current = (trial, index, prompt.id)
                    try await loaded.engine.reset(to: 0)  // no prefix reuse between prompts
                    _ = sampler.takePeak()
                    let ids = try await BenchImages.engineIds(for: prompt, engine: loaded, payload: AppRuntime.payload)
                    guard ids.count + rule.maxNewTokens <= loaded.kv.maxContext else {
                        pastContext.insert(prompt.id)
                        NSLog("gemmaios: prompt %@ (%d + %d tokens) is past the engine's context of %d: left out",
                              prompt.id, ids.count, rule.maxNewTokens, loaded.kv.maxContext)
                        continue
                    }
                    let kvCapacity = loaded.bindKV(promptTokens: ids.count, maxNewTokens: rule.maxNewTokens)
                    let kvWarning = loaded.kvWarning(capacity: kvCapacity)
                    if let kvWarning {
                        status += " · \(kvWarning.name)"
                        NSLog("gemmaios: %@", kvWarning.message)
                    }
                    let requested = DeviceMetrics.secondsSinceProcessStart()
                    let run = try await Generation.run(engine: loaded.engine, prompt: ids, rule: rule)
                    if let first = firstTrial[index] {
                        if TokenComparison.firstDivergence(first, run.tokenIds) != nil { divergent += 1 }
                    } else {
                        firstTrial[index] = run.tokenIds
                    }
                    thermal.observe(DeviceMetrics.thermalState())
                    var line = record(trial: trial, index: index, prompt: prompt, run: run, sampler: sampler)
                    line[Contract.promptPrefillFunctionField] = loaded.prefillFunction ?? NSNull()
                    line["prefill_tokens"] = ids.count  // an image or audio prompt's expanded length
                    line[Contract.promptKVCapacityField] = kvCapacity
                    line[Contract.promptKVGrowthField] = loaded.kv.growth
                    line[Contract.promptWarningsField] = kvWarning.map { [$0.name] } ?? []
                    if let image = prompt.image { line[Contract.promptImageField] = image }  // scored vs the image oracle
                    if let clip = prompt.audio { line[Contract.promptAudioField] = clip }  // scored vs the audio oracle
                    line["launch"] = launch
                    if settings.coldLaunch && index == 0, let first = run.tokenTimes.first {
                        // process start → first token: launch, model load and prefill
                        line["ttft_since_launch_seconds"] = requested + first
                    }
                    try writer.write(line)
                }
            }
            current = nil
            var sustained: [String: Any] = [:]
            if settings.durationSeconds > 0, let loaded {
                sustained = try await runSustained(
                    settings: settings, engine: loaded, promptSet: promptSet, rule: rule, writer: writer,
                    thermal: thermal)
            }
            sampler.stop()  // returns once no memory record can follow: the footer is last
            var end = LaunchRecords.closing(
                settings: settings, thermal: thermal, batteryLevel: DeviceMetrics.batteryLevel(),
                batteryState: DeviceMetrics.batteryState(),
                secondsSinceProcessStart: DeviceMetrics.secondsSinceProcessStart())
            end.merge(sustained) { _, new in new }
            try writer.write(end)
            if settings.writesFooter {
                var footer: [String: Any] = [
                    "type": "footer", "completed": true, "ended_at": TranscriptWriter.timestamp(),
                    "battery_level": DeviceMetrics.batteryLevel(), "battery_state": DeviceMetrics.batteryState(),
                    "thermal_state": thermal.current,
                ]
                if let unlock = LaunchClock.shared.secondsSinceUnlock { footer["seconds_since_unlock"] = unlock }
                try writer.write(footer)
            }
            status = "done: \(writer.url.lastPathComponent)" + (divergent > 0 ? " (\(divergent) non-deterministic)" : "")
                + (pastContext.isEmpty ? "" : " · left out past the context: \(pastContext.sorted().joined(separator: ", "))")
                + (settings.writesFooter ? "" : " · launch \(launch + 1)/\(settings.launches)")
        } catch {
            sampler.stop()
            // No footer: readers treat the run as unfinished. Say why in the transcript's last record (the
            // bench stops on it at once instead of waiting out its timeout), on screen and in the log.
            var failure: [String: Any] = [
                "type": Contract.failureRecord, "reason": error.localizedDescription, "launch": launch,
                "t": DeviceMetrics.secondsSinceProcessStart(),
            ]
            if let current {
                failure["prompt_id"] = current.id
                failure["trial"] = current.trial
                failure["index"] = current.index
            }
            try? writer.write(failure)
            status = "failed: \(error.localizedDescription)"
            NSLog("gemmaios bench failed: %@", error.localizedDescription)
        }
        writer.close()
        finished = true
    }

    /// Sustained mode: the prompt set over and over (each prompt its own generation under the
    /// bench rule) for `durationSeconds`, a tok/s sample every `sampleIntervalSeconds`.
    /// Returns the launch_end fields that sum it up.
    private func runSustained(
        settings: LaunchSettings, engine loaded: LoadedEngine, promptSet: BenchPromptSet, rule: DecodeRule,
        writer: TranscriptWriter, thermal: ThermalTracker
    ) async throws -> [String: Any] {
        let meter = SustainedMeter(
            start: DeviceMetrics.secondsSinceProcessStart(), duration: Double(settings.durationSeconds),
            interval: Double(settings.sampleIntervalSeconds))
        var generations = 0
        func flush(_ samples: [SustainedSample]) throws {
            for sample in samples {
                thermal.observe(DeviceMetrics.thermalState())
                try writer.write(sample.record(thermalState: thermal.current, launch: settings.launchIndex))
            }
        }
        while meter.running(at: DeviceMetrics.secondsSinceProcessStart()) {
            let prompt = promptSet.prompts[generations % promptSet.prompts.count]
            status = "sustained · \(Int(DeviceMetrics.secondsSinceProcessStart() - meter.start))/"
                + "\(settings.durationSeconds) s · \(meter.totalTokens) tokens"
            try await loaded.engine.reset(to: 0)
            // an image (audio) prompt runs as in the trials: its picture (clip) through its asset, expanded ids
            let ids = try await BenchImages.engineIds(for: prompt, engine: loaded, payload: AppRuntime.payload)
            _ = loaded.bindKV(promptTokens: ids.count, maxNewTokens: rule.maxNewTokens)  // keeps the mirror true
            let requested = DeviceMetrics.secondsSinceProcessStart()
            let run = try await Generation.run(engine: loaded.engine, prompt: ids, rule: rule)
            for time in run.tokenTimes.map({ requested + $0 }) where time < meter.end {
                try flush(meter.token(at: time))
            }
            generations += 1
        }
        try flush(meter.finish(at: DeviceMetrics.secondsSinceProcessStart()))
        return [
            "sustained_seconds": Double(settings.durationSeconds), "sustained_tokens": meter.totalTokens,
            "sustained_generations": generations,
        ]
    }

    private func header(runId: String, settings: LaunchSettings, promptSet: BenchPromptSet) -> [String: Any] {
        [
            "type": "header", "schema": TranscriptWriter.schema, "run_id": runId,
            "started_at": TranscriptWriter.timestamp(),
            "device": [
                "product_type": DeviceMetrics.productType(), "name": DeviceMetrics.deviceName(),
                "os_version": DeviceMetrics.osVersion(), "arch": AppConfig.arch, "udid": settings.udid,
            ],
            "bundle": [
                "name": AppConfig.bundleName, "metadata_sha256": AppConfig.metadataSHA256,
                "quant": AppConfig.quant, "ple": AppConfig.pleMode.rawValue,
            ],
            "app": ["version": AppConfig.appVersion, "toolkit_version": AppConfig.toolkitVersion],
            "prompt_set": ["name": promptSet.name, "sha256": promptSet.sha256, "count": promptSet.prompts.count],
            "trials": settings.trials, "max_new_tokens": promptSet.maxNewTokens, "platform": AppConfig.platform,
            "ab_prefill": settings.abPrefill, "ab_kv": settings.abKV, "launches": settings.launches,
            "duration_s": settings.durationSeconds, "sample_interval_s": settings.sampleIntervalSeconds,
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
}
