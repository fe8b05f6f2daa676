"""The ``toolkit`` command line.

Every command that runs student code follows one discipline: a submission that cannot be
loaded or breaks the contract gets one sentence on stderr (``error: FILE: ...``, naming the
file, the hook and what was expected), never a traceback, and the exit code of ``EXIT_CODES``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import shlex
import sys
import textwrap
from enum import IntEnum
from pathlib import Path

import click

from toolkit.components import CHECKS, COMPONENTS
from toolkit.paths import ROOT, SNAPSHOTS
from toolkit.plugins import PluginError, SubmissionError


class Exit(IntEnum):
    """The exit codes of every command."""

    OK = 0  # success: for ``toolkit run``, every check passed
    FAILED = 1  # some check failed or scored partially (``toolkit run`` only)
    USAGE = 2  # usage error, or the submission cannot be loaded or breaks the contract


BROKEN = "usage error, or the submission cannot be loaded or breaks the contract"
EXIT_CODES: dict[str, dict[Exit, str]] = {
    "run": {Exit.OK: "every check passed",
            Exit.FAILED: "some check failed or scored partially (a hook's wrong return value fails the check that "
                         "called it)",
            Exit.USAGE: f"{BROKEN}; or -c names a component the submission does not provide"},
    "grade": {Exit.OK: "the batch completed, whatever the scores (a submission that cannot be loaded is graded "
                       "load_error)",
              Exit.USAGE: "usage error: SUBMISSIONS_DIR missing or without submissions, --gradebook or --scheduler "
                          "without its package (the sentence says how to install it), or not on Linux (the "
                          "sandbox is Linux's)"},
    "plugins": {Exit.OK: "the hooks were listed", Exit.USAGE: BROKEN},
    "chat": {Exit.OK: "the input ended",
             Exit.USAGE: f"{BROKEN}, a mask's wrong return value included (no chat model can be trained with it)"},
    "record": {Exit.OK: "the snapshots were written",
               Exit.USAGE: f"{BROKEN}, a hook's wrong return value included (its snapshot is not written); or -c "
                           "names a component the submission does not provide"},
    "release": {Exit.OK: "the release was written",
                Exit.USAGE: "OUT_DIR is not empty, nbgrader is not installed (the sentence says how to install it), "
                            "not run from a checkout of the toolkit, or solution code would ship (nothing written)"},
    "gradescope": {Exit.OK: "the autograder zip was written",
                   Exit.USAGE: "not run from a checkout of the toolkit, or its wheel could not be built (nothing "
                               "written)"},
}
"""Command -> exit code -> what it means there. Each command's --help and the README's table
(``python -m toolkit.docs``) are rendered from it."""


def exit_codes_help(command: str) -> str:
    """The "Exit codes" paragraph of a command's --help (``\\b``: click keeps its lines)."""
    lines = [textwrap.fill(meaning, 78, initial_indent=f"  {int(code)}  ", subsequent_indent=" " * 5)
             for code, meaning in EXIT_CODES[command].items()]
    return "\b\nExit codes:\n" + "\n".join(lines)


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _fail_usage(msg: str):
    """One sentence on stderr, exit 2: usage errors and submissions that break the contract."""
    _err(f"error: {msg}")
    sys.exit(Exit.USAGE)


def install_command(extra: str) -> str:
    """The command that installs the toolkit's optional ``extra`` into this interpreter, to paste from
    any folder: from a checkout, the checkout with its pinned versions (as ``make demo`` installs it);
    from an installed toolkit, the extra's own requirements. Never ``pip install 'toolkit[...]'``: on
    the public index, ``toolkit`` is another project."""
    python = shlex.quote(sys.executable)
    if (ROOT / "pyproject.toml").is_file():
        return (f"{python} -m pip install -c {shlex.quote(str(ROOT / 'constraints.txt'))} "
                f"-e {shlex.quote(f'{ROOT}[{extra}]')}")
    from importlib.metadata import requires

    wanted = [r.split(";")[0].strip() for r in requires("toolkit") or [] if f'extra == "{extra}"' in r]
    return f"{python} -m pip install {' '.join(map(shlex.quote, wanted))}"


