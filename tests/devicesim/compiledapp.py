"""What the stand-in app knows: the values its binary compiles in.

The .app's executable is the Swift source it carries (the rendered AppConfig.swift and the
generated Contract.swift); `CompiledApp` reads their `static let` constants as the compiled
app would have them, never importing `gemmaios.contract`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_DECL = re.compile(r"^\s*(?:public\s+)?static\s+let\s+(\w+)\s*(?::\s*[^=]+)?=\s*(.+?)\s*$")


def _swift_value(text: str):
    text = text.strip()
    if text.startswith('"'):
        # Swift's \u{X} escape → the character (json reads the rest: \\ \" \n \r \t)
        return json.loads(re.sub(r"\\u\{([0-9A-Fa-f]+)\}", lambda m: chr(int(m.group(1), 16)), text), strict=False)
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*", text):
        return float(text)
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_swift_value(part) for part in _split(inner)] if inner else []
    call = re.fullmatch(r"(\w+)\((.*)\)", text)
    if call:
        out = {}
        for part in _split(call.group(2)):
            key, _, value = part.partition(":")
            out[key.strip()] = _swift_value(value)
        return out
    member = re.fullmatch(r"(?:\w+)?\.(\w+)", text)
    if member:
        return member.group(1)  # an enum case: BundleLocation.appBundle → "appBundle"
    raise ValueError(f"cannot read the Swift value {text!r}")


def _split(text: str) -> list[str]:
    parts, depth, current, quoted = [], 0, "", False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        if not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def read_swift_constants(source: str) -> dict[str, dict]:
    """`enum X { static let a = ... }` blocks → {"X": {"a": value}} (only the enums we need)."""
    out: dict[str, dict] = {}
    current = None
    for line in source.splitlines():
        start = re.match(r"^\s*(?:public\s+)?enum\s+(\w+)\s*(?::[^{]*)?\{", line)
        if start:
            current = out.setdefault(start.group(1), {})
            continue
        decl = _DECL.match(line)
        if decl and current is not None:
            try:
                current[decl.group(1)] = _swift_value(decl.group(2))
            except (ValueError, json.JSONDecodeError):
                continue
    return out


class CompiledApp:
    """AppConfig + Contract as the app binary has them."""

    def __init__(self, executable: Path) -> None:
        enums = read_swift_constants(executable.read_text())
        self.config, self.contract = enums.get("AppConfig", {}), enums.get("Contract", {})
        if not self.config or not self.contract:
            raise SystemExit(f"{executable}: not a devicesim app (no AppConfig / Contract)")

    def c(self, name: str):
        return self.contract[name]

    @property
    def documents_location(self) -> bool:
        return self.config["bundleLocation"] == "documents"

    @property
    def ple_shape(self) -> tuple[int, int, int]:
        shape = self.config.get("pleShape")
        if isinstance(shape, dict):
            return int(shape["vocabSize"]), int(shape["layers"]), int(shape["dim"])
        return int(self.config.get("vocabSize", 0)), int(self.config.get("pleLayers", 0)), int(self.config.get("pleDim", 0))

    @property
    def eos_ids(self) -> list[int]:
        return list(self.config.get("eosTokenIds", self.config.get("stopTokenIds", [])))
