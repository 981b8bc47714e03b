"""What the runner reads from a bundle folder (metadata.json, the .aimodel) and what it costs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..buildlayout import BUNDLES_DIR
from ..files import sha256_file
from .errors import HostRunError
from .hostfacts import CPU_SECONDS_PER_GB


@dataclass
class BundleInfo:
    """What the runner needs from a bundle folder's metadata.json."""

    dir: Path
    name: str
    aimodel: Path
    metadata: dict
    metadata_sha256: str

    @property
    def facts(self) -> dict:
        return self.metadata.get("gemmaios") or {}

    @property
    def ple(self) -> str | None:
        names = {i["name"] for i in self.facts.get("inputs", [])}
        if "ple_tokens" in names:
            return "provider"
        if "ple_table" in names:
            return "tbl"
        return None

    @property
    def vision(self) -> dict | None:
        """metadata.json gemmaios.vision (the vision asset and splice facts), None for text-only bundles."""
        from ..contract import VISION_METADATA_KEY

        return self.facts.get(VISION_METADATA_KEY) or None

    @property
    def vision_asset(self) -> Path | None:
        """The vision .aimodel this machine loads (metadata.mac.json / the .aimodel, never the AOT .aimodelc)."""
        from ..contract import VISION_ASSET_FIELD

        return self._asset(self.vision, VISION_ASSET_FIELD)

    @property
    def audio(self) -> dict | None:
        """metadata.json gemmaios.audio (E2B/E4B's audio asset and splice facts), None without audio input."""
        from ..contract import AUDIO_METADATA_KEY

        return self.facts.get(AUDIO_METADATA_KEY) or None

    @property
    def audio_asset(self) -> Path | None:
        """The audio .aimodel this machine loads (never the AOT .aimodelc)."""
        from ..contract import AUDIO_ASSET_FIELD

        return self._asset(self.audio, AUDIO_ASSET_FIELD)

    def _asset(self, facts: dict | None, field: str) -> Path | None:
        if not facts:
            return None
        name = str(facts[field])
        if name.endswith(".aimodelc"):
            name = name[: -len("c")]
        return self.dir / name

    @property
    def vocab_size(self) -> int:
        return int(self.metadata["language"]["vocab_size"])

    @property
    def max_context(self) -> int:
        return int(self.metadata["language"]["max_context_length"])

    @property
    def prefill_functions(self) -> dict[int, str]:
        """{chunk size C: function name} of the bundle's `prefill` role (empty: main only)."""
        names = (self.metadata["language"].get("function_map") or {}).get("prefill") or []
        chunks = (self.facts.get("prefill") or {}).get("functions") or {}
        found = {}
        for name in names:
            if name not in chunks:
                raise HostRunError(f"{self.dir / 'metadata.json'}: function_map names prefill function {name!r} "
                                   "but gemmaios.prefill.functions does not describe it",
                                   hint="the bundle was not written by this gemmaios; convert it again")
            found[int(chunks[name]["chunk"])] = name
        return dict(sorted(found.items(), reverse=True))

    def spec(self, kind: str, name: str) -> dict:
        for item in self.facts.get(kind, []):
            if item["name"] == name:
                return item
        raise HostRunError(f"{self.dir / 'metadata.json'} lists no {kind[:-1]} {name!r}",
                           hint="the bundle was not written by this gemmaios; convert it again")

    def header(self) -> dict:
        """The transcript header's `bundle` object."""
        return {"name": self.name, "metadata_sha256": self.metadata_sha256, "quant": self.facts.get("quant"),
                "ple": self.ple or "none"}

    @classmethod
    def load(cls, bundle_dir: Path) -> BundleInfo:
        bundle_dir = Path(bundle_dir)
        if bundle_dir.is_file():
            raise HostRunError(f"{bundle_dir} is a file, not a bundle folder",
                               hint="pass a folder from `<build>/bundle/` (it holds metadata.json and the .aimodel)")
        if not bundle_dir.is_dir():
            raise HostRunError(f"bundle folder {bundle_dir} does not exist",
                               hint="pass a folder from `<build>/bundle/`, or run `gemmaios convert` first")
        # After an AOT compile metadata.json points at the .aimodelc (iPhone); metadata.mac.json
        # keeps the .aimodel that a Mac or this runner loads.
        meta_path = next((p for p in (bundle_dir / "metadata.mac.json", bundle_dir / "metadata.json") if p.is_file()), None)
        if meta_path is None:
            raise HostRunError(f"{bundle_dir} has no metadata.json", hint="it is not a LanguageBundle; convert again")
        try:
            metadata = json.loads(meta_path.read_text())
            main = metadata["assets"]["main"]
            metadata["language"]["vocab_size"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise HostRunError(f"{meta_path} is not a valid bundle metadata file ({exc!r})",
                               hint="convert the bundle again") from exc
        aimodel = bundle_dir / main
        if aimodel.suffix != ".aimodel":
            aimodel = bundle_dir / f"{metadata.get('name', bundle_dir.name)}.aimodel"
        if not aimodel.exists():
            raise HostRunError(f"{bundle_dir} has no {aimodel.name}",
                               hint="the .aimodel is needed to run on this machine; convert the bundle again")
        return cls(bundle_dir, str(metadata.get("name") or bundle_dir.name), aimodel, metadata,
                   sha256_file(bundle_dir / "metadata.json"))


def find_bundle(build_dir: Path) -> Path:
    """The bundle folder of a build (`<build>/bundle/<name>/`)."""
    root = Path(build_dir) / BUNDLES_DIR
    found = sorted(p for p in root.glob("*") if p.is_dir() and (p / "metadata.json").is_file()) if root.is_dir() else []
    if not found:
        raise HostRunError(f"{build_dir} holds no bundle (looked in {root})",
                           hint=f"run `gemmaios convert --out {build_dir}` (or `gemmaios build`) first")
    if len(found) > 1:
        raise HostRunError(f"{build_dir} holds several bundles: {', '.join(p.name for p in found)}",
                           hint="pass --bundle with the one to run")
    return found[0]


def asset_weight_bytes(bundle: BundleInfo) -> int:
    path = bundle.aimodel
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def estimate_step_seconds(bundle: BundleInfo) -> float:
    """A rough CPU decode-step time for this bundle on this machine class (for the up-front warning)."""
    return asset_weight_bytes(bundle) / 1e9 * CPU_SECONDS_PER_GB


