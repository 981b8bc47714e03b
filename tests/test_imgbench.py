"""Image prompts in deploy → bench → report (issue 17 b), on the loopback simulator.

The build is test_vision's int8 tiny-vision build (one per session, shared), its app rendered for
the `documents` bundle location: the bench prompt set then holds the text oracle's prompts and one
prompt per image-oracle picture, whose picture file deploy pushes. The simulator's app stand-in
runs them as BenchImages.swift does (picture → HF preprocessing → vision asset → expanded ids
through Core AI's runtime) and the report scores them against the image oracle.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from device_helpers import add_device, deploy, on_device, records
from devicebuild import copy_build
from devicesim.appbuild import package_app
from typer.testing import CliRunner

from gemmaios import contract
from gemmaios import devicebench as bench_mod
from gemmaios.cli import app as cli_app
from gemmaios.oracle import DIVERGED, EXACT, NEAR_TIE, PROMPT_MISMATCH, load_oracle
from gemmaios.payload import PayloadError, payload_plan
from gemmaios.pipeline import BuildOptions
from gemmaios.transcript import TranscriptError, read_transcript, write_transcript
from gemmaios.vision import VisionError
from gemmaios.vision.imagebench import Markers, expand_placeholder, fold_placeholder, score_image_prompts
from gemmaios.vision.oracle import IMAGE_ORACLE_DIR, IMAGE_ORACLE_FILE
from gemmaios.vision.preprocess import load_image

PROMPTS = contract.PAYLOAD_DIR + "/" + contract.PROMPT_SET_FILE


@pytest.fixture
def vbuild(vision_app_build, tmp_path) -> Path:
    """A copy of the session's vision app build, its .ipa where fastlane exports it."""
    build = copy_build(vision_app_build, tmp_path / "build")
    package_app(build)
    return build


def prompt_set(build: Path) -> dict:
    return json.loads((build / "app" / contract.PROMPT_SET_FILE).read_text())


def image_oracle(build: Path):
    return load_oracle(build / IMAGE_ORACLE_DIR / IMAGE_ORACLE_FILE)


def keep_prompts(build: Path, ids: list[str], max_new_tokens: int | None = None) -> dict:
    """A shorter prompt set (same entries) where the payload takes it from."""
    path = build / "app" / contract.PROMPT_SET_FILE
    data = json.loads(path.read_text())
    data["prompts"] = [p for p in data["prompts"] if p["id"] in ids]
    if max_new_tokens:
        data["max_new_tokens"] = max_new_tokens
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
    return data


def settings_sources(build: Path) -> dict:
    import io

    from rich.console import Console

    from gemmaios.app.step import settings_from_build
    from gemmaios.pipeline import BuildContext

    options = BuildOptions(model="tiny-vision", quant="int8", vision=True)
    return settings_from_build(BuildContext(build, options, console=Console(file=io.StringIO()))).prompt_set.image_sources


# ---- the prompt set and the payload ---------------------------------------------------------------

