"""Audio prompts in the app and in deploy → bench → report (issue 28), mirroring test_imgbench.

Fast tests: the Swift prompt side of a clip (GemmaiosCore AudioPrompt.swift under `swift test`)
against the toolkit's gemmaios.audio.preprocess; the bench machinery (prompt entries, clip files,
payload, token-by-token scoring with the margin rule) on a small audio oracle written here.
Full tier: the shared int8 audio app build (the trained tiny-audio checkpoint, its audio gate
passed) through the app step, deploy, the loopback simulator's app stand-in (which runs each clip
as BenchImages.swift's BenchAudio does: features, the audio asset, expanded ids, under Core AI's
runtime) and the report. Those assert the scoring against the audio oracle, not the tiny model's
answers (the shipped weights answer 5 of 8 clips right; docs/audio.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gemmaios import contract
from gemmaios.audio import audiobench
from gemmaios.audio.audiobench import audio_markers, score_audio_prompts
from gemmaios.audio.oracle import AUDIO_ORACLE_DIR, AUDIO_ORACLE_FILE
from gemmaios.oracle import DIVERGED, EXACT, NEAR_TIE, PROMPT_MISMATCH, load_oracle
from gemmaios.oracle.records import Oracle, OraclePrompt, TopK
from gemmaios.payload import PayloadError, bench_media_files
from gemmaios.transcript import TranscriptError, read_transcript, write_transcript
from gemmaios.vision.imagebench import expand_placeholder, fold_placeholder

SPEC = {"audio_token_id": 9, "boa_token_id": 7, "eoa_token_id": 8}  # a made-up oracle's markers


# ---- the Swift prompt side against the toolkit's --------------------------------------------------

def _engine_ids(prompt: list[int], spec, n: int) -> list[int]:
    from gemmaios.audio.preprocess import splice_ids

    expanded = expand_placeholder(prompt, n, audio_markers(spec.as_dict()))
    return splice_ids(expanded, spec)


@pytest.fixture(scope="module")
def prompt_vectors(audio_checkpoint, tmp_path_factory):
    """A bundle's gemmaios.audio block as convert writes it (gemmaios.audio.export's keys) and clips of several
    lengths with the toolkit's mask, soft-token count and engine ids."""
    from gemmaios.audio import clips
    from gemmaios.audio.export import audio_asset_facts
    from gemmaios.audio.preprocess import AudioSpec, prepare
    from gemmaios.audio.tinymodel import processor_config

    root = tmp_path_factory.mktemp("audio-prompt-vectors")
    spec = AudioSpec.from_config(audio_checkpoint.config, processor_config())
    facts = audio_asset_facts({contract.AUDIO_ASSET_FIELD: "tiny.audio.aimodel", **spec.as_dict(), "hidden_size": 64},
                              spec.max_soft_tokens)
    (root / contract.BUNDLE_METADATA_FILE).write_text(json.dumps({"gemmaios": {contract.AUDIO_METADATA_KEY: facts}}))
    rate = spec.sampling_rate
    cases = []
    lengths = {"tone-0.3s": int(0.3 * rate), "noise-1.1s": int(1.1 * rate) + 37, "tone-full": spec.max_samples,
               "short-641": 641, "too-long": spec.max_samples + 1}
    prompt = [2, 5, spec.audio_token_id, 6]
    for i, (name, n) in enumerate(lengths.items()):
        t = np.arange(n) / rate
        samples = (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32) if "noise" not in name else \
            np.resize(clips.white_noise(n / rate + 0.01, seed=3), n).astype(np.float32)
        case = {"name": name, "prompt_ids": prompt}
        tensors = {contract.BENCH_AUDIO_TENSOR: samples}
        if n > spec.max_samples:
            case["refused"] = "clipTooLong"
        else:
            prepared = prepare(samples, spec)
            tensors[contract.AUDIO_MASK_INPUT] = prepared.input_features_mask.astype(np.uint8)
            case.update(soft_tokens=prepared.num_soft_tokens, engine_ids=_engine_ids(prompt, spec, prepared.num_soft_tokens))
        save_file(tensors, str(root / f"{name}.safetensors"))
        cases.append(case)
    (root / "cases.json").write_text(json.dumps({"cases": cases}))
    return root, spec, cases


