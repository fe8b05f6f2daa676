"""Grade a class: every submission in its own subprocess, then the grades and the feedback.

``grade_class`` runs ``toolkit run SUBMISSION --json`` once per student (``run_one``: its own
process group, a wall-clock timeout) and writes, in the output folder:

- ``grades.csv``: one row per student, one column per check, ``total``, ``max_total``,
  ``status`` (graded, load_error, timeout, crashed) and the ``missing`` components;
- ``gradescope/<student>/results.json`` (``to_gradescope``, also used by
  ``graders/gradescope/run_autograder``);
- ``feedback/<student>/index.html``: the run's report, every check with its score and reason;
- ``summary.html`` and ``summary.png``: score distribution, pass rate of every check, time per
  submission, failures by kind, and pairs of near-identical submissions (``similar_pairs``);
- ``gradebook.db`` with ``--gradebook ASSIGNMENT``: the scores in an nbgrader gradebook.

A record is what grading one submission gives: ``{"status", "seconds", "run", "error"}``,
where ``run`` is the JSON document of ``toolkit run`` (None unless graded) and ``error`` is
a one-sentence reason (empty when graded).
"""

from __future__ import annotations

import ast
import base64
import contextlib
import csv
import difflib
import functools
import html
import io
import json
import keyword
import os
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import tokenize
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from toolkit import sandbox
from toolkit.isolated import Channel, ChildGone, run_hidden
from toolkit.plugins import COMPONENTS
from toolkit.sandbox import Limits

ROOT = Path(__file__).resolve().parent.parent  # holds toolkit/ and graders/
STATUSES = ("graded", "load_error", "timeout", "crashed")
SIMILARITY_THRESHOLD = 0.9


@dataclass(frozen=True)
class Options:
    """How each submission is run: the options of ``toolkit run``, and a wall-clock limit."""

    fast: bool = False  # unit checks only
    components: tuple[str, ...] = ()  # empty: every component
    timeout: float = 600.0  # seconds per submission
    memory: int = Limits.memory  # bytes of address space (RLIMIT_AS)
    nproc: int = Limits.nproc  # processes and threads (RLIMIT_NPROC)
    max_output: int = Limits.max_output  # bytes of stdout and of stderr kept


# -- the submissions ---------------------------------------------------------------------
def find_submissions(folder: Path) -> dict[str, Path]:
    """Student id -> submission: each sub-folder, ``.py`` or ``.ipynb`` file of ``folder``, hidden ones skipped.

    Raises ValueError (one sentence) when the folder is missing or holds no submission, or two
    entries give the same student id.
    """
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such directory")
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        if not (entry.is_dir() or entry.suffix in (".py", ".ipynb")):
            continue
        student = entry.name if entry.is_dir() else entry.stem
        if student in found:
            raise ValueError(f"{found[student]} and {entry}: two submissions for student {student!r}")
        found[student] = entry
    if not found:
        raise ValueError(f"{folder}: no submission in it (expected one sub-folder, .py or .ipynb file per student)")
    return found


# -- one submission ----------------------------------------------------------------------
def limits(options: Options) -> Limits:
    """The resource limits of one grading child with ``options``."""
    return Limits(cpu_seconds=int(options.timeout * 2) + 30, memory=options.memory, nproc=options.nproc,
                  max_output=options.max_output)


def command(path: Path, options: Options, fds: tuple[int, int], report_dir: Path | None, uid: int | None) -> list[str]:
    """The child's command line (``toolkit.isolated``) before ``toolkit.sandbox`` wraps it."""
    cmd = [sys.executable, "-m", "toolkit.isolated", str(path), "--fds", f"{fds[0]},{fds[1]}"]
    cmd += ["--fast"] if options.fast else []
    for comp in options.components:
        cmd += ["-c", comp]
    cmd += ["--report", str(report_dir)] if report_dir else []
    return cmd + (["--uid", str(uid)] if uid is not None else [])


