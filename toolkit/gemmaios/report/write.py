"""Writing a report's files (Markdown, HTML, JSON, optional JUnit) and choosing their default folder."""

from __future__ import annotations

from pathlib import Path

from ..buildlayout import REPORTS_DIR
from .build import Report
from .errors import ReportError
from .html_page import render_html
from .machine import render_json, render_junit
from .markdown import render_markdown
from .runs import RunData


def write_report(report: Report, out_dir: Path, *, junit: Path | None = None) -> dict[str, Path]:
    """Write report.md/.html/.json (and JUnit XML when asked), each via a temp file + rename."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"the report folder {out_dir} is a file", hint="pass --out a folder (new or existing)")
    if junit is not None and Path(junit).is_dir():
        raise ReportError(f"--junit {junit} is a folder", hint="pass the XML file to write, e.g. --junit report.xml")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the report folder {out_dir} ({exc.strerror or exc})",
                          hint="pass --out a folder you can write to") from exc
    files = {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "json": out_dir / "report.json"}
    texts = {"markdown": render_markdown(report), "html": render_html(report), "json": render_json(report)}
    if junit is not None:
        files["junit"] = Path(junit)
        texts["junit"] = render_junit(report)
    for key, path in files.items():
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(texts[key])
        tmp.replace(path)
    return files


def default_out_dir(runs: list[RunData]) -> Path:
    """build/<slug>/reports/ for runs inside a build folder, else ./gemmaios-report/."""
    builds = {r.build_dir for r in runs}
    if len(builds) == 1 and (only := builds.pop()) is not None:
        return only / REPORTS_DIR
    return Path("gemmaios-report")
