"""What a graded class is written as: the rubric, the scores of a record, and the output files.

``toolkit.grade.grade_class`` writes, in the output folder:

- ``grades.csv``: one row per student, one column per check, ``total``, ``max_total``,
  ``status`` (graded, load_error, timeout, crashed) and the ``missing`` components;
- ``gradescope/<student>/results.json`` (``to_gradescope``, also used by
  ``graders/gradescope/run_autograder``);
- ``feedback/<student>/index.html``: the run's report, every check with its score and reason;
- ``summary.html`` and ``summary.png``: score distribution, pass rate of every check, time per
  submission, failures by kind, and pairs of near-identical submissions (``toolkit.similarity``);
- ``gradebook.db`` with ``--gradebook ASSIGNMENT``: the scores in an nbgrader gradebook.

Records are ``toolkit.grade``'s: ``{"status", "seconds", "run", "error"}``.
"""

from __future__ import annotations

import base64
import csv
import html
import os
import shutil
import sysconfig
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.components import COMPONENTS
from toolkit.similarity import SIMILARITY_THRESHOLD

if TYPE_CHECKING:
    from toolkit.grade import Options

STATUSES = ("graded", "load_error", "timeout", "crashed")


# -- the rubric and the scores -------------------------------------------------------------
def rubric(options: Options) -> list[dict]:
    """The checks a grading with ``options`` runs, in order: name, component, points, hidden, description.

    Hidden checks are in it when this copy of the graders has them, as ``toolkit run`` does.
    """
    from toolkit.checks import collect
    from toolkit.runner import hidden_available

    checks = collect(list(options.components) or None, include_hidden=hidden_available())
    return [{"name": c.name, "component": c.component, "points": c.points, "hidden": c.hidden,
             "description": c.description} for c in checks if not (c.behavioural and options.fast)]


def check_results(record: dict) -> dict[str, dict]:
    """Check name -> its result in the record (empty unless graded)."""
    return {r["name"]: r for r in (record["run"] or {}).get("results", [])}


def _missing(record: dict) -> list[str]:
    return (record["run"] or {}).get("missing", [])


def _total(record: dict, checks: list[dict]) -> float:
    results = check_results(record)
    return round(sum(results[c["name"]]["score"] for c in checks if c["name"] in results), 4)


def _num(x: float) -> str:
    """A score as written in the CSV: rounded, no trailing zeros."""
    return f"{round(x, 4):g}"


def _not_run_reason(record: dict, component: str) -> str:
    if record["status"] != "graded":
        return f"not graded: {record['error']}"
    if component in _missing(record):
        return f"not provided: the submission has no {component} hooks ({', '.join(COMPONENTS[component].hooks)})"
    return "not run"


# -- grades.csv ----------------------------------------------------------------------------
def write_csv(path: Path, records: dict[str, dict], checks: list[dict]) -> None:
    """One row per student (sorted), one column per check; blank where a check did not run."""
    max_total = _num(sum(c["points"] for c in checks))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["student", *(c["name"] for c in checks), "total", "max_total", "status", "missing"])
        for student in sorted(records):
            record = records[student]
            results = check_results(record)
            scores = [_num(results[c["name"]]["score"]) if c["name"] in results else "" for c in checks]
            writer.writerow([student, *scores, _num(_total(record, checks)), max_total, record["status"],
                             " ".join(_missing(record))])