def test_the_vectors_cover_padding_the_full_length_and_the_refusal(prompt_vectors):
    _, spec, cases = prompt_vectors
    counts = {c["name"]: c.get("soft_tokens") for c in cases}
    assert counts["tone-full"] == spec.max_soft_tokens and 0 < counts["tone-0.3s"] < counts["noise-1.1s"] < spec.max_soft_tokens
    assert any(c.get("refused") for c in cases)
    full = next(c for c in cases if c["name"] == "tone-full")["engine_ids"]
    v = spec.vocab_size
    assert full[:4] == [2, 5, spec.boa_token_id, v] and full[-2:] == [spec.eoa_token_id, 6]
    assert full[2 + spec.max_soft_tokens] == v + spec.max_soft_tokens - 1


def test_swift_audio_prompts_match_the_toolkit(swift_toolchain, prompt_vectors):
    """GemmaiosCore's AudioInputConfig (metadata → config; features padded to the asset's length; soft tokens;
    expansion and id splice) gives the toolkit's mask, count and ids on every clip, and refuses the long one."""
    from swift_toolchain import CORE, run, swift_cache

    folder, _, cases = prompt_vectors
    output = run([swift_toolchain.swift, "test", "--package-path", CORE, "--scratch-path", swift_cache("GemmaiosCore"),
                  "--filter", "AudioPromptTests"], env={"GEMMAIOS_AUDIO_PROMPT_VECTORS": str(folder)})
    assert f"audio prompt vectors: {len(cases)} cases match the toolkit" in output, output[-3000:]
    assert "Executed 4 tests, with 0 failures" in output and "skipped" not in output.split("Executed 4 tests")[-1]


def test_the_swift_config_reads_every_key_convert_writes():
    """The metadata keys AudioInputConfig.from(metadata:) reads are ones gemmaios.audio.export writes."""
    import re

    from gemmaios.audio.preprocess import AudioSpec

    source = (Path(__file__).parents[1] / "ios_template/GemmaiosCore/Sources/GemmaiosCore/AudioPrompt.swift").read_text()
    read = set(re.findall(r'int\("(\w+)"\)', source))
    written = set(AudioSpec.__dataclass_fields__) | {"max_frames", "max_soft_tokens", "max_seconds", "hidden_size",
                                                     "embeds_rows", contract.SPLICED_PLE_ROW_KEY}
    assert read and read <= written, read - written


# ---- the bench machinery on a small audio oracle ----------------------------------------------------

