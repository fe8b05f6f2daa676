"""``python -m toolkit.docs``: the parts of the docs that are facts about the code, rendered from it.

What students and instructors read must be true, so the tables that restate the code are not
written by hand:

* the pages of ``PAGES`` (README.md and docs/*.md) hold regions between
  ``<!-- begin rendered: NAME -->`` and ``<!-- end rendered: NAME -->``, each region in one page
  only: ``exit-codes`` (from ``toolkit.cli.EXIT_CODES``), ``components`` (from
  ``toolkit.components.COMPONENTS`` and the hookspecs' ``:return:``), ``checks`` (every check's
  points, kind and docstring, from ``graders/``) and ``behaviour`` (the solution's figures over
  the seed sweep and the thresholds they set, from ``graders/snapshots/calibration.json`` and the
  table of calibrated figures, ``graders.calibration.FIGURES``);
* each assignment notebook has a card before every public test cell,
  ``**`attention.causal`** (2 points): <the check's docstring>`` (added where missing).

``python -m toolkit.docs`` rewrites them in place; ``--check`` changes nothing and exits 1 if
any file differs from its rendering (``tests/test_docs.py`` fails in that case too). Numbers
that sit in prose (a margin in a sentence) are checked against the graders' constants by
``tests/test_docs.py`` instead.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import nbformat

from toolkit import hookspecs
from toolkit.components import CALIBRATION, COMPONENTS
from toolkit.paths import ROOT

README = ROOT / "README.md"
PAGES = [README, ROOT / "docs" / "reference.md", ROOT / "docs" / "grading.md"]
"""The Markdown pages whose rendered regions ``python -m toolkit.docs`` rewrites."""
GRADE_CALL = re.compile(r"""grade\(\s*["']([\w.]+)["']""")  # a test cell's call: grade("<check>", ...)
REGION = re.compile(r"(<!-- begin rendered: ([\w-]+) -->\n)(.*?)(<!-- end rendered: \2 -->)", re.S)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]) + "\n"


# -- the regions of the pages --------------------------------------------------------------------
def exit_codes() -> str:
    """The exit codes of every command: ``toolkit.cli.EXIT_CODES``."""
    from toolkit.cli import EXIT_CODES, Exit

    rows = [[f"`toolkit {command}`", *(meanings.get(code, "(not used)") for code in Exit)]
            for command, meanings in EXIT_CODES.items()]
    return _table(["command", *(f"exit {int(code)}" for code in Exit)], rows)


def returns(hook: str) -> str:
    """The first clause of a hookspec's ``:return:`` field, in Markdown."""
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    field = re.search(r":return:(.*?)(?:\n\s*\n|\n\s*:|\Z)", doc, re.S)
    text = " ".join(field.group(1).split()) if field else ""
    return re.split(r"(?<=[\w`)*]): |\. ", text)[0].rstrip(".").replace("``", "`")


def components() -> str:
    """One row per hook: its component, its signature, what it returns, the component's points."""
    from toolkit.checks import collect

    rows = []
    for comp in COMPONENTS.values():
        checks = collect([comp.name], include_hidden=True)
        public = sum(c.points for c in checks if not c.hidden)
        hidden = sum(c.points for c in checks if c.hidden)
        for i, hook in enumerate(comp.hooks):
            args = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
            rows.append([f"`{comp.name}`" if i == 0 else "", f"`{hook}({args})`", returns(hook),
                         f"{public:g} + {hidden:g} hidden" if i == 0 else ""])
    return _table(["component", "hook", "returns", "points"], rows)


def checks() -> str:
    """Every check of ``graders/`` (hidden ones too), in the order they run."""
    from toolkit.checks import collect

    rows = [[f"`{c.name}`", f"{c.points:g}", ", ".join(["behavioural" if c.behavioural else "unit"]
                                                        + ["hidden"] * c.hidden), c.description]
            for c in collect(None, include_hidden=True)]
    return _table(["check", "points", "kind", "what it checks"], rows)


