"""Bench report: device transcripts → tok/s, load time, footprint, roofline, oracle and determinism.

`load_runs` reads transcripts strictly (a damaged log becomes an *invalid* run carrying the
TranscriptError and its line, never skipped), `summarise` turns one run into the figures
the model cards publish, measured the same way every time (see DEFINITIONS), `gates` checks
them against CI thresholds, `compare` puts two runs side by side, and the `render_*`
functions write Markdown, a self-contained HTML page (plots inline), JSON and JUnit XML.

Layout, one concern per module (every public name is re-exported here, so
`gemmaios.report.X` keeps working):
- `errors`: The report's named errors.
- `scoring`: Oracle and determinism verdicts as the report shows them, and the adapter over gemmaios.oracle.
- `bundle`: Bundle facts the roofline needs (weight, KV and PLE bytes), read from a build folder's manifest or
  a bundle's metadata.json.
- `runs`: Loading runs: transcripts read strictly (a damaged log becomes an *invalid* run, never skipped),
  with their build folder's bundle facts and oracle.
- `summary`: One run → the figures the model cards publish (tok/s, TTFT, load, footprint, settledness,
  scores), measured the same way every time (see DEFINITIONS).
- `bandwidth`: The bandwidth (roofline) model: bytes streamed per decoded token against the architecture's
  memory bandwidth.
- `gates`: CI gates: `--fail-under` thresholds and the oracle/determinism requirements, checked against a
  summary.
- `comparison`: Two runs side by side (`gemmaios report --compare`), refused when their prompt sets or bundles
  differ.
- `build`: The report as a whole: every run summarised, gated, cross-checked for determinism and optionally
  compared.
- `markdown`: Number formatting shared by the renderers, the headline table, and the Markdown report.
- `machine`: Machine-readable renderers: JSON (schema gemmaios.report/1) and JUnit XML for CI.
- `html_page`: The self-contained HTML report, its plots inlined as PNG (matplotlib, imported only when
  plotting).
- `write`: Writing a report's files (Markdown, HTML, JSON, optional JUnit) and choosing their default folder.
"""

from .bandwidth import Roofline
from .build import Report, build_report
from .bundlefacts import BundleFacts, bundle_facts_from_dir
from .comparison import COMPARE_METRICS, Comparison, ComparisonRow, compare
from .errors import IncomparableRuns, ReportError
from .gates import GATE_KEYS, apply_gates, parse_fail_under
from .html_page import plots, render_html
from .machine import render_json, render_junit
from .markdown import fmt, headline_rows, render_markdown
from .runs import RunData, find_build_dir, load_run, load_runs, transcript_paths
from .scoring import OracleModuleScorer, Score, Scorer, default_scorer
from .summary import (
    DEFINITIONS,
    LOW_BATTERY,
    SETTLE_SECONDS,
    THROTTLED_STATES,
    Gate,
    Note,
    RunSummary,
    Stat,
    TrialRates,
    cross_run_determinism,
    decode_step_fit,
    summarise,
)
from .write import default_out_dir, write_report

__all__ = [
    "BundleFacts",
    "COMPARE_METRICS",
    "Comparison",
    "ComparisonRow",
    "DEFINITIONS",
    "GATE_KEYS",
    "Gate",
    "IncomparableRuns",
    "LOW_BATTERY",
    "Note",
    "OracleModuleScorer",
    "Report",
    "ReportError",
    "Roofline",
    "RunData",
    "RunSummary",
    "SETTLE_SECONDS",
    "Score",
    "Scorer",
    "Stat",
    "THROTTLED_STATES",
    "TrialRates",
    "apply_gates",
    "build_report",
    "bundle_facts_from_dir",
    "compare",
    "cross_run_determinism",
    "decode_step_fit",
    "default_out_dir",
    "default_scorer",
    "find_build_dir",
    "fmt",
    "headline_rows",
    "load_run",
    "load_runs",
    "parse_fail_under",
    "plots",
    "render_html",
    "render_json",
    "render_junit",
    "render_markdown",
    "summarise",
    "transcript_paths",
    "write_report",
]
