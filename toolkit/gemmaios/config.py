"""User configuration (YAML): a remote Mac, signing identity, defaults.

Looked up in order: an explicit --config path, ./gemmaios.yaml, ~/.config/gemmaios/config.yaml.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .errors import GemmaiosError


class ConfigError(GemmaiosError):
    """The YAML configuration is unreadable or has unknown keys."""


@dataclass
class UserConfig:
    mac: str | None = None  # user@host of a Mac with Xcode 27, for the Apple-only steps
    mac_workdir: str = "~/gemmaios-remote"
    ssh_options: list[str] = field(default_factory=list)
    team_id: str | None = None
    bundle_id: str | None = None
    app_name: str | None = None  # Xcode target / product name of the rendered app
    engine_source: str | None = None  # a checkout of apple/coreai-models (else cache or clone)
    source: Path | None = None


def config_paths(explicit: Path | None = None) -> list[Path]:
    if explicit:
        return [Path(explicit)]
    home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return [Path("gemmaios.yaml"), home / "gemmaios" / "config.yaml"]


def load_config(explicit: Path | None = None) -> UserConfig:
    for path in config_paths(explicit):
        if path.is_file():
            try:
                raw = yaml.safe_load(path.read_text()) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path} is not valid YAML: {exc}", hint="fix the file or remove it") from exc
            if not isinstance(raw, dict):
                raise ConfigError(f"{path} must hold a mapping of settings", hint="e.g. `mac: me@my-mac.local`")
            known = {f.name for f in fields(UserConfig)} - {"source"}
            unknown = sorted(set(raw) - known)
            if unknown:
                raise ConfigError(f"{path}: unknown settings {unknown}", hint=f"known settings: {sorted(known)}")
            _check_types(path, raw)
            return UserConfig(**{k: v for k, v in raw.items() if v is not None}, source=path)
        if explicit and path.exists():
            raise ConfigError(f"config file {path} is a folder, not a YAML file", hint="pass the .yaml file itself")
        if explicit:
            raise ConfigError(f"config file {path} does not exist", hint="check the --config path")
    return UserConfig()


def _check_types(path: Path, raw: dict) -> None:
    """Each setting is text (ssh_options: a list of text), or empty, so no mistake surfaces later over SSH."""
    for key, value in raw.items():
        if value is None:
            continue
        if key == "ssh_options":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            example = "ssh_options: [-p, '2222']"
        else:
            ok = isinstance(value, str)
            example = f"{key}: 'some text'"
        if not ok:
            raise ConfigError(f"{path}: setting {key!r} has the wrong type ({type(value).__name__}: {value!r})",
                              hint=f"write it as e.g. `{example}`")
