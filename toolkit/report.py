"""The report page: ``index.html`` (self-contained, plots embedded) and ``results.json``.

One page builder serves ``toolkit run --report`` (a student's own run) and the feedback page of
``toolkit grade`` (``toolkit.grading.exports``). Every string on the page is HTML-escaped, and a
plot is embedded only if its name was given by a check (``Context.plot_path``) and it is a
regular file of the report's folder, not a link (``OPEN_PLOT``), within ``MAX_PLOT`` bytes.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.checks import CheckStatus, Result

STYLE = """body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
table.metrics{width:auto}table.metrics td:last-child{text-align:right;font-variant-numeric:tabular-nums}
.nowrap{white-space:nowrap}
.passed{color:#137333}.failed{color:#c5221f}.partial{color:#b06000}.not-run{color:#666}img{max-width:100%}
code{background:#f3f3f3;padding:0 .2em}.summary{font-size:1.15em}"""
HEAD = '<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
PLOT_NAME = re.compile(r"[\w.-]+\.png")
MAX_PLOT = 4 << 20  # bytes of one embedded plot
OPEN_PLOT = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
"""How a plot is opened: as bytes (Windows), not through a link, never waiting on a FIFO (POSIX); each flag where
the OS has it."""


@dataclass
class Page:
    """What a report page shows."""

    title: str  # the submission's name or the student's id
    results: list[Result]
    missing: list[str] = field(default_factory=list)
    problem: str = ""  # why grading stopped or never started (shown once, at the top)
    graded_until_stopped: bool = False  # True: the checks judged before ``problem`` keep their points
    hidden_published: bool = True  # False: hidden checks are summed up in one line, not listed
    environment: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return round(sum(min(max(r.score, 0.0), r.points) for r in self.results), 4)

    @property
    def max_score(self) -> float:
        return round(sum(r.points for r in self.results), 4)


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def read_plot(folder: Path, name: str) -> bytes | None:
    """The bytes of plot ``name`` of ``folder``: a regular file, not a link, at most MAX_PLOT bytes."""
    if not PLOT_NAME.fullmatch(name):
        return None
    path = folder / name
    if path.is_symlink():  # O_NOFOLLOW refuses it too, where the OS has it (not Windows)
        return None
    try:
        fd = os.open(path, OPEN_PLOT)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PLOT:
            return None
        data = f.read(MAX_PLOT + 1)
    return data if len(data) <= MAX_PLOT else None


def _img(folder: Path, name: str, caption: str) -> str:
    data = read_plot(folder, name)
    if data is None:
        return ""
    src = base64.b64encode(data).decode()
    return f'<figure><img alt="{_e(caption)}" data-plot="{_e(name[:-4])}" src="data:image/png;base64,{src}"><figcaption>{_e(caption)}</figcaption></figure>'


def _metric(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_metric(x)}" for k, x in v.items())
    return str(v)


def _metrics_table(metrics: dict) -> str:
    rows = "".join(f"<tr><td>{_e(k.replace('_', ' '))}</td><td>{_e(_metric(v))}</td></tr>"
                   for k, v in metrics.items() if not str(k).startswith("_"))
    return f'<table class="metrics">{rows}</table>' if rows else ""


def _examples(examples) -> str:
    if not examples:
        return ""
    rows = "".join(f"<tr><td>{_e(q)}</td><td><code>{_e(b)}</code></td><td><code>{_e(c)}</code></td></tr>"
                   for q, b, c in examples)
    return f"<table><tr><th>prompt</th><th>base model</th><th>chat model</th></tr>{rows}</table>"


def _details(r: Result, folder: Path) -> str:
    plots = "".join(_img(folder, str(name), str(caption)) for name, caption in r.metrics.get("_plots", []))
    return f"<h3><code>{_e(r.name)}</code></h3>{_metrics_table(r.metrics)}{plots}{_examples(r.metrics.get('_examples'))}"


def render(page: Page, folder: Path) -> str:
    """The page's HTML; plots are read from ``folder``."""
    shown = [r for r in page.results if page.hidden_published or not r.hidden]
    held = [r for r in page.results if r not in shown]
    rows = "".join(
        f'<tr><td><code>{_e(r.name)}</code><br><small>{_e(r.description)}</small></td>'
        f'<td class="nowrap">{r.score:g} / {r.points:g}</td>'
        f'<td class="nowrap {_e(r.status).replace(" ", "-")}">{_e(r.status)}</td>'
        f'<td>{_e(r.reason) if not (page.problem and r.status == CheckStatus.NOT_RUN) else ""}</td></tr>'
        for r in shown)
    summary = f"<b>{page.score:g} / {page.max_score:g}</b> points"
    if page.problem and page.graded_until_stopped:
        summary += f"; grading stopped: {_e(page.problem)} (checks not judged by then score 0)"
    elif page.problem:
        summary += f": not graded: {_e(page.problem)}"
    if page.missing:
        summary += f". Not provided by the submission: {_e(', '.join(page.missing))}"
    hidden_points = sum(r.points for r in held)
    hidden_note = (f"<p>{len(held)} hidden check{'s' if len(held) != 1 else ''} ({hidden_points:g} of the "
                   f"{page.max_score:g} points), published later.</p>" if held else "")
    details = "".join(_details(r, folder) for r in shown if r.metrics)
    env = (f"<p><small>Measured with {_e(', '.join(f'{k} {v}' for k, v in page.environment.items()))}.</small></p>"
           if page.environment else "")
    return f"""<!doctype html><html lang="en"><head>{HEAD}<title>toolkit report: {_e(page.title)}</title>
<style>{STYLE}</style></head><body>
<h1>Report for <code>{_e(page.title)}</code></h1>
<p class="summary">{summary}.</p>
<table><tr><th>check</th><th class="nowrap">points</th><th>status</th><th>reason</th></tr>{rows}</table>
{hidden_note}{"<h2>Details</h2>" + details if details else ""}
{env}</body></html>"""


def write_page(page: Page, out: Path, data: dict | None = None) -> Path:
    """``out/index.html``, and ``out/results.json`` holding ``data`` if given."""
    out.mkdir(parents=True, exist_ok=True)
    if data is not None:
        (out / "results.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    path = out / "index.html"
    path.write_text(render(page, out), encoding="utf-8")
    return path


def write_report(run, out: Path) -> Path:
    """The report of a ``toolkit.runner.Run`` (``toolkit run --report``)."""
    page = Page(run.submission, run.results, run.missing, environment=run.environment)
    return write_page(page, out, run.to_dict())