def _need(module: str, extra: str, what: str) -> None:
    """Exit 2 with one sentence if ``module``, which the toolkit's ``extra`` installs, is missing."""
    if importlib.util.find_spec(module) is None:
        _fail_usage(f"{what} needs {module}, which is not installed; install it with: {install_command(extra)}")


def _command(name: str):
    """``@main.command()`` with the exit codes of ``EXIT_CODES[name]`` at the end of its --help."""
    return main.command(name, epilog=exit_codes_help(name))


def _not_provided(submission: str, provided, asked) -> str:
    """The usage error of ``-c`` naming components the submission does not provide."""
    absent = ", ".join(c for c in asked if c not in provided)
    return f"{submission} provides {', '.join(provided) or 'no component'}, not {absent} (asked with -c)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toolkit")
def main():
    """Build a GPT from scratch as plugins, and grade them."""


@_command("run")
@click.argument("submission", required=False)
@click.option("--component", "-c", "components", multiple=True, type=click.Choice(list(COMPONENTS)),
              help="Check only this component (repeatable); the submission must provide it. "
                   "Default: every component the submission provides.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of the table.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path),
              help="Write index.html (with plots) and results.json to this directory.")
@click.option("--baseline", is_flag=True, help="Grade the toolkit's naive baselines instead of a submission.")
@click.option("--public-only", is_flag=True, help="Leave out hidden checks even where the grader has them.")
@click.option("--fast", is_flag=True, help="Unit checks only: leave out the behavioural checks that train models.")
@click.option("--processes", type=click.IntRange(1, 2), default=None,
              help="2: check the reward model and the sampler in a second process beside the others (the same "
                   "results, sooner where there are cores to spare; twice the memory). 1: all in this one. "
                   "Default: 2 where the machine has at least 4 cores.")
def run(submission, components, as_json, report, baseline, public_only, fast, processes):
    """Check SUBMISSION: a .py file, a directory, a .ipynb notebook, an installed entry point or a module.

    Each component the submission provides is swapped into the reference pipeline on its own,
    the others coming from the baselines. Progress goes to stderr.
    """
    from toolkit.runner import LaneEnded, NotProvided, hidden_available, run_submission

    if bool(submission) == baseline:
        _fail_usage("give a SUBMISSION or --baseline (one of them)")
    include_hidden = hidden_available() and not public_only
    log = (lambda m: None) if as_json else _err
    try:  # stdout carries only the table or the JSON: whatever student code prints goes to stderr
        with contextlib.redirect_stdout(sys.stderr):
            result = run_submission(None if baseline else submission, list(components) or None, report_dir=report,
                                    include_hidden=include_hidden, behavioural=not fast, log=log,
                                    lanes=None if processes is None else processes == 2)
    except (SubmissionError, NotProvided, LaneEnded) as e:
        message = _not_provided(submission, e.provided, components) if isinstance(e, NotProvided) else str(e)
        if as_json:
            click.echo(json.dumps({"submission": submission, "error": message}))
        _fail_usage(message)
    if report:
        from toolkit.report import write_report
        path = write_report(result, report)
        log(f"report: {path}")
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        _print_table(result)
    sys.exit(Exit.OK if result.passed and result.results else Exit.FAILED)


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"toolkit run {result.submission}")
    for col in ("check", "points", "result", "reason"):
        table.add_column(col, overflow="fold")
    for r in result.results:
        table.add_row(r.name, f"{r.score:g}/{r.points:g}", f"[{r.status.terminal_colour}]{r.status}[/]", r.reason)
    console = Console(width=120)
    console.print(table)
    scope = "public and hidden checks" if result.hidden_included else "public checks only"
    console.print(f"total: {result.score:g} / {result.max_score:g} ({scope})")
    if importlib.import_module(CHECKS).seeds_are_public():  # a student's copy: grading draws held-out data of its own
        console.print("held-out data: public (this copy has no instructor's seed; grading draws its own held-out text "
                      "and pairs)")
    if result.missing:
        console.print(f"not provided: {', '.join(result.missing)}")


