"""What a graded class is written as, from the grader's records (``toolkit.grading.record``).

In the output folder:

- ``grades.csv``: one row per student, one column per check (blank where it did not run),
  ``total``, ``max_total``, ``status`` and the ``missing`` components; a cell that a spreadsheet
  would read as a formula (``= + - @``, tab, carriage return first) gets a leading ``'``;
- ``gradescope/<student>/results.json`` (``to_gradescope``, also used by
  ``graders/gradescope/run_autograder``);
- ``feedback/<student>/index.html``: the student's page (``toolkit.report``), with the plots the
  checks drew there; hidden checks summed up in one line until they are published;
- ``summary.html``: the students first, the score distribution (``summary.png``), the pass rate
  of every check as a bar, time per submission, statuses, and pairs of near-identical submissions
  (``toolkit.grading.similarity``);
- with ``--gradebook GRADEBOOK_DB``: the scores in that nbgrader gradebook, under the course's ids.

Every string that came from a submission or a file name is escaped on every page.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import shutil
import sys
import sysconfig
import warnings
from pathlib import Path
from statistics import median
from urllib.parse import quote

from toolkit.checks import CheckStatus
from toolkit.components import COMPONENTS
from toolkit.grading.record import Record, Status
from toolkit.grading.similarity import SIMILARITY_THRESHOLD
from toolkit.report import HEAD, STYLE, Page, table, write_page

STUDENT_CAP = 20 << 20  # bytes of one student's output folder


def _num(x: float) -> str:
    """A score as written in the CSV: rounded, no trailing zeros."""
    return f"{round(x, 4):g}"


def cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula (OWASP's CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _first(records: dict[str, Record]) -> Record:
    return next(iter(records.values()))


# -- grades.csv ----------------------------------------------------------------------------
def write_csv(path: Path, records: dict[str, Record]) -> None:
    """One row per student (sorted), one column per check; blank where a check did not run."""
    checks = _first(records).results
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["student", *(c.name for c in checks), "total", "max_total", "status", "missing"])
        for student in sorted(records):
            r = records[student]
            scores = ["" if x.status == CheckStatus.NOT_RUN else _num(x.score) for x in r.results]
            writer.writerow([cell(student), *scores, _num(r.total), _num(r.max_total), r.status, " ".join(r.missing)])


# -- Gradescope ----------------------------------------------------------------------------
def to_gradescope(record: Record) -> dict:
    """A record in Gradescope's ``results.json`` format: one test per check of the rubric.

    Public checks are ``visible``; hidden ones ``after_published``. A check that did not run
    scores 0 with the reason as its output.
    """
    order = list(COMPONENTS)
    per_component: dict[str, int] = {}
    tests = []
    for r in record.results:
        per_component[r.component] = per_component.get(r.component, 0) + 1
        tests.append({
            "name": r.name, "number": f"{order.index(r.component) + 1}.{per_component[r.component]}",
            "score": min(max(r.score, 0.0), r.points), "max_score": r.points,
            "status": "passed" if r.status == CheckStatus.PASSED else "failed",  # Gradescope's two words
            "output": r.reason or r.description, "output_format": "text",
            "visibility": "after_published" if r.hidden else "visible",
        })
    lines = [f"{_num(record.total)} / {_num(record.max_total)} points ({record.status})."]
    if record.status != Status.GRADED:
        lines.append(record.error)
    if record.missing:
        lines.append(f"Not provided: {', '.join(record.missing)}.")
    return {"score": record.total, "execution_time": record.seconds, "output": "\n".join(lines),
            "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


# -- a student's files ---------------------------------------------------------------------
def write_student(out: Path, record: Record) -> None:
    """``gradescope/<student>/results.json`` and ``feedback/<student>/index.html``. A failure here is
    said on stderr and leaves that student's files incomplete, never the batch's."""
    try:
        gradescope = out / "gradescope" / record.student
        gradescope.mkdir(parents=True, exist_ok=True)
        (gradescope / "results.json").write_text(json.dumps(to_gradescope(record), indent=1) + "\n")
        write_feedback(out / "feedback" / record.student, record)
    except Exception as e:  # the grader's own data: this should not happen, and must not stop the batch
        print(f"warning: could not write the files of {record.student!r}: {type(e).__name__}: {e}", file=sys.stderr)


def write_feedback(folder: Path, record: Record) -> Path:
    """The student's page, with the plots the checks drew into ``folder`` (kept under ``STUDENT_CAP``)."""
    folder.mkdir(parents=True, exist_ok=True)
    _cap(folder, STUDENT_CAP)
    problem = record.error if record.status != Status.GRADED else ""
    stopped = record.status in (Status.TIMEOUT, Status.CRASHED)
    page = Page(record.student, record.results, record.missing, problem, stopped, hidden_published=False)
    return write_page(page, folder)


