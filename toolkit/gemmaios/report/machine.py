"""Machine-readable renderers: JSON (schema gemmaios.report/1) and JUnit XML for CI."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .build import Report
from .scoring import Score
from .summary import definitions_for


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name != "series"}
        if isinstance(obj, Score):
            data["label"] = obj.label
        extra = getattr(obj, "json_extra", None)
        if callable(extra):
            data.update({k: _plain(v) for k, v in extra().items()})
        return data
    if isinstance(obj, list | tuple):
        return [_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def render_json(report: Report) -> str:
    data = _plain(report)
    data["passed"] = report.passed
    data["definitions"] = definitions_for(report.runs)
    data["schema"] = "gemmaios.report/1"
    return json.dumps(data, indent=2, sort_keys=True)


def render_junit(report: Report) -> str:
    """One testsuite per run, one testcase per gate; a failed gate is a <failure>."""
    suites = ET.Element("testsuites", name="gemmaios report")
    for s in report.runs:
        suite = ET.SubElement(suites, "testsuite", name=s.label, tests=str(len(s.gates)),
                              failures=str(sum(not g.passed for g in s.gates)), errors="0")
        for g in s.gates:
            case = ET.SubElement(suite, "testcase", classname=f"gemmaios.report.{s.run_id or Path(s.path).stem}",
                                 name=g.name)
            if not g.passed:
                ET.SubElement(case, "failure", message=g.detail).text = g.detail
        if s.notes:
            ET.SubElement(suite, "system-out").text = "\n".join(f"{n.level}: {n.text}" for n in s.notes)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
