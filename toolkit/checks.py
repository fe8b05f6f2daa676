"""Checks: how graders are written, found and run.

A check is a function in a module of the package of checks (``graders``, handed to the kit by
name: ``toolkit.components``), decorated with ``@check``. It receives a ``Context`` and passes by
returning ``None``; it fails by raising ``CheckFailed`` with a one-line reason, or earns partial
credit by returning ``Partial(fraction, reason)``::

    @check("attention", points=2)
    def causal(ctx):
        "Output at position t does not depend on tokens after t."
        ...
        if changed:
            raise CheckFailed("output at t=2 changed when token 5 changed: apply the causal mask")

Any other exception raised while the check runs is student code failing: the check
fails with the exception as its reason (for a hidden check, a generic reason: an exception's
text is the student's to choose, and could carry the hidden inputs out). Public checks ship to
students; hidden ones live in ``graders/hidden`` and are only run when the grader has them.

A check sees the submission through its ``Context``: ``ctx.components`` (the component under
test swapped in, baselines for the rest), ``ctx.pipeline`` (the reference pipeline built from
them) and ``ctx.in_child(fn, ...)`` for work that must run where the submission's code runs.
Under ``toolkit run`` that is this process; under ``toolkit grade`` the submission lives in a
sandboxed child and ``ctx.remote`` makes the same calls over a pipe (``toolkit.grading.remote``):
the check itself, and every number it judges, stays in the grader.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import pkgutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Callable

import torch

import toolkit
from toolkit import paths
from toolkit.alarm import OutOfTime, alarm
from toolkit.components import COMPONENTS, HIDDEN_CHECKS
from toolkit.config import PipelineConfig
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components, NotImplementedYet, PluginError, not_implemented, raised
from toolkit.text import one_line

MAX_REASON = 400  # characters of a reason shown; an exception's text is the student's to choose
HIDDEN_ERROR = ("the submission's code raised an error, or returned a value of the wrong kind, on this hidden "
                "check's inputs (a hidden check does not say which: that could reveal its inputs)")
HIDDEN_STUB = ("the submission's code is not implemented yet: it raised NotImplementedError on this hidden check's "
               "inputs")


class CheckFailed(Exception):
    """Raise with a one-line, actionable reason."""


@dataclass
class Partial:
    fraction: float  # 0..1 of the check's points
    reason: str


@dataclass
class Check:
    name: str  # "<component>.<function name>"
    component: str
    points: float
    fn: Callable
    hidden: bool = False
    behavioural: bool = False  # trains or probes models: slow

    @property
    def description(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else self.name


class CheckStatus(StrEnum):
    """How a check ended. Its value is the word every table and page says; it carries its colours."""

    PASSED = "passed"
    PARTIAL = "partial"
    FAILED = "failed"
    NOT_RUN = "not run"  # zero points: the component is not provided, or the submission was not graded

    @property
    def css(self) -> str:
        """Its class on a page: "not-run"."""
        return self.value.replace(" ", "-")

    @property
    def colour(self) -> str:
        """Its colour on a page."""
        return STATUS_COLOURS[self][0]

    @property
    def terminal_colour(self) -> str:
        """Its colour in the terminal (a colour name of ``rich``)."""
        return STATUS_COLOURS[self][1]


STATUS_COLOURS = {  # status -> (on a page, in the terminal)
    CheckStatus.PASSED: ("#137333", "green"),
    CheckStatus.PARTIAL: ("#b06000", "yellow"),
    CheckStatus.FAILED: ("#c5221f", "red"),
    CheckStatus.NOT_RUN: ("#666", "bright_black"),
}


@dataclass
class Result:
    name: str
    component: str
    points: float
    score: float  # in [0, points]
    status: CheckStatus
    reason: str
    description: str
    hidden: bool
    seconds: float
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def not_run(cls, c: "Check", reason: str) -> "Result":
        """The result of a check that did not run: zero points, and why."""
        return cls(c.name, c.component, c.points, 0.0, CheckStatus.NOT_RUN, reason, c.description, c.hidden, 0.0)


def check(component: str, points: float, behavioural: bool = False):
    """Mark a function as a check of ``component`` worth ``points``."""
    def mark(fn):
        fn.__check__ = (component, points, behavioural)
        return fn
    return mark


def collect(components: list[str] | None = None, include_hidden: bool = True) -> list[Check]:
    """Every check of the components' modules (``Component.grader``, imported by name), and of the
    hidden checks' package when present, in file order."""
    modules = [importlib.import_module(c.grader) for c in COMPONENTS.values()]
    if include_hidden:
        try:
            hidden = importlib.import_module(HIDDEN_CHECKS)
            modules += [importlib.import_module(f"{HIDDEN_CHECKS}.{m.name}") for m in pkgutil.iter_modules(hidden.__path__)]
        except ModuleNotFoundError:
            pass
    checks = []
    for module in modules:
        is_hidden = module.__name__.startswith(HIDDEN_CHECKS)
        for fn in vars(module).values():
            if callable(fn) and hasattr(fn, "__check__"):
                comp, points, behavioural = fn.__check__
                if components is None or comp in components:
                    checks.append(Check(f"{comp}.{fn.__name__}", comp, points, fn, is_hidden, behavioural))
    return sorted(checks, key=lambda c: (list_order(c.component), c.behavioural, c.hidden, c.fn.__code__.co_firstlineno))


