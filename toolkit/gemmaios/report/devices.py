"""Several runs (one per device: `bench --xctest`, `farm`) side by side: one column per run, the
headline figures as rows, in the order `headline_rows` gives them."""

from __future__ import annotations

from .summary import RunSummary


def side_by_side_md(runs: list[RunSummary]) -> str:
    from .markdown import _md_escape, headline_rows

    rows = [dict(headline_rows(s)) for s in runs]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    head = "| | " + " | ".join(_md_escape(s.label) for s in runs) + " |"
    lines = ["## Devices side by side\n", head, "|---|" + "---:|" * len(runs)]
    lines += [f"| {k} | " + " | ".join(_md_escape(r.get(k, "—")) for r in rows) + " |" for k in keys]
    return "\n".join(lines) + "\n"
