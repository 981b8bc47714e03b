"""AOT compile: `<name>.aimodel` → `<name>.<arch>.aimodelc` with `xcrun coreai-build compile`.

The command (seed 002, the E4B run contract):
    xcrun coreai-build compile <name>.aimodel --output <dir> --platform iOS
        --preferred-compute gpu --architecture h18p --expect-frequent-reshapes
`--output <dir>` receives `<name>.<arch>.aimodelc` (coreai-model-zoo
knowledge/aot-and-specialization.md, the `coreai-build compile --help` surface it records, and
apps/CoreAISegment/README.md). The platform comes from the architecture registry.

The compiled asset lands next to the `.aimodel` in the bundle folder, `metadata.json`'s
`assets.main` is pointed at it (Apple's models/README.md: "replace the corresponding asset in
the bundle directory and update metadata.json to reference the new filename"), and
`metadata.mac.json` keeps the bundle's Mac form (`assets.main` → the `.aimodel`): copy it over
metadata.json to run the same folder on a Mac.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .archs import Arch, get_arch
from .errors import GemmaiosError, StepFailed
from .pipeline import (
    DONE,
    SKIPPED,
    BuildContext,
    Step,
    StepOutcome,
    fingerprint,
    sha256_file,
    write_json_atomic,
)
from .runners import In, Out, ToolchainError, ToolchainRunner, hash_tree, runner_for_build
from .steprecords import CompileDetails

METADATA = "metadata.json"
MAC_METADATA = "metadata.mac.json"
PREFERRED_COMPUTE = "gpu"
# The E4B graph changes its query length between prefill and decode (seed 002).
EXPECT_FREQUENT_RESHAPES = True


class CompileError(GemmaiosError):
    """The bundle cannot be compiled, or a compiled asset is not usable."""


def compile_argv(aimodel, output, arch: Arch) -> list:
    """`xcrun coreai-build compile` for `arch`; `aimodel`/`output` may be paths or runner In/Out."""
    argv = ["xcrun", "coreai-build", "compile", aimodel, "--output", output, "--platform", arch.platform,
            "--preferred-compute", PREFERRED_COMPUTE, "--architecture", arch.name]
    if EXPECT_FREQUENT_RESHAPES:
        argv.append("--expect-frequent-reshapes")
    return argv


def aimodelc_name(aimodel_name: str, arch: Arch) -> str:
    """`gemma4_x.aimodel` → `gemma4_x.h18p.aimodelc`, the name coreai-build gives it."""
    return f"{aimodel_name.removesuffix('.aimodel')}.{arch.name}.aimodelc"


def manual_command(bundle_dir: Path, aimodel_name: str, arch: Arch) -> str:
    """What to run by hand on a Mac: from the bundle folder, writing the asset next to the .aimodel."""
    bundle_dir = Path(bundle_dir).resolve()
    try:
        shown = bundle_dir.relative_to(Path.cwd())
    except ValueError:
        shown = bundle_dir
    return f"cd {shlex.quote(str(shown))} && " + shlex.join(compile_argv(aimodel_name, ".", arch))


@dataclass
class AimodelcInfo:
    path: Path
    producer: str
    created: str


def check_aimodelc(path: Path, arch: Arch) -> AimodelcInfo:
    """A compiled asset's own metadata.json names coreai-build as its producer, and its program
    files carry the architecture (`main-h18p.mlirb`); anything else is refused."""
    path = Path(path)
    meta_path = path / METADATA
    if not path.is_dir() or not meta_path.is_file():
        raise CompileError(f"{path} is not a compiled Core AI asset (no {METADATA} inside)",
                           hint="copy the whole .aimodelc folder produced by `xcrun coreai-build compile`")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompileError(f"{meta_path} is not valid JSON ({exc})", hint="re-copy the .aimodelc folder") from exc
    producer = str(meta.get("producer", ""))
    if not producer.startswith("coreai-build"):
        raise CompileError(f"{path} was not produced by coreai-build (producer {producer!r})",
                           hint="compile it with `xcrun coreai-build compile`")
    programs = sorted(p.name for p in path.glob("*.mlirb"))
    if not any(name.endswith(f"-{arch.name}.mlirb") for name in programs):
        found = ", ".join(programs) or "no .mlirb program"
        raise CompileError(f"{path} is not compiled for {arch.name} (found {found})",
                           hint=f"compile with --architecture {arch.name}, or pass the --arch it was built for")
    return AimodelcInfo(path, producer, str(meta.get("creationDate", "")))


def read_metadata(bundle_dir: Path) -> dict:
    if not Path(bundle_dir).is_dir():
        what = "is a file" if Path(bundle_dir).exists() else "does not exist"
        raise CompileError(f"bundle folder {bundle_dir} {what}",
                           hint="pass the folder that holds metadata.json and the .aimodel (build/<name>/bundle/<bundle>)")
    path = Path(bundle_dir) / METADATA
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CompileError(f"{path} is missing", hint="run the convert step to produce the bundle") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompileError(f"{path} is not valid JSON ({exc})", hint="re-run the convert step") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("assets"), dict) or not meta["assets"].get("main"):
        raise CompileError(f"{path} has no assets.main", hint="re-run the convert step")
    return meta


def source_aimodel(bundle_dir: Path) -> str:
    """The bundle's `.aimodel` (relative name), from metadata.json or, once compiled, metadata.mac.json."""
    bundle_dir = Path(bundle_dir)
    main = read_metadata(bundle_dir)["assets"]["main"]
    if main.endswith(".aimodelc") and (bundle_dir / MAC_METADATA).is_file():
        main = json.loads((bundle_dir / MAC_METADATA).read_text())["assets"]["main"]
    if not main.endswith(".aimodel"):
        raise CompileError(f"{bundle_dir / METADATA}: assets.main is {main!r}, not a .aimodel",
                           hint=f"restore {MAC_METADATA} or re-run the convert step")
    if not (bundle_dir / main).exists():
        raise CompileError(f"{bundle_dir / main} is missing", hint="re-run the convert step")
    return main