@pytest.mark.full
def test_an_image_capable_build_benches_every_image_oracle_prompt(vision_app_build):
    build = vision_app_build
    data = prompt_set(build)
    text = load_oracle(build / "oracle" / "oracle.json")
    images = image_oracle(build)
    markers = Markers.from_facts(images.prompt_set["image_spec"])
    entries = data["prompts"]
    # the text oracle's prompts unchanged, then one per picture
    assert [(p["id"], p["prompt_ids"]) for p in entries[: len(text.prompts)]] == \
           [(p.id, p.prompt_ids) for p in text.prompts]
    assert all(contract.PROMPT_IMAGE_FIELD not in p for p in entries[: len(text.prompts)])
    pictures = entries[len(text.prompts):]
    assert [p["id"] for p in pictures] == [p.id for p in images.prompts] and len(pictures) == 8
    for entry, ref in zip(pictures, images.prompts, strict=True):
        assert entry[contract.PROMPT_IMAGE_FIELD] == f"{contract.PAYLOAD_IMAGES_DIR}/{ref.id}.safetensors"
        assert entry["prompt_ids"].count(markers.image) == 1  # the placeholder, once (the app expands it)
        n = ref.prompt_ids.count(markers.image)
        assert expand_placeholder(entry["prompt_ids"], n, markers) == ref.prompt_ids
        # the picture: one uint8 [H, W, 3] tensor, the oracle's own source picture
        from safetensors.numpy import load_file

        tensors = load_file(str(build / "app" / entry[contract.PROMPT_IMAGE_FIELD]))
        assert list(tensors) == [contract.BENCH_IMAGE_TENSOR]
        pixels = tensors[contract.BENCH_IMAGE_TENSOR]
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        np.testing.assert_array_equal(pixels, load_image(build / IMAGE_ORACLE_DIR / f"{ref.id}.png"))
    # its own identity: not the text set's
    assert data["sha256"] != text.prompt_set["sha256"] and data["name"] == "builtin+builtin-images"
    # documents: deploy pushes the pictures with the prompt set
    dests = [dest for _, dest in payload_plan(build).documents_files()]
    bundled = [dest for _, dest in payload_plan(build, contract.BUNDLED).app_files()]  # or the .app carries them
    for entry in pictures:
        assert f"{contract.PAYLOAD_DIR}/{entry[contract.PROMPT_IMAGE_FIELD]}" in dests
        assert f"{contract.PAYLOAD_DIR}/{entry[contract.PROMPT_IMAGE_FIELD]}" in bundled
    # the settings name the pictures' sources relative to the build (a copied build renders the same)
    assert all(not Path(src).is_absolute() for src in settings_sources(build).values())


@pytest.mark.full
def test_the_payload_refuses_a_prompt_set_naming_a_missing_or_outside_picture(vision_app_build, tmp_path):
    build = copy_build(vision_app_build, tmp_path / "build")
    first = prompt_set(build)["prompts"][-1]
    (build / "app" / first[contract.PROMPT_IMAGE_FIELD]).unlink()
    with pytest.raises(PayloadError, match=f"prompt '{first['id']}' .* names the image "
                                           f"{first[contract.PROMPT_IMAGE_FIELD]}, but .* is missing") as err:
        payload_plan(build)
    assert "gemmaios app" in err.value.hint
    for outside in ("../oracle/oracle.json", "/etc/passwd", "bundle/x.safetensors"):
        data = prompt_set(build)
        data["prompts"][-1][contract.PROMPT_IMAGE_FIELD] = outside
        (build / "app" / contract.PROMPT_SET_FILE).write_text(json.dumps(data))
        with pytest.raises(PayloadError, match="not a picture file inside the payload"):
            payload_plan(build)


def test_fold_and_expand_are_inverse_and_refuse_a_stray_image_token():
    m = Markers(image=9, boi=7, eoi=8)
    hf = [2, 5, 7, 9, 9, 9, 8, 6]
    assert fold_placeholder(hf, m) == [2, 5, 9, 6]
    assert expand_placeholder([2, 5, 9, 6], 3, m) == hf
    with pytest.raises(VisionError, match="not inside boi"):
        fold_placeholder([2, 9, 9, 8], m)


# ---- scoring --------------------------------------------------------------------------------------

def _transcript(path: Path, records_: list[dict], sha: str = "x") -> Path:
    header = {"type": "header", "schema": contract.TRANSCRIPT_SCHEMA, "run_id": "r", "started_at": "t", "device": {},
              "bundle": {"name": "b"}, "prompt_set": {"name": "s", "sha256": sha, "count": len(records_)},
              "trials": 1, "max_new_tokens": 32}
    return write_transcript(path, [header, *records_, {"type": "footer", "completed": True}])


def _record(index: int, entry: dict, generated: list[int], prefill: int) -> dict:
    return {"type": "prompt", "trial": 0, "index": index, "prompt_id": entry["id"], "prompt_ids": entry["prompt_ids"],
            "generated_ids": generated, "prefill_tokens": prefill, "prefill_seconds": 0.1, "decode_tokens": 31,
            "decode_seconds": 0.2, contract.PROMPT_IMAGE_FIELD: entry[contract.PROMPT_IMAGE_FIELD]}


