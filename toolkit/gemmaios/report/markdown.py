"""Number formatting shared by the renderers, the headline table, and the Markdown report."""

from __future__ import annotations

from ..roofline import size_text
from .build import Report
from .comparison import Comparison
from .protocol import prompt_lengths_line
from .summary import RunSummary, Stat, definitions_for


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def _gb(value: float | None) -> str:
    return "—" if value is None else size_text(value)


def _trials_line(s: RunSummary) -> str:
    """How many trials the medians are over (the `n` of their lines), which, and what was left out."""
    measured = s.measured_trials
    line = (f"{len(measured)} measured (trial{'s' if len(measured) != 1 else ''} {', '.join(map(str, measured))})"
            if measured else "none measured")
    line += f"; warm-up excluded: {', '.join(map(str, s.warmup_trials)) or 'none'}"
    if s.cold_trials:
        line += f"; cold launches {', '.join(map(str, s.cold_trials))}"
    return line + f"; {s.trials_planned} planned"


def thermal_known(s: RunSummary) -> bool:
    """Whether the run recorded thermal states (an iPhone bench does; a host run does not)."""
    return any(t.thermal not in ("", "unknown") for t in s.per_trial)


def _stat(st: Stat | None, digits: int = 1) -> str:
    return "—" if st is None else f"{st.median:.{digits}f} (min {st.min:.{digits}f}, max {st.max:.{digits}f}, n={st.n})"


