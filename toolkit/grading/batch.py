"""Grade a class: each submission in its own sandboxed child, judged here; then the class's files.

``grade_class`` finds the submissions (``toolkit.grading.intake``), grades each one with
``grade_one`` (``workers`` at a time, or as Dask tasks), keeps every record in the results store
as it finishes (``toolkit.grading.store``), and writes what the class is graded as
(``toolkit.grading.exports``), with the pairs of near-identical code (``toolkit.grading.similarity``).

``grade_one`` starts the child (``toolkit.grading.sandbox``), asks it which components the
submission provides, then runs every check of the rubric *here*, calling the submission's hooks
in the child over a pipe (``toolkit.grading.remote``). The record it returns
(``toolkit.grading.record.Record``) is the grader's own: one student's failure is that student's
record, never the batch's.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from toolkit.components import COMPONENTS
from toolkit.grading import cgroup, intake, sandbox
from toolkit.grading.intake import Submission
from toolkit.grading.record import Record, Status, rubric
from toolkit.grading.remote import Child
from toolkit.grading.sandbox import Limits
from toolkit.grading.wire import CALL_LATE, LATE, Channel, ChildGone

CHILD_CPUS = 2  # the most CPUs a child may use: it trains with 2 torch threads (each child weighs the same)
BACKSTOP = 3  # wall-clock seconds a child with a cgroup may take per CPU second of its --timeout (``deadlines``)


@dataclass(frozen=True)
class Options:
    """How each submission is graded: the options of ``toolkit grade``."""

    fast: bool = False  # unit checks only
    components: tuple[str, ...] = ()  # empty: every component
    timeout: float = 600.0  # seconds per submission: CPU time of its cgroup, or wall-clock time without one
    memory: int = Limits.memory  # bytes of address space (RLIMIT_AS)
    nproc: int = Limits.nproc  # processes and threads (RLIMIT_NPROC)
    max_output: int = Limits.max_output  # bytes of stdout and of stderr kept


# -- the models no submission changes ------------------------------------------------------
_prepared: set = set()
_prepare_lock = threading.Lock()


def prepare_shared_models(options: Options) -> Path:
    """This machine's model cache, holding the models that no submission changes and every child
    would otherwise train for itself: the baselines' base model (the sft_mask and reward checks
    build on it, the attention checks compare with it) and the chat model the reward checks start
    from and the sampler's temperature dial samples: the ``starts_from`` of the components graded
    (``toolkit.components``). Built here once per process and cache: for the
    default configuration both come with the toolkit (``toolkit.cache.SHIPPED``) and are only
    loaded; for another, trained (minutes) into the cache."""
    from toolkit.cache import default_cache_dir
    from toolkit.pipeline import STAGES, Pipeline

    cache = default_cache_dir()
    graded = [COMPONENTS[c] for c in options.components or COMPONENTS]
    stages = tuple(s for s in STAGES if any(s in c.starts_from for c in graded))
    with _prepare_lock:  # the first worker trains; the others wait for it
        if (str(cache), stages) not in _prepared:
            pipeline = Pipeline(cache_dir=cache, log=lambda msg: print(f"grader: {msg}", file=sys.stderr))
            for stage in stages:
                getattr(pipeline, stage)
            _prepared.add((str(cache), stages))
    return cache


def deadlines(timeout: float, group: cgroup.Group | None) -> tuple[float | None, float]:
    """(CPU seconds, wall-clock seconds) a child may take: ``timeout`` seconds of its cgroup's CPU time,
    all its processes together, which the load of the others does not move; and a backstop of
    ``BACKSTOP`` times that on the wall clock, for a child that sleeps or blocks and so never spends
    its CPU time. A correct child waits on the wall clock too, for the grader's checks between its calls
    and, beside others, for a CPU: with a third of one it can still spend its whole budget (measured,
    without --fast: a correct attention spent 16 s of CPU time in 33 s of wall-clock time besides the
    grader's own work). That work (``Channel.paused``) moves the backstop on and, done in the grader's
    process, is never the child's CPU time.
    Without a cgroup (None) there is no CPU clock of the child's: ``timeout`` is wall-clock seconds."""
    return (None, timeout) if group is None else (timeout, BACKSTOP * timeout)


def limits(options: Options) -> Limits:
    """The resource limits of one grading child with ``options``."""
    return Limits(cpu_seconds=int(options.timeout * 2) + 30, memory=options.memory, nproc=options.nproc,
                  max_output=options.max_output)


# -- one submission ------------------------------------------------------------------------
def grade_one(sub: Submission, options: Options, feedback: Path | None = None, cpus: float = CHILD_CPUS) -> Record:
    """Grade one submission: its code in a sandboxed child, every check judged here.

    ``feedback``: the folder the checks draw their plots into (the student's feedback folder).
    ``cpus``: the CPUs its child may use at once, all its processes together (its share of the
    machine, where the grader can make it a cgroup).
    """
    t0 = time.monotonic()
    checks = rubric(options.components, options.fast)
    done = lambda status, judged=(), error="", provided=None: Record.of(  # noqa: E731
        sub.student, checks, list(judged), status, error, provided, seconds=round(time.monotonic() - t0, 2),
        sandbox=sandbox.mode())
    if sub.refused:
        return done(Status.LOAD_ERROR, error=sub.refused)
    sandbox.warn_once()
    cache = None if options.fast else prepare_shared_models(options)
    uid = sandbox.child_uid() if sandbox.bwrap_works() or sandbox.fallback_can_drop_uid() else None
    lim = limits(options)
    lim = Limits(lim.cpu_seconds, lim.memory, sandbox.nproc_limit(lim, uid), lim.file_size, lim.scratch,
                 lim.max_output)
    models = sandbox.cached_models(cache)
    share = cgroup.Share(cpus=cpus, pids=lim.nproc, memory=lim.memory)
    with sandbox.box(sub, uid, models) as box, cgroup.group(share) as group:
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        argv = [sys.executable, "-m", "toolkit.grading.child", str(sandbox.submission_inside(box, sub)),
                "--fds", f"{requests_r},{answers_w}", *(["--uid", str(uid)] if uid is not None else [])]
        cpu_seconds, wall_seconds = deadlines(options.timeout, group)
        started = time.monotonic()  # the child's clock starts with it (not with the shared models' loading)
        proc, readers, stderr = sandbox.start(argv, box, models, lim, (requests_r, answers_w), group)
        os.close(requests_r)
        os.close(answers_w)
        channel = Channel(requests_w, answers_r, started + wall_seconds)
        watchdog = sandbox.Watchdog(proc, lambda: channel.deadline, None if sandbox.bwrap_works() else box,
                                    lim.scratch, uid, group, cpu_seconds)
        watchdog.start()
        try:
            judged, outcome = _judge(Child(channel, group and group.cpu_seconds), options, cache, feedback, _code(sub))
        finally:
            channel.close()
            slowed = group is None or slowed_by_others(group, options.timeout)  # before its processes end
            _end(proc, uid, group)
            watchdog.stop()
            for reader in readers:
                reader.join(timeout=5)
    if isinstance(outcome, str):  # the child's own sentence: it could not load the submission
        return done(Status.LOAD_ERROR, error=outcome)
    if channel.gone is None:
        return done(Status.GRADED, judged, provided=outcome)
    status, error = why_gone(channel.gone, proc.returncode, watchdog.why, options.timeout, lim.scratch,
                             cpu_clock=cpu_seconds is not None)
    record = done(status, judged, error, outcome)
    record.log = last_lines(b"".join(stderr).decode(errors="replace"))
    record.starved = status == Status.TIMEOUT and watchdog.why != "cpu" and slowed  # CPU time it spent itself
    return record


STARVED = 0.25  # of the timeout: waiting this long for a CPU, with less than this much CPU time, is starving


def slowed_by_others(group: cgroup.Group, timeout: float) -> bool:
    """Did the child wait long for a CPU the others held, without getting much of it? (A child that
    spins on its own gets CPU time; one that hangs or sleeps does not wait.) Where the kernel does not
    say how long it waited, assume so. With a cgroup only the wall-clock backstop can end such a child
    (its CPU time does not run while it waits): the case of one starved to less than a third of a CPU."""
    waited = group.waited()
    return waited is None or (waited >= STARVED * timeout and group.cpu_seconds() < STARVED * timeout)


def _code(sub: Submission) -> dict[str, str]:
    try:
        return intake.code(sub)
    except OSError:
        return {}


def _judge(child: Child, options: Options, cache: Path | None, feedback: Path | None, sources: dict[str, str]):
    """Every check of the rubric on the child's components: (results, provided components), or
    ([], the child's load error), or ([], None) when it never answered."""
    from toolkit.checks import Context, run_components
    from toolkit.config import PipelineConfig
    from toolkit.runner import hidden_available

    try:
        hello = child.hello()
    except ChildGone:
        return [], None
    if "error" in hello:
        return [], hello["error"]
    provided = hello["provided"]
    wanted = [c for c in options.components or COMPONENTS if c in provided]
    config = PipelineConfig()
    results = run_components(
        wanted, lambda comp: Context(child.components(comp), comp, config, feedback, cache, lambda msg: None,
                                     remote=child, sources=sources),
        include_hidden=hidden_available(), behavioural=not options.fast)
    return results, provided


def _end(proc, uid: int | None, group) -> None:
    """Let the child finish (its request pipe is closed) for a moment, then kill its session."""
    with contextlib.suppress(Exception):
        proc.wait(timeout=2)
    sandbox.kill(proc, uid, group)  # also whatever it left running
    proc.wait()


def last_lines(stderr: str, n: int = 5, width: int = 300) -> str:
    """The child's last lines of stderr, for the instructor only (``Record.log``): a student's page
    never shows them, since a child may print there the hidden inputs it was called with."""
    from toolkit.text import printable

    lines = [printable(ln).strip()[:width] for ln in stderr.splitlines() if printable(ln).strip()]
    return "\n".join(lines[-n:])


def why_gone(gone: str, returncode: int, watchdog: str | None, timeout: float, scratch: int,
             cpu_clock: bool = False) -> tuple[Status, str]:
    """The status and the one sentence of a child that stopped answering. ``cpu_clock``: its ``timeout``
    was CPU seconds of its cgroup, with the wall-clock backstop (``deadlines``)."""
    import signal

    if watchdog == "cpu":
        return Status.TIMEOUT, f"did not finish within {timeout:g} s of CPU time"
    if (watchdog == "timeout" or gone == LATE) and cpu_clock:
        return Status.TIMEOUT, (f"did not finish within {BACKSTOP * timeout:g} s of wall-clock time ({BACKSTOP} times "
                                f"its {timeout:g} s of CPU time): it slept or waited")
    if watchdog == "timeout" or gone == LATE:
        return Status.TIMEOUT, f"did not finish within {timeout:g} s of wall-clock time"
    if gone.startswith(CALL_LATE):  # a check's limit on one call, which the child did not enforce
        return Status.TIMEOUT, gone
    if watchdog == "scratch":
        return Status.CRASHED, f"wrote more than {scratch >> 20} MB of scratch files"
    if "sent" in gone:  # it broke the protocol: the grader's sentence says how
        return Status.CRASHED, gone
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0  # bwrap: 128 + signal
    how = (f"was killed by {signal.Signals(signum).name}" if signum in set(signal.Signals)
           else f"exited with code {returncode}")
    return Status.CRASHED, f"the submission's process {how} before grading ended"


# -- the class -----------------------------------------------------------------------------
def status_counts(records: dict[str, Record]) -> str:
    """"2 graded, 1 load_error": the count of each status, as the progress bar and the summary say it."""
    return ", ".join(f"{n} {s}" for s in Status if (n := sum(r.status == s for r in records.values())))


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[statuses]};"),
                    TextColumn("time left"), TimeRemainingColumn(), console=Console(stderr=True))