def small_audio_oracle(folder: Path) -> Oracle:
    """Three clips' prompts as the audio oracle writes them: HF's expanded ids (2, 3 and 4 soft tokens), greedy
    tokens with their top-2 logits (one close step), and each clip's record (<name>.safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    prompts = []
    for i, (name, n) in enumerate((("one", 2), ("two", 3), ("tone", 4))):
        ids = [2, 5, SPEC["boa_token_id"], *[SPEC["audio_token_id"]] * n, SPEC["eoa_token_id"], 6]
        generated = [11 + i, 12, 13, 14]
        steps = [TopK([t, 20], [5.0, 5.0 - (0.05 if (i, k) == (1, 2) else 2.0 + k)]) for k, t in enumerate(generated)]
        prompts.append(OraclePrompt(name, "What do you hear?\n<audio>", ids, generated, steps))
        samples = np.linspace(-0.5, 0.5, 800 + 160 * i, dtype=np.float32)
        save_file({"samples": samples, "input_features": np.zeros((4, 128), np.float32),
                   "input_features_mask": np.ones(4, np.int32), "input_ids": np.asarray(ids, np.int32),
                   "spliced_input_ids": np.asarray(ids, np.int32), "num_soft_tokens": np.asarray([n], np.int32),
                   "audio_features": np.zeros((n, 8), np.float32)}, str(folder / f"{name}.safetensors"))
    oracle = Oracle(model={"id": "t"}, tokenizer_sha256="x", chat_template=True,
                    prompt_set={"name": "builtin-clips", "clips": [p.id for p in prompts], "audio_spec": SPEC},
                    max_new_tokens=4, top_k=2, eos_token_ids=[1], prompts=prompts)
    oracle.save(folder / AUDIO_ORACLE_FILE)
    return oracle


def _transcript(path: Path, rows: list[dict], sha: str = "x") -> Path:
    header = {"type": "header", "schema": contract.TRANSCRIPT_SCHEMA, "run_id": "r", "started_at": "t", "device": {},
              "bundle": {"name": "b"}, "prompt_set": {"name": "s", "sha256": sha, "count": len(rows)},
              "trials": 1, "max_new_tokens": 4}
    return write_transcript(path, [header, *rows, {"type": "footer", "completed": True}])


def _record(index: int, entry: dict, generated: list[int], prefill: int, **extra) -> dict:
    return {"type": "prompt", "trial": 0, "index": index, "prompt_id": entry["id"], "prompt_ids": entry["prompt_ids"],
            "generated_ids": generated, "prefill_tokens": prefill, "prefill_seconds": 0.1, "decode_tokens": 3,
            "decode_seconds": 0.2, **{k: entry[k] for k in (contract.PROMPT_AUDIO_FIELD,) if k in entry}, **extra}


def test_audio_prompt_entries_fold_the_clip_and_name_their_files(tmp_path):
    oracle = small_audio_oracle(tmp_path / "audio")
    entries, sources = audiobench.audio_prompts(tmp_path / "audio")
    markers = audio_markers(SPEC)
    assert [e["id"] for e in entries] == ["one", "two", "tone"]
    for entry, ref in zip(entries, oracle.prompts, strict=True):
        assert entry["prompt_ids"] == [2, 5, SPEC["audio_token_id"], 6]  # the placeholder once
        assert expand_placeholder(entry["prompt_ids"], ref.prompt_ids.count(markers.image), markers) == ref.prompt_ids
        assert entry[contract.PROMPT_AUDIO_FIELD] == f"{contract.PAYLOAD_CLIPS_DIR}/{ref.id}.safetensors"
        dest = audiobench.write_clip_file(Path(sources[entry[contract.PROMPT_AUDIO_FIELD]]),
                                          tmp_path / "payload" / entry[contract.PROMPT_AUDIO_FIELD])
        tensors = load_file(str(dest))
        assert list(tensors) == [contract.BENCH_AUDIO_TENSOR]
        np.testing.assert_array_equal(tensors[contract.BENCH_AUDIO_TENSOR],
                                      load_file(sources[entry[contract.PROMPT_AUDIO_FIELD]])["samples"])
    # the set's identity changes with the clips' samples
    _, sha = audiobench.with_audio_prompt_set("builtin", "t" * 64, tmp_path / "audio")
    data = load_file(str(tmp_path / "audio" / "one.safetensors"))
    data["samples"] = data["samples"] * 0.5
    save_file(data, str(tmp_path / "audio" / "one.safetensors"))
    assert audiobench.with_audio_prompt_set("builtin", "t" * 64, tmp_path / "audio")[1] != sha
    assert fold_placeholder(oracle.prompts[0].prompt_ids, markers) == entries[0]["prompt_ids"]


def test_the_payload_carries_the_clips_and_refuses_a_missing_or_outside_one(tmp_path):
    small_audio_oracle(tmp_path / "audio")
    entries, sources = audiobench.audio_prompts(tmp_path / "audio")
    app = tmp_path / "app"
    for rel, record in sources.items():
        audiobench.write_clip_file(Path(record), app / rel)
    prompts = app / contract.PROMPT_SET_FILE
    prompts.write_text(json.dumps({"prompts": [{"id": "t", "prompt_ids": [2, 3]}, *entries]}))
    assert sorted(rel for _, rel in bench_media_files(prompts)) == sorted(sources)
    (app / entries[1][contract.PROMPT_AUDIO_FIELD]).unlink()
    with pytest.raises(PayloadError, match=f"prompt 'two' .* names the clip {entries[1][contract.PROMPT_AUDIO_FIELD]}, "
                                           "but .* is missing"):
        bench_media_files(prompts)
    for outside in ("../oracle/oracle.json", "/etc/passwd", "bundle/x.safetensors"):
        prompts.write_text(json.dumps({"prompts": [{**entries[0], contract.PROMPT_AUDIO_FIELD: outside}]}))
        with pytest.raises(PayloadError, match="not a clip file inside the payload"):
            bench_media_files(prompts)


def test_audio_prompts_are_scored_token_by_token_with_the_margin_rule_and_the_soft_token_count(tmp_path):
    small_audio_oracle(tmp_path / "audio")
    oracle = load_oracle(tmp_path / "audio" / AUDIO_ORACLE_FILE)
    entries = {e["id"]: e for e in audiobench.audio_prompts(tmp_path / "audio")[0]}
    refs = {p.id: p for p in oracle.prompts}
    text = {"id": "capital", "prompt_ids": [2, 40, 41]}
    rows = [_record(0, text, [30, 31, 32, 33], 3)]  # a text prompt: not the audio oracle's
    # one: exact; two: flips at its close step (margin 0.05: a near-tie); tone: flips at a clear step,
    # then the same clip expanded to one soft token too many (a prompt mismatch)
    for index, pid in enumerate(["one", "two", "tone"], start=1):
        generated = list(refs[pid].generated_ids)
        if pid == "two":
            generated[2] = 20
        if pid == "tone":
            generated[1] = 20
        rows.append(_record(index, entries[pid], generated, len(refs[pid].prompt_ids)))
    rows.append(_record(4, entries["tone"], list(refs["tone"].generated_ids), len(refs["tone"].prompt_ids) + 1,
                        trial=0))
    rows[-1]["index"] = 4
    run = read_transcript(_transcript(tmp_path / "run.jsonl", rows))
    score = score_audio_prompts(run, tmp_path / "audio")
    verdicts = [(p.prompt_id, p.verdict, p.divergence) for p in score.prompts]
    assert verdicts == [("one", EXACT, None), ("two", NEAR_TIE, 2), ("tone", DIVERGED, 1), ("tone", PROMPT_MISMATCH, 7)]
    assert score.prompts[2].margin == pytest.approx(3.0) and score.prompts[1].margin == pytest.approx(0.05)
    assert "expanded the clip to 5 soft tokens, the oracle's processor to 4" in score.prompts[3].note
    assert score.exact == 1 and score.total == 4 and not score.passed
    assert [p.index for p in score.prompts] == [1, 2, 3, 4]  # the transcript's own index
    # the text scoring leaves the audio records to the audio oracle
    from gemmaios.oracle.scoring import score_against_oracle

    assert [g.prompt_id for g in score_against_oracle(run, oracle).prompts] == ["capital"]
    # the prompt set's sha256: the text prompts' plus the audio oracle's
    _, want = audiobench.with_audio_prompt_set("", "t" * 64, tmp_path / "audio")
    assert score_audio_prompts(run, tmp_path / "audio", prompt_set_sha256="t" * 64).warnings[0].endswith(
        f"is not the text oracle's prompts plus the audio oracle's ({want[:12]})")
    same = read_transcript(_transcript(tmp_path / "same.jsonl", rows, sha=want))
    assert score_audio_prompts(same, tmp_path / "audio", prompt_set_sha256="t" * 64).warnings == []
    only_text = read_transcript(_transcript(tmp_path / "text.jsonl", rows[:1]))
    assert score_audio_prompts(only_text, tmp_path / "audio") is None


def test_a_transcript_audio_field_must_be_a_path_and_not_beside_an_image(tmp_path):
    entry = {"id": "a", "prompt_ids": [2, 3], contract.PROMPT_AUDIO_FIELD: 5}
    with pytest.raises(TranscriptError, match="clip's payload path"):
        read_transcript(_transcript(tmp_path / "bad.jsonl", [_record(0, entry, [1], 2)]))
    both = {"id": "a", "prompt_ids": [2, 3], contract.PROMPT_AUDIO_FIELD: "clips/a.safetensors"}
    with pytest.raises(TranscriptError, match="one picture or one clip"):
        read_transcript(_transcript(tmp_path / "both.jsonl",
                                    [_record(0, both, [1], 2, **{contract.PROMPT_IMAGE_FIELD: "images/a.safetensors"})]))


def test_a_bundle_without_audio_refuses_an_audio_prompt_as_the_app_does(tmp_path):
    """BenchAudio.engineIds: a clip prompt on a bundle without gemmaios.audio is the app's named error."""
    from devicesim.benchimages import BenchImageFailed, engine_input

    class App:
        contract = {"promptImageField": contract.PROMPT_IMAGE_FIELD, "promptAudioField": contract.PROMPT_AUDIO_FIELD,
                    "bundleMetadataFile": contract.BUNDLE_METADATA_FILE, "audioMetadataKey": contract.AUDIO_METADATA_KEY,
                    "visionMetadataKey": contract.VISION_METADATA_KEY}

        def c(self, name):
            return self.contract[name]

    bundle = tmp_path / "bundle" / "b"
    bundle.mkdir(parents=True)
    (bundle / contract.BUNDLE_METADATA_FILE).write_text(json.dumps({"gemmaios": {}}))
    prompt = {"id": "p", "prompt_ids": [2, 3], contract.PROMPT_AUDIO_FIELD: "clips/p.safetensors"}
    with pytest.raises(BenchImageFailed, match="prompt p has a clip, b takes no audio"):
        engine_input(App(), tmp_path, bundle, "b", prompt)


