"""Two builds of one model benched against each other: `run --bench --ab OTHER` (this machine, Core AI's runtime),
`bench --ab OTHER` and `deploy --bench --ab OTHER` (the phone). Issue 31: a uniform int4 build against a
`--recipe` build of the same checkpoint.

The design is `--ab-kv`'s and `--ab-prefill`'s (issue 27, 15): one bench whose two settings take turns, each
turn recorded with its setting, and one report that splits the figures by setting. Here the setting is the
build, so the turns are whole bundles:

- host: both bundles are loaded in one process and the oracle's prompts run trial by trial in ABBA order (A B,
  B A, A B, ...: `hostrun.ab_order`), each side's transcript in its own build's `runs/<id>-host-ab/`. The
  prompts and the decoding (greedy, the oracle's token count) are the first build's oracle for both; the two
  builds must be of one checkpoint, so that oracle is the fp32 reference of both.
- phone: each build's app (deployed from it, under its own bundle id) runs `--trials` trials per launch, the
  launches in ABBA order (`AB_ROUNDS` rounds), each a normal `bench` run pulled into its build's `runs/`.
  Both builds must bench the same prompt set (the payload's), which the app decodes greedily as always.

The comparison (`ab_report`, written as `ab.md` and `ab.json` beside the first build's transcript) gives per side:
prefill and decode tok/s (median over the measured warm trials of all its turns), peak memory footprint (the
phone; on the host one process holds both bundles, so none), the weight bytes a decoded token reads and the asset
size (the bundle's metadata, `report.bundle_facts_from_dir`, the roofline's rule), agreement with the fp32
oracle (free-running: prompts token-exact; teacher-forced along the oracle's tokens on the host: mean KL and
top-1 agreement), and between the two (prompts token-identical, tokens in common before the first
difference; on the host KL(A || B) teacher-forced).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .buildlayout import CHECKPOINT_RECORD, MANIFEST_NAME, TABLES_DIR
from .errors import AbBuildsError
from .files import write_json_atomic
from .roofline import size_text

AB_ROUNDS = 2  # phone: A B then B A (a run per build per round)
AB_JSON, AB_MD = "ab.json", "ab.md"
HOST_REFERENCE_MAX_SECONDS = 5.0  # the fp32 reference runs on the host only for bundles the runtime steps quickly


@dataclass(frozen=True)
class AbSide:
    """One build of an A/B: its folder, bundle, what it stores, and the bundle's bytes."""

    side: str  # "a" | "b"
    build: Path
    bundle: Path
    name: str
    storage: str  # "int4", "int8 (head fp16)", "recipe tiny-mixed-248"
    weight_bytes_per_token: int
    weights_rule: str
    asset_bytes: int
    checkpoint: str | None  # the checkpoint step's fingerprint
    model: str | None

    @property
    def label(self) -> str:
        return f"{self.side.upper()}: {self.build.name} ({self.storage})"


def _fail(message: str, hint: str) -> AbBuildsError:
    return AbBuildsError(message, hint=hint)


def _is_build(path: Path, flag: str, other: Path | None) -> None:
    hint = f"pass {flag} <build folder> of the same model (e.g. one built with --recipe)"
    if not path.exists():
        raise _fail(f"{flag} {path}: does not exist", hint)
    if path.is_file():
        raise _fail(f"{flag} {path}: is a file, not a build folder (one with {MANIFEST_NAME})", hint)
    if not (path / MANIFEST_NAME).is_file():
        raise _fail(f"{flag} {path}: not a gemmaios build folder (no {MANIFEST_NAME})", hint)
    if other is not None and path.resolve() == other.resolve():
        raise _fail(f"{flag} {path} is the same build folder as --out {other}: an A/B needs two builds",
                    "build the model again with other storage (e.g. `gemmaios build --model M --recipe R --out "
                    "build/M-recipe`) and pass that folder")


def check_other(b: Path, flag: str = "--ab") -> None:
    """Refuse (AbBuildsError) a B that is not a build folder, before the first build exists (deploy --model)."""
    _is_build(Path(b), flag, None)


