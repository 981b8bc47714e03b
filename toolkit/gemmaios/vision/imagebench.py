"""Image prompts in the bench: the prompt-set entries and picture files the app reads, and their scoring.

The app step gives an image-capable build one bench prompt per image-oracle picture
(`image_prompts`): its `image` field names `images/<name>.safetensors` (payload-relative; one
tensor `image`, uint8 [H, W, 3], the oracle's source picture, contract `BENCH_IMAGE_TENSOR`),
and its `prompt_ids` are the oracle's expanded ids with `boi + image x n + eoi` folded back to
the one image placeholder (`fold_placeholder`). The app (BenchImages.swift) preprocesses the
picture as HF's processor does, expands the placeholder with its own soft-token count, rewrites
the soft tokens to V + k, runs the vision asset and the decode, and records `prefill_tokens` =
the expanded length and `image` = the file.

`score_image_prompts` judges those transcript records against the image oracle by prompt id,
with the text scoring's margin rule: the device's expanded prompt is rebuilt from what it
recorded (the placeholder expanded to `prefill_tokens - len(prompt_ids) - 1` soft tokens) and
must equal the oracle's ids, so a different soft-token count is a prompt mismatch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import contract as c
from .oracle import IMAGE_ORACLE_FILE
from .preprocess import VisionError


@dataclass(frozen=True)
class Markers:
    """The image marker ids (metadata `gemmaios.vision`, the image oracle's `image_spec`)."""

    image: int
    boi: int
    eoi: int

    @classmethod
    def from_facts(cls, facts: dict) -> Markers:
        return cls(int(facts["image_token_id"]), int(facts["boi_token_id"]), int(facts["eoi_token_id"]))


def fold_placeholder(ids: Sequence[int], markers: Markers) -> list[int]:
    """HF's expanded ids → the prompt as it holds the picture: each `boi + image x n + eoi` (n >= 1)
    becomes one image placeholder (the inverse of `expand_placeholder`)."""
    ids, out, i = [int(t) for t in ids], [], 0
    while i < len(ids):
        if ids[i] == markers.boi and i + 1 < len(ids) and ids[i + 1] == markers.image:
            j = i + 1
            while j < len(ids) and ids[j] == markers.image:
                j += 1
            if j < len(ids) and ids[j] == markers.eoi:
                out.append(markers.image)
                i = j + 1
                continue
        if ids[i] == markers.image:
            raise VisionError(f"image token {markers.image} at position {i} is not inside boi ... eoi",
                              hint="fold the ids HF's processor expanded (image oracle prompt_ids)")
        out.append(ids[i])
        i += 1
    return out


def expand_placeholder(ids: Sequence[int], num_soft_tokens: int, markers: Markers) -> list[int]:
    """The app's expansion (ImagePrompt.expand): the placeholder → boi + image x n + eoi."""
    out: list[int] = []
    for t in ids:
        out += [markers.boi, *[markers.image] * num_soft_tokens, markers.eoi] if int(t) == markers.image else [int(t)]
    return out


def image_oracle_path(oracle_dir: Path) -> Path:
    return Path(oracle_dir) / IMAGE_ORACLE_FILE


def image_oracle_folders(oracle_path: Path | None, build_dir: Path | None, recorded: str | None = None) -> list[Path]:
    """Where a run's image oracle may be, in order: `images/` beside an oracle.json given by name,
    then the build's (`recorded`: the oracle step's `image_oracle` detail, default oracle/images)."""
    from .oracle import IMAGE_ORACLE_DIR

    folders = [Path(oracle_path).parent / Path(IMAGE_ORACLE_DIR).name] if oracle_path else []
    if build_dir is not None:
        folders.append(Path(build_dir) / (recorded or IMAGE_ORACLE_DIR))
    return folders


def _oracle_data(oracle_dir: Path) -> dict:
    path = image_oracle_path(oracle_dir)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VisionError(f"the image oracle {path} is missing",
                          hint="run the oracle step with --vision (`gemmaios build ... --vision`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise VisionError(f"the image oracle {path} cannot be read: {exc}", hint="run the oracle step again") from exc


def _picture(oracle_dir: Path, name: str) -> Path:
    path = Path(oracle_dir) / f"{name}.png"
    if not path.is_file():
        raise VisionError(f"the image oracle has no source picture {path.name} in {oracle_dir}",
                          hint="run the oracle step with --vision again")
    return path


def image_file_rel(name: str) -> str:
    """The picture file of prompt `name`, relative to the payload folder (and to the prompt set's folder)."""
    return f"{c.PAYLOAD_IMAGES_DIR}/{name}.safetensors"


def image_prompts(oracle_dir: Path) -> tuple[list[dict], dict[str, str]]:
    """The bench prompt-set entries for the image oracle's prompts, and for each picture file
    (payload-relative) the PNG it is written from."""
    data = _oracle_data(oracle_dir)
    markers = Markers.from_facts(data["prompt_set"]["image_spec"])
    prompts, sources = [], {}
    for p in data["prompts"]:
        rel = image_file_rel(p["id"])
        prompts.append({"id": str(p["id"]), "prompt_ids": fold_placeholder(p["prompt_ids"], markers),
                        c.PROMPT_IMAGE_FIELD: rel})
        sources[rel] = str(_picture(oracle_dir, p["id"]))
    return prompts, sources


def image_prompts_sha256(oracle_dir: Path) -> str:
    """What identifies the image prompts: each prompt's id, expanded ids and source picture bytes."""
    data = _oracle_data(oracle_dir)
    items = [[p["id"], p["prompt_ids"], hashlib.sha256(_picture(oracle_dir, p["id"]).read_bytes()).hexdigest()]
             for p in data["prompts"]]
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def mixed_prompt_set(text_name: str, text_sha256: str, oracle_dir: Path) -> tuple[str, str]:
    """Name and sha256 of a bench prompt set holding the text oracle's prompts and the image oracle's."""
    data = _oracle_data(oracle_dir)
    name = f"{text_name}+{data['prompt_set'].get('name', 'images')}"
    sha = hashlib.sha256(f"{text_sha256}+{image_prompts_sha256(oracle_dir)}".encode()).hexdigest()
    return name, sha


def write_image_file(png: Path, dest: Path) -> Path:
    """A bench picture file: the PNG's pixels as the one tensor `image`, uint8 [H, W, 3]."""
    from safetensors.numpy import save_file

    from .preprocess import load_image

    pixels = np.ascontiguousarray(load_image(png), dtype=np.uint8)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    save_file({c.BENCH_IMAGE_TENSOR: pixels}, str(tmp))
    tmp.replace(dest)
    return dest


# ---- scoring ------------------------------------------------------------------------------------

def device_expanded_ids(prompt_ids: Sequence[int], prefill_tokens: int, markers: Markers) -> list[int]:
    """The expanded prompt the device ran, from what it recorded: the set's ids (placeholder once)
    and `prefill_tokens` (their expanded length). Returned unchanged when that cannot be rebuilt."""
    ids = [int(t) for t in prompt_ids]
    n = prefill_tokens - len(ids) - 1
    if ids.count(markers.image) != 1 or n < 0:
        return ids
    return expand_placeholder(ids, n, markers)


def score_image_prompts(transcript, oracle_dir: Path, *, text_prompt_set_sha256: str | None = None,
                        near_tie_margin: float | None = None):
    """The transcript's image prompt records (those with `image`) against the image oracle
    (gemmaios.oracle.OracleScore, the text scoring's verdicts); None when it has none."""
    from ..oracle import load_oracle

    records = [r for r in transcript.prompts if r.image]
    if not records:
        return None
    oracle = load_oracle(image_oracle_path(oracle_dir))
    markers = Markers.from_facts(oracle.prompt_set["image_spec"])
    expected_sha = None
    # a run with audio prompts too (a --vision --audio build): its set is text + images + clips, which the
    # audio scoring checks as a whole (gemmaios.audio.audiobench)
    if text_prompt_set_sha256 is not None and not any(r.audio for r in transcript.prompts):
        _, expected_sha = mixed_prompt_set("", text_prompt_set_sha256, oracle_dir)
    return score_spliced_prompts(transcript, records, oracle, markers, noun="picture", oracle_name="image oracle",
                                 expected_sha256=expected_sha, near_tie_margin=near_tie_margin)


def score_spliced_prompts(transcript, records, oracle, markers: Markers, *, noun: str, oracle_name: str,
                          expected_sha256: str | None = None, near_tie_margin: float | None = None):
    """Prompt records whose prompt holds one soft-token placeholder (a picture or a clip) against
    their oracle (`gemmaios.oracle.Oracle`) by prompt id, with the text scoring's margin rule: the
    device's expanded prompt is rebuilt from what it recorded (`device_expanded_ids`), so a
    different soft-token count is a prompt mismatch. `expected_sha256`: the prompt set the run
    should have recorded (a warning when it recorded another)."""
    from ..oracle import DEFAULT_NEAR_TIE_MARGIN, NO_ORACLE, PROMPT_MISMATCH, Generation
    from ..oracle.scoring import OracleScore, PromptScore, score_against_oracle

    by_id = {p.id: i for i, p in enumerate(oracle.prompts)}
    margin = DEFAULT_NEAR_TIE_MARGIN if near_tie_margin is None else near_tie_margin
    judged: list[PromptScore] = []
    for r in records:
        where = f"{transcript.path}:{r.line}"
        if r.prompt_id not in by_id:
            judged.append(PromptScore(r.index, r.trial, r.prompt_id, NO_ORACLE, where=where,
                                      note=f"the {oracle_name} has no prompt {r.prompt_id!r}"))
            continue
        ref = oracle.prompts[by_id[r.prompt_id]]
        ran = device_expanded_ids(r.prompt_ids, r.prefill_tokens, markers)
        g = Generation(tuple(ran), tuple(r.generated_ids), by_id[r.prompt_id], r.trial, r.prompt_id, where)
        [score] = score_against_oracle([g], oracle, near_tie_margin=margin).prompts
        score.index = r.index
        if score.verdict == PROMPT_MISMATCH:
            got_n, want_n = ran.count(markers.image), ref.prompt_ids.count(markers.image)
            score.note = (f"the device expanded the {noun} to {got_n} soft tokens, the oracle's processor to {want_n}"
                          if got_n != want_n else
                          f"prompt tokens differ from the {oracle_name}'s at position {score.divergence}")
        judged.append(score)
    warnings = []
    recorded = transcript.header.get("prompt_set", {}).get("sha256")
    if expected_sha256 is not None and recorded and recorded != expected_sha256:
        warnings.append(f"transcript prompt set {transcript.header['prompt_set'].get('name')!r} "
                        f"({recorded[:12]}) is not the text oracle's prompts plus the {oracle_name}'s "
                        f"({expected_sha256[:12]})")
    return OracleScore(judged, margin, oracle.max_new_tokens, warnings)