# ---- the shared audio app build (full tier) ---------------------------------------------------------

def prompt_set(build: Path) -> dict:
    return json.loads((build / "app" / contract.PROMPT_SET_FILE).read_text())


@pytest.mark.full
def test_an_audio_capable_build_benches_every_audio_oracle_prompt(audio_app_build):
    from gemmaios.payload import payload_plan

    build = audio_app_build
    data = prompt_set(build)
    text = load_oracle(build / "oracle" / "oracle.json")
    clips = load_oracle(build / AUDIO_ORACLE_DIR / AUDIO_ORACLE_FILE)
    markers = audio_markers(clips.prompt_set["audio_spec"])
    entries = data["prompts"]
    assert [(p["id"], p["prompt_ids"]) for p in entries[: len(text.prompts)]] == [(p.id, p.prompt_ids) for p in text.prompts]
    heard = entries[len(text.prompts):]
    assert [p["id"] for p in heard] == [p.id for p in clips.prompts] and len(heard) == 8
    for entry, ref in zip(heard, clips.prompts, strict=True):
        assert entry[contract.PROMPT_AUDIO_FIELD] == f"{contract.PAYLOAD_CLIPS_DIR}/{ref.id}.safetensors"
        assert entry["prompt_ids"].count(markers.image) == 1
        assert expand_placeholder(entry["prompt_ids"], ref.prompt_ids.count(markers.image), markers) == ref.prompt_ids
        samples = load_file(str(build / "app" / entry[contract.PROMPT_AUDIO_FIELD]))[contract.BENCH_AUDIO_TENSOR]
        np.testing.assert_array_equal(samples, load_file(str(build / AUDIO_ORACLE_DIR / f"{ref.id}.safetensors"))["samples"])
    assert data["name"] == "builtin+builtin-clips" and data["sha256"] != text.prompt_set["sha256"]
    dests = [dest for _, dest in payload_plan(build).documents_files()]
    assert all(f"{contract.PAYLOAD_DIR}/{e[contract.PROMPT_AUDIO_FIELD]}" in dests for e in heard)