def ab_side(side: str, build: Path, flag: str = "--out") -> AbSide:
    """A build folder's side of an A/B, refused (AbBuildsError) when it is not a build with a bundle."""
    from .pipeline import Manifest, finished_details
    from .report import bundle_facts_from_dir

    build = Path(build)
    _is_build(build, flag, None)
    manifest = Manifest(build)  # a damaged build.json is named here
    convert = finished_details(build, "convert")
    if convert is None or not (build / convert.bundle_dir / "metadata.json").is_file():
        raise _fail(f"{flag} {build}: the build has no converted bundle",
                    f"run `gemmaios build --out {build}` first")
    bundle = build / convert.bundle_dir
    tables = finished_details(build, "tables")
    facts = bundle_facts_from_dir(bundle, table_shape=tables.shape if tables is not None else None)
    if convert.recipe:
        storage = f"recipe {convert.recipe.get('name')}"
    else:
        storage = convert.quant + (f" (head {convert.head_quant})" if convert.head_quant != convert.quant else "")
    checkpoint = (manifest.steps.get("checkpoint") or {}).get("inputs") or {}
    assets = sum(p.stat().st_size for a in bundle.glob("*.aimodel") for p in ([a] if a.is_file() else a.rglob("*"))
                 if p.is_file())
    return AbSide(side, build, bundle, convert.name, storage, facts.weight_bytes, facts.source, assets,
                  checkpoint.get("checkpoint"), checkpoint.get("model"))


def recorded_checkpoint(build: Path) -> tuple[str | None, str | None]:
    """(fingerprint, model) the checkpoint step recorded."""
    from .pipeline import Manifest

    inputs = (Manifest(build).steps.get("checkpoint") or {}).get("inputs") or {}
    return inputs.get("checkpoint"), inputs.get("model")


def check_folders(a: Path, b: Path, flag: str = "--ab") -> None:
    """Refuse (AbBuildsError) before any work: A or B not a build folder, B is A, or builds of different
    models (the checkpoint step's fingerprints differ, or one records none)."""
    a, b = Path(a), Path(b)
    _is_build(a, "--out", None)
    _is_build(b, flag, a)
    (fp_a, model_a), (fp_b, model_b) = recorded_checkpoint(a), recorded_checkpoint(b)
    if fp_a is None or fp_b is None:
        raise _fail(f"{a if fp_a is None else b} records no checkpoint fingerprint: cannot tell that both builds are "
                    "of one model", f"run `gemmaios build --out {a if fp_a is None else b}` so its checkpoint step "
                    "records it")
    if fp_a != fp_b:
        raise _fail(f"{a} and {b} are builds of different models ({model_a}, checkpoint {fp_a[:12]}; {model_b}, "
                    f"checkpoint {fp_b[:12]}): an A/B compares two storages of one model",
                    "pass two builds of the same --model (and revision)")


def check_pair(a: Path, b: Path, flag: str = "--ab") -> tuple[AbSide, AbSide]:
    """The two sides (check_folders), refused too when either has no bundle."""
    check_folders(a, b, flag)
    return ab_side("a", Path(a)), ab_side("b", Path(b), flag)


# ---- the phone ---------------------------------------------------------------------------------------------

def _prompt_set_sha(build: Path) -> str | None:
    from .payload import PROMPT_SET_BUILD_REL

    path = build / PROMPT_SET_BUILD_REL
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def check_device_pair(a: AbSide, b: AbSide, udid: str | None) -> None:
    """What the phone needs besides check_pair: one app per build (distinct bundle ids) and one prompt set."""
    from .devicebench import deployed_bundle_id

    sha_a, sha_b = _prompt_set_sha(a.build), _prompt_set_sha(b.build)
    if sha_a and sha_b and sha_a != sha_b:
        raise _fail(f"{a.build} and {b.build} bench different prompt sets (their app/prompts.json differ): the "
                    "figures would not compare", "build both with the same --prompts and oracle tokens (`gemmaios "
                    "oracle --out <folder>` on the one that differs), re-render and deploy it")
    ids = {s.side: deployed_bundle_id(s.build, udid) for s in (a, b)}
    if ids["a"] and ids["a"] == ids["b"]:
        raise _fail(f"both builds install as {ids['a']}: the phone holds one app per bundle id, so the second "
                    "one replaces the other", "give one build another bundle id (`gemmaios app --bundle-id ...`, "
                    "or bundle_id in its gemmaios.yaml), deploy both, then bench --ab")