def run_one(path: Path, options: Options, report_dir: Path | None = None) -> dict:
    """Grade one submission: public checks in a sandboxed child, hidden checks here (``toolkit.isolated``).

    The child runs in its own session under ``toolkit.sandbox``'s limits and is killed after
    ``options.timeout`` seconds; its result comes over a private pipe with this run's nonce.
    """
    sandbox.warn_once()
    t0 = time.monotonic()
    deadline = t0 + options.timeout
    uid = sandbox.child_uid() if sandbox.bwrap_works() or sandbox.fallback_can_drop_uid() else None
    lim = limits(options)
    lim = Limits(lim.cpu_seconds, lim.memory, sandbox.nproc_limit(lim, uid), lim.file_size, lim.max_output)
    with tempfile.TemporaryDirectory(prefix="toolkit-grade-") as tmp:
        box = Path(tmp)
        from toolkit.pipeline import default_cache_dir
        sandbox.prepare_box(box, path.resolve(), uid, None if options.fast else default_cache_dir())
        report = box / "work" / "report" if report_dir else None
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        argv = command(sandbox.submission_inside(box, path), options, (requests_r, answers_w),
                       sandbox.inside(box, report) if report else None, uid)
        cmd, env = sandbox.command(argv, box)
        proc = subprocess.Popen(cmd, cwd=box / "work", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(requests_r, answers_w), start_new_session=True,
                                preexec_fn=functools.partial(sandbox.set_limits, lim))
        os.close(requests_r)
        os.close(answers_w)
        stderr: list[bytes] = []
        readers = [sandbox.drain(proc.stdout, lim.max_output, []), sandbox.drain(proc.stderr, lim.max_output, stderr)]
        channel = Channel(requests_w, answers_r, deadline)
        try:
            record = _talk(channel, path, options)
        finally:
            channel.close()
            _end(proc, deadline)
            for reader in readers:
                reader.join(timeout=5)
        if record is None:
            record = no_result(proc.returncode, b"".join(stderr).decode(errors="replace"), deadline, options.timeout)
        if report and report_dir:
            _copy_plots(report, report_dir)
    return {**record, "sandbox": sandbox.mode(), "seconds": round(time.monotonic() - t0, 2)}


