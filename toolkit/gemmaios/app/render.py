"""Rendering ios_template/ into `app/<AppName>/`: Swift sources (jinja2), plists, the project,
the portable core package, the staged payload (bundled) and the patched engine package."""

from __future__ import annotations

import hashlib
import json
import os
import plistlib
import shutil
import tempfile
from pathlib import Path

import jinja2

from .. import __version__, xctest
from .. import contract as c
from ..buildlayout import APP_DIR
from ..files import replace_dir, write_bytes_atomic
from ..patches import (
    ENGINE_DIRNAME,
    EngineSourceUnavailable,
    default_cache_dir,
    load_series,
    locate_pinned_source,
    prepare_engine_package,
)
from ..payload import PROMPT_SET_BUILD_REL, payload_plan
from ..swift_text import swift_string
from .values import (
    CORE_PACKAGE,
    AppResult,
    AppSettings,
    AppTemplateError,
    EngineStatus,
    PromptSet,
    pbx_string,
)
from .xcode import check_project, entitlements, info_plist, pbxproj_model

TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "ios_template"


# ---- rendering ------------------------------------------------------------------------------

def _jinja_env() -> jinja2.Environment:
    if not TEMPLATE_DIR.is_dir():
        raise AppTemplateError(f"the iOS template is missing at {TEMPLATE_DIR}",
                               hint="run gemmaios from its source checkout (pip install -e .)")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["swift"] = swift_string
    env.filters["pbx"] = pbx_string
    return env


