"""The report page: ``index.html`` (self-contained, plots embedded) and ``results.json``.

One page builder serves ``toolkit run --report`` (a student's own run) and the feedback page of
``toolkit grade`` (``toolkit.grading.exports``). Every string on the page is HTML-escaped, and a
plot is embedded only if its name was given by a check (``Context.plot_path``) and it is a
regular file of the report's folder, not a link (``OPEN_PLOT``), within ``MAX_PLOT`` bytes.

A page opens with the score, the headline chart (when a check drew it: ``HEADLINE_PLOTS``) and a
line per component with the figure that matters (``FIGURES``); the table of every check, then
each check's metrics and plots, come below. It fits a phone's window: long words break, and the
tables of class ``stack`` show a cell a line there.
"""

from __future__ import annotations

import base64
import html
import importlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.checks import CheckStatus, Result
from toolkit.components import COMPONENTS

STYLE = """body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
td,th{overflow-wrap:break-word}h1,code,pre,figcaption,.reason{overflow-wrap:anywhere}pre{white-space:pre-wrap}
table.metrics{width:auto}table.metrics td:last-child{text-align:right;font-variant-numeric:tabular-nums}
.nowrap{white-space:nowrap}figure{margin:1em 0}
.bar{background:#e8e8e8;min-width:4em}.bar div{background:#55a868;height:1em}
img{max-width:100%;height:auto}
code{background:#f3f3f3;padding:0 .2em}.summary{font-size:1.15em}
@media (max-width:40em){body{margin:1em auto;padding:0 .5em}
table.stack tr{display:block;border-bottom:1px solid #ddd;padding:.3em 0}table.stack tr:first-child{display:none}
table.stack td{display:block;border:0;padding:.1em .3em}table.stack td[data-label]:not(:empty)::before{content:attr(data-label) ": ";color:#666}}"""
STYLE += "\n" + "".join(f".{s.css}{{color:{s.colour}}}" for s in CheckStatus)  # each status in its colour
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


def _details(r: Result, folder: Path, shown_above: str) -> str:
    plots = "".join(_img(folder, str(name), str(caption)) for name, caption in r.metrics.get("_plots", [])
                    if name != shown_above)
    return f"<h3><code>{_e(r.name)}</code></h3>{_metrics_table(r.metrics)}{plots}{_examples(r.metrics.get('_examples'))}"


CODE_SPAN = re.compile(r"(`+)(.+?)\1")
STRONG, EMPHASIS = re.compile(r"\*\*(\S.*?)\*\*"), re.compile(r"(?<![\w*])\*(\S[^*]*?)\*(?![\w*])")


def inline_markdown(text: str) -> str:
    """A docstring's line as HTML: escaped, its `code` spans in <code>, its **strong** and *emphasis*
    as such, no Markdown sign left around them."""
    out, at = [], 0
    for m in CODE_SPAN.finditer(text):
        out += [_prose(text[at:m.start()]), f"<code>{_e(m.group(2).strip())}</code>"]
        at = m.end()
    return "".join(out + [_prose(text[at:])])


def _prose(text: str) -> str:
    return EMPHASIS.sub(r"<em>\1</em>", STRONG.sub(r"<strong>\1</strong>", _e(text)))


HEADLINE_PLOTS = ("sft_headline.png", "rlhf_headline.png")  # what the kit exists to show, first one found
def _figure(component: str, results: list[Result]) -> str:
    """The figures that matter of ``component``, as its checks' module says them (its ``FIGURES``: a list of
    (check, a sentence from that check's metrics)); one left out when not measured (``--fast``)."""
    metrics = {r.name: r.metrics for r in results}
    said = []
    for name, say in getattr(importlib.import_module(COMPONENTS[component].grader), "FIGURES", []):
        try:
            said.append(say(metrics[name]))
        except (KeyError, ValueError, TypeError):  # not run (--fast), or measured otherwise
            pass
    return "; ".join(said)


def table(header: list[str], rows: list[list[str]], css: str = "") -> str:
    """An HTML table of class ``css``; cells are HTML already (escape what goes in). On a narrow screen,
    a table of class ``stack`` shows a cell a line, each after its column's name (``data-label``)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    td = lambda h: f'<td data-label="{_e(h)}">' if "stack" in css.split() else "<td>"  # noqa: E731
    body = "".join("<tr>" + "".join(f"{td(h)}{c}</td>" for h, c in zip(header, row)) + "</tr>" for row in rows)
    attrs = f' class="{css}"' if css else ""
    return f"<table{attrs}><tr>{head}</tr>{body}</table>"


def _span(css: str, html_: str) -> str:
    return f'<span class="{css}">{html_}</span>'


def _components(results: list[Result]) -> str:
    """One line per component: its points, how many checks passed, and the figure that matters."""
    rows = []
    for component in dict.fromkeys(r.component for r in results):
        mine = [r for r in results if r.component == component]
        score = sum(min(max(r.score, 0.0), r.points) for r in mine)
        passed = sum(r.status == CheckStatus.PASSED for r in mine)
        status = CheckStatus.PASSED if passed == len(mine) else CheckStatus.FAILED
        rows.append([_e(component), _span("nowrap", f"{score:g} / {sum(r.points for r in mine):g}"),
                     _span(status.css, f"{passed} of {len(mine)} checks passed"),
                     _e(_figure(component, mine))])
    return table(["component", "points", "checks", "the figure that matters"], rows, "components stack")


def _headline(shown: list[Result], folder: Path) -> tuple[str, str]:
    """The headline chart (its HTML, its name) if a check drew one, else ("", "")."""
    plots = {str(name): str(caption) for r in shown for name, caption in r.metrics.get("_plots", [])}
    for name in HEADLINE_PLOTS:
        if name in plots:
            figure = _img(folder, name, plots[name])
            if figure:
                return figure, name
    return "", ""


def render(page: Page, folder: Path) -> str:
    """The page's HTML; plots are read from ``folder``. It opens with the score, the headline chart
    and one line per component; the table of every check comes after."""
    shown = [r for r in page.results if page.hidden_published or not r.hidden]
    held = [r for r in page.results if r not in shown]
    rows = [[f"<code>{_e(r.name)}</code><br><small>{inline_markdown(r.description)}</small>",
             _span("nowrap", f"{r.score:g} / {r.points:g}"), _span(f"nowrap {r.status.css}", _e(r.status)),
             _span("reason", _e(r.reason)) if r.reason and not (page.problem and r.status == CheckStatus.NOT_RUN) else ""]
            for r in shown]
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
    headline, headline_name = _headline(shown, folder)
    details = "".join(_details(r, folder, headline_name) for r in shown if r.metrics)
    env = (f"<p><small>Measured with {_e(', '.join(f'{k} {v}' for k, v in page.environment.items()))}.</small></p>"
           if page.environment else "")
    return f"""<!doctype html><html lang="en"><head>{HEAD}<title>toolkit report: {_e(page.title)}</title>
<style>{STYLE}</style></head><body>
<h1>Report for <code>{_e(page.title)}</code></h1>
<p class="summary">{summary}.</p>
{headline}{_components(shown) if shown else ""}
<h2>Checks</h2>
{table(["check", "points", "status", "reason"], rows, "checks stack")}
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