def vision_source(bundle_dir: Path) -> str | None:
    """The bundle's vision `.aimodel` (gemmaios.vision.asset; None for text-only bundles)."""
    from .contract import VISION_ASSET_FIELD, VISION_METADATA_KEY

    return _encoder_source(bundle_dir, VISION_METADATA_KEY, VISION_ASSET_FIELD)


def audio_source(bundle_dir: Path) -> str | None:
    """The bundle's audio `.aimodel` (gemmaios.audio.asset; None without E2B/E4B audio input)."""
    from .contract import AUDIO_ASSET_FIELD, AUDIO_METADATA_KEY

    return _encoder_source(bundle_dir, AUDIO_METADATA_KEY, AUDIO_ASSET_FIELD)


def _encoder_source(bundle_dir: Path, key: str, field: str) -> str | None:
    facts = (read_metadata(Path(bundle_dir)).get("gemmaios") or {}).get(key)
    if not facts:
        return None
    name = str(facts[field])
    return name[: -len("c")] if name.endswith(".aimodelc") else name


def point_metadata_at(bundle_dir: Path, aimodel: str, aimodelc: str, arch: Arch,
                      vision: tuple[str, str] | None = None, audio: tuple[str, str] | None = None) -> tuple[Path, Path]:
    """metadata.json → the .aimodelc (for the iPhone); metadata.mac.json → the .aimodel (for a Mac).

    `vision`: (the vision .aimodel, its .aimodelc), pointed at the same way (gemmaios.vision.asset);
    `audio` likewise (gemmaios.audio.asset).
    """
    from .contract import AUDIO_ASSET_FIELD, AUDIO_METADATA_KEY, VISION_ASSET_FIELD, VISION_METADATA_KEY

    bundle_dir = Path(bundle_dir)
    meta = read_metadata(bundle_dir)
    mac = json.loads(json.dumps(meta))
    mac["assets"]["main"] = aimodel
    mac.get("user_data", {}).pop("aot_architecture", None)
    meta["assets"]["main"] = aimodelc
    if vision is not None:
        mac["gemmaios"][VISION_METADATA_KEY][VISION_ASSET_FIELD] = vision[0]
        meta["gemmaios"][VISION_METADATA_KEY][VISION_ASSET_FIELD] = vision[1]
    if audio is not None:
        mac["gemmaios"][AUDIO_METADATA_KEY][AUDIO_ASSET_FIELD] = audio[0]
        meta["gemmaios"][AUDIO_METADATA_KEY][AUDIO_ASSET_FIELD] = audio[1]
    # user_data is [String: String] in Apple's ModelBundle: values stay strings.
    meta["user_data"] = {**meta.get("user_data", {}), "aot_architecture": arch.name}
    write_json_atomic(bundle_dir / MAC_METADATA, mac)
    write_json_atomic(bundle_dir / METADATA, meta)
    return bundle_dir / METADATA, bundle_dir / MAC_METADATA


