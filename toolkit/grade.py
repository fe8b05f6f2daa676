"""Grade a class: every submission in its own subprocess, then the grades and the feedback.

``grade_class`` runs ``toolkit run SUBMISSION --json`` once per student (``run_one``: its own
process group, a wall-clock timeout), then writes what the class is graded as into the output
folder (``toolkit.exports``), with the pairs of near-identical submissions (``toolkit.similarity``).

A record is what grading one submission gives: ``{"status", "seconds", "run", "error"}``,
where ``run`` is the JSON document of ``toolkit run`` (None unless graded) and ``error`` is
a one-sentence reason (empty when graded).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from toolkit import sandbox
from toolkit.exports import rubric, to_gradescope, write_csv, write_feedback, write_gradebook, write_summary
from toolkit.isolated import Channel, ChildGone, run_hidden
from toolkit.sandbox import Limits
from toolkit.similarity import similar_pairs, submission_code

ROOT = Path(__file__).resolve().parent.parent  # holds toolkit/ and graders/


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
_prepared: set = set()
_prepare_lock = threading.Lock()


def prepare_shared_models(options: Options) -> Path:
    """This machine's model cache, holding the models that no submission changes and every child
    would otherwise train for itself: the baselines' base model (the sft_mask and reward checks
    build on it, the attention checks compare with it) and the chat model the reward checks start
    from. Trained here once per process and cache (minutes on an empty cache), then only loaded."""
    from toolkit.pipeline import Pipeline, default_cache_dir

    cache = default_cache_dir()
    wanted = set(options.components) or {"attention", "sft_mask", "reward"}
    with _prepare_lock:  # the first worker trains; the others wait for it
        if (str(cache), frozenset(wanted)) not in _prepared:
            pipeline = Pipeline(cache_dir=cache, log=lambda msg: print(f"grader: {msg}", file=sys.stderr))
            if wanted & {"attention", "sft_mask", "reward"}:
                pipeline.base_model
            if "reward" in wanted:
                pipeline.chat_model
            _prepared.add((str(cache), frozenset(wanted)))
    return cache


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
    cache = None if options.fast else prepare_shared_models(options)
    t0 = time.monotonic()
    deadline = t0 + options.timeout
    uid = sandbox.child_uid() if sandbox.bwrap_works() or sandbox.fallback_can_drop_uid() else None
    lim = limits(options)
    lim = Limits(lim.cpu_seconds, lim.memory, sandbox.nproc_limit(lim, uid), lim.file_size, lim.max_output)
    with tempfile.TemporaryDirectory(prefix="toolkit-grade-") as tmp:
        box = Path(tmp)
        sandbox.prepare_box(box, path.resolve(), uid, cache)
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
        trusted = [] if doc.get("replaced") else run["results"]  # what hidden checks may judge
        hidden = run_hidden(channel, list(doc.get("provided", [])), trusted, behavioural=not options.fast)
        run["results"] = _in_rubric_order(run["results"] + hidden)
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
    if scheduler in (None, "local"):
        workers = _local_slots(workers if scheduler is None or workers > 1 else _cpus(), options)
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


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def child_slots(workers: int, options: Options, cpus: int) -> int:
    """How many children may grade at once on ``cpus`` cores: ``workers``, except that children which
    train models (no ``--fast``) get the pipeline's pinned torch threads each, and more of them than
    the cores hold slow every one down many times over (measured: two on 2 cores both passed a
    600 s timeout that one alone meets in 93 s). The threads stay pinned: grades depend on them."""
    if options.fast:
        return workers
    from toolkit.pipeline import PipelineConfig

    return max(1, min(workers, cpus // PipelineConfig().threads))


def _local_slots(workers: int, options: Options) -> int:
    """``child_slots`` on this machine, saying so on stderr when it is fewer than ``workers``."""
    cpus = _cpus()
    slots = child_slots(workers, options, cpus)
    if slots < workers:
        print(f"grading {slots} submission(s) at a time, not {workers}: without --fast each one trains models "
              f"with its own torch threads, and this machine has {cpus} cores", file=sys.stderr)
    return slots


@contextlib.contextmanager
def _executor(scheduler: str | None, workers: int):
    """``submit(fn, *args)``: a local thread pool, or a Dask client (``local``: an embedded LocalCluster
    with ``workers`` threads)."""
    if scheduler is None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield pool.submit
        return
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=workers, processes=False, dashboard_address=":0") \
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
