"""Text as Swift source and property lists spell it: one escaping rule for the app template
(`gemmaios.app`) and the generated Contract.swift (`gemmaios.contract`)."""

from __future__ import annotations

from typing import Any

from .errors import AppTemplateError


def require_valid_unicode(what: str, text: str) -> str:
    """Python text can hold lone surrogates (undecodable bytes via surrogateescape); neither
    Swift nor a plist can: refuse them by name instead of emitting something that breaks."""
    bad = next((ch for ch in text if 0xD800 <= ord(ch) <= 0xDFFF), None)
    if bad is not None:
        raise AppTemplateError(f"{what} {text!r} is not valid Unicode (lone surrogate U+{ord(bad):04X})",
                               hint="use valid UTF-8 text (an undecodable file name or byte string got in)")
    return text


def swift_string(value: Any) -> str:
    """A Swift string literal for any text: escapes, no interpolation, no raw control chars."""
    out = ['"']
    for ch in require_valid_unicode("text", str(value)):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F or code in (0x2028, 0x2029):
            out.append(f"\\u{{{code:X}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