@dataclass
class CompileResult:
    aimodelc: Path
    metadata: Path
    mac_metadata: Path
    arch: str
    command: str  # the command as it ran (paths as the tool saw them)
    host: str
    producer: str  # from the .aimodelc's metadata.json, e.g. coreai-build-3600.67.5.8.1
    tool_version: str  # `xcrun coreai-build --version`, when the tool answers it
    seconds: float
    sha256: dict[str, str] = field(default_factory=dict)
    vision_aimodelc: Path | None = None  # the vision asset's, for bundles with image input
    audio_aimodelc: Path | None = None  # the audio asset's, for E2B/E4B bundles with audio input


def tool_version(runner: ToolchainRunner) -> str:
    """`xcrun coreai-build --version`; empty when the tool does not answer it (the producer
    string inside every .aimodelc is recorded either way)."""
    try:
        return runner.check(["xcrun", "coreai-build", "--version"]).splitlines()[-1:][0]
    except (ToolchainError, IndexError):
        return ""


def compile_bundle(bundle_dir: Path, arch: Arch | str, runner: ToolchainRunner, *,
                   timeout: float | None = None) -> CompileResult:
    """Compile the bundle's .aimodel for `arch` with `runner` and point metadata.json at the result."""
    bundle_dir = Path(bundle_dir).resolve()
    arch = get_arch(arch) if isinstance(arch, str) else arch
    aimodel = source_aimodel(bundle_dir)
    vision = vision_source(bundle_dir)
    vision_pair = None
    if vision is not None:  # the vision asset first: a failure leaves metadata.json untouched
        vision_target, _, _ = _compile_asset(bundle_dir, vision, arch, runner, timeout)
        vision_pair = (vision, vision_target.name)
    audio = audio_source(bundle_dir)
    audio_pair = None
    if audio is not None:  # likewise before the decoder
        audio_target, _, _ = _compile_asset(bundle_dir, audio, arch, runner, timeout)
        audio_pair = (audio, audio_target.name)
    target, info, result = _compile_asset(bundle_dir, aimodel, arch, runner, timeout)
    metadata, mac_metadata = point_metadata_at(bundle_dir, aimodel, target.name, arch, vision_pair, audio_pair)
    return CompileResult(
        aimodelc=target, metadata=metadata, mac_metadata=mac_metadata, arch=arch.name, command=result.command,
        host=result.host, producer=info.producer, tool_version=tool_version(runner), seconds=result.seconds,
        sha256={k.split("/", 1)[1]: v for k, v in result.sha256.items() if "/" in k},
        vision_aimodelc=bundle_dir / vision_pair[1] if vision_pair else None,
        audio_aimodelc=bundle_dir / audio_pair[1] if audio_pair else None,
    )