def template_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(TEMPLATE_DIR.rglob("*")):
        if path.is_file() and not {".build", ".swiftpm"} & set(path.relative_to(TEMPLATE_DIR).parts):
            digest.update(str(path.relative_to(TEMPLATE_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def write_prompt_set(build_dir: Path, prompt_set: PromptSet | None) -> Path:
    """The bench prompt set (token ids) at PROMPT_SET_BUILD_REL: the app reads it from its payload.

    Image prompts' picture files go beside it, at their payload-relative path (`images/<name>.safetensors`),
    written from the image oracle's PNGs, and audio prompts' clip files (`clips/<name>.safetensors`) from
    the audio oracle's records; files of an earlier render that the set no longer names are removed.
    """
    prompt_set = prompt_set or PromptSet("empty", hashlib.sha256(b"[]").hexdigest(), 32, [])
    path = Path(build_dir) / PROMPT_SET_BUILD_REL
    from ..audio.audiobench import write_clip_file
    from ..vision.imagebench import write_image_file

    for folder, sources, write in ((c.PAYLOAD_IMAGES_DIR, prompt_set.image_sources, write_image_file),
                                   (c.PAYLOAD_CLIPS_DIR, prompt_set.clip_sources, write_clip_file)):
        wanted = {path.parent / rel for rel in sources}
        for old in sorted((path.parent / folder).glob("*")) if (path.parent / folder).is_dir() else []:
            if old not in wanted and old.is_file():
                old.unlink()
        for rel, source in sorted(sources.items()):
            write(Path(build_dir) / source, path.parent / rel)  # source: relative to the build folder
    write_bytes_atomic(path, json.dumps(prompt_set.as_json(), indent=1, sort_keys=True).encode())
    return path


def _link_or_copy(source: Path, dest: Path) -> None:
    """Stage a payload file: a hard link (GB bundles cost nothing), a copy across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def render_app(build_dir: Path, settings: AppSettings) -> AppResult:
    """Render the Xcode project into `build_dir/app/<AppName>/` (replaced as a whole)."""
    build_dir = Path(build_dir).resolve()
    s = settings.validated()
    env = _jinja_env()
    final_dir = build_dir / APP_DIR / s.app_name
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{s.app_name}.", dir=final_dir.parent))
    try:
        src_dir = staging / s.app_name
        src_dir.mkdir()
        values = {
            "display_name": s.display_name or s.app_name, "model_id": s.model_id, "bundle_name": s.bundle_name,
            "bundle_location_case": "appBundle" if s.bundle_location == c.BUNDLED else "documents",
            "ple": s.ple, "ple_layers": s.ple_layers, "ple_dim": s.ple_dim, "vocab_size": s.vocab_size,
            "quant": s.quant, "arch": s.arch, "metadata_sha256": s.metadata_sha256,
            "app_version": s.app_version, "toolkit_version": __version__, "trials": s.trials,
            "warmup_token_id": s.warmup_token_id, "bos_token_id": s.bos_token_id,
            "stop_token_ids": s.stop_token_ids, "platform": s.app_platform.name,
        }
        sources = []
        for path in sorted((TEMPLATE_DIR / "Sources").iterdir()):
            if path.name.endswith(".swift.j2"):
                name = path.name[: -len(".j2")]
                text = env.get_template(f"Sources/{path.name}").render(**values)
            elif path.suffix == ".swift":
                name, text = path.name, path.read_text()
            else:
                continue
            write_bytes_atomic(src_dir / name, text.encode())
            sources.append(name)

        write_bytes_atomic(src_dir / "Info.plist", plistlib.dumps(info_plist(s)))
        write_bytes_atomic(src_dir / f"{s.app_name}.entitlements", plistlib.dumps(entitlements(s)))
        prompt_set_path = write_prompt_set(build_dir, s.prompt_set)
        images = s.prompt_set.image_sources if s.prompt_set else {}  # written beside the prompt set

        resources = [
            ("app:Info.plist", "Info.plist", "text.plist.xml"),
            ("app:entitlements", f"{s.app_name}.entitlements", "text.plist.entitlements"),
        ]
        plan = None
        if s.bundle_location == c.BUNDLED:
            # The .app holds exactly the payload (contract.PAYLOAD_DIR), staged by hard links.
            plan = payload_plan(build_dir, s.bundle_location, bundle_dir=build_dir / s.bundle_dir, ple=s.ple,
                                tables_dir=build_dir / s.tables_dir, prompt_set=prompt_set_path)
            for source, dest in plan.app_files():
                _link_or_copy(source, staging / dest)
            resources.append(("model:payload", c.PAYLOAD_DIR, "folder"))
        # The app's portable core, as a local package inside the project folder.
        shutil.copytree(TEMPLATE_DIR / CORE_PACKAGE, staging / CORE_PACKAGE,
                        ignore=shutil.ignore_patterns(".build", ".swiftpm", "Package.resolved"))
        up = "../.."
        engine_rel = f"{up}/engine/{ENGINE_DIRNAME}"
        model = pbxproj_model(s, sources, resources, engine_rel)
        # The bench's XCTest bundle (gemmaios.xctest): its one source in <project>/<target>/.
        write_bytes_atomic(staging / model["test"]["name"] / model["test"]["source"],
                      env.get_template(xctest.TEMPLATE).render(**xctest.swift_values()).encode())
        xcodeproj = staging / f"{s.app_name}.xcodeproj"
        write_bytes_atomic(xcodeproj / "project.pbxproj", env.get_template("project.pbxproj.j2").render(**model).encode())

        # A shared scheme, so xcodebuild/fastlane can build without Xcode having opened the project.
        scheme = env.get_template("scheme.xcscheme.j2").render(target_id=model["ids"]["target"], app_name=s.app_name,
                                                      test_target_id=model["test"]["ids"]["target"],
                                                      test_name=model["test"]["name"])
        write_bytes_atomic(xcodeproj / "xcshareddata" / "xcschemes" / f"{s.app_name}.xcscheme", scheme.encode())

        problems = check_project(xcodeproj / "project.pbxproj")
        if problems:
            raise AppTemplateError("the rendered project.pbxproj is inconsistent: " + "; ".join(problems),
                                   hint="this is a gemmaios bug; please report it with the build folder")
        replace_dir(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    engine = _engine(build_dir, s) if s.prepare_engine else EngineStatus(
        "skipped", f"engine/{ENGINE_DIRNAME}", "engine package not prepared (--no-engine)")
    payload_root = final_dir / c.PAYLOAD_DIR
    files = sorted(p for p in final_dir.rglob("*") if p.is_file() and payload_root not in p.parents)
    return AppResult(final_dir, final_dir / f"{s.app_name}.xcodeproj", files, engine, s.bundle_location,
                     prompt_set_path, plan, [prompt_set_path.parent / rel for rel in sorted(images)])


def _engine(build_dir: Path, s: AppSettings) -> EngineStatus:
    """Put the patched coreai-models package where the project's local package points."""
    series = load_series()
    rel = f"engine/{ENGINE_DIRNAME}"
    dest = build_dir / rel
    stamp = dest / ".gemmaios-engine"
    expected = f"base {series.base}\n" + "".join(f"patch {p.name} {p.sha256}\n" for p in series.patches)
    if stamp.is_file() and stamp.read_text() == expected:
        return EngineStatus("ready", rel, "patched package up to date", applied=[p.name for p in series.patches])
    try:
        source = locate_pinned_source(series, s.engine_source, s.engine_cache or default_cache_dir(),
                                      s.allow_clone)
    except EngineSourceUnavailable as exc:
        return EngineStatus("pending", rel, str(exc).splitlines()[0], exc.command)
    result = prepare_engine_package(dest, series, source)
    return EngineStatus("ready", rel, f"coreai-models {series.base[:12]} + {len(series.patches)} patches",
                        applied=result.applied + result.already)