def headline_rows(s: RunSummary) -> list[tuple[str, str]]:
    """The per-run table shared by Markdown and HTML."""
    if not s.valid:
        return [("status", f"INVALID — line {s.error_line}: {s.error}")]
    dev = s.device
    rows = [
        ("status", "complete" if s.complete else f"INCOMPLETE ({s.failure})" if s.failure
         else "INCOMPLETE (no footer: crash, jetsam kill or timeout)"),
        ("device", f"{dev.get('name', '?')} · {dev.get('product_type', '?')} · {s.platform} {dev.get('os_version', '')}"
                   + (f" · arch {dev['arch']}" if dev.get("arch") else "")),
        ("bundle", f"{s.bundle.get('name', '?')} ({s.bundle.get('quant', '?')}, PLE {s.bundle.get('ple', '?')})"),
        ("prompt set", f"{s.prompt_set.get('name', '?')} · {s.prompt_set.get('count', '?')} prompts · "
                       f"sha256 {str(s.prompt_set.get('sha256', ''))[:12]}"),
        ("trials", _trials_line(s)),
        ("prefill tok/s" + (" (warm)" if s.cold else ""), _stat(s.prefill_tok_s)),
        ("prompt lengths (tokens)", prompt_lengths_line(s.prompt_lengths)),
        ("decode tok/s" + (" (warm)" if s.cold else ""), _stat(s.decode_tok_s)),
        ("time to first token s" + (" (warm)" if s.cold else ""), _stat(s.ttft_s, 3)),
        ("model load s", f"cold {fmt(s.load_cold_s, 2)}; warm {_stat(s.load_warm_s, 2)}"
                         + (" (cold/warm here: the on-device specialization cache, not the launch kind)"
                            if s.cold else "")),
        ("peak footprint", _gb(s.peak_footprint_bytes)),
        # an entitled limit is an iPhone's: a host run has no headroom row rather than `— vs —`
        *([("headroom", f"{_gb(s.headroom_bytes)} vs entitled limit {_gb(s.entitled_limit_bytes)}"
                        + (f"; OS-reported available min {_gb(s.min_available_bytes)}" if s.min_available_bytes else ""))]
          if s.entitled_limit_bytes is not None else []),
        ("oracle", f"{s.oracle.label} — {s.oracle.summary}" if s.oracle else "—"),
        *([("image prompts", f"{s.image_oracle.label} — {s.image_oracle.summary}")] if s.image_oracle else []),
        *([("audio prompts", f"{s.audio_oracle.label} — {s.audio_oracle.summary}")] if s.audio_oracle else []),
        ("determinism (trials)", f"{s.trial_determinism.label} — {s.trial_determinism.summary}"
         if s.trial_determinism else "—"),
    ]
    if s.cold:
        c = s.cold
        rows += [
            ("cold launch TTFT s (process start → first token)", _stat(c.ttft_since_launch_s, 3)),
            ("cold launch engine TTFT s / load s", f"{_stat(c.ttft_s, 3)} / {_stat(c.load_s, 2)}"),
            ("cold launch prefill / decode tok/s", f"{_stat(c.prefill_tok_s)} / {_stat(c.decode_tok_s)}"),
        ]
    if s.thermal:
        rows.append(("thermal state", s.thermal.line))
    if s.energy:
        rows.append((f"energy ({s.energy.method})", s.energy.line))
    if s.sustained:
        rows.append(("sustained decode", s.sustained.line))
    rows += [("oracle by context", p.line) for p in s.context_probes]
    rows += [("determinism (runs)", f"{d.label} — {d.summary}") for d in s.determinism]
    if s.prefill_ab is not None:
        rows.append(("prefill A/B", s.prefill_ab.line))
    if s.decode_step_fit:
        f = s.decode_step_fit
        rows.append(("decode step vs context", f"{f['intercept_ms']:.1f} ms + {f['ms_per_1k_positions']:.2f} ms per "
                     f"1k cached positions (fit over {f['tokens']} tokens, positions {f['positions'][0]}–"
                     f"{f['positions'][1]})"))
    r = s.roofline
    if r:
        rows += [
            ("bytes / decoded token", f"{_gb(r.bytes_per_token)} = weights {_gb(r.weight_bytes)} + KV "
                                      f"{_gb(r.kv_bytes)} (mean context {r.context:.0f}) + PLE row "
                                      f"{_gb(r.ple_row_bytes)}"),
            ("roofline", f"{fmt(r.roofline_tok_s)} tok/s at {fmt(r.bandwidth_gbps)} GB/s ({r.bandwidth_kind}); efficiency "
                         f"{fmt(r.efficiency * 100 if r.efficiency is not None else None)}%" if r.bandwidth_gbps
             else r.note),
            ("bandwidth facts", r.source),
        ]
    return rows


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def side_by_side_md(runs: list[RunSummary]) -> str:
    """Several runs (one per device: `bench --xctest`, `farm`) side by side: one column per run, the
    headline figures as rows, in the order `headline_rows` gives them."""
    rows = [dict(headline_rows(s)) for s in runs]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    head = "| | " + " | ".join(_md_escape(s.label) for s in runs) + " |"
    lines = ["## Devices side by side\n", head, "|---|" + "---:|" * len(runs)]
    lines += [f"| {k} | " + " | ".join(_md_escape(r.get(k, "—")) for r in rows) + " |" for k in keys]
    return "\n".join(lines) + "\n"