@pytest.mark.full
def test_image_prompts_are_scored_by_id_with_the_margin_rule_and_the_soft_token_count(vision_app_build, tmp_path):
    build = vision_app_build
    entries = {p["id"]: p for p in prompt_set(build)["prompts"] if contract.PROMPT_IMAGE_FIELD in p}
    # A copy of the image oracle gets a near-tie of a known size: the smallest-margin step's runner-up is
    # set 0.05 below the top-1 (the retrained model's own smallest margin, 0.067, is already under the rule's
    # 0.1: docs/images.md).
    oracle_dir = tmp_path / "images"
    shutil.copytree(build / IMAGE_ORACLE_DIR, oracle_dir)
    data = json.loads((oracle_dir / IMAGE_ORACLE_FILE).read_text())
    steps = [(p["id"], i, s["logits"][0] - s["logits"][1]) for p in data["prompts"] for i, s in enumerate(p["top_k"])]
    tie = min(steps, key=lambda t: t[2])
    step = next(p for p in data["prompts"] if p["id"] == tie[0])["top_k"][tie[1]]
    step["logits"][1] = step["logits"][0] - 0.05
    (oracle_dir / IMAGE_ORACLE_FILE).write_text(json.dumps(data))
    tie = (tie[0], tie[1], 0.05)
    oracle = load_oracle(oracle_dir / IMAGE_ORACLE_FILE)
    refs = {p.id: p for p in oracle.prompts}
    # a clear flip (largest margin) and the near-tie flip on two prompts, a soft-token mismatch on a third
    clear = max((t for t in steps if t[0] != tie[0]), key=lambda t: t[2])
    mismatch = next(i for i in refs if i not in (tie[0], clear[0]))
    rows = []
    for index, (pid, ref) in enumerate(refs.items()):
        generated = list(ref.generated_ids)
        for which in (tie, clear):
            if pid == which[0]:
                generated[which[1]] = ref.top_k[which[1]].ids[1]
        prefill = len(ref.prompt_ids) + (1 if pid == mismatch else 0)  # one soft token too many
        rows.append(_record(8 + index, entries[pid], generated, prefill))
    run = read_transcript(_transcript(tmp_path / "run.jsonl", rows))
    score = score_image_prompts(run, oracle_dir)
    verdicts = {p.prompt_id: p for p in score.prompts}
    assert verdicts[tie[0]].verdict == NEAR_TIE and verdicts[tie[0]].divergence == tie[1]
    assert verdicts[clear[0]].verdict == DIVERGED and verdicts[clear[0]].margin == pytest.approx(clear[2])
    assert verdicts[mismatch].verdict == PROMPT_MISMATCH
    n = refs[mismatch].prompt_ids.count(Markers.from_facts(oracle.prompt_set["image_spec"]).image)
    assert f"expanded the picture to {n + 1} soft tokens, the oracle's processor to {n}" in verdicts[mismatch].note
    assert score.exact == 5 and score.total == 8 and not score.passed
    # the prompt set's sha256 is checked against the text oracle's plus the image oracle's
    text_sha = load_oracle(build / "oracle" / "oracle.json").prompt_set["sha256"]
    warned = score_image_prompts(run, oracle_dir, text_prompt_set_sha256=text_sha).warnings
    assert len(warned) == 1 and "is not the text oracle's prompts plus the image oracle's" in warned[0]
    same = read_transcript(_transcript(tmp_path / "same.jsonl", rows, sha=prompt_set(build)["sha256"]))
    assert score_image_prompts(same, oracle_dir, text_prompt_set_sha256=text_sha).warnings == []
    assert all(v.index == 8 + i for i, v in enumerate(score.prompts))  # the transcript's own index


def test_a_transcript_image_field_must_be_a_path(tmp_path):
    entry = {"id": "a", "prompt_ids": [2, 3], contract.PROMPT_IMAGE_FIELD: 5}
    with pytest.raises(TranscriptError, match="picture's payload path"):
        read_transcript(_transcript(tmp_path / "bad.jsonl", [_record(0, entry, [1], 2)]))


# ---- on the simulator -----------------------------------------------------------------------------

