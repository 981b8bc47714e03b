// Generated from toolkit/gemmaios/contract.py by `python -m gemmaios.contract --write`.
// Do not edit: change the Python contract and regenerate (a test checks this copy is current).

/// Every fact the app shares with the gemmaios toolkit (deploy, bench, the simulator).
public enum Contract {
    /// contract version (bump on any change the other side must follow)
    public static let version = 3
    /// payload root: <App>.app/<it> (bundled) or Documents/<it> (documents)
    public static let payloadFolder = "gemmaios-payload"
    /// <payload>/<it>/<bundle name>/: the LanguageBundle
    public static let bundlesFolder = "bundle"
    /// <payload>/<it>/: the PLE table files
    public static let tablesFolder = "tables"
    /// <payload>/<it>: the bench prompt set (token ids)
    public static let promptSetFile = "prompts.json"
    /// <payload>/<it>/<name>.safetensors: bench image prompts' pictures
    public static let imagesFolder = "images"
    /// prompt-set prompt / transcript prompt record: its picture (payload-relative; absent: a text prompt)
    public static let promptImageField = "image"
    /// the picture file's tensor: uint8 [H, W, 3] RGB
    public static let benchImageTensor = "image"
    /// <payload>/<it>/<name>.safetensors: bench audio prompts' clips
    public static let clipsFolder = "clips"
    /// prompt-set prompt / transcript prompt record: its clip (payload-relative; absent: no clip)
    public static let promptAudioField = "audio"
    /// the clip file's tensor: float32 [N] mono samples at audioSampleRate
    public static let benchAudioTensor = "samples"
    /// `schema` of the prompt-set file
    public static let promptSetSchema = "gemmaios.prompt-set/1"
    /// the bundle's metadata (assets.main → the model asset)
    public static let bundleMetadataFile = "metadata.json"
    /// the bundle's tokenizer folder
    public static let bundleTokenizerFolder = "tokenizer"
    /// int8 [V, L*D] PLE table
    public static let tableI8File = "embed_per_layer.i8"
    /// float32 [V] PLE row scales
    public static let tableScaleFile = "embed_per_layer.scale.f32"
    /// Documents/<it>/<run_id>.jsonl: bench transcripts
    public static let runsFolder = "gemmaios-runs"
    /// transcript file suffix
    public static let transcriptSuffix = ".jsonl"
    /// Documents/<it>: deploy's record (the app never writes it)
    public static let deviceManifestFile = "gemmaios-manifest.json"
    /// transcript header `schema`
    public static let transcriptSchema = "gemmaios.transcript/1"
    /// launch arguments are <it><name> [value]
    public static let launchArgumentPrefix = "-gemmaios-"
    /// environment values that turn a flag on
    public static let trueValues = ["1", "true", "yes"]
    /// environment: run the bench unattended and write a transcript (flag)
    public static let benchEnv = "GEMMAIOS_BENCH"
    /// launch argument for GEMMAIOS_BENCH
    public static let benchArgument = "-gemmaios-bench"
    /// environment: trials over the prompt set (default: the rendered app's) (int)
    public static let trialsEnv = "GEMMAIOS_TRIALS"
    /// launch argument for GEMMAIOS_TRIALS
    public static let trialsArgument = "-gemmaios-trials"
    /// environment: names the transcript <run_id>.jsonl (no '/'; default: a UTC timestamp) (string)
    public static let runIdEnv = "GEMMAIOS_RUN_ID"
    /// launch argument for GEMMAIOS_RUN_ID
    public static let runIdArgument = "-gemmaios-run-id"
    /// environment: the device's UDID, written to the transcript header (apps cannot read it) (string)
    public static let udidEnv = "GEMMAIOS_UDID"
    /// launch argument for GEMMAIOS_UDID
    public static let udidArgument = "-gemmaios-udid"
    /// environment: remove Library/Caches/coreai-cache before loading (a cold specialization) (flag)
    public static let clearSpecCacheEnv = "GEMMAIOS_CLEAR_SPEC_CACHE"
    /// launch argument for GEMMAIOS_CLEAR_SPEC_CACHE
    public static let clearSpecCacheArgument = "-gemmaios-clear-spec-cache"
    /// environment: prefill through `main` only, even when the bundle has a prefill function (A/B in one build) (flag)
    public static let prefillOffEnv = "GEMMAIOS_PREFILL_OFF"
    /// launch argument for GEMMAIOS_PREFILL_OFF
    public static let prefillOffArgument = "-gemmaios-prefill-off"
    /// environment: bench: alternate the prefill function on (even trials) and off (odd trials), one run (flag)
    public static let abPrefillEnv = "GEMMAIOS_AB_PREFILL"
    /// launch argument for GEMMAIOS_AB_PREFILL
    public static let abPrefillArgument = "-gemmaios-ab-prefill"
    /// environment: start the KV cache at 384 positions so it never binds 2048 or 4096 (context capped at the largest 384·2^k within the bundle's) (flag)
    public static let kv384Env = "GEMMAIOS_KV_384"
    /// launch argument for GEMMAIOS_KV_384
    public static let kv384Argument = "-gemmaios-kv-384"
    /// environment: bench: alternate the KV cache's start, 256 (even trials) and 384 (odd trials), one run (flag)
    public static let abKVEnv = "GEMMAIOS_AB_KV"
    /// launch argument for GEMMAIOS_AB_KV
    public static let abKVArgument = "-gemmaios-ab-kv"
    /// environment: bench: this launch's number in a multi-launch run (0 starts the transcript, later launches append to it; default 0) (int)
    public static let launchIndexEnv = "GEMMAIOS_LAUNCH_INDEX"
    /// launch argument for GEMMAIOS_LAUNCH_INDEX
    public static let launchIndexArgument = "-gemmaios-launch-index"
    /// environment: bench: launches in the run; the last one writes the footer (default 1) (int)
    public static let launchesEnv = "GEMMAIOS_LAUNCHES"
    /// launch argument for GEMMAIOS_LAUNCHES
    public static let launchesArgument = "-gemmaios-launches"
    /// environment: bench: this launch is one cold trial (time to first token counted from process start, model load included) (flag)
    public static let coldLaunchEnv = "GEMMAIOS_COLD_LAUNCH"
    /// launch argument for GEMMAIOS_COLD_LAUNCH
    public static let coldLaunchArgument = "-gemmaios-cold-launch"
    /// environment: bench: the number of this launch's first trial (trial numbers stay unique across launches; default 0) (int)
    public static let firstTrialEnv = "GEMMAIOS_FIRST_TRIAL"
    /// launch argument for GEMMAIOS_FIRST_TRIAL
    public static let firstTrialArgument = "-gemmaios-first-trial"
    /// environment: bench: after the trials, decode continuously for this many seconds (sustained mode; default 0 = off) (int)
    public static let durationEnv = "GEMMAIOS_DURATION"
    /// launch argument for GEMMAIOS_DURATION
    public static let durationArgument = "-gemmaios-duration"
    /// environment: bench: sustained mode's seconds between tok/s samples (default 10) (int)
    public static let sampleIntervalEnv = "GEMMAIOS_SAMPLE_INTERVAL"
    /// launch argument for GEMMAIOS_SAMPLE_INTERVAL
    public static let sampleIntervalArgument = "-gemmaios-sample-interval"
    /// bench: exactly max_new_tokens per prompt, no EOS stop (the oracle's rule)
    public static let benchStopsAtEOS = false
    /// chat: a reply ends at an EOS id
    public static let chatStopsAtEOS = true
    /// chat: reply length cap
    public static let chatMaxNewTokens = 256
    /// chat: opens a reply's reasoning channel
    public static let chatChannelStart = "<|channel>"
    /// chat: closes it; the answer follows
    public static let chatChannelEnd = "<channel|>"
    /// chat: the channel's first line (not shown)
    public static let chatThoughtName = "thought\n"
    /// chat template argument that turns thinking on
    public static let chatThinkingArgument = "enable_thinking"
    /// provider bundles: fp16 [1,1,L,D] per token
    public static let pleTokensInput = "ple_tokens"
    /// tbl bundles: int8 [V, L*D]
    public static let pleTableInput = "ple_table"
    /// tbl bundles: float32 [V]
    public static let pleScaleInput = "ple_scale"
    /// the graph's function
    public static let mainFunction = "main"
    /// function_map role naming the prefill_C functions (input_ids [1,C])
    public static let prefillRole = "prefill"
    /// transcript prompt record: the prefill function that ran, or null (main only)
    public static let promptPrefillFunctionField = "prefill_function"
    /// metadata.json gemmaios.<it>: the vision asset's facts (absent: text-only bundle)
    public static let visionMetadataKey = "vision"
    /// gemmaios.vision.<it>: the vision asset's file in the bundle folder
    public static let visionAssetField = "asset"
    /// vision asset: fp16 [1,P,3*p*p] patches in [0,1], padding rows 0
    public static let visionPixelsInput = "pixel_values"
    /// vision asset: int32 [1,P,2] (x,y) per patch, padding (-1,-1)
    public static let visionPositionsInput = "pixel_position_ids"
    /// vision asset output: fp16 [N,hidden], first num_soft_tokens rows real
    public static let visionOutput = "image_embeds"
    /// main: static fp16 [N,hidden]; ids >= V read row id-V (zeros: no image)
    public static let imageEmbedsInput = "image_embeds"
    /// PLE provider: ids >= V gather the row gemmaios.vision.<it> names (the pad token's)
    public static let splicedPleRowKey = "pad_token_id"
    /// metadata.json gemmaios.<it>: the audio asset's facts (absent: the bundle takes no audio)
    public static let audioMetadataKey = "audio"
    /// gemmaios.audio.<it>: the audio asset's file in the bundle folder
    public static let audioAssetField = "asset"
    /// audio asset: fp16 [1,F,128] log-mel features, padding rows 0
    public static let audioFeaturesInput = "input_features"
    /// audio asset: int32 [1,F] frame mask, 1 for a real frame
    public static let audioMaskInput = "input_features_mask"
    /// audio asset output: fp16 [T,hidden], first num_soft_tokens rows real
    public static let audioOutput = "audio_embeds"
    /// main: the audio asset's rows bind here; the k-th audio soft token becomes id V+k and takes the pad PLE row, as image tokens do
    public static let audioEmbedsInput = "image_embeds"
    /// metadata.json gemmaios.<it>: the 12B's multimodal constants and functions (absent: not the multi-function bundle)
    public static let multimodalMetadataKey = "multimodal"
    /// gemmaios.multimodal.<it>: function name → its I/O
    public static let multimodalFunctionsField = "functions"
    /// the whole multimodal prompt in one call (caller-built masks), the KV states filled
    public static let prefillMultimodalFunction = "prefill_multimodal"
    /// one picture's merged patch rows → its soft-token rows
    public static let embedVisionFunction = "embed_vision"
    /// one clip's 16 kHz frames → its soft-token rows
    public static let embedAudioFunction = "embed_audio"
    /// main / prefill_multimodal: int32 [1,S] token ids
    public static let inputIdsInput = "input_ids"
    /// main / prefill_multimodal: int32 [1,P] positions 0..P-1
    public static let positionIdsInput = "position_ids"
    /// main / prefill_multimodal: logits [1,1,V] of the last row
    public static let logitsOutput = "logits"
    /// the key cache state (main and prefill_multimodal share it)
    public static let keyCacheState = "keyCache"
    /// the value cache state
    public static let valueCacheState = "valueCache"
    /// prefill_multimodal: fp16 [1,S,hidden], embedder rows where mm_mask is set
    public static let mmEmbedsInput = "mm_embeds"
    /// prefill_multimodal: bool [1,S], true at soft tokens
    public static let mmMaskInput = "mm_mask"
    /// prefill_multimodal: bool [1,1,S,P] (true = attend), sliding layers
    public static let maskSlidingInput = "mask_sliding"
    /// prefill_multimodal: bool [1,1,S,P] (true = attend), global layers
    public static let maskGlobalInput = "mask_global"
    /// embed_vision: fp16 [1,N,patch_dim] merged patch rows
    public static let embedPixelsInput = "pixel_values"
    /// embed_vision: int32 [1,N,2] (x,y) per row
    public static let embedPositionsInput = "image_position_ids"
    /// embed_audio: fp16 [1,T,samples_per_token] raw frames
    public static let embedFramesInput = "input_features"
    /// embed_vision / embed_audio output: [1,N,hidden]
    public static let embedsOutput = "embeds"
    /// rendered prompt text: where a picture goes
    public static let imageMarker = "<image>"
    /// rendered prompt text: where a clip goes
    public static let audioMarker = "<audio>"
    /// bench: default seconds between sustained samples
    public static let sustainedSampleInterval = 10
    /// launch record kind: one trial timed from process start
    public static let launchKindCold = "cold"
    /// launch record kind: trials back to back in one process
    public static let launchKindWarm = "warm"
    /// transcript record type opening each launch
    public static let launchRecord = "launch"
    /// transcript record type closing each launch
    public static let launchEndRecord = "launch_end"
    /// transcript record type: a thermal state change
    public static let thermalRecord = "thermal"
    /// transcript record type: a sustained tok/s sample
    public static let sampleRecord = "sample"
    /// transcript record type: the bench failed (reason, the prompt it was on); the last record, no footer follows
    public static let failureRecord = "failure"
    /// KV positions the pinned engine allocates first (it doubles from there up to max_context, never shrinking)
    public static let kvInitialCapacity = 256
    /// iOS: largest KV binding known token-exact on a phone (apple/coreai-models#124)
    public static let iosKVSafeCapacity = 1024
    /// the upstream issue the iOS KV warning cites
    public static let kvFaultIssue = "apple/coreai-models#124"
    /// name of the warning an iOS KV binding above the safe capacity carries
    public static let kvFaultWarning = "ios-kv-capacity-above-1024"
    /// transcript prompt record: KV positions bound for it
    public static let promptKVCapacityField = "kv_capacity"
    /// the candidate #124 workaround's first KV size (EngineOptions.kvCacheSize): doubling from it never binds 2048 or 4096
    public static let kvAlternateInitialCapacity = 384
    /// kv_growth value: upstream's start (256)
    public static let kvGrowthDoubling = "from-256"
    /// kv_growth value: the 384 start
    public static let kvGrowthAlternate = "from-384"
    /// transcript prompt and load records: how the KV cache grew
    public static let promptKVGrowthField = "kv_growth"
    /// transcript prompt record: named warnings that applied
    public static let promptWarningsField = "warnings"
    /// metadata.json gemmaios.<it>: the context an iOS build allows and why
    public static let kvGuardMetadataKey = "kv_guard"
    /// engine environment variable set at load
    public static let chunkThresholdVariable = "COREAI_CHUNK_THRESHOLD"
    /// its value
    public static let chunkThresholdValue = "1"
    /// image: patch side in pixels
    public static let imagePatchSize = 16
    /// image: k x k patches pool into one soft token
    public static let imagePoolingKernel = 3
    /// image: soft-token budget (static grid = it * kernel^2 patches)
    public static let imageMaxSoftTokens = 280
    /// image: budgets HF's processor accepts
    public static let imageSupportedSoftTokens = [70, 140, 280, 560, 1120]
    /// image: RGB channels per pixel
    public static let imageChannels = 3
    /// image: pixel_values = u8 * (1/it), no normalisation
    public static let imageRescaleDivisor = 255
    /// image: pixel_position_ids of padding patches
    public static let imagePadPosition = -1
    /// audio: the feature extractor's sample rate (Hz, mono)
    public static let audioSampleRate = 16000
    /// audio: mel filters (features per frame)
    public static let audioMelBins = 128
    /// audio: samples per frame (periodic Hann window)
    public static let audioFrameLength = 320
    /// audio: samples between frame starts
    public static let audioHopLength = 160
    /// audio: rfft points (frames zero-padded to it)
    public static let audioFFTLength = 512
    /// audio: lowest mel filter edge (Hz)
    public static let audioMinFrequency = 0.0
    /// audio: highest mel filter edge (Hz)
    public static let audioMaxFrequency = 8000.0
    /// audio: features = log(mel + it)
    public static let audioMelFloor = 0.001
    /// audio: a clip is cut to this many samples (30 s)
    public static let audioMaxSamples = 480000
    /// audio: clips are zero-padded to a multiple of it (samples)
    public static let audioPadMultiple = 128
}
