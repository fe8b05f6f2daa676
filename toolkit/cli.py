"""The ``toolkit`` command line."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from pathlib import Path

import click

from toolkit.components import COMPONENTS
from toolkit.plugins import SubmissionError

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _fail_usage(msg: str):
    _err(f"error: {msg}")
    sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toolkit")
def main():
    """Build a GPT from scratch as plugins, and grade them."""


@main.command()
@click.argument("submission", required=False)
@click.option("--component", "-c", "components", multiple=True, type=click.Choice(list(COMPONENTS)),
              help="Check only this component (repeatable). Default: every component the submission provides.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of the table.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Write index.html (with plots) and results.json to this directory.")
@click.option("--baseline", is_flag=True, help="Grade the toolkit's naive baselines instead of a submission.")
@click.option("--public-only", is_flag=True, help="Leave out hidden checks even where the grader has them.")
@click.option("--fast", is_flag=True, help="Unit checks only: leave out the behavioural checks that train models.")
def run(submission, components, as_json, report, baseline, public_only, fast):
    """Check SUBMISSION: a .py file, a directory, a .ipynb notebook, an installed entry point or a module.

    Each component the submission provides is swapped into the reference pipeline on its own,
    the others coming from the baselines. Progress goes to stderr.

    \b
    Exit codes:
      0  every check passed
      1  some check failed
      2  usage error, or the submission could not be loaded or breaks the contract
    """
    from toolkit.runner import hidden_available, run_submission

    if bool(submission) == baseline:
        _fail_usage("give a SUBMISSION or --baseline (one of them)")
    include_hidden = hidden_available() and not public_only
    log = (lambda m: None) if as_json else _err
    try:  # with --json, stdout carries only the JSON: whatever student code prints goes to stderr
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            result = run_submission(None if baseline else submission, list(components) or None, report_dir=report,
                                    include_hidden=include_hidden, behavioural=not fast, log=log)
    except SubmissionError as e:
        if as_json:
            click.echo(json.dumps({"submission": submission, "error": str(e)}))
        _err(f"error: {e}")
        sys.exit(EXIT_USAGE)
    if report:
        from toolkit.report import write_report
        path = write_report(result, report)
        log(f"report: {path}")
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        _print_table(result)
    sys.exit(EXIT_PASS if result.passed and result.results else EXIT_FAIL)


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"toolkit run {result.submission}")
    for col in ("check", "points", "result", "reason"):
        table.add_column(col, overflow="fold")
    colour = {"passed": "green", "partial": "yellow", "failed": "red"}
    for r in result.results:
        table.add_row(r.name, f"{r.score:g}/{r.points:g}", f"[{colour[r.status]}]{r.status}[/]", r.reason)
    console = Console(width=120)
    console.print(table)
    scope = "public and hidden checks" if result.hidden_included else "public checks only"
    console.print(f"total: {result.score:g} / {result.max_score:g} ({scope})")
    if result.missing:
        console.print(f"not provided: {', '.join(result.missing)}")


@main.command()
@click.argument("submissions_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Write grades.csv, gradescope/, feedback/ and summary.html to this directory.")
@click.option("--fast", is_flag=True, help="Unit checks only: leave out the behavioural checks that train models.")
@click.option("--component", "-c", "components", multiple=True, type=click.Choice(list(COMPONENTS)),
              help="Grade only this component (repeatable). Default: every component.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Submissions graded at the same time (without --fast, at most one per 2 cores: each trains "
                   "models with 2 torch threads).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600, show_default=True,
              metavar="SECONDS", help="Wall-clock limit per submission; past it the submission's status is timeout.")
@click.option("--gradebook", "assignment", metavar="ASSIGNMENT",
              help="Also write the scores into GRADES_DIR/gradebook.db, an nbgrader gradebook, under ASSIGNMENT.")
@click.option("--scheduler", metavar="tcp://HOST:PORT|local",
              help="Run each submission as a Dask task on this cluster ('local': an embedded LocalCluster); "
                   "needs pip install 'toolkit[grid]'. Default: a local thread pool.")
@click.option("--memory-gb", type=click.FloatRange(min=0.5), default=4, show_default=True,
              help="Address-space limit of each grading process (RLIMIT_AS).")
@click.option("--nproc", type=click.IntRange(min=8), default=256, show_default=True,
              help="Processes and threads each grading process may run (RLIMIT_NPROC).")
def grade(submissions_dir, out, fast, components, workers, timeout, assignment, scheduler, memory_gb, nproc):
    """Grade a class: every entry of SUBMISSIONS_DIR (one sub-folder, .py or .ipynb per student).

    Each submission's code runs in its own sandboxed child process, which only answers the
    grader's calls to its hooks; every check, public and hidden, is judged in the grader. A
    crashing or hanging submission never stops the batch. Writes into --out (GRADES_DIR):
    grades.csv, gradescope/<student>/results.json, feedback/<student>/index.html, summary.html.

    \b
    Exit codes:
      0  the batch completed (whatever the students' scores)
      2  usage error: SUBMISSIONS_DIR missing or without submissions,
         or --gradebook without nbgrader installed
    """
    import importlib.util

    from toolkit.grading.batch import Options, grade_class, status_counts
    from toolkit.grading.intake import find_submissions

    try:
        submissions = find_submissions(submissions_dir)
    except ValueError as e:
        _fail_usage(str(e))
    if assignment and importlib.util.find_spec("nbgrader") is None:
        _fail_usage("--gradebook needs nbgrader: pip install 'toolkit[course]'")
    if scheduler and importlib.util.find_spec("distributed") is None:
        _fail_usage("--scheduler needs dask.distributed: pip install 'toolkit[grid]'")
    options = Options(fast, tuple(components), timeout, memory=int(memory_gb * (1 << 30)), nproc=nproc)
    records = grade_class(submissions, out, options, workers, assignment, scheduler)
    _err(f"{len(records)} submissions: {status_counts(records)}; see {out / 'grades.csv'} and {out / 'summary.html'}")
    modes = sorted({r.sandbox for r in records.values()} - {""})
    _err(f"sandbox: {', '.join(modes)}")


@main.command()
@click.argument("submission", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(submission, as_json):
    """List the hooks and the plugin that answers each (with SUBMISSION loaded, if given)."""
    from toolkit.plugins import answering_plugins, build_manager, installed_plugins, load_submission

    try:
        pm = build_manager(load_submission(submission) if submission else [])
    except SubmissionError as e:
        _fail_usage(str(e))
    hooks = answering_plugins(pm)
    installed = [{"name": n, "target": t, "error": e} for n, t, e in installed_plugins()]
    if as_json:
        click.echo(json.dumps({"hooks": hooks, "installed": installed}))
        return
    for hook, plugin in hooks.items():
        click.echo(f"{hook:24} {plugin}")
    for ep in installed:
        status = f"  (broken: {ep['error']})" if ep["error"] else ""
        click.echo(f"installed entry point {ep['name']} -> {ep['target']}{status}")


@main.command()
@click.argument("submission", required=False)
@click.option("--base", is_flag=True, help="Talk to the base model (a completion engine) instead of the chat model.")
@click.option("--temperature", "-t", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="0 for greedy.")
@click.option("--top-k", "-k", default=None, type=click.IntRange(min=1), help="Sample among the k likeliest tokens.")
@click.option("--max-tokens", default=40, show_default=True, type=click.IntRange(min=1))
def chat(submission, base, temperature, top_k, max_tokens):
    """Talk to the chat model fine-tuned with SUBMISSION's SFT mask (the baseline's without one).

    Each line you type is one user turn; the reply streams as it is generated. End with
    Ctrl-D. The first start trains the chat model (about a minute; the base model is cached).
    """
    from toolkit.chat import chat_loop

    try:
        chat_loop(submission, base, temperature, top_k, max_tokens)
    except SubmissionError as e:
        _fail_usage(str(e))


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def release(out_dir):
    """Write the student release to OUT_DIR: toolkit, public checks, nbgrader student notebooks.

    No solutions, no hidden checks, no solution code in any notebook: the release is scanned
    and nothing is written if a line of solution code is found. Exit code 2 on failure.
    """
    from toolkit.release import build_release

    try:
        path = build_release(out_dir)
    except (FileExistsError, RuntimeError) as e:
        _fail_usage(str(e))
    _err(f"student release: {path}")


@main.command()
@click.argument("submission", default="solutions/")
@click.option("--component", "-c", "components", multiple=True, type=click.Choice(list(COMPONENTS)))
def record(submission, components):
    """Re-record the public snapshots in graders/snapshots/ from SUBMISSION (the solutions)."""
    from toolkit.checks import SNAPSHOT_DIR
    from toolkit.plugins import Components, build_manager, load_submission, provided_components

    try:
        plugins_ = load_submission(submission)
        pm = build_manager(plugins_)
    except SubmissionError as e:
        _fail_usage(str(e))
    SNAPSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for comp in provided_components(plugins_):
        if components and comp not in components:
            continue
        grader = importlib.import_module(f"graders.{comp}")
        if not hasattr(grader, "record"):
            continue
        data = grader.record(Components(pm, only=comp))
        path = SNAPSHOT_DIR / f"{comp}.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        _err(f"recorded {path}")


if __name__ == "__main__":
    main()