@_command("grade")
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
              metavar="SECONDS",
              help="Time limit per submission: CPU seconds of all its processes where the grader can give it a "
                   "cgroup (with a wall-clock backstop of 3 times as many seconds for one that sleeps), else "
                   "wall-clock seconds; past it the submission's status is timeout.")
@click.option("--gradebook", type=click.Path(dir_okay=False, path_type=Path), metavar="GRADEBOOK_DB",
              help="Also write the scores into this nbgrader gradebook (an SQLite file, created if missing), with "
                   "the assignment, notebook and cell ids of toolkit.course: one assignment per component, so a "
                   "course's own gradebook.db can take them. Needs nbgrader (the extra 'course').")
@click.option("--scheduler", metavar="tcp://HOST:PORT|local",
              help="Run each submission as a Dask task on this cluster ('local': an embedded LocalCluster); "
                   "needs dask.distributed (the extra 'grid'). Default: a local thread pool.")
@click.option("--memory-gb", type=click.FloatRange(min=0.5), default=4, show_default=True,
              help="Address-space limit of each grading process (RLIMIT_AS).")
@click.option("--nproc", type=click.IntRange(min=8), default=256, show_default=True,
              help="Processes and threads each grading process may run (RLIMIT_NPROC).")
def grade(submissions_dir, out, fast, components, workers, timeout, gradebook, scheduler, memory_gb, nproc):
    """Grade a class: every entry of SUBMISSIONS_DIR (one sub-folder, .py or .ipynb per student).

    Each submission's code runs in its own sandboxed child process, which only answers the
    grader's calls to its hooks; every check, public and hidden, is judged in the grader. A
    crashing or hanging submission never stops the batch. Writes into --out (GRADES_DIR):
    grades.csv, gradescope/<student>/results.json, feedback/<student>/index.html, summary.html.
    """
    from toolkit.grading import NotLinux, require_linux

    try:
        require_linux()  # before the wing's imports: its sandbox needs Linux
    except NotLinux as e:
        _fail_usage(str(e))
    from toolkit.grading.batch import Options, grade_class, status_counts
    from toolkit.grading.intake import find_submissions

    try:
        submissions = find_submissions(submissions_dir)
    except ValueError as e:
        _fail_usage(str(e))
    if gradebook:
        _need("nbgrader", "course", "--gradebook")
    if scheduler:
        _need("distributed", "grid", "--scheduler")
    options = Options(fast, tuple(components), timeout, memory=int(memory_gb * (1 << 30)), nproc=nproc)
    records = grade_class(submissions, out, options, workers, gradebook and gradebook.resolve(), scheduler)
    _err(f"{len(records)} submissions: {status_counts(records)}; see {out / 'grades.csv'} and {out / 'summary.html'}")
    modes = sorted({r.sandbox for r in records.values()} - {""})
    _err(f"sandbox: {', '.join(modes)}")