def _talk(channel: Channel, path: Path, options: Options) -> dict | None:
    """The record from the child's document and the hidden checks; None if it sent none."""
    from toolkit.runner import hidden_available

    nonce = secrets.token_hex(16)
    try:
        channel.send(nonce)
        doc = channel.first_document()
    except (ChildGone, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("nonce") != nonce:
        return {"status": "crashed", "run": None, "error": "the grading process sent a result without this run's nonce"}
    if "error" in doc:
        return {"status": "load_error", "run": None, "error": str(doc["error"])}
    run = doc["run"]
    run["submission"] = str(path)
    if doc.get("replaced"):
        _zero(run["results"], f"the submission replaced {', '.join(doc['replaced'][:3])}: "
                              "the public checks' results cannot be trusted")
    if hidden_available():
        run["results"] = _in_rubric_order(run["results"] + run_hidden(channel, list(doc.get("provided", []))))
        run["hidden_included"] = True
    run.update(score=round(sum(r["score"] for r in run["results"]), 4),
               max_score=round(sum(r["points"] for r in run["results"]), 4),
               passed=all(r["status"] == "passed" for r in run["results"]))
    return {"status": "graded", "run": run, "error": ""}


def _zero(results: list[dict], reason: str) -> None:
    for r in results:
        r.update(score=0.0, status="failed", reason=reason)


def _in_rubric_order(results: list[dict]) -> list[dict]:
    from toolkit.checks import collect

    order = {c.name: i for i, c in enumerate(collect(None, include_hidden=True))}
    return sorted(results, key=lambda r: order.get(r["name"], len(order)))


def _end(proc: subprocess.Popen, deadline: float) -> None:
    """Let the child finish (its pipe is closed) until ``deadline``, then kill its session."""
    try:
        proc.wait(timeout=max(0.5, min(10.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # also whatever it left running
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def no_result(returncode: int, stderr: str, deadline: float, timeout: float) -> dict:
    """The record of a child that sent no result: timeout (past ``deadline``) or crashed."""
    if time.monotonic() >= deadline - 0.05:
        return {"status": "timeout", "run": None, "error": f"did not finish within {timeout:g} s"}
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0  # bwrap: 128 + signal
    known = signum in set(signal.Signals)
    how = f"was killed by {signal.Signals(signum).name}" if known else f"exited with code {returncode}"
    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    error = f"the grading process {how} before reporting a result" + (f": {last[:300]}" if last else "")
    return {"status": "crashed", "run": None, "error": error}


def _copy_plots(report: Path, out: Path) -> None:
    """The child's plots (regular .png files, no links, at most 20 MB each) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for f in report.glob("*.png") if report.is_dir() else []:
        if f.is_file() and not f.is_symlink() and f.stat().st_size <= 20 << 20:
            shutil.copyfile(f, out / f.name)


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
        return f"not provided: the submission has no {component} hooks ({', '.join(COMPONENTS[component])})"
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


# -- similar submissions -------------------------------------------------------------------
def normalised_tokens(source: str) -> list[str]:
    """Python tokens without comments, docstrings or layout; names and strings as placeholders.

    Renaming variables, rewording comments or reformatting leaves the stream unchanged.
    Returns [] for code that cannot be tokenised.
    """
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER)
    toks = [t for t in toks if t.type not in skip]
    out, start, docstring = [], True, False  # start: at the start of a statement
    for i, t in enumerate(toks):
        nxt = toks[i + 1].type if i + 1 < len(toks) else tokenize.NEWLINE
        if docstring or (start and t.type == tokenize.STRING and nxt == tokenize.NEWLINE):
            docstring = not docstring  # a docstring (or another bare string statement), then its NEWLINE
            continue
        if t.type == tokenize.NAME:
            out.append(t.string if keyword.iskeyword(t.string) else "ID")
        elif t.type == tokenize.STRING:
            out.append("STR")
        else:
            out.append(tokenize.tok_name[t.type] if t.type in (tokenize.INDENT, tokenize.DEDENT) else t.string)
        start = t.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    return out


def similarity(a: str, b: str) -> float:
    """How alike two pieces of code are, 0 to 1, after ``normalised_tokens``."""
    return _ratio(normalised_tokens(a), normalised_tokens(b))


def _ratio(a: list[str], b: list[str], at_least: float = 0.0) -> float:
    """SequenceMatcher ratio of two token streams (0 when a cheap upper bound is below ``at_least``)."""
    if not a or not b:
        return 0.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < at_least or matcher.quick_ratio() < at_least:
        return 0.0
    return matcher.ratio()


def component_code(source: str) -> dict[str, str]:
    """Component -> the source of its hooks and of the top-level functions and classes they use."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    code = {}
    for comp, hooks in COMPONENTS.items():
        todo, used = [h for h in hooks if h in defs], set()
        while todo:
            name = todo.pop()
            if name not in used:
                used.add(name)
                todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
        in_order = sorted(used, key=lambda n: defs[n].lineno)
        if in_order:
            code[comp] = "\n\n".join(ast.get_source_segment(source, defs[n]) for n in in_order)
    return code


def submission_code(path: Path) -> dict[str, str]:
    """Component -> its code in a submission (a file, a folder or a notebook), over all its files."""
    from toolkit.plugins import SubmissionError, _notebook_cells

    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix in (".py", ".ipynb") and p.is_file()
        and not any(part.startswith((".", "__pycache__")) for part in p.relative_to(path).parts))
    code: dict[str, str] = {}
    for f in files:
        try:
            source = ("".join(cell for cell, _ in _notebook_cells(f)) if f.suffix == ".ipynb"
                      else f.read_text(encoding="utf-8", errors="replace"))
        except SubmissionError:
            continue
        for comp, text in component_code(source).items():
            code[comp] = code.get(comp, "") + text + "\n"
    return code


def similar_pairs(code: dict[str, dict[str, str]], threshold: float = SIMILARITY_THRESHOLD) -> list[dict]:
    """Pairs of students whose code for one component is near-identical: component, a, b, similarity."""
    pairs = []
    for comp in COMPONENTS:
        tokens = {s: normalised_tokens(c[comp]) for s, c in sorted(code.items()) if comp in c}
        students = list(tokens)
        for i, a in enumerate(students):
            for b in students[i + 1:]:
                ratio = _ratio(tokens[a], tokens[b], at_least=threshold)
                if ratio >= threshold:
                    pairs.append({"component": comp, "a": a, "b": b, "similarity": round(ratio, 3)})
    return sorted(pairs, key=lambda p: (-p["similarity"], p["component"], p["a"], p["b"]))


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


# -- the class -----------------------------------------------------------------------------
def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed,"),
                    TextColumn("time left"), TimeRemainingColumn(), console=Console(stderr=True))


def grade_submissions(submissions: dict[str, Path], out: Path, options: Options, workers: int = 1,
                      scheduler: str | None = None) -> dict[str, dict]:
    """Student -> record, ``workers`` at a time (or as Dask tasks on ``scheduler``); a progress bar on stderr.

    Records are kept in ``out/results.sqlite`` as they finish (``toolkit.store``): a submission
    already graded with the same content and grader version is not graded again.
    """
    from toolkit.store import Store, content_hash, grader_version

    store, version = Store(out / "results.sqlite"), grader_version(options, sandbox.mode())
    keys = {student: content_hash(path) for student, path in submissions.items()}
    records = {s: r for s in submissions if (r := store.get(s, keys[s], version)) is not None}
    todo = {s: p for s, p in submissions.items() if s not in records}
    print(f"grading {len(todo)} of {len(submissions)} submissions ({len(records)} already in {out / 'results.sqlite'})",
          file=sys.stderr)
    with _progress() as progress, _executor(scheduler, workers) as submit:
        task = progress.add_task("grading", total=len(submissions), failed=0, completed=len(records))
        futures = {}
        for student, path in todo.items():
            feedback = out / "feedback" / student
            shutil.rmtree(feedback, ignore_errors=True)
            futures[submit(run_one, path, options, feedback)] = student
        for student, record in _as_completed(futures, scheduler):
            store.put(student, keys[student], version, record)
            records[student] = record
            progress.update(task, advance=1, failed=sum(r["status"] != "graded" for r in records.values()))
    store.close()
    return dict(sorted(records.items()))


@contextlib.contextmanager
def _executor(scheduler: str | None, workers: int):
    """``submit(fn, *args)``: a local thread pool, or a Dask client (``local``: an embedded LocalCluster)."""
    if scheduler is None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield pool.submit
        return
    from distributed import Client, LocalCluster

    threads = workers if workers > 1 else (os.cpu_count() or 1)
    cluster = LocalCluster(n_workers=1, threads_per_worker=threads, processes=False, dashboard_address=":0") \
        if scheduler == "local" else None
    client = Client(cluster or scheduler)
    try:
        yield lambda fn, *args: client.submit(fn, *args, pure=False)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _as_completed(futures: dict, scheduler: str | None):
    """(student, record) as each future finishes."""
    if scheduler is None:
        done = as_completed(futures)
    else:
        from distributed import as_completed as dask_completed
        done = dask_completed(list(futures))
    for future in done:
        yield futures[future], future.result()


def grade_class(submissions: dict[str, Path], out: Path, options: Options, workers: int = 1,
                assignment: str | None = None, scheduler: str | None = None) -> dict[str, dict]:
    """Grade every submission and write all the outputs into ``out``; returns student -> record."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    checks = rubric(options)
    records = grade_submissions(submissions, out, options, workers, scheduler)
    write_csv(out / "grades.csv", records, checks)
    for student, record in records.items():
        gradescope = out / "gradescope" / student
        gradescope.mkdir(parents=True, exist_ok=True)
        (gradescope / "results.json").write_text(json.dumps(to_gradescope(record, checks), indent=1) + "\n")
        write_feedback(out / "feedback" / student, student, record, checks)
    code = {student: submission_code(path) for student, path in submissions.items()}
    write_summary(out, records, checks, similar_pairs(code))
    if assignment:
        write_gradebook(out / "gradebook.db", assignment, records, checks)
    return records