@pytest.mark.full
def test_deploy_bench_report_runs_and_scores_the_audio_prompts(sim, audio_app_build, tmp_path):
    """deploy (documents: the clips pushed) → bench (the stand-in runs each clip's features through the audio
    asset and the expanded prompt through Core AI's runtime) → report (audio prompts scored token by token
    against the audio oracle)."""
    from device_helpers import add_device, on_device, records
    from devicebuild import copy_build
    from devicesim.appbuild import package_app
    from typer.testing import CliRunner

    from gemmaios import devicebench as bench_mod
    from gemmaios.cli import app as cli_app

    build = copy_build(audio_app_build, tmp_path / "build")
    package_app(build)
    device = add_device(sim)
    runner = CliRunner()
    deployed = runner.invoke(cli_app, ["deploy", "--out", str(build), "--allow-uncompiled"])
    assert deployed.exit_code == 0, deployed.output
    entries = prompt_set(build)["prompts"]
    heard = [p for p in entries if contract.PROMPT_AUDIO_FIELD in p]
    assert len(heard) == 8
    for p in heard:  # pushed byte for byte
        pushed = on_device(device, f"{contract.PAYLOAD_DIR}/{p[contract.PROMPT_AUDIO_FIELD]}")
        assert pushed.read_bytes() == (build / "app" / p[contract.PROMPT_AUDIO_FIELD]).read_bytes()

    result = bench_mod.bench(build, trials=1, timeout=600, poll=0.2)
    assert result.status == bench_mod.COMPLETED and result.validation == "ok", device.app_log()
    lines = [ln for ln in records(result.transcript) if ln["type"] == "prompt"]
    assert len(lines) == len(entries)
    oracle = {p.id: p for p in load_oracle(build / AUDIO_ORACLE_DIR / AUDIO_ORACLE_FILE).prompts}
    audio_lines = [ln for ln in lines if contract.PROMPT_AUDIO_FIELD in ln]
    assert [ln["prompt_id"] for ln in audio_lines] == [p["id"] for p in heard]
    for ln, entry in zip(audio_lines, heard, strict=True):
        assert ln[contract.PROMPT_AUDIO_FIELD] == entry[contract.PROMPT_AUDIO_FIELD]
        assert ln["prompt_ids"] == entry["prompt_ids"]
        assert ln["prefill_tokens"] == len(oracle[ln["prompt_id"]].prompt_ids) > len(entry["prompt_ids"]) + 2

    reported = runner.invoke(cli_app, ["report", str(result.run_dir), "--require-oracle", "near-tie", "--json"])
    report = json.loads(reported.stdout[reported.stdout.index("{"):reported.stdout.rindex("}") + 1])
    run = report["runs"][0]
    assert run["oracle"]["label"] == "8/8", run["oracle"]  # text prompts: the text oracle
    clips = run["audio_oracle"]
    assert clips["total"] == 8 and [p["prompt_id"] for p in clips["prompts"]] == [p["id"] for p in heard]
    # each clip judged token by token against the audio oracle: its verdict agrees with the tokens it generated
    for p, ln in zip(clips["prompts"], audio_lines, strict=True):
        ref = oracle[ln["prompt_id"]].generated_ids
        first = next((i for i, (a, b) in enumerate(zip(ref, ln["generated_ids"], strict=False)) if a != b), None)
        assert p["divergence"] == first and (p["verdict"] == EXACT) == (first is None), p
    assert clips["good"] == sum(p["verdict"] == EXACT for p in clips["prompts"])
    assert {g["name"]: g["passed"] for g in run["gates"]}["audio oracle near-tie"] == clips["passed"]
    assert "transcript prompt set" not in clips["summary"]  # the set is the text oracle's plus the audio oracle's
    scored = runner.invoke(cli_app, ["score", str(result.transcript), "--build", str(build)])
    assert f"audio prompts: {clips['good']}/8 exact" in scored.output, scored.output
    markdown = (build / "reports" / "report.md").read_text()
    assert f"| audio prompts | {clips['label']} — " in markdown
    assert all(f"| {p['id']} | 0 |" in markdown for p in heard)


