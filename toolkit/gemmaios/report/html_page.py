"""The self-contained HTML report, its plots inlined as PNG (matplotlib, imported only when plotting)."""

from __future__ import annotations

import base64
import io

from ..roofline import GB, size_text
from .build import Report
from .markdown import fmt, headline_rows, thermal_known
from .summary import RunSummary, definitions_for


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _legend(ax) -> None:
    """The legend beside the axes, never over the bars or points it labels (a one-trial run's two bars
    fill the plot, so matplotlib's `best` spot is on top of one of them)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)


def plots(s: RunSummary) -> dict[str, str]:
    """Base64 PNGs of `figures`."""
    return {title: _png(fig) for title, fig in figures(s).items()}


def figures(s: RunSummary) -> dict:
    """The matplotlib figures: tok/s per trial, footprint over time, decode rate vs context position, and (bench
    protocol) sustained tok/s over time with its thermal transitions, cold launches vs warm trials."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out: dict = {}
    trials = s.series.get("trials") or []
    if trials:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        xs = [t[0] for t in trials]
        width = 0.38
        ax.bar([x - width / 2 for x in xs], [t[1] or 0 for t in trials], width, label="prefill", color="#4c78a8")
        ax.bar([x + width / 2 for x in xs], [t[2] or 0 for t in trials], width, label="decode", color="#f58518")
        for x, *_rest, warm in trials:
            if warm:
                ax.annotate("warm-up", (x, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        ax.set_xticks(xs)
        ax.set_xlabel("trial")
        ax.set_ylabel("tok/s")
        ax.set_title("tok/s per trial")
        _legend(ax)
        out["tok/s per trial"] = fig
    memory = s.series.get("memory") or []
    if memory:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        ax.plot([m[0] for m in memory], [m[1] / GB for m in memory], marker=".", label="phys_footprint")
        if s.entitled_limit_bytes:
            ax.axhline(s.entitled_limit_bytes / GB, color="#d62728", linestyle="--", label="entitled limit")
        ax.set_xlabel("t (s, memory samples)")
        ax.set_ylabel("GB")
        ax.set_ylim(bottom=0)
        ax.set_title("footprint over time")
        _legend(ax)
        out["footprint over time"] = fig
    points = s.series.get("decode_points") or []
    if points:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=6, alpha=0.5, label="per token")
        if s.roofline and s.roofline.roofline_tok_s:
            ax.axhline(s.roofline.roofline_tok_s, color="#d62728", linestyle="--", label="roofline")
        ax.set_xlabel("context position (cached tokens)")
        ax.set_ylabel("decode tok/s")
        ax.set_ylim(bottom=0)
        ax.set_title("decode rate vs context position")
        _legend(ax)
        out["decode rate vs context position"] = fig
    sustained = s.series.get("sustained") or []
    if sustained:
        out["tok/s over time (sustained)"] = _sustained_figure(Figure, sustained, s.series.get("sustained_thermal") or [])
    cold_warm = [row for row in s.series.get("cold_warm") or [] if row[1] == "cold"]
    if cold_warm:
        fig = Figure(figsize=(6, 3.2))
        ax = fig.subplots()
        rows = s.series["cold_warm"]
        xs = list(range(len(rows)))
        colors = ["#4c78a8" if kind == "cold" else "#f58518" for _trial, kind, *_rates in rows]
        ax.bar(xs, [r[3] or 0 for r in rows], color=colors)
        ax.set_xticks(xs, [f"{trial}\n{kind}" for trial, kind, *_rates in rows])
        ax.set_xlabel("trial (launch kind)")
        ax.set_ylabel("decode tok/s")
        ax.set_title("cold launches vs warm trials")
        out["cold launches vs warm trials"] = fig
    return out


THERMAL_COLORS = {"nominal": "#2ca02c", "fair": "#bcbd22", "serious": "#ff7f0e", "critical": "#d62728"}


def _sustained_figure(Figure, series: list[tuple[float, float, str]], marks: list[tuple[float, str]]):
    """tok/s per sample over the sustained phase, each thermal transition a labelled vertical line."""
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    ax.plot([p[0] for p in series], [p[1] for p in series], marker=".", color="#4c78a8", label="decode tok/s")
    for t, state in marks:
        ax.axvline(t, color=THERMAL_COLORS.get(state, "#777"), linestyle="--")
        ax.annotate(f"→ {state}", (t, 0), textcoords="offset points", xytext=(3, 3), fontsize=8,
                    color=THERMAL_COLORS.get(state, "#777"))
    ax.set_xlabel("t (s since the sustained phase began)")
    ax.set_ylabel("tok/s")
    ax.set_ylim(bottom=0)
    ax.set_title("sustained decode: tok/s over time, thermal transitions")
    _legend(ax)
    return fig


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gemmaios bench report</title>
<style>
body{font:14px/1.45 -apple-system,system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.fail{color:#b00020;font-weight:bold}.pass{color:#137333}
.warning{color:#8a5300}.error{color:#b00020}.plots img{max-width:49%;margin:.3em 0}
code{background:#f3f3f3;padding:0 .2em}
</style></head><body>
<h1>gemmaios bench report</h1>
<p>Generated {{ report.generated_at }} by gemmaios {{ report.toolkit_version }}. Gates:
<span class="{{ 'pass' if report.passed else 'fail' }}">{{ 'PASS' if report.passed else 'FAIL' }}</span></p>
{% for s, rows, figs in runs %}
<section class="run"><h2>{{ s.label }}</h2><p><code>{{ s.path }}</code></p>
<table>{% for k, v in rows %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% if s.per_trial %}<table><tr><th>trial</th><th>launch</th><th>prompts</th><th>prefill tok/s</th><th>decode tok/s</th>
{% if thermal_known(s) %}<th>thermal</th>{% endif %}<th></th></tr>{% for t in s.per_trial %}<tr><td>{{ t.trial }}</td>
<td>{{ t.kind }}</td><td>{{ t.prompts }}</td><td>{{ fmt(t.prefill_tok_s) }}</td><td>{{ fmt(t.decode_tok_s) }}</td>
{% if thermal_known(s) %}<td>{{ t.thermal }}</td>{% endif %}
<td>{{ 'warm-up (excluded)' if t.warmup else '' }}</td></tr>{% endfor %}</table>{% endif %}
{% if s.prompt_lengths %}<table><tr><th>prompt</th><th>tokens</th><th>prefill tok/s (median, measured trials)</th></tr>
{% for p in s.prompt_lengths %}<tr><td>{{ p.prompt_id }}</td><td>{{ p.tokens }}</td><td>{{ fmt(p.prefill_tok_s) }}</td>
</tr>{% endfor %}</table>{% endif %}
{% if s.context_probes %}<table><tr><th>KV growth</th><th>context (prompt + generated)</th><th>prompts</th><th>exact</th>
<th>within the margin rule</th><th>KV bound</th></tr>{% for p in s.context_probes %}{% for b in p.buckets %}<tr>
<td>{{ p.growth or '—' }}</td><td>{{ b.label }}</td><td>{{ b.prompts }}</td><td>{{ b.exact }}</td><td>{{ b.held }}</td>
<td>{{ b.capacities | join('/') or '—' }}</td></tr>{% endfor %}{% endfor %}</table>{% endif %}
{% if s.roofline and s.roofline.by_context %}<table><tr><th>context</th><th>KV bound</th><th>KV read / token</th>
<th>KV memory</th><th>weights / token</th><th>bytes / token</th><th>KV share</th><th>roofline tok/s</th></tr>
{% for c in s.roofline.by_context %}<tr><td>{{ c.context }}</td><td>{{ c.capacity }}</td>
<td>{{ size_text(c.kv_read_bytes) }}</td><td>{{ size_text(c.kv_state_bytes) }}</td>
<td>{{ size_text(c.weight_bytes) }}</td><td>{{ size_text(c.bytes_per_token) }}</td>
<td>{{ '%.1f' % (c.kv_share * 100) }}%</td><td>{{ fmt(s.roofline.context_roofline(c)) }}</td></tr>{% endfor %}</table>
<p>KV by context: {{ s.roofline.by_context_note }}.</p>{% endif %}
{% if s.notes %}<ul>{% for n in s.notes %}<li class="{{ n.level }}">{{ n.level }}: {{ n.text }}</li>{% endfor %}</ul>{% endif %}
{% if s.gates %}<table><tr><th>gate</th><th>result</th><th>detail</th></tr>{% for g in s.gates %}<tr><td>{{ g.name }}</td>
<td class="{{ 'pass' if g.passed else 'fail' }}">{{ 'pass' if g.passed else 'FAIL' }}</td><td>{{ g.detail }}</td></tr>
{% endfor %}</table>{% endif %}
<div class="plots">{% for title, png in figs.items() %}<img alt="{{ title }}" title="{{ title }}"
 src="data:image/png;base64,{{ png }}">{% endfor %}</div></section>
{% endfor %}
{% if c %}<section><h2>Comparison: B = {{ c.b }} vs A = {{ c.a }}</h2><table><tr><th>metric</th><th>A</th><th>B</th>
<th>Δ</th><th>Δ %</th></tr>{% for r in c.rows %}<tr><td>{{ r.metric }}</td><td>{{ fmt(r.a, 2) }}</td>
<td>{{ fmt(r.b, 2) }}</td><td>{{ fmt(r.delta, 2) }}</td><td>{{ fmt(r.delta_pct) }}</td></tr>{% endfor %}</table>
{% if c.notes %}<ul>{% for n in c.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}</section>{% endif %}
<h2>Definitions</h2><ul>{% for d in definitions %}<li>{{ d }}</li>{% endfor %}</ul>
</body></html>
"""


def render_html(report: Report) -> str:
    """A self-contained page: tables plus matplotlib plots inline as base64 PNG (no external files)."""
    import jinja2

    env = jinja2.Environment(autoescape=True)
    template = env.from_string(_HTML)
    runs = [(s, headline_rows(s), plots(s) if s.valid else {}) for s in report.runs]
    return template.render(report=report, runs=runs, c=report.comparison, definitions=definitions_for(report.runs),
                           fmt=fmt, thermal_known=thermal_known, size_text=size_text)