@pytest.mark.full
def test_deploy_bench_report_runs_and_scores_the_image_prompts(sim, vbuild):
    """deploy (documents: the pictures pushed) → bench (the stand-in runs the vision asset and the
    expanded prompts through Core AI's runtime) → report (image prompts scored against the image oracle)."""
    device = add_device(sim)
    runner = CliRunner()
    deployed = runner.invoke(cli_app, ["deploy", "--out", str(vbuild), "--allow-uncompiled"])
    assert deployed.exit_code == 0, deployed.output
    entries = prompt_set(vbuild)["prompts"]
    pictures = [p for p in entries if contract.PROMPT_IMAGE_FIELD in p]
    assert len(pictures) == 8
    for p in pictures:  # pushed byte for byte
        pushed = on_device(device, f"{contract.PAYLOAD_DIR}/{p[contract.PROMPT_IMAGE_FIELD]}")
        assert pushed.read_bytes() == (vbuild / "app" / p[contract.PROMPT_IMAGE_FIELD]).read_bytes()

    result = bench_mod.bench(vbuild, trials=1, timeout=600, poll=0.2)
    assert result.status == bench_mod.COMPLETED and result.validation == "ok", device.app_log()
    lines = [ln for ln in records(result.transcript) if ln["type"] == "prompt"]
    assert len(lines) == len(entries)
    oracle = {p.id: p for p in image_oracle(vbuild).prompts}
    image_lines = [ln for ln in lines if contract.PROMPT_IMAGE_FIELD in ln]
    assert [ln["prompt_id"] for ln in image_lines] == [p["id"] for p in pictures]
    for ln, entry in zip(image_lines, pictures, strict=True):
        assert ln[contract.PROMPT_IMAGE_FIELD] == entry[contract.PROMPT_IMAGE_FIELD]
        assert ln["prompt_ids"] == entry["prompt_ids"]  # as the app records them: the placeholder once
        assert ln["prefill_tokens"] == len(oracle[ln["prompt_id"]].prompt_ids) > len(entry["prompt_ids"]) + 2
    assert all(ln["prefill_tokens"] == len(ln["prompt_ids"]) for ln in lines if ln not in image_lines)

    reported = runner.invoke(cli_app, ["report", str(result.run_dir), "--require-oracle", "near-tie", "--json"])
    report = json.loads(reported.stdout[reported.stdout.index("{"):reported.stdout.rindex("}") + 1])
    run = report["runs"][0]
    assert run["oracle"]["label"] == "8/8", run["oracle"]  # text prompts: the text oracle
    images = run["image_oracle"]
    assert images["total"] == 8 and images["passed"], images  # every one exact or a near-tie
    assert [p["prompt_id"] for p in images["prompts"]] == [p["id"] for p in pictures]
    assert all(p["verdict"] in (EXACT, NEAR_TIE) for p in images["prompts"])
    assert all(p["margin"] < 0.1 for p in images["prompts"] if p["verdict"] == NEAR_TIE)
    assert images["good"] == sum(p["verdict"] == EXACT for p in images["prompts"])
    assert {g["name"]: g["passed"] for g in run["gates"]}["image oracle near-tie"] is True
    assert reported.exit_code == 0, reported.output
    scored = runner.invoke(cli_app, ["score", str(result.transcript), "--build", str(vbuild)])
    assert scored.exit_code == 0 and "8/8 exact vs fp32 oracle" in scored.output, scored.output
    assert f"image prompts: {images['good']}/8 exact" in scored.output, scored.output
    markdown = (vbuild / "reports" / "report.md").read_text()
    assert f"| image prompts | {images['label']} — " in markdown
    assert all(f"| {p['id']} | 0 |" in markdown for p in pictures)