def device_ab_bench(a: AbSide, b: AbSide, bench: Callable[..., Any], *, udid: str | None, trials: int,
                    rounds: int = AB_ROUNDS, say: Callable[[str], None] = lambda _m: None,
                    **options: Any) -> tuple[list[tuple[int, str]], dict[str, list[Any]]]:
    """`bench` (devicebench.bench) each build's app in ABBA order, `rounds` runs per build; returns the order and
    each side's BenchResults. A failed run raises as `bench` does (its log pulled)."""
    from .hostrun import ab_order

    check_device_pair(a, b, udid)
    order = ab_order(rounds)
    results: dict[str, list[Any]] = {"a": [], "b": []}
    sides = {"a": a, "b": b}
    started = 0.0
    for turn, (rnd, side) in enumerate(order):
        time.sleep(max(0.0, started + 1.0 - time.time()))  # run ids are UTC seconds: one build's two runs differ
        started = time.time()
        say(f"A/B turn {turn + 1}/{len(order)}: {sides[side].label}, round {rnd + 1}")
        results[side].append(bench(sides[side].build, udid, trials=trials, **options))
    return order, results


# ---- the comparison ----------------------------------------------------------------------------------------

@dataclass
class AbRow:
    metric: str
    a: str
    b: str
    change: str  # B against A


@dataclass
class AbReport:
    a: AbSide
    b: AbSide
    where: str
    order: list[str]
    rows: list[AbRow]
    figures: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    transcripts: dict[str, list[Path]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"schema": "gemmaios.ab/1", "where": self.where, "order": self.order,
                "builds": {s.side: {"build": str(s.build), "bundle": s.name, "storage": s.storage,
                                    "weight_bytes_per_token": s.weight_bytes_per_token, "weights_rule": s.weights_rule,
                                    "asset_bytes": s.asset_bytes} for s in (self.a, self.b)},
                "transcripts": {k: [str(p) for p in v] for k, v in self.transcripts.items()},
                "figures": self.figures, "notes": self.notes,
                "table": [{"metric": r.metric, "a": r.a, "b": r.b, "b_vs_a": r.change} for r in self.rows]}


