"""Write a run's report: ``index.html`` (self-contained, plots embedded) and ``results.json``."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from toolkit.runner import Run

STYLE = """body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
.passed{color:#137333}.failed{color:#c5221f}.partial{color:#b06000}img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'


def _metrics_table(metrics: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in metrics.items() if not k.startswith("_"))
    return f"<table>{rows}</table>" if rows else ""


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_report(run: Run, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(run.to_dict(), indent=2, default=str) + "\n")
    rows = "".join(
        f'<tr><td><code>{html.escape(r.name)}</code><br><small>{html.escape(r.description)}</small></td>'
        f'<td>{r.score:g} / {r.points:g}</td><td class="{r.status}">{r.status}</td><td>{html.escape(r.reason)}</td></tr>'
        for r in run.results)
    details = "".join(
        f"<h3><code>{html.escape(r.name)}</code></h3>{_metrics_table(r.metrics)}"
        + "".join(_img(out / p) for p in r.metrics.get("_plots", []) if (out / p).exists())
        + _examples(r.metrics.get("_examples"))
        for r in run.results if r.metrics)
    missing = f"<p>Not provided by the submission: {', '.join(run.missing)}.</p>" if run.missing else ""
    scope = "public and hidden checks" if run.hidden_included else "public checks only"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>toolkit report: {html.escape(run.submission)}</title>
<style>{STYLE}</style></head><body>
<h1>Report for <code>{html.escape(run.submission)}</code></h1>
<p><b>{run.score:g} / {run.max_score:g}</b> points ({scope}). {missing}</p>
<table><tr><th>check</th><th>points</th><th>status</th><th>reason</th></tr>{rows}</table>
<h2>Details</h2>{details}
<p><small>environment: {html.escape(json.dumps(run.environment))}</small></p></body></html>"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _examples(examples) -> str:
    if not examples:
        return ""
    rows = "".join(f"<tr><td>{html.escape(q)}</td><td><code>{html.escape(b)}</code></td><td><code>{html.escape(c)}</code></td></tr>"
                   for q, b, c in examples)
    return f"<table><tr><th>prompt</th><th>base model</th><th>chat model</th></tr>{rows}</table>"