@pytest.mark.full
@pytest.mark.parametrize("damage,message", [
    ("missing", "couldn’t be opened because there is no such file"),
    ("not safetensors", "is not a safetensors file"),
    ("wrong tensor", "expected U8 [H, W, 3]"),
])
def test_an_unreadable_picture_on_the_device_fails_the_bench(sim, vbuild, damage, message):
    entries = prompt_set(vbuild)["prompts"]
    picture = next(p for p in entries if contract.PROMPT_IMAGE_FIELD in p)
    keep_prompts(vbuild, [entries[0]["id"], picture["id"]], max_new_tokens=2)
    device = add_device(sim)
    deploy(vbuild, verify=False)
    pushed = on_device(device, f"{contract.PAYLOAD_DIR}/{picture[contract.PROMPT_IMAGE_FIELD]}")
    if damage == "missing":
        pushed.unlink()
    elif damage == "not safetensors":
        pushed.write_bytes(b"\x00" * 64)
    else:
        from safetensors.numpy import save_file

        save_file({contract.BENCH_IMAGE_TENSOR: np.zeros((4, 4), np.float32)}, str(pushed))
    # the app's failure record (the reason, the picture's prompt) stops the bench at once: status FAILED, not the
    # timeout's (a safety net only), the app ended, the reason and the fix in the named error
    with pytest.raises(bench_mod.AppBenchFailed) as err:
        bench_mod.bench(vbuild, trials=1, timeout=120, poll=0.1)
    result = err.value.result
    assert result.status == bench_mod.FAILED and device.running == {}
    assert (result.failure["prompt_id"], result.failure["trial"], result.failure["index"]) == (picture["id"], 0, 1)
    assert message in result.failure["reason"]
    said = " ".join(str(err.value).split())
    assert f"the app's bench failed at prompt {picture['id']} (trial 1): " in said and message in said
    assert f"`gemmaios deploy --out {vbuild}`" in said
    lines = result.transcript.read_text().splitlines()
    assert json.loads(lines[-1]) == result.failure and result.failure["type"] == contract.RECORD_FAILURE
    text = "\n".join(lines)
    assert "footer" not in text and f'"prompt_id": "{entries[0]["id"]}"' in text  # the text prompt ran first
    assert message in device.app_log() and "gemmaios bench failed" in device.app_log()


def test_a_text_only_bundle_refuses_an_image_prompt_as_the_app_does(tmp_path):
    """BenchImages.engineIds: an image prompt on a bundle without gemmaios.vision is the app's named error."""
    from devicesim.benchimages import BenchImageFailed, engine_input

    class App:
        contract = {"promptImageField": contract.PROMPT_IMAGE_FIELD, "bundleMetadataFile": contract.BUNDLE_METADATA_FILE,
                    "visionMetadataKey": contract.VISION_METADATA_KEY}

        def c(self, name):
            return self.contract[name]

    bundle = tmp_path / "bundle" / "b"
    bundle.mkdir(parents=True)
    (bundle / contract.BUNDLE_METADATA_FILE).write_text(json.dumps({"gemmaios": {}}))
    prompt = {"id": "p", "prompt_ids": [2, 3], contract.PROMPT_IMAGE_FIELD: "images/p.safetensors"}
    assert engine_input(App(), tmp_path, bundle, "b", {"id": "t", "prompt_ids": [2, 3]}) == ([2, 3], None)
    with pytest.raises(BenchImageFailed, match="prompt p has an image, b is text-only"):
        engine_input(App(), tmp_path, bundle, "b", prompt)
    shutil.rmtree(bundle)


def test_sustained_mode_runs_an_image_prompt_as_the_trials_do():
    """BenchRunner.runSustained: each generation of an image prompt gets its picture and expanded ids
    (BenchImages.engineIds), not the set's placeholder ids."""
    from types import SimpleNamespace

    from devicesim.benchprotocol import ThermalTracker, sustained_phase

    now = [0.0]
    calls, written = [], []

    class Runner:
        def generate(self, ids, n, **kw):
            calls.append((list(ids), kw.get("image")))
            now[0] += 0.5
            return SimpleNamespace(ttft_seconds=0.1, decode_token_seconds=[0.1] * (n - 1))

    app = SimpleNamespace(c=lambda name: {"sampleRecord": contract.RECORD_SAMPLE}[name])
    settings = SimpleNamespace(duration=2, sample_interval=1, launch_index=0)
    writer = SimpleNamespace(write=written.append)
    prompts = {"prompts": [{"id": "t", "prompt_ids": [2, 3]},
                           {"id": "i", "prompt_ids": [2, 9, 3], contract.PROMPT_IMAGE_FIELD: "images/i.safetensors"}]}
    picture = object()

    def prepare(prompt):
        return ([2, 7, 100, 101, 8, 3], picture) if contract.PROMPT_IMAGE_FIELD in prompt else (prompt["prompt_ids"], None)

    done = sustained_phase(app, settings, writer, Runner(), prompts, 3, (), None, None, lambda: now[0],
                           ThermalTracker("nominal"), lambda: None, prepare)
    assert done["sustained_generations"] == len(calls) >= 2
    assert calls[:2] == [([2, 3], None), ([2, 7, 100, 101, 8, 3], picture)]
    assert written and all(r["type"] == contract.RECORD_SAMPLE for r in written)
