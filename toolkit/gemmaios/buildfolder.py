"""What a build folder is: the options it was built with, read back from its build.json.

Every command given a folder (or finding the only one under ./build) starts from these options;
an option given on the command line that contradicts them is a BuildFolderMismatch naming the
fix, never a silent rewrite of the folder's manifest.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from .buildlayout import BUILD_RUNS_DIR
from .errors import BuildFolderMismatch, NoBuildFolder
from .pipeline import MANIFEST_NAME, BuildOptions, Manifest
from .registry import DEFAULT_MODEL
from .tiny import TINY_ID

BUILDS_ROOT = Path("build")  # where `gemmaios build` puts folders by default (default_build_dir)

# What the folder *is*: changing one of these makes a different bundle, so it needs its own folder.
IDENTITY_DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL, "arch": "h18p", "quant": "int4", "ple": "provider", "vision": False, "audio": False,
    "prefill_chunk": "0", "max_context": None, "target": "ios", "kernel": None, "head_quant": None,
    "recipe": None, "calibration": None,
}
# The command-line spelling of each identity option, for messages.
FLAGS = {name: "--" + name.replace("_", "-") for name in IDENTITY_DEFAULTS}

ONE_OFF_EXTRAS = ("recompile",)  # BuildOptions.extra keys that are not remembered
_OPTION_FIELDS = {f.name for f in dataclasses.fields(BuildOptions)}


def default_build_dir(options: BuildOptions) -> Path:
    """build/<model>-<arch>-<quant>-<ple> (Mac bundles: <model>-mac-<quant>-<ple>[-<kernel>])."""
    model = TINY_ID if options.model == TINY_ID else Path(options.model.rstrip("/")).name
    quant = options.quant
    if getattr(options, "recipe", None):  # a recipe build is named after the recipe (its file's stem)
        quant = Path(str(options.recipe)).stem
    name = f"{model}-{options.arch}-{quant}-{options.ple}"
    if options.target != "ios":  # Mac bundles (and their kernel variant) get their own folder
        name = f"{model}-{options.target}-{quant}-{options.ple}" + (f"-{options.kernel}" if options.kernel else "")
    return BUILDS_ROOT / re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def is_build_folder(path: Path) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


def builds_found(root: Path = BUILDS_ROOT) -> list[Path]:
    return sorted(p.parent for p in Path(root).glob(f"*/{MANIFEST_NAME}"))


def the_only_build(root: Path = BUILDS_ROOT) -> Path:
    """The one build folder under ./build; NoBuildFolder when there is none or several."""
    found = builds_found(root)
    if len(found) == 1:
        return found[0]
    if not found:
        raise NoBuildFolder(f"no build folder given and none under ./{root}",
                            hint="run `gemmaios build --model tiny` first, or pass --out <build folder>")
    listed = ", ".join(str(p) for p in found)
    raise NoBuildFolder(f"no build folder given and {len(found)} under ./{root} ({listed})",
                        hint=f"pass --out with one of them, e.g. --out {found[0]}")


def stored_options(build_dir: Path) -> BuildOptions | None:
    """The options build.json records (None for a folder that records none, e.g. one made by hand).
    Folders from before `options` was recorded get the model, quant and PLE mode their step records name."""
    manifest = Manifest(build_dir)  # a damaged build.json is named here (BuildError), not misread
    stored = manifest.data.get("options")
    if not isinstance(stored, dict) or not stored.get("model"):
        stored = _options_from_steps(manifest)
        if not stored:
            return None
    values = {k: v for k, v in stored.items() if k in _OPTION_FIELDS}
    if values.get("prompts_file"):
        values["prompts_file"] = Path(values["prompts_file"])
    # what one command asked for once, not what the folder is (`compile --force` must not recompile forever)
    extra = {k: v for k, v in (values.get("extra") or {}).items() if k not in ONE_OFF_EXTRAS}
    if isinstance(extra.get("app"), dict):  # JSON wrote the Paths as text
        app = dict(extra["app"])
        for key in ("config", "engine_source"):
            if isinstance(app.get(key), str):
                app[key] = Path(app[key])
        extra["app"] = app
    values["extra"] = extra
    return BuildOptions(**values)


def _options_from_steps(manifest: Manifest) -> dict[str, Any]:
    steps = manifest.steps
    model = ((steps.get("checkpoint") or {}).get("inputs") or {}).get("model")
    if not model:
        return {}
    convert = (steps.get("convert") or {}).get("inputs") or {}
    return {"model": model, **{k: convert[k] for k in ("quant", "ple", "target", "kernel") if convert.get(k)}}


def _built_value(build_dir: Path, options: BuildOptions, name: str) -> Any:
    """What the folder holds for `name`: the option as recorded, or for an option left to its default
    (None), the value the convert step resolved it to."""
    value = getattr(options, name)
    if value is None:
        record = Manifest(build_dir).get("convert")
        if record is not None and record.status == "done":
            return getattr(record.details, name, None)
    return value


def _same(name: str, built: Any, given: Any) -> bool:
    if built == given:
        return True
    if name == "model" and built is not None:  # a local checkpoint folder named two ways
        a, b = Path(str(built)).expanduser(), Path(str(given)).expanduser()
        return a.is_dir() and b.is_dir() and a.resolve() == b.resolve()
    return built is None  # nothing built yet for it (e.g. no convert record): the given value decides


def check_matches(build_dir: Path, options: BuildOptions, given: dict[str, Any]) -> None:
    """BuildFolderMismatch when an option given on the command line contradicts the folder."""
    for name, value in given.items():
        if value is None or name not in IDENTITY_DEFAULTS:
            continue
        built = _built_value(build_dir, options, name)
        if _same(name, built, value):
            continue
        flag = FLAGS[name]
        shown = (lambda v: "on" if v else "off") if isinstance(value, bool) else str
        asked = flag if value is True else f"{flag} {value}"
        if name != "model":  # a new folder starts from the defaults: name the model too
            asked = f"--model {options.model} {asked}"
        elsewhere = default_build_dir(dataclasses.replace(options, **{name: value}))
        if elsewhere.resolve() == Path(build_dir).resolve():
            elsewhere = Path(f"{build_dir}-{name.replace('_', '-')}")
        raise BuildFolderMismatch(
            f"{build_dir} was built with {flag} {shown(built)}; this command asks for {flag} {shown(value)}",
            hint=f"drop {flag} to use the folder as built, or build the other one in a folder of its own: "
                 f"gemmaios build {asked} --out {elsewhere}")


def resolve(out: Path | None, given: dict[str, Any], *, find_only: bool = True) -> tuple[Path, BuildOptions]:
    """(build folder, options) for a command: the folder's own options when it exists, the given ones
    checked against them; defaults plus the given ones for a new folder.

    `given` holds the identity options as typed (None: not given). With no --out and no --model,
    the only build folder under ./build is used when `find_only` (NoBuildFolder when there are several)."""
    if out is None and given.get("model") is None and find_only:
        found = builds_found()
        if len(found) > 1:
            the_only_build()  # raises, listing them
        out = found[0] if found else None
    fresh = BuildOptions(**{k: (given.get(k) if given.get(k) is not None else default)
                            for k, default in IDENTITY_DEFAULTS.items()})
    build_dir = Path(out) if out is not None else default_build_dir(fresh)
    if build_dir.exists() and not build_dir.is_dir():
        return build_dir, fresh  # BuildContext names it
    stored = stored_options(build_dir) if is_build_folder(build_dir) else None
    if stored is None:
        return build_dir, fresh
    check_matches(build_dir, stored, given)
    for name, value in given.items():  # the given ones that agree (a default spelled out, say)
        if value is not None and name in IDENTITY_DEFAULTS and getattr(stored, name) is None:
            setattr(stored, name, value)
    return build_dir, stored


def latest_run(build_dir: Path) -> Path | None:
    """The newest run folder of a build (run ids start with a UTC timestamp, so names sort by time)."""
    runs = sorted(p for p in (Path(build_dir) / BUILD_RUNS_DIR).glob("*/") if p.is_dir() and not p.name.startswith("."))
    return runs[-1] if runs else None
