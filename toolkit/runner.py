"""Run the checks on a submission: each component it provides, swapped in one at a time."""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import threading
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty

import torch

import toolkit
from toolkit import paths
from toolkit.checks import CheckStatus, Context, Result, run_components
from toolkit.config import PipelineConfig
from toolkit.components import COMPONENTS
from toolkit.plugins import Components, build_manager, load_submission, provided_components


class NotProvided(Exception):
    """Components were asked for that the submission does not provide (``provided``: what it does)."""

    def __init__(self, provided: list[str]):
        super().__init__(f"the submission provides {', '.join(provided) or 'no component'}")
        self.provided = provided


@dataclass
class Run:
    submission: str
    results: list[Result]
    missing: list[str]  # components the submission does not provide
    hidden_included: bool
    environment: dict = field(default_factory=dict)

    @property
    def score(self) -> float:
        return round(sum(r.score for r in self.results), 4)

    @property
    def max_score(self) -> float:
        return round(sum(r.points for r in self.results), 4)

    @property
    def passed(self) -> bool:
        return all(r.status == CheckStatus.PASSED for r in self.results)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(score=self.score, max_score=self.max_score, passed=self.passed)
        return d


def environment(config: PipelineConfig) -> dict:
    """What determines the numbers: recorded with every result."""
    return {"toolkit": toolkit.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "threads": config.threads, "seed": config.seed}


def hidden_available() -> bool:
    """Does this copy hold hidden checks (the instructor's, not a student release)?"""
    return any(p.name != "__init__.py" for p in paths.HIDDEN.glob("*.py"))


SECOND_LANE = tuple(c.name for c in COMPONENTS.values() if "chat_model" in c.starts_from)
"""The components ``toolkit run`` checks in a second process while the first checks the others: those
whose checks start from the chat model (the table's ``starts_from``), about half the training each
(the reward model and RLHF; SFT and the tokenizer's and attention's small GPTs). Each process pins
the configuration's thread count, so it does the arithmetic one process would: the same scores and figures (``benchmarks/lanes.py``). It pays where the machine
has a core for every thread of both; on 2 cores one process already keeps both busy."""


def lanes_pay(config: PipelineConfig) -> bool:
    """Has this machine a core for each thread of two processes?"""
    return cores() >= 2 * config.threads


def cores() -> int:
    """The cores this process may run on (macOS has no affinity: all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_submission(spec: str | None, components: list[str] | None = None, config: PipelineConfig | None = None,
                   report_dir: Path | None = None, cache_dir: Path | None = None, include_hidden: bool = False,
                   behavioural: bool = True, log=lambda msg: print(msg, file=sys.stderr),
                   lanes: bool | None = None) -> Run:
    """Grade ``spec`` (None: the baselines). Raises SubmissionError if it cannot be loaded, and
    NotProvided if ``components`` names one it does not provide.

    ``behavioural=False`` leaves out the checks that train models (seconds instead of minutes).
    ``lanes``: check ``SECOND_LANE``'s components in a second process, when there are some on
    both sides and models to train; False: everything here, one component after another; None:
    lanes where they pay (``lanes_pay``).
    """
    config = config or PipelineConfig()
    plugins = [] if spec is None else load_submission(spec)
    provided = list(provided_components(plugins)) if plugins else list(COMPONENTS)
    if components and any(c not in provided for c in components):
        raise NotProvided(provided)
    wanted = components or list(COMPONENTS)
    todo = [c for c in wanted if c in provided]
    split = [[c for c in todo if c not in SECOND_LANE], [c for c in todo if c in SECOND_LANE]]
    job = Job(spec, config, report_dir, cache_dir, include_hidden, behavioural)
    if (lanes_pay(config) if lanes is None else lanes) and behavioural and all(split):
        results = in_lanes(split, job, log)
    else:
        results = check_components(todo, job, log, plugins=plugins)
    missing = [c for c in wanted if c not in provided]
    return Run(str(spec or "baselines"), results, missing, include_hidden and hidden_available(), environment(config))


@dataclass(frozen=True)
class Job:
    """What ``run_submission`` checks, as it goes to a lane's process."""
    spec: str | None  # None: the baselines
    config: PipelineConfig
    report_dir: Path | None
    cache_dir: Path | None
    include_hidden: bool
    behavioural: bool