def _stat(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    return ({"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}
            if values else None)


def _side_figures(paths: list[Path], oracle_path: Path) -> dict[str, Any]:
    from . import report as rep

    prefill, decode, peaks, good, total, notes, unscored = [], [], [], 0, 0, [], []
    for path in paths:
        s = rep.summarise(rep.load_run(path, oracle_path=oracle_path), scorer=rep.default_scorer())
        if not s.valid:
            raise _fail(f"{path} is not a valid transcript ({s.error})", "run the A/B bench again")
        measured = [t for t in s.per_trial if not t.warmup and t.kind == "warm"]
        prefill += [t.prefill_tok_s for t in measured]
        decode += [t.decode_tok_s for t in measured]
        if s.peak_footprint_bytes:
            peaks.append(s.peak_footprint_bytes)
        scored = _oracle_exact(path, oracle_path)
        if isinstance(scored, str):
            unscored.append(scored)
        else:
            good, total = good + scored[0], total + scored[1]
        notes += [n.text for n in s.notes if n.level in ("warning", "error")]
    return {"prefill_tok_s": _stat(prefill), "decode_tok_s": _stat(decode),
            "peak_footprint_bytes": max(peaks) if peaks else None,
            "oracle_exact": {"good": good, "total": total} if total and not unscored else None,
            "notes": notes + unscored[:1]}


def _oracle_exact(path: Path, oracle_path: Path) -> tuple[int, int] | str:
    """(prompts token-exact, prompts) of a transcript against the fp32 oracle, or why it cannot be scored: a run
    whose prompts are not the oracle's (another prompt set on the phone) gets no figure rather than 0/n."""
    from .oracle import NO_ORACLE, PROMPT_MISMATCH, load_oracle, score_against_oracle
    from .transcript import read_transcript

    if not Path(oracle_path).is_file():
        return f"no fp32 oracle at {oracle_path}: prompts not scored"
    score = score_against_oracle(read_transcript(path), load_oracle(oracle_path))
    if any(p.verdict in (PROMPT_MISMATCH, NO_ORACLE) for p in score.prompts):
        return (f"the bench's prompts are not the oracle's ({oracle_path}): no oracle figure (run the oracle's "
                "prompt set for one)")
    return score.exact, score.total


def _token_agreement(path_a: Path, path_b: Path) -> dict | None:
    """Prompts token-identical, and the share of generated tokens the two have in common before their first
    difference, pairing each side's first transcript by (trial, prompt)."""
    from .transcript import read_transcript

    ga = {(p.trial, p.index): p.generated_ids for p in read_transcript(path_a).prompts}
    gb = {(p.trial, p.index): p.generated_ids for p in read_transcript(path_b).prompts}
    keys = sorted(set(ga) & set(gb))
    if not keys:
        return None
    same = prefix = longest = 0
    for key in keys:
        x, y = ga[key], gb[key]
        n = 0
        while n < min(len(x), len(y)) and x[n] == y[n]:
            n += 1
        same += x == y
        prefix += n
        longest += max(len(x), len(y))
    return {"identical": same, "pairs": len(keys), "common_prefix_tokens": prefix, "tokens": longest}


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _change(a: float | None, b: float | None) -> str:
    return f"{(b / a - 1) * 100:+.1f}%" if a and b is not None else "—"


def _rate(st: dict | None) -> str:
    return "—" if st is None else f"{st['median']:.1f} (n={st['n']})"


def ab_report(a: AbSide, b: AbSide, transcripts: dict[str, list[Path]], oracle_path: Path, order: list[str], *,
              where: str, host: Any = None) -> AbReport:
    """The A/B table from each side's transcripts (scored against `oracle_path`), `host` (hostrun.HostAbResult)
    adding the teacher-forced figures of a host run."""
    figs = {side: _side_figures(transcripts[side], oracle_path) for side in ("a", "b")}
    fa, fb = figs["a"], figs["b"]
    rows = []
    for key, metric in (("prefill_tok_s", "prefill tok/s (median)"), ("decode_tok_s", "decode tok/s (median)")):
        ma, mb = (f[key]["median"] if f[key] else None for f in (fa, fb))
        rows.append(AbRow(metric, _rate(fa[key]), _rate(fb[key]), _change(ma, mb)))
    pa, pb = fa["peak_footprint_bytes"], fb["peak_footprint_bytes"]
    rows.append(AbRow("peak memory footprint", size_text(pa) if pa else "—", size_text(pb) if pb else "—",
                      _change(pa, pb)))
    rows.append(AbRow("weight bytes / decoded token", size_text(a.weight_bytes_per_token),
                      size_text(b.weight_bytes_per_token), _change(a.weight_bytes_per_token, b.weight_bytes_per_token)))
    rows.append(AbRow("asset size", size_text(a.asset_bytes), size_text(b.asset_bytes),
                      _change(a.asset_bytes, b.asset_bytes)))
    ea, eb = fa["oracle_exact"], fb["oracle_exact"]
    rows.append(AbRow("oracle: prompts token-exact", f"{ea['good']}/{ea['total']}" if ea else "—",
                      f"{eb['good']}/{eb['total']}" if eb else "—", ""))
    notes = []
    figures: dict[str, Any] = {"a": {k: v for k, v in fa.items() if k != "notes"},
                               "b": {k: v for k, v in fb.items() if k != "notes"}}
    if host is not None:
        fo = host.forced
        for key, metric, fmt in (("kl_mean", "mean KL vs fp32 (teacher-forced)", ".4f"),
                                 ("top1", "top-1 agreement vs fp32 (teacher-forced)", ".1%")):
            rows.append(AbRow(metric, _num((fo["a"] or {}).get(key), fmt), _num((fo["b"] or {}).get(key), fmt), ""))
        for side in ("a", "b"):
            figures[side]["forced_vs_fp32"] = fo[side]
        if fo["a"] is None and host.note:
            notes.append(f"no teacher-forced figures against fp32: {host.note}")
        figures["forced_a_vs_b"] = host.forced_ab
    agree = _token_agreement(transcripts["a"][0], transcripts["b"][0])
    figures["tokens_a_vs_b"] = agree
    if agree:
        share = agree["common_prefix_tokens"] / agree["tokens"] if agree["tokens"] else None
        rows.append(AbRow("A vs B: prompts token-identical", f"{agree['identical']}/{agree['pairs']}", "", ""))
        rows.append(AbRow("A vs B: tokens in common before the first difference",
                          _num(share, ".1%"), "", ""))
    if host is not None and host.forced_ab is not None:
        rows.append(AbRow("A vs B: KL(A || B), top-1 A = B (teacher-forced)",
                          f"{host.forced_ab['kl_mean']:.4f}, {host.forced_ab['top1']:.1%}", "", ""))
    if pa is None and pb is None and host is not None:
        notes.append("no memory footprint: both bundles run in one process on this machine, whose size is neither's "
                     "(bench on the phone for each app's own)")
    for side, f in figs.items():
        notes += [f"{side.upper()}: {n}" for n in dict.fromkeys(f["notes"])]
    return AbReport(a, b, where, order, rows, figures, notes, transcripts)


def ab_markdown(r: AbReport) -> str:
    lines = [f"# A/B: {r.a.build.name} vs {r.b.build.name} ({r.where})", "",
             f"- A: `{r.a.build}` — {r.a.name}, {r.a.storage}",
             f"- B: `{r.b.build}` — {r.b.name}, {r.b.storage}",
             f"- turns: {' '.join(r.order)} (ABBA: neither side always runs first)", "",
             "| metric | A | B | B vs A |", "|---|---:|---:|---:|"]
    lines += [f"| {row.metric} | {row.a} | {row.b} | {row.change} |" for row in r.rows]
    lines += ["", f"Weight bytes per token: A: {r.a.weights_rule}; B: {r.b.weights_rule}."]
    if r.notes:
        lines += ["", *[f"- {n}" for n in r.notes]]
    return "\n".join(lines) + "\n"


def write_ab(r: AbReport, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / AB_MD).write_text(ab_markdown(r))
    write_json_atomic(folder / AB_JSON, r.as_dict())
    return {"markdown": folder / AB_MD, "json": folder / AB_JSON}


# ---- the host ----------------------------------------------------------------------------------------------

def fp32_reference(a: AbSide) -> tuple[Callable | None, str]:
    """The fp32 model's teacher-forced logits (hostrun.torch_reference) from A's checkpoint, or None and why."""
    from . import hostrun
    from .checkpoint import load_checkpoint

    info = hostrun.BundleInfo.load(a.bundle)
    if hostrun.estimate_step_seconds(info) > HOST_REFERENCE_MAX_SECONDS:
        return None, f"{a.name} is too large to run the fp32 model beside it on this machine"
    try:
        record = json.loads((a.build / CHECKPOINT_RECORD).read_text())
        checkpoint = load_checkpoint(Path(record["path"]), model_id=record.get("model_id") or "")
    except (OSError, KeyError, ValueError, TypeError) as exc:
        return None, f"the checkpoint of {a.build} cannot be read ({exc})"
    tables = a.build / TABLES_DIR
    return hostrun.torch_reference(checkpoint, "fp16", "fp16", None, tables if tables.is_dir() else None), ""


def host_ab(a_build: Path, b_build: Path, *, trials: int, progress_factory: Callable[[int], Any] | None = None,
            reference: bool = True) -> AbReport:
    """`run --bench --ab B`: both bundles on this machine in ABBA order (hostrun.host_ab_bench), then the table,
    written beside A's transcript."""
    from . import hostrun
    from .oracle.records import ORACLE_FILE

    a, b = check_pair(a_build, b_build)
    oracle_path = a.build / ORACLE_FILE
    if not oracle_path.is_file():
        raise _fail(f"{a.build} has no {ORACLE_FILE}: the A/B runs its prompts and decoding on both builds",
                    f"run `gemmaios oracle --out {a.build}` first")
    if trials < 2:  # before any load
        raise hostrun.HostRunError(f"--ab takes turns trial by trial (A then B, then B then A), and {trials} trial "
                                   "would always run A first", hint="pass --trials 2 or more (even: balanced)")
    ref, why = fp32_reference(a) if reference else (None, "not asked for")
    result = hostrun.host_ab_bench({"a": (a.build, a.bundle), "b": (b.build, b.bundle)}, oracle_path, trials=trials,
                                   reference=ref, reference_note=why, progress_factory=progress_factory)
    report = ab_report(a, b, {s: [p] for s, p in result.transcripts.items()}, oracle_path,
                       [f"{s.upper()}{t}" for t, s in result.order], where="this machine, Core AI's runtime",
                       host=result)
    if result.skipped:
        report.notes.append(f"left out (past a bundle's context): {', '.join(result.skipped)}")
    write_ab(report, result.transcripts["a"].parent)
    return report


def device_ab(a_build: Path, b_build: Path, bench: Callable[..., Any], *, udid: str | None, trials: int,
              say: Callable[[str], None] = lambda _m: None, **options: Any) -> tuple[AbReport, dict[str, list[Any]]]:
    """`bench --ab B` / `deploy --bench --ab B`: each build's app in ABBA order on the phone, then the table,
    written to `<A>/runs/<first A run>/`."""
    a, b = check_pair(a_build, b_build)
    from .oracle.records import ORACLE_FILE

    order, results = device_ab_bench(a, b, bench, udid=udid, trials=trials, say=say, **options)
    transcripts = {side: [r.transcript for r in results[side]] for side in ("a", "b")}
    where = f"iPhone {results['a'][0].udid}"
    report = ab_report(a, b, transcripts, a.build / ORACLE_FILE, [f"{s.upper()}{r}" for r, s in order], where=where)
    write_ab(report, results["a"][0].run_dir)
    return report, results