# -- Gradescope ----------------------------------------------------------------------------
def to_gradescope(record: dict, checks: list[dict]) -> dict:
    """A record in Gradescope's ``results.json`` format: one test per check of the rubric.

    Public checks are ``visible``; hidden ones ``after_published``. A check that did not run
    (component not provided, submission not graded) scores 0 with the reason as its output.
    """
    results = check_results(record)
    order = list(COMPONENTS)
    per_component: dict[str, int] = {}
    tests = []
    for c in checks:
        per_component[c["component"]] = per_component.get(c["component"], 0) + 1
        r = results.get(c["name"])
        score = r["score"] if r else 0.0
        tests.append({
            "name": c["name"], "number": f"{order.index(c['component']) + 1}.{per_component[c['component']]}",
            "score": score, "max_score": c["points"],
            "status": "passed" if r and r["status"] == "passed" else "failed",
            "output": (r["reason"] if r else _not_run_reason(record, c["component"])) or c["description"],
            "visibility": "after_published" if c["hidden"] else "visible",
        })
    total, max_total = _total(record, checks), sum(c["points"] for c in checks)
    lines = [f"{_num(total)} / {_num(max_total)} points ({record['status']})."]
    if record["status"] != "graded":
        lines.append(record["error"])
    if _missing(record):
        lines.append(f"Not provided: {', '.join(_missing(record))}.")
    return {"score": total, "execution_time": record.get("seconds", 0), "output": "\n".join(lines),
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


# -- feedback ------------------------------------------------------------------------------
def write_feedback(out: Path, student: str, record: dict, checks: list[dict]) -> None:
    """``out/index.html`` (``toolkit.report``): every check of the rubric with its score and reason.

    A check that did not run scores 0 with the reason (component not provided, submission not
    graded). Plots the run wrote into ``out`` stay and are embedded.
    """
    from toolkit.checks import Result
    from toolkit.report import write_report
    from toolkit.runner import Run

    results = check_results(record)
    rows = [Result(**results[c["name"]]) if c["name"] in results else
            Result(c["name"], c["component"], c["points"], 0.0, "failed", _not_run_reason(record, c["component"]),
                   c["description"], c["hidden"], 0.0) for c in checks]
    hidden = any(c["hidden"] for c in checks)
    run = record["run"] or {"submission": student, "missing": [], "hidden_included": hidden, "environment": {}}
    write_report(Run(run["submission"], rows, run["missing"], run["hidden_included"], run["environment"]), out)


# -- summary -------------------------------------------------------------------------------
def class_statistics(records: dict[str, dict], checks: list[dict]) -> dict:
    """Pass rate of every check (over the submissions that ran it) and failures by kind."""
    rates = {}
    for c in checks:
        ran = [check_results(r)[c["name"]] for r in records.values() if c["name"] in check_results(r)]
        passed = sum(r["status"] == "passed" for r in ran)
        rates[c["name"]] = {"ran": len(ran), "passed": passed, "rate": passed / len(ran) if ran else 0.0}
    failures = {s: sum(r["status"] == s for r in records.values()) for s in STATUSES[1:]}
    failures["failed checks"] = sum(any(x["status"] != "passed" for x in check_results(r).values())
                                    for r in records.values())
    return {"pass_rate": rates, "failures": failures}


def plot_summary(path: Path, records: dict[str, dict], checks: list[dict], stats: dict) -> None:
    """Four panels: score distribution, pass rate per check, time per submission, failures by kind."""
    from toolkit.plots import plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), dpi=100)
    max_total = sum(c["points"] for c in checks)
    ax = axes[0][0]
    ax.hist([_total(r, checks) for r in records.values()], bins=min(20, max(5, int(max_total) + 1)),
            range=(0, max(max_total, 1)), color="#4c72b0")
    ax.set(title="Score distribution", xlabel=f"total (of {max_total:g})", ylabel="students")
    ax = axes[0][1]
    names = [c["name"] for c in checks][::-1]
    ax.barh(names, [stats["pass_rate"][n]["rate"] for n in names], color="#55a868")
    ax.set(title="Pass rate per check (of the submissions that ran it)", xlim=(0, 1))
    ax.tick_params(axis="y", labelsize=7)
    ax = axes[1][0]
    ax.hist([r["seconds"] for r in records.values()], bins=20, color="#8172b2")
    ax.set(title="Time per submission", xlabel="seconds", ylabel="submissions")
    ax = axes[1][1]
    kinds = list(stats["failures"])
    ax.bar([k.replace("_", " ") for k in kinds], [stats["failures"][k] for k in kinds], color="#c44e52")
    ax.set(title="Failures by kind", ylabel="submissions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_summary(out: Path, records: dict[str, dict], checks: list[dict], pairs: list[dict]) -> Path:
    """``summary.html`` (with ``summary.png`` embedded): the class at a glance."""
    from toolkit.report import STYLE

    stats = class_statistics(records, checks)
    plot_summary(out / "summary.png", records, checks, stats)
    image = base64.b64encode((out / "summary.png").read_bytes()).decode()
    max_total = _num(sum(c["points"] for c in checks))
    students = [[f'<a href="feedback/{html.escape(s)}/index.html">{html.escape(s)}</a>', r["status"],
                 f"{_num(_total(r, checks))} / {max_total}", html.escape(", ".join(_missing(r))),
                 f"{r['seconds']:.1f}", html.escape(r.get("sandbox", "")), html.escape(r["error"])]
                for s, r in sorted(records.items())]
    rates = [[f"<code>{html.escape(c['name'])}</code>", _num(c["points"]), stats["pass_rate"][c["name"]]["ran"],
              stats["pass_rate"][c["name"]]["passed"], f"{stats['pass_rate'][c['name']]['rate']:.0%}"] for c in checks]
    similar = [[p["component"], html.escape(p["a"]), html.escape(p["b"]), f"{p['similarity']:.3f}"] for p in pairs]
    failures = [[kind.replace("_", " "), n] for kind, n in stats["failures"].items()]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>toolkit grades: summary</title>
<style>{STYLE}</style></head><body>
<h1>Class summary: {len(records)} submissions</h1>
<img alt="summary" src="data:image/png;base64,{image}">
<h2>Failures by kind</h2>{_table(["kind", "submissions"], failures)}
<h2>Pass rate per check</h2>{_table(["check", "points", "ran", "passed", "pass rate"], rates)}
<h2>Similar submissions</h2>
<p>Pairs whose code for a component is near-identical once names, comments, docstrings and formatting
are normalised (similarity &ge; {SIMILARITY_THRESHOLD:g}). A lead to look at, not a verdict.</p>
{_table(["component", "student", "student", "similarity"], similar) if similar else "<p>None.</p>"}
<h2>Students</h2>{_table(["student", "status", "total", "missing", "seconds", "sandbox", "error"], students)}
</body></html>"""
    path = out / "summary.html"
    path.write_text(page, encoding="utf-8")
    return path


# -- nbgrader gradebook --------------------------------------------------------------------
def write_gradebook(db: Path, assignment: str, records: dict[str, dict], checks: list[dict]) -> None:
    """Scores into an nbgrader gradebook: one notebook per component, one grade cell per check."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    if shutil.which("alembic") is None:  # nbgrader runs `alembic` to create a gradebook; it sits next to python
        os.environ["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    with Gradebook(f"sqlite:///{db}") as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission warns with SQLAlchemy 2
        gb.update_or_create_assignment(assignment)
        for comp in dict.fromkeys(c["component"] for c in checks):
            gb.update_or_create_notebook(comp, assignment)
        for c in checks:
            gb.update_or_create_grade_cell(c["name"], c["component"], assignment, max_score=c["points"],
                                           cell_type="code")
        for student, record in sorted(records.items()):
            gb.update_or_create_student(student)
            gb.update_or_create_submission(assignment, student)
            results = check_results(record)
            for c in checks:
                grade = gb.find_grade(c["name"], c["component"], assignment, student)
                grade.auto_score = results[c["name"]]["score"] if c["name"] in results else 0.0
                grade.needs_manual_grade = False
        gb.db.commit()