def _compile_asset(bundle_dir: Path, aimodel: str, arch: Arch, runner: ToolchainRunner, timeout: float | None):
    """One `xcrun coreai-build compile` of `aimodel` into `bundle_dir` (replacing an older .aimodelc)."""
    target = bundle_dir / aimodelc_name(Path(aimodel).name, arch)
    work = Path(tempfile.mkdtemp(prefix=".compile-", dir=bundle_dir))
    try:
        result = runner.run(compile_argv(In(bundle_dir / aimodel), Out("aot", folder=True), arch), work,
                            timeout=timeout)
        produced = sorted((work / "aot").glob("*.aimodelc"))
        if len(produced) != 1:
            raise CompileError(
                f"`{result.command}` wrote {[p.name for p in produced] or 'no .aimodelc'} on {runner.describe()}; "
                f"expected exactly {target.name}",
                hint="check the coreai-build output above (a newer Xcode may name its output differently)",
            )
        info = check_aimodelc(produced[0], arch)
        staged = bundle_dir / f".{target.name}.new"
        shutil.rmtree(staged, ignore_errors=True)
        os.replace(produced[0], staged)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target, info, result


class CompileStep(Step):
    name = "compile"
    title = "AOT-compile the bundle for --arch (xcrun coreai-build compile)"

    def _convert(self, ctx: BuildContext) -> tuple[Path, str, str, dict[str, str]]:
        record = ctx.manifest.get("convert")
        if record is None or record.status not in (DONE, SKIPPED):
            raise StepFailed(f"step 'convert' has not finished in {ctx.build_dir}", hint="run `gemmaios convert` first")
        details = record.details
        bundle_rel = Path(details.bundle_dir)
        bundle_dir = ctx.path(str(bundle_rel))
        aimodel_rel = Path(details.aimodel)  # relative to the build folder (contracts.md)
        if not aimodel_rel.is_relative_to(bundle_rel):  # tolerate a path relative to the bundle
            aimodel_rel = bundle_rel / aimodel_rel
        aimodel = str(aimodel_rel.relative_to(bundle_rel))
        prefix = str(aimodel_rel)
        hashes = {rel: meta["sha256"] for rel, meta in record.outputs.items()
                  if rel == prefix or rel.startswith(prefix + "/")}
        return bundle_dir, details.name, aimodel, hashes

    def inputs(self, ctx: BuildContext) -> dict:
        bundle_dir, name, aimodel, hashes = self._convert(ctx)
        arch = get_arch(ctx.options.arch)
        return {
            "convert": ctx.step_fingerprint("convert"),
            "aimodel": fingerprint(hashes) if hashes else None,
            "arch": arch.name, "platform": arch.platform,
            "command": compile_argv("<aimodel>", "<output>", arch),
        }

    def run(self, ctx: BuildContext) -> StepOutcome:
        bundle_dir, name, aimodel, hashes = self._convert(ctx)
        arch = get_arch(ctx.options.arch)
        if not (bundle_dir / aimodel).exists():
            raise StepFailed(f"{bundle_dir / aimodel} is missing", hint="re-run `gemmaios convert`")
        source_digest = fingerprint(hashes or hash_tree(bundle_dir / aimodel))
        target = bundle_dir / aimodelc_name(Path(aimodel).name, arch)
        previous = ctx.manifest.get(self.name)

        picked_up = None
        recompile = bool((ctx.options.extra or {}).get("recompile"))  # `gemmaios compile --force`
        if target.exists() and not recompile:
            ours_stale = (previous is not None and previous.status == DONE
                          and previous.details.source_sha256 != source_digest)
            if ours_stale:  # compiled by us from an older .aimodel: never reuse it
                ctx.console.print(f"  {target.name} was compiled from an older {aimodel}; removing it")
                shutil.rmtree(target)
            else:
                picked_up = check_aimodelc(target, arch)

        vision = vision_source(bundle_dir)
        vision_target = bundle_dir / aimodelc_name(Path(vision).name, arch) if vision else None
        audio = audio_source(bundle_dir)
        audio_target = bundle_dir / aimodelc_name(Path(audio).name, arch) if audio else None
        if picked_up is not None and any(t is not None and not t.exists() for t in (vision_target, audio_target)):
            picked_up = None  # the decoder was compiled elsewhere but not an encoder asset: compile them all
        if picked_up is not None:
            for encoder_target in (vision_target, audio_target):
                if encoder_target is not None:
                    check_aimodelc(encoder_target, arch)
            metadata, mac_metadata = point_metadata_at(bundle_dir, aimodel, target.name, arch,
                                                       (vision, vision_target.name) if vision_target else None,
                                                       (audio, audio_target.name) if audio_target else None)
            earlier = previous.details if previous is not None else None  # pending: its command; done: its record
            pending = (earlier.command if earlier is not None else "") or manual_command(bundle_dir, aimodel, arch)
            reused = previous is not None and previous.status == DONE
            made = dict(command=pending, producer=picked_up.producer,
                        tool_version=earlier.tool_version if reused else "",
                        host=earlier.host if reused else "picked up (compiled elsewhere)",
                        picked_up=not reused or earlier.picked_up)
            message = f"{'reused' if reused else 'picked up'} {target.name} ({picked_up.producer})"
        else:
            command = manual_command(bundle_dir, aimodel, arch)
            runner = runner_for_build(
                ctx.options,
                pending_command=command,
                resume=f"copy {target.name} back into {bundle_dir} and re-run the same `gemmaios build` "
                       "(it picks the compiled asset up)",
            )
            ctx.console.print(f"  compiling {aimodel} for {arch.name} on {runner.describe()}")
            try:
                with ctx.progress(f"coreai-build compile → {target.name}", total=None):
                    result = compile_bundle(bundle_dir, arch, runner)
            finally:
                runner.close()
            metadata, mac_metadata = result.metadata, result.mac_metadata
            made = dict(command=result.command, manual_command=command, host=result.host, producer=result.producer,
                        tool_version=result.tool_version, picked_up=False, compile_seconds=result.seconds)
            message = f"{target.name} on {result.host} ({result.producer})"

        _restamp(ctx, "convert", metadata)
        files = sorted(p for p in target.rglob("*") if p.is_file())
        vision_rel = None
        if vision_target is not None and vision_target.exists():
            files += sorted(p for p in vision_target.rglob("*") if p.is_file())
            vision_rel = str(vision_target.relative_to(ctx.build_dir))
        audio_rel = None
        if audio_target is not None and audio_target.exists():
            files += sorted(p for p in audio_target.rglob("*") if p.is_file())
            audio_rel = str(audio_target.relative_to(ctx.build_dir))
        details = CompileDetails(
            arch=arch.name, platform=arch.platform, source_sha256=source_digest,
            aimodelc=str(target.relative_to(ctx.build_dir)), metadata=str(metadata.relative_to(ctx.build_dir)),
            metadata_mac=str(mac_metadata.relative_to(ctx.build_dir)), vision_aimodelc=vision_rel,
            audio_aimodelc=audio_rel, **made)
        tools = {"coreai-build": details.tool_version or details.producer}
        return StepOutcome(outputs=[*files, metadata, mac_metadata], details=details, message=message, tools=tools)


def _restamp(ctx: BuildContext, step: str, path: Path) -> None:
    """metadata.json is convert's output that compile rewrites on purpose: update convert's record
    of it so the next build does not take the rewrite for damage and re-convert."""
    record = ctx.manifest.get(step)
    rel = str(Path(path).resolve().relative_to(ctx.build_dir))
    if record is None or rel not in record.outputs:
        return
    stat = Path(path).stat()
    record.outputs[rel] = {"sha256": sha256_file(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    ctx.manifest.record(step, record)