def grade_submissions(submissions: dict[str, Submission], out: Path, options: Options, workers: int = 1,
                      scheduler: str | None = None) -> dict[str, Record]:
    """Student -> record, ``workers`` at a time (or as Dask tasks on ``scheduler``); a progress bar on stderr.

    Records are kept in ``out/results.sqlite`` as they finish (``toolkit.grading.store``): a
    submission already graded with the same content and grader version is not graded again. One that
    timed out on the wall clock while the others took its CPU (``Record.starved``: without a cgroup, or
    at the backstop) is graded again alone, after the others, before its timeout is recorded.
    """
    from toolkit.grading.store import Store, grader_version

    # the cgroups decide what --timeout counts (CPU or wall-clock seconds): a grade depends on them too
    store, version = Store(out / "results.sqlite"), grader_version(options, f"{sandbox.mode()}; {cgroup.mode()}")
    keys = {student: _content_hash(sub) for student, sub in submissions.items()}
    records = {s: r for s in submissions if (r := store.get(s, keys[s], version)) is not None}
    todo = {s: sub for s, sub in submissions.items() if s not in records}
    print(f"grading {len(todo)} of {len(submissions)} submissions ({len(records)} already in {out / 'results.sqlite'})",
          file=sys.stderr)
    if scheduler in (None, "local"):
        workers = _local_slots(workers if scheduler is None or workers > 1 else _cpus(), options)
    with _progress() as progress, _executor(scheduler, workers) as submit:
        task = progress.add_task("grading", total=len(submissions), statuses=status_counts(records) or "0 graded",
                                 completed=len(records))

        def start(student: str, cpus: float):
            feedback = out / "feedback" / student
            intake.remove_tree(feedback)
            feedback.mkdir(parents=True)
            return submit(grade_one, todo[student], options, feedback, cpus)

        def keep(student: str, record: Record) -> None:
            store.put(student, keys[student], version, record)
            records[student] = record
            progress.update(task, advance=1, statuses=status_counts(records))

        beside = workers > 1 or scheduler not in (None, "local")  # others are graded at the same time
        whole = min(CHILD_CPUS, _cpus())
        share = max(1.0, whole / workers) if scheduler in (None, "local") else whole  # each child's part of the CPUs
        again = []
        for student, record in _as_completed({start(s, share): s for s in todo}, scheduler, submissions, options):
            if beside and record.starved:  # graded again alone below, before its timeout is recorded
                progress.console.print(f"{student}: timed out while the others held the CPU; graded again alone")
                again.append(student)
            else:
                keep(student, record)
        for student in again:  # one at a time: nobody beside it now
            for _, record in _as_completed({start(student, whole): student}, scheduler, submissions, options):
                keep(student, record)
    store.close()
    return dict(sorted(records.items()))