def check_components(components: list[str], job: Job, log, after_public=lambda: None,
                     plugins: list | None = None) -> list[Result]:
    """The checks of ``components`` of ``job.spec`` (loaded again unless ``plugins`` are given), in this process."""
    if plugins is None:
        plugins = [] if job.spec is None else load_submission(job.spec)
    pm = build_manager(plugins)
    sources = {p.name: p.source for p in plugins}
    return run_components(components,
                          lambda comp: Context(Components(pm, only=comp), comp, job.config, job.report_dir,
                                               job.cache_dir, log, sources=sources),
                          job.include_hidden, job.behavioural, log, after_public)


# -- lanes: components checked in processes side by side --------------------------------------
def in_lanes(lanes: list[list[str]], job: Job, log) -> list[Result]:
    """``check_components(lane, job)`` for each lane in a process of its own, started together; their
    results in the order one process gives (public checks first, components in the table's order).
    The lanes meet at a barrier before their hidden checks, as ``run_components`` requires; their
    progress comes to ``log`` here. Raises LaneEnded if a lane ends without results (the submission
    ended its process), RuntimeError if the toolkit failed in one."""
    mp = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state copied from this one
    barrier, queue = mp.Barrier(len(lanes)), mp.Queue()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by the lanes' torch: a waiting thread yields its core
    procs = [mp.Process(target=_lane, args=(i, lane, job, barrier, queue), daemon=True) for i, lane in enumerate(lanes)]
    for p in procs:
        p.start()
    results, pending = [], set(range(len(lanes)))
    try:
        while pending:
            try:
                kind, i, payload = queue.get(timeout=1)
            except Empty:  # a lane that ended has put everything in the pipe: nothing there, nothing coming
                ended = sorted((i for i in pending if procs[i].exitcode is not None),
                               key=lambda i: procs[i].exitcode == BARRIER_BROKEN)  # the first to fail first
                if ended and queue.empty():
                    raise LaneEnded(f"{job.spec or 'the baselines'}: the process checking {', '.join(lanes[ended[0]])} "
                                    f"ended without its results (exit code {procs[ended[0]].exitcode}): the "
                                    "submission's code ended it (os._exit, a signal or a crash)") from None
                continue
            if kind == "log":
                log(payload)
            elif kind == "error":
                raise RuntimeError(f"checking {', '.join(lanes[i])} failed:\n{payload}")
            else:
                results += payload
                pending.discard(i)
    finally:
        if pending:
            barrier.abort()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    order = list(COMPONENTS)
    return sorted(results, key=lambda r: (r.hidden, order.index(r.component)))  # stable: a component keeps its order


class LaneEnded(Exception):
    """A lane's process ended without its results: the submission's code ended it."""


BARRIER_BROKEN = 3  # a lane's exit code when another lane failed before the hidden checks


def _lane(index: int, components: list[str], job: Job, barrier, queue) -> None:
    """One lane's process: its results, its progress and its failure go to ``queue``."""
    sys.stdout = sys.stderr  # the parent's stdout may carry --json: what the submission prints goes to stderr
    try:
        results = check_components(components, job, log=lambda msg: queue.put(("log", index, msg)),
                                   after_public=barrier.wait)
    except threading.BrokenBarrierError:  # another lane failed: it reports why
        sys.exit(BARRIER_BROKEN)
    except BaseException:  # noqa: BLE001 -- whatever it is, the parent reports it
        queue.put(("error", index, traceback.format_exc()))
        barrier.abort()
        sys.exit(1)
    queue.put(("results", index, results))