@_command("plugins")
@click.argument("submission", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document: hook -> answering plugin, and the installed entry points.")
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


@_command("chat")
@click.argument("submission", required=False)
@click.option("--base", is_flag=True, help="Talk to the base model (a completion engine) instead of the chat model.")
@click.option("--temperature", "-t", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature; 0 for greedy.")
@click.option("--top-k", "-k", default=None, type=click.IntRange(min=1), help="Sample among the k likeliest tokens.")
@click.option("--top-p", "-p", default=None, type=click.FloatRange(min=0, max=1, min_open=True),
              help="Sample from the smallest set of likeliest tokens whose probability reaches P (nucleus "
                   "sampling): needs a sampler plugin, since the toolkit's own sampler has none.")
@click.option("--max-tokens", default=40, show_default=True, type=click.IntRange(min=1),
              help="Longest reply, in tokens (a reply also ends at its stop token).")
def chat(submission, base, temperature, top_k, top_p, max_tokens):
    """Talk to the chat model fine-tuned with SUBMISSION's SFT mask (the baseline's without one),
    sampling each token with SUBMISSION's sampler (the toolkit's without one).

    Each line you type is one user turn; the reply streams as it is generated. End with
    Ctrl-D. The base model, and the chat model fine-tuned with the baseline's mask, ship with
    the toolkit and load in about a second. The chat model of SUBMISSION's own mask is
    fine-tuned on its first start (200 steps, about 30 seconds on 2 cores) and cached until
    the mask changes.
    """
    from toolkit.chat import chat_loop

    try:
        chat_loop(submission, base, temperature, top_k, max_tokens, top_p)
    except (SubmissionError, PluginError) as e:  # a mask that returns a wrong value: no chat model to talk to
        _fail_usage(str(e))


@_command("release")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def release(out_dir):
    """Write the student release to OUT_DIR: toolkit, public checks, nbgrader student notebooks.

    No solutions, no hidden checks, no solution code in any notebook: the release is scanned
    and nothing is written if a line of solution code is found. Needs nbgrader (the extra
    'course'), which makes the student notebooks.
    """
    from toolkit.release import build_release

    _need("nbgrader", "course", "toolkit release")
    try:
        path = build_release(out_dir)
    except (FileExistsError, FileNotFoundError, RuntimeError) as e:
        _fail_usage(str(e))
    _err(f"student release: {path}")


@_command("gradescope")
@click.argument("out_zip", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--component", "-c", "components", multiple=True, type=click.Choice(list(COMPONENTS)),
              help="The assignment: grade only this component (repeatable). Default: the whole course.")
def gradescope(out_zip, components):
    """Write OUT_ZIP, a Gradescope autograder for one assignment: upload it as the assignment's
    autograder (base image: Ubuntu with Python 3.11 or newer).

    It holds setup.sh, which installs the toolkit with the instructor's graders (a wheel built
    from this checkout, inside the zip) and the pinned dependencies of constraints.txt;
    run_autograder, which grades a submission and writes results.json with only the
    assignment's checks; and the file 'assignment' naming its components. Run it in a
    checkout of the toolkit. An existing OUT_ZIP is replaced.
    """
    import subprocess

    from toolkit.gradescope import write_autograder

    try:
        path = write_autograder(out_zip, components)
    except FileNotFoundError as e:
        _fail_usage(str(e))
    except subprocess.CalledProcessError:
        _fail_usage("pip could not build the toolkit's wheel (its output is above); nothing written")
    _err(f"Gradescope autograder ({' '.join(components) or 'the whole course'}): {path}")


@_command("record")
@click.argument("submission", default="solutions/")
@click.option("--component", "-c", "components", multiple=True, type=click.Choice(list(COMPONENTS)),
              help="Record only this component's snapshot (repeatable); the submission must provide it. "
                   "Default: every component it provides.")
@click.option("--snapshots", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the snapshots to this directory instead of graders/snapshots/.")
def record(submission, components, snapshots):
    """Re-record the public snapshots in graders/snapshots/ from SUBMISSION (default: solutions/).

    A snapshot holds the solution's outputs that the public checks compare against, and its
    measured behaviour that sets the behavioural checks' thresholds.
    """
    from toolkit.plugins import Components, build_manager, load_submission, provided_components

    try:
        plugins_ = load_submission(submission)
        pm, provided = build_manager(plugins_), provided_components(plugins_)
    except SubmissionError as e:
        _fail_usage(str(e))
    if any(c not in provided for c in components):
        _fail_usage(_not_provided(submission, provided, components))
    folder = snapshots or SNAPSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    for comp in [c for c in provided if not components or c in components]:
        grader = importlib.import_module(COMPONENTS[comp].grader)
        if not hasattr(grader, "record"):
            continue
        try:
            data = grader.record(Components(pm, only=comp))
        except PluginError as e:  # a hook that returns a wrong value: no snapshot from it
            _fail_usage(str(e))
        except Exception as e:  # the submission's code failed inside what a hook returned
            from toolkit.checks import _student_frame

            _fail_usage(f"{submission}: recording the {comp} snapshot failed: {type(e).__name__}: {e}{_student_frame(e)}")
        path = folder / f"{comp}.json"
        path.write_text(json.dumps(data, indent=1) + "\n")
        _err(f"recorded {path}")


if __name__ == "__main__":
    main()