def _threshold(figure) -> str:
    """How the docs write the threshold a check derives from ``figure`` (``graders.calibration.Figure``):
    its rule, with the number its grader's function computes."""
    if not figure.threshold:
        return ""
    module, _, function = figure.threshold.partition(":")
    t = getattr(importlib.import_module(module), function)()
    return figure.rule.format(t=t[figure.name] if isinstance(t, dict) else t)


def behaviour() -> str:
    """The solution's behaviour over the seed sweep (graders/snapshots/calibration.json): each figure's
    range, and the threshold a check derives from its worst seed (the table ``graders.calibration.FIGURES``)."""
    calibration = importlib.import_module(CALIBRATION)
    cal = calibration.calibration()
    rows = []
    for figure in [f for f in calibration.FIGURES if f.label]:
        values = cal["figures"][figure.name]
        rows.append([figure.label, f"{min(values):.3f} – {max(values):.3f}", f"{sum(values) / len(values):.3f}",
                     _threshold(figure)])
    head = (f"Seeds {', '.join(map(str, cal['seeds']))}, measured on {cal['date']} on {cal['machine']} "
            "(`python benchmarks/seeds.py --calibrate`):\n\n")
    return head + _table(["figure (solutions, over the seeds)", "range", "mean", "threshold (worst seed, margin)"],
                         rows)


REGIONS = {"exit-codes": exit_codes, "components": components, "checks": checks, "behaviour": behaviour}


def render_page(text: str, name: str = "README.md") -> str:
    """``text`` (the page ``name``) with every rendered region rewritten; an unknown region name is
    an error."""
    def region(m: re.Match) -> str:
        if m.group(2) not in REGIONS:
            raise KeyError(f"{name}: unknown rendered region {m.group(2)!r}; known: {', '.join(REGIONS)}")
        return m.group(1) + REGIONS[m.group(2)]() + m.group(4)
    return REGION.sub(region, text)


def regions(text: str) -> list[str]:
    """The names of the rendered regions of a page, in order."""
    return [m.group(2) for m in REGION.finditer(text)]


# -- the notebooks' check cards ---------------------------------------------------------------
def card(check) -> str:
    """The markdown cell before a check's test cell."""
    return f"**`{check.name}`** ({check.points:g} point{'s' * (check.points != 1)}): {check.description}"


def checked_by(cell) -> str | None:
    """The check a notebook's autograded test cell runs, or None for any other cell."""
    meta = cell.metadata.get("nbgrader", {})
    if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
        return None
    m = GRADE_CALL.search(cell.source)
    return m.group(1) if m else None


def render_notebook(nb) -> nbformat.NotebookNode:
    """``nb`` with the card of every public check rendered: the markdown cell right before the
    check's test cell that starts with ``**`check name`**``, rewritten, or a new one put there."""
    from toolkit.checks import collect

    public = {c.name: c for c in collect(None, include_hidden=False)}
    cells = []
    for cell in nb.cells:
        name = checked_by(cell)
        if name in public:
            if cells and cells[-1].cell_type == "markdown" and cells[-1].source.startswith(f"**`{name}`**"):
                cells[-1].source = card(public[name])
            else:
                cells.append(nbformat.v4.new_markdown_cell(card(public[name]), id=f"card-{cell.id}"))
        cells.append(cell)
    nb.cells = cells
    return nb


# -- the command ------------------------------------------------------------------------------
def rendered() -> dict[Path, str]:
    """Each rendered file -> its text as rendered now."""
    out = {page: render_page(page.read_text(encoding="utf-8"), page.relative_to(ROOT).as_posix()) for page in PAGES}
    for comp in COMPONENTS.values():
        nb = render_notebook(nbformat.read(comp.notebook, as_version=4))
        out[comp.notebook] = nbformat.writes(nb) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    check_only = "--check" in (sys.argv[1:] if argv is None else argv)
    differ = {path: text for path, text in rendered().items() if path.read_text(encoding="utf-8") != text}
    for path, text in differ.items():
        print(f"{path.relative_to(ROOT)}: {'differs from its rendering' if check_only else 'rendered'}")
        if not check_only:
            path.write_text(text, encoding="utf-8")
    return 1 if check_only and differ else 0


if __name__ == "__main__":
    sys.exit(main())