def _content_hash(sub: Submission) -> str:
    try:
        return intake.content_hash(sub)
    except OSError as e:  # the file changed or vanished since intake
        return f"unreadable: {e}"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def child_slots(workers: int, options: Options, cpus: int) -> int:
    """How many children may grade at once on ``cpus`` cores: ``workers``, except that children which
    train models (no ``--fast``) get the pipeline's pinned torch threads each, and more of them than
    the cores hold slow every one down many times over (measured: two on 2 cores both passed a
    600 s timeout that one alone meets in 93 s). The threads stay pinned: grades depend on them."""
    if options.fast:
        return workers
    from toolkit.config import PipelineConfig

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


def _as_completed(futures: dict, scheduler: str | None, submissions: dict[str, Submission], options: Options):
    """(student, record) as each future finishes; a grader error becomes that student's record."""
    if scheduler is None:
        done = as_completed(futures)
    else:
        from distributed import as_completed as dask_completed
        done = dask_completed(list(futures))
    for future in done:
        student = futures[future]
        try:
            yield student, future.result()
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # a bug of the grader's on this submission: its record, not the batch's end
            print(f"grader error on {student}: {type(e).__name__}: {e}", file=sys.stderr)
            yield student, Record.of(student, rubric(options.components, options.fast), [], Status.CRASHED,
                                     f"the grader failed on this submission ({type(e).__name__}); "
                                     "the instructor has the details", sandbox=sandbox.mode())


def grade_class(submissions: dict[str, Submission], out: Path, options: Options, workers: int = 1,
                gradebook: Path | None = None, scheduler: str | None = None) -> dict[str, Record]:
    """Grade every submission and write all the outputs into ``out`` (and the scores into the nbgrader
    ``gradebook``, if given); returns student -> record."""
    from toolkit.grading import exports
    from toolkit.grading.similarity import similar_pairs, submission_code

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    records = grade_submissions(submissions, out, options, workers, scheduler)
    exports.write_csv(out / "grades.csv", records)
    for student, record in records.items():
        exports.write_student(out, record)
    code = {student: submission_code(sub) for student, sub in submissions.items()}
    exports.write_summary(out, records, similar_pairs(code))
    if gradebook:
        exports.write_gradebook(gradebook, records)
    return records