def render_markdown(report: Report, plots_dir: str | None = None) -> str:
    out = [f"# gemmaios bench report\n\nGenerated {report.generated_at} by gemmaios {report.toolkit_version}. "
           f"Gates: **{'PASS' if report.passed else 'FAIL'}**.\n"]
    if len(report.runs) > 1:  # one run per device (bench --xctest, farm): the headline figures in columns
        out.append(side_by_side_md(report.runs))
    for s in report.runs:
        out.append(f"## {_md_escape(s.label)}\n\n`{s.path}`\n\n| | |\n|---|---|")
        out += [f"| {k} | {_md_escape(v)} |" for k, v in headline_rows(s)]
        if s.per_trial:
            thermal = thermal_known(s)  # a host run records none: no column of `unknown`
            out.append("\n| trial | launch | prompts | prefill tok/s | decode tok/s |" + (" thermal |" if thermal else "")
                       + " |\n|---:|---|---:|---:|---:|" + ("---|" if thermal else "") + "---|")
            out += [f"| {t.trial} | {t.kind} | {t.prompts} | {fmt(t.prefill_tok_s)} | {fmt(t.decode_tok_s)} | "
                    + (f"{t.thermal} | " if thermal else "")
                    + f"{'warm-up (excluded)' if t.warmup else ''} |" for t in s.per_trial]
        if s.prompt_lengths:
            out.append("\n| prompt | tokens | prefill tok/s (median, measured trials) |\n|---|---:|---:|")
            out += [f"| {_md_escape(p.prompt_id)} | {p.tokens} | {fmt(p.prefill_tok_s)} |" for p in s.prompt_lengths]
        if s.context_probes:
            out.append("\n| KV growth | context (prompt + generated) | prompts | exact | within the margin rule "
                       "| KV bound |\n|---|---|---:|---:|---:|---|")
            out += [f"| {p.growth or '—'} | {b.label} | {b.prompts} | {b.exact} | {b.held} | "
                    f"{'/'.join(map(str, b.capacities)) or '—'} |" for p in s.context_probes for b in p.buckets]
        if s.roofline and s.roofline.by_context:
            r = s.roofline
            out.append("\n| context | KV bound | KV read / token | KV memory | weights / token | bytes / token | KV share "
                       "| roofline tok/s |\n|---:|---:|---:|---:|---:|---:|---:|---:|")
            out += [f"| {c.context} | {c.capacity} | {size_text(c.kv_read_bytes)} | {size_text(c.kv_state_bytes)} | "
                    f"{size_text(c.weight_bytes)} | {size_text(c.bytes_per_token)} | {c.kv_share:.1%} | "
                    f"{fmt(r.context_roofline(c))} |" for c in r.by_context]
            out.append(f"\nKV by context: {_md_escape(r.by_context_note)}.")
        for what, score in (("image", s.image_oracle), ("audio", s.audio_oracle)):
            if score and score.prompts:
                out.append(f"\n| {what} prompt | trial | verdict | tokens judged | first divergence | oracle margin | "
                           "note |\n|---|---:|---|---:|---:|---:|---|")
                out += [f"| {_md_escape(p['prompt_id'])} | {p['trial']} | {p['verdict']} | {p['compared']} | "
                        f"{'—' if p['divergence'] is None else p['divergence']} | {fmt(p['margin'], 3)} | "
                        f"{_md_escape(p['note'])} |" for p in score.prompts]
        if s.series.get("sustained"):
            out.append("\n| t s (sustained) | tok/s | thermal |\n|---:|---:|---|")
            out += [f"| {t:.0f} | {rate:.1f} | {state} |" for t, rate, state in s.series["sustained"]]
        if s.notes:
            out.append("\n" + "\n".join(f"- **{n.level}**: {n.text}" for n in s.notes))
        if s.gates:
            out.append("\n| gate | result | detail |\n|---|---|---|")
            out += [f"| {g.name} | {'pass' if g.passed else '**FAIL**'} | {_md_escape(g.detail)} |" for g in s.gates]
        out.append("")
    if report.comparison:
        out.append(_comparison_md(report.comparison))
    out.append("## Definitions\n\n" + "\n".join(f"- {d}" for d in definitions_for(report.runs)) + "\n")
    return "\n".join(out)


def _comparison_md(c: Comparison) -> str:
    lines = [f"## Comparison: B = {_md_escape(c.b)} vs A = {_md_escape(c.a)}\n",
             "| metric | A | B | Δ | Δ % |", "|---|---:|---:|---:|---:|"]
    for r in c.rows:
        lines.append(f"| {r.metric} | {fmt(r.a, 2)} | {fmt(r.b, 2)} | {fmt(r.delta, 2)} | {fmt(r.delta_pct, 1)} |")
    lines += [f"- {n}" for n in c.notes]
    return "\n".join(lines) + "\n"