def test_a_set_with_pictures_and_clips_is_checked_as_one_chain(tmp_path):
    """A --vision --audio build's set is text + images + clips: the image scoring leaves its sha256 to the audio
    scoring, which checks the chain (the report's scorer builds it from the text and image oracles)."""
    from PIL import Image

    from gemmaios import oracle as oracle_mod
    from gemmaios.report.scoring import OracleModuleScorer
    from gemmaios.vision.imagebench import mixed_prompt_set, score_image_prompts
    from gemmaios.vision.oracle import IMAGE_ORACLE_FILE

    small_audio_oracle(tmp_path / "audio")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(images / "cat.png")
    image_ids = [2, 5, 17, 19, 19, 18, 6]
    Oracle(model={"id": "t"}, tokenizer_sha256="x", chat_template=True,
           prompt_set={"name": "builtin-images", "image_spec": {"image_token_id": 19, "boi_token_id": 17,
                                                                "eoi_token_id": 18}},
           max_new_tokens=4, top_k=2, eos_token_ids=[1],
           prompts=[OraclePrompt("cat", "t", image_ids, [11, 12, 13, 14], [TopK([t, 20], [5.0, 1.0]) for t in
                                                                          [11, 12, 13, 14]])]).save(images / IMAGE_ORACLE_FILE)
    text_oracle = tmp_path / "oracle.json"
    Oracle(model={"id": "t"}, tokenizer_sha256="x", chat_template=True, prompt_set={"name": "builtin", "sha256": "t" * 64},
           max_new_tokens=4, top_k=2, eos_token_ids=[1], prompts=[]).save(text_oracle)
    with_images = mixed_prompt_set("builtin", "t" * 64, images)[1]
    chain = audiobench.with_audio_prompt_set("", with_images, tmp_path / "audio")[1]
    clip = audiobench.audio_prompts(tmp_path / "audio")[0][0]
    picture = {"id": "cat", "prompt_ids": [2, 5, 19, 6], contract.PROMPT_IMAGE_FIELD: "images/cat.safetensors"}
    ref = small_audio_oracle(tmp_path / "audio2").prompts[0]
    rows = [_record(0, picture, [11, 12, 13, 14], len(image_ids), **{contract.PROMPT_IMAGE_FIELD: "images/cat.safetensors"}),
            _record(1, clip, list(ref.generated_ids), len(ref.prompt_ids))]
    for sha, warned in ((chain, False), (with_images, True)):
        run = read_transcript(_transcript(tmp_path / f"run-{warned}.jsonl", rows, sha=sha))
        assert score_image_prompts(run, images, text_prompt_set_sha256="t" * 64).warnings == []
        audio = OracleModuleScorer(oracle_mod).audio(run, tmp_path / "audio", text_oracle, images)
        assert audio.label == "1/1" and ("is not the text oracle's prompts plus the audio oracle's" in audio.summary) == warned