def _cap(folder: Path, cap: int) -> None:
    """Delete the largest plots of ``folder`` until it holds at most ``cap`` bytes."""
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.is_symlink()), key=lambda p: p.stat().st_size)
    total = sum(p.stat().st_size for p in files)
    while files and total > cap:
        biggest = files.pop()
        total -= biggest.stat().st_size
        biggest.unlink()


# -- summary -------------------------------------------------------------------------------
def class_statistics(records: dict[str, Record]) -> dict:
    """Pass rate of every check (over the submissions that ran it) and the count of each status."""
    rates = {}
    for i, c in enumerate(_first(records).results):
        ran = [r.results[i] for r in records.values() if r.results[i].status != CheckStatus.NOT_RUN]
        passed = sum(x.status == CheckStatus.PASSED for x in ran)
        rates[c.name] = {"ran": len(ran), "passed": passed, "rate": passed / len(ran) if ran else 0.0}
    statuses = {str(s): sum(r.status == s for r in records.values()) for s in Status}
    failing = sum(r.status == Status.GRADED and any(x.status in (CheckStatus.FAILED, CheckStatus.PARTIAL)
                                                    for x in r.results) for r in records.values())
    return {"pass_rate": rates, "statuses": statuses, "graded_with_a_failed_check": failing}


def plot_summary(path: Path, records: dict[str, Record]) -> None:
    """The score distribution: how many students got each total."""
    from matplotlib.ticker import MaxNLocator

    from toolkit.plots import figure, save

    fig = figure(7, 3.2, dpi=110)
    ax = fig.subplots()
    max_total = _first(records).max_total
    top = max(1, math.ceil(max_total))
    ax.hist([r.total for r in records.values()], bins=[x - 0.5 for x in range(top + 2)], color="#4c72b0")  # a bar per point
    ax.set(title="Score distribution", xlabel=f"total (of {max_total:g})", ylabel="students")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # students are counted in whole numbers
    save(fig, path)


def _bar(rate: float) -> str:
    """A pass rate as a bar: a cell of the table, as wide as the rate."""
    return f'<div class="bar" title="{rate:.0%}"><div style="width:{rate:.1%}"></div></div>'


def _at_a_glance(records: dict[str, Record], stats: dict) -> str:
    """The median score, how many failed a check, and how long a submission took."""
    slowest = max(records, key=lambda s: records[s].seconds)
    return (f"Median score {_num(median(r.total for r in records.values()))} of {_num(_first(records).max_total)}; "
            f"{stats['graded_with_a_failed_check']} of the graded submissions failed at least one check. "
            f"A submission took {median(r.seconds for r in records.values()):.1f} s (median), the slowest "
            f"{records[slowest].seconds:.1f} s ({html.escape(slowest)}).")