def list_order(component: str) -> int:
    return list(COMPONENTS).index(component)


def load_snapshot(component: str) -> dict:
    path = paths.snapshot(component)
    if not path.exists():
        raise CheckFailed(f"snapshot {path.name} is missing; the instructor records it with `toolkit record solutions/`")
    return json.loads(path.read_text())


@dataclass
class Context:
    """What a check can use: the components (the one under test swapped in), pipelines, metrics.

    ``remote``: under ``toolkit grade``, the submission's child process
    (``toolkit.grading.remote.Child``): ``components`` are then its proxies, pipelines are the
    grader's (``ChildPipeline``: it trains every model itself), and ``in_child`` runs there.
    """

    components: Components
    component: str
    config: PipelineConfig
    report_dir: Path | None = None
    cache_dir: Path | None = None
    log: Callable = print
    metrics: dict = field(default_factory=dict)
    earlier: dict[str, dict] = field(default_factory=dict)  # check name -> metrics, of the checks already run
    remote: object | None = None
    sources: dict[str, str] = field(default_factory=dict)  # the submission's code, file -> text, as read by the grader
    _pipelines: dict = field(default_factory=dict)

    @property
    def pipeline(self) -> Pipeline:
        """The run's pipeline, shared by the component's checks (so SFT runs once)."""
        return self.pipeline_for(self.config)

    def pipeline_for(self, config: PipelineConfig) -> Pipeline:
        """A pipeline with the components and another configuration, one per configuration."""
        if config not in self._pipelines:
            self._pipelines[config] = (
                self.remote.pipeline(self.component, config, self.cache_dir, self.log) if self.remote else
                Pipeline(self.components, config, self.cache_dir, log=self.log))
        return self._pipelines[config]

    def submission_clock(self) -> Callable[[], float]:
        """A clock of the CPU time the submission's code spends, which other processes' load does not move:
        this thread's under ``toolkit run`` (where a hook runs in the calling thread), its child's cgroup
        under ``toolkit grade`` (every process of the child); the wall clock where there is no cgroup."""
        if self.remote is None:
            return time.thread_time
        return getattr(self.remote, "cpu_clock", None) or time.perf_counter

    @contextlib.contextmanager
    def time_limit(self, seconds: float, what: str):
        """Stop the block's calls into the submission after ``seconds``, failing the check."""
        try:
            with self.remote.time_limit(seconds) if self.remote else alarm(seconds):
                yield
        except OutOfTime:
            raise CheckFailed(f"{what} did not finish within {seconds:g} s") from None

    def grader_work(self):
        """A block of the grader's own work (training a model of the submission's modules): under
        ``toolkit grade`` not charged to the child's deadline, only the calls it answers meanwhile."""
        return self.remote.paused() if self.remote else contextlib.nullcontext()

    def in_child(self, fn: Callable, *args, config: PipelineConfig | None = None):
        """``fn(pipeline, *args)`` where the submission's code runs: here under ``toolkit run``, in the
        child under ``toolkit grade``. ``fn`` is a ``@child_side`` function of a public grader; what it
        returns must be plain data (numbers, strings, lists, dicts, tensors), which the grader checks.
        The child may replace ``fn`` in its own interpreter: use it only for an observation that cannot
        be made otherwise (what a forward calls), never for a figure the grader can compute itself."""
        config = config or self.config
        if self.remote is None:
            return fn(self.pipeline_for(config), *args)
        return self.remote.run(self.component, config, fn, args)

    def initial_parameters(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The parameters a module the submission's hook has just built holds, by name: its own under ``toolkit
        run``; under ``toolkit grade`` those it holds in the child, fetched as the grader's pipeline fetches a
        module's initial weights (``Child.parameters``: exactly the names, shapes and dtypes it reported)."""
        if self.remote is None or self.remote.oid(module) is None:
            return {n: p.detach().clone() for n, p in module.named_parameters()}
        return self.remote.parameters(module)

    def snapshot(self) -> dict:
        return load_snapshot(self.component)

    def plot_path(self, name: str, caption: str) -> Path | None:
        """Where a check draws plot ``name`` (None: no report); listed for the report, with the
        caption that describes it, under ``_plots``."""
        if self.report_dir is None:
            return None
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self.metrics.setdefault("_plots", []).append([name, caption])
        return self.report_dir / name


def child_side(fn: Callable) -> Callable:
    """Mark a grader function that ``Context.in_child`` may run where the submission's code runs: an
    observation only as strong as the child's word (its docstring says so)."""
    fn.__child_side__ = True
    return fn


def run_check(c: Check, ctx: Context) -> Result:
    t0 = time.perf_counter()
    ctx.metrics = {}
    try:
        outcome = c.fn(ctx)
        if outcome is None:
            score, status, reason = c.points, CheckStatus.PASSED, ""
        else:
            frac = float(outcome.fraction)
            frac = min(1.0, max(0.0, frac)) if frac == frac else 0.0  # NaN earns nothing
            score = round(c.points * frac, 4)
            status = CheckStatus.PASSED if frac >= 1 else CheckStatus.PARTIAL if frac > 0 else CheckStatus.FAILED
            reason = outcome.reason
    except CheckFailed as e:
        score, status, reason = 0.0, CheckStatus.FAILED, str(e)
    except (Exception, SystemExit, OutOfTime) as e:  # student code failing inside a hook, a model, a tokenizer,
        # ...; OutOfTime here was raised by the student's code itself: ``Context.time_limit`` turns its own into CheckFailed
        score, status, reason = 0.0, CheckStatus.FAILED, student_error(e, c.hidden)
    ctx.earlier[c.name] = ctx.metrics
    return Result(c.name, c.component, c.points, score, status, one_line(reason, MAX_REASON), c.description,
                  c.hidden, round(time.perf_counter() - t0, 3), ctx.metrics)


def student_error(e: BaseException, hidden: bool = False) -> str:
    """The reason of a check that the submission's code failed by raising ``e``.

    A stub (``raise NotImplementedError()`` in the submission's code) is one sentence: "forward is
    not implemented yet: it raised NotImplementedError (at attention.ipynb:21)". Anything else: the
    exception and where the submission raised it, then the case it was raised on (``on_case``).
    A hidden check says only whether it met a stub: an exception's text, where it was raised and on
    which case could carry the check's inputs out."""
    stub = isinstance(e, NotImplementedYet) or (not isinstance(e, PluginError) and _is_stub(e))
    if hidden:
        return HIDDEN_STUB if stub else HIDDEN_ERROR
    case = f", on {e.toolkit_case}" if isinstance(getattr(e, "toolkit_case", None), str) else ""
    if isinstance(e, PluginError):
        return f"{e}{case}"
    if stub:
        function = traceback.extract_tb(e.__traceback__)[-1].name
        return f"{not_implemented(function, e)}{_student_frame(e)}{case}"
    return f"{raised(e)}{_student_frame(e)}{case}"


def _is_stub(e: BaseException) -> bool:
    """A NotImplementedError raised by the submission's code, or by a method of the toolkit's interface
    it did not write (``Tokenizer.encode``); not by torch (an operation it lacks) or the standard library."""
    if not isinstance(e, NotImplementedError):
        return False
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and not any(Path(frames[-1].filename).resolve().is_relative_to(d) for d in _LIBRARIES)


@contextlib.contextmanager
def on_case(what: str):
    """Name the case a check was running when the submission's code raised in the block: the
    reason then ends with ", on <what>" (e.g. "on B=2 T=5 C=12 n_head=3"). The innermost case wins."""
    try:
        yield
    except Exception as e:
        if not isinstance(e, CheckFailed) and getattr(e, "toolkit_case", None) is None:
            with contextlib.suppress(Exception):
                e.toolkit_case = what
        raise


def run_components(components: list[str], context: Callable[[str], Context], include_hidden: bool,
                   behavioural: bool, log: Callable = lambda msg: None,
                   after_public: Callable[[], None] = lambda: None) -> list[Result]:
    """The one loop of grading: for each component (in the table's order), a context from
    ``context(component)`` and its checks run in it; the behavioural ones only if ``behavioural``.

    Every public check of every component runs before the first hidden one: the submission sees
    a hidden check's inputs when its hooks are called on them, and must not be able to carry
    them out in the reason of a public check that runs later. ``after_public()`` is called in
    between: where other processes check other components (``toolkit.runner``), it waits for
    them to finish their public checks too."""
    contexts: dict[str, Context] = {}
    results = []
    for hidden in (False, True):
        if hidden:
            after_public()
        for comp in [c for c in COMPONENTS if c in components]:
            for c in collect([comp], include_hidden=include_hidden):
                if c.hidden != hidden or (c.behavioural and not behavioural):
                    continue
                if comp not in contexts:
                    contexts[comp] = context(comp)
                log(f"  {c.name} ...")
                results.append(run_check(c, contexts[comp]))
    return results


_OURS = (*(Path(m.__file__).resolve().parent for m in (toolkit, torch, contextlib)), paths.GRADERS)  # contextlib: the stdlib
_LIBRARIES = tuple(Path(m.__file__).resolve().parent for m in (torch, contextlib))


def _is_ours(filename: str) -> bool:
    """Is this file part of the toolkit, torch or the graders (not of the student)?"""
    path = Path(filename).resolve()
    return any(path.is_relative_to(d) for d in _OURS)


def _student_frame(e: BaseException) -> str:
    """' (at file:line)' for the deepest frame outside toolkit and torch, if any."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not _is_ours(f.filename)]
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