def test_a_stray_audio_token_in_the_oracle_is_named(tmp_path):
    from gemmaios.audio import AudioError

    small_audio_oracle(tmp_path / "audio")
    path = tmp_path / "audio" / AUDIO_ORACLE_FILE
    data = json.loads(path.read_text())
    data["prompts"][1]["prompt_ids"] = [2, SPEC["audio_token_id"], 6]
    path.write_text(json.dumps(data))
    with pytest.raises(AudioError, match="prompt 'two' holds an audio token 9 outside boa \\(7\\) ... eoa \\(8\\)"):
        audiobench.audio_prompts(tmp_path / "audio")


CLIP_DAMAGES = (("missing", "couldn’t be opened because there is no such file"), ("wrong tensor", "expected F32 [N]"))


@pytest.mark.full
def test_an_unreadable_clip_on_the_device_fails_the_bench(sim, audio_app_build, tmp_path):
    """A clip the app cannot read fails the bench after the text prompt ran: the pushed clip removed, then a wrong
    tensor at its path (one deploy, a bench for each). The app's failure record (the reason, the clip's prompt)
    stops the bench at once with a named error; the reason is in the app's log too."""
    from device_helpers import add_device, deploy, on_device
    from devicebuild import copy_build
    from devicesim.appbuild import package_app

    from gemmaios import devicebench as bench_mod

    build = copy_build(audio_app_build, tmp_path / "build")
    package_app(build)
    path = build / "app" / contract.PROMPT_SET_FILE
    data = json.loads(path.read_text())
    clip = next(p for p in data["prompts"] if contract.PROMPT_AUDIO_FIELD in p)
    data["prompts"], data["max_new_tokens"] = [data["prompts"][0], clip], 2
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
    device = add_device(sim)
    deploy(build, verify=False)
    pushed = on_device(device, f"{contract.PAYLOAD_DIR}/{clip[contract.PROMPT_AUDIO_FIELD]}")
    for damage, message in CLIP_DAMAGES:
        if damage == "missing":
            pushed.unlink()
        else:
            save_file({contract.BENCH_AUDIO_TENSOR: np.zeros((4, 4), np.float32)}, str(pushed))
        # the app's failure record stops the bench at once (status FAILED, not the safety timeout's), names the
        # clip's prompt and the reason; the app is ended
        with pytest.raises(bench_mod.AppBenchFailed) as err:
            bench_mod.bench(build, trials=1, timeout=120, poll=0.1)
        result = err.value.result
        assert result.status == bench_mod.FAILED and device.running == {}, damage
        assert (result.failure["prompt_id"], result.failure["index"]) == (clip["id"], 1), damage
        assert message in result.failure["reason"], damage
        said = " ".join(str(err.value).split())
        assert f"the app's bench failed at prompt {clip['id']} (trial 1): " in said and message in said, damage
        text = result.transcript.read_text()
        assert json.loads(text.splitlines()[-1])["type"] == contract.RECORD_FAILURE, damage
        assert "footer" not in text and f'"prompt_id": "{data["prompts"][0]["id"]}"' in text, damage  # the text prompt ran first
        log = device.app_log()  # this launch's
        assert message in log and "gemmaios bench failed" in log, (damage, log)