def write_summary(out: Path, records: dict[str, Record], pairs: list[dict]) -> Path:
    """``summary.html`` (with ``summary.png`` embedded): the class at a glance, the students first."""
    e = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    stats = class_statistics(records)
    plot_summary(out / "summary.png", records)
    image = base64.b64encode((out / "summary.png").read_bytes()).decode()
    max_total = _num(_first(records).max_total)
    error = lambda r: ((f'<span class="reason">{e(r.error)}</span>' if r.error else "")  # noqa: E731
                       + (f"<br><small>its last lines on stderr:</small><pre>{e(r.log)}</pre>" if r.log else ""))
    students = [[f'<a href="feedback/{e(quote(s))}/index.html">{e(s)}</a>', e(r.status),
                 f'<span class="nowrap">{_num(r.total)} / {max_total}</span>', e(", ".join(r.missing)), f"{r.seconds:.1f}",
                 e(r.sandbox), error(r)]
                for s, r in sorted(records.items())]
    rates = [[f"<code>{e(c.name)}</code>", _num(c.points), f'{rate["passed"]} of {rate["ran"]}',
              f'<span class="nowrap">{rate["rate"]:.0%}</span>', _bar(rate["rate"])]
             for c in _first(records).results for rate in [stats["pass_rate"][c.name]]]
    similar = [[e(p["component"]), e(p["a"]), e(p["b"]), f"{p['similarity']:.3f}"] for p in pairs]
    statuses = [[e(s.word), str(stats["statuses"][s])] for s in Status]
    page = f"""<!doctype html><html lang="en"><head>{HEAD}<title>toolkit grades: summary</title>
<style>{STYLE}</style></head><body>
<h1>Class summary: {len(records)} submissions</h1>
<p class="summary">{_at_a_glance(records, stats)}</p>
<h2>Students</h2>{table(["student", "status", "total", "missing", "seconds", "sandbox", "error"], students, "stack")}
<h2>Score distribution</h2>
<img alt="Score distribution: how many students got each total" src="data:image/png;base64,{image}">
<h2>Pass rate per check</h2>
<p>Of the submissions that ran the check.</p>
{table(["check", "points", "passed", "pass rate", ""], rates)}
<h2>Submissions by status</h2>{table(["status", "submissions"], statuses)}
<h2>Similar submissions</h2>
<p>Pairs whose code for a component is near-identical once names, comments, docstrings and formatting
are normalised (similarity &ge; {SIMILARITY_THRESHOLD:g}). A lead to look at, not a verdict.</p>
{table(["component", "student", "student", "similarity"], similar) if similar else "<p>None.</p>"}
</body></html>"""
    path = out / "summary.html"
    path.write_text(page, encoding="utf-8")
    return path


# -- nbgrader gradebook --------------------------------------------------------------------
def write_gradebook(db: Path, records: dict[str, Record]) -> None:
    """Scores into the nbgrader gradebook ``db`` (created if missing), with the ids of the course's
    notebooks (``toolkit.course.gradebook_ids``): an assignment and a notebook per component, a grade
    cell per check. A course's own ``gradebook.db`` can take them beside its autograded notebooks."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    from toolkit.course import gradebook_ids

    if shutil.which("alembic") is None:  # nbgrader runs `alembic` to create a gradebook; it sits next to python
        os.environ["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    checks = _first(records).results
    ids = {c.name: gradebook_ids(c.name) for c in checks}
    with Gradebook(f"sqlite:///{Path(db).resolve()}") as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission warns with SQLAlchemy 2
        for assignment, notebook in dict.fromkeys((a, n) for a, n, _ in ids.values()):
            gb.update_or_create_assignment(assignment)
            gb.update_or_create_notebook(notebook, assignment)
        for c in checks:
            assignment, notebook, cell = ids[c.name]
            gb.update_or_create_grade_cell(cell, notebook, assignment, max_score=c.points, cell_type="code")
        for student, record in sorted(records.items()):
            gb.update_or_create_student(student)
            for assignment in dict.fromkeys(a for a, _, _ in ids.values()):
                gb.update_or_create_submission(assignment, student)
            for r in record.results:
                assignment, notebook, cell = ids[r.name]
                grade = gb.find_grade(cell, notebook, assignment, student)
                grade.auto_score = min(max(r.score, 0.0), r.points)
                grade.needs_manual_grade = False
        gb.db.commit()
