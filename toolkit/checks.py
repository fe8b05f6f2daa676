"""Checks: how graders are written, found and run.

A check is a function in a ``graders`` module, decorated with ``@check``. It receives a
``Context`` and passes by returning ``None``; it fails by raising ``CheckFailed`` with a
one-line reason, or earns partial credit by returning ``Partial(fraction, reason)``::

    @check("attention", points=2)
    def causal(ctx):
        "Output at position t does not depend on tokens after t."
        ...
        if changed:
            raise CheckFailed("output at t=2 changed when token 5 changed: apply the causal mask")

Any other exception raised while the check runs is student code failing: the check
fails with the exception as its reason. Public checks ship to students; hidden ones live
in ``graders/hidden`` and are only run when the grader has them.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

import graders
import toolkit
from toolkit.pipeline import Pipeline, PipelineConfig
from toolkit.plugins import Components, PluginError

SNAPSHOT_DIR = Path(__file__).resolve().parent.parent / "graders" / "snapshots"


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


@dataclass
class Result:
    name: str
    component: str
    points: float
    score: float
    status: str  # "passed", "partial" or "failed"
    reason: str
    description: str
    hidden: bool
    seconds: float
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def check(component: str, points: float, behavioural: bool = False):
    """Mark a function as a check of ``component`` worth ``points``."""
    def mark(fn):
        fn.__check__ = (component, points, behavioural)
        return fn
    return mark


def collect(components: list[str] | None = None, include_hidden: bool = True) -> list[Check]:
    """Every check in ``graders`` (and ``graders.hidden`` when present), in file order."""
    import graders

    modules = [importlib.import_module(f"graders.{m.name}") for m in pkgutil.iter_modules(graders.__path__) if not m.ispkg]
    if include_hidden:
        try:
            hidden = importlib.import_module("graders.hidden")
            modules += [importlib.import_module(f"graders.hidden.{m.name}") for m in pkgutil.iter_modules(hidden.__path__)]
        except ModuleNotFoundError:
            pass
    checks = []
    for module in modules:
        is_hidden = module.__name__.startswith("graders.hidden")
        for fn in vars(module).values():
            if callable(fn) and hasattr(fn, "__check__"):
                comp, points, behavioural = fn.__check__
                if components is None or comp in components:
                    checks.append(Check(f"{comp}.{fn.__name__}", comp, points, fn, is_hidden, behavioural))
    return sorted(checks, key=lambda c: (list_order(c.component), c.behavioural, c.hidden, c.fn.__code__.co_firstlineno))


def list_order(component: str) -> int:
    from toolkit.components import COMPONENTS
    return list(COMPONENTS).index(component)


def load_snapshot(component: str) -> dict:
    path = SNAPSHOT_DIR / f"{component}.json"
    if not path.exists():
        raise CheckFailed(f"snapshot {path.name} is missing; the instructor records it with `toolkit record solutions/`")
    return json.loads(path.read_text())


@dataclass
class Context:
    """What a check can use: the components (the one under test swapped in), a pipeline, metrics."""

    components: Components
    component: str
    config: PipelineConfig
    report_dir: Path | None = None
    cache_dir: Path | None = None
    log: Callable = print
    metrics: dict = field(default_factory=dict)
    earlier: dict[str, dict] = field(default_factory=dict)  # check name -> metrics, of the checks already run
    _pipeline: Pipeline | None = None

    @property
    def pipeline(self) -> Pipeline:
        """One pipeline per component run, shared by its checks (so SFT runs once)."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.components, self.config, self.cache_dir, log=self.log)
        return self._pipeline

    def snapshot(self) -> dict:
        return load_snapshot(self.component)

    def plot_path(self, name: str) -> Path | None:
        """Where a check draws plot ``name`` (None: no report), listed for the report under ``_plots``."""
        if self.report_dir is None:
            return None
        self.report_dir.mkdir(parents=True, exist_ok=True)
        self.metrics.setdefault("_plots", []).append(name)
        return self.report_dir / name


def run_check(c: Check, ctx: Context) -> Result:
    t0 = time.perf_counter()
    ctx.metrics = {}
    try:
        outcome = c.fn(ctx)
        if outcome is None:
            score, status, reason = c.points, "passed", ""
        else:
            frac = min(1.0, max(0.0, float(outcome.fraction)))
            score = round(c.points * frac, 4)
            status, reason = ("passed" if frac >= 1 else "partial" if frac > 0 else "failed"), outcome.reason
    except CheckFailed as e:
        score, status, reason = 0.0, "failed", str(e)
    except PluginError as e:
        score, status, reason = 0.0, "failed", str(e)
    except (Exception, SystemExit) as e:  # student code failing inside a model, a tokenizer, ...
        where = _student_frame(e)
        score, status, reason = 0.0, "failed", f"{type(e).__name__}: {e}{where}"
    ctx.earlier[c.name] = ctx.metrics
    return Result(c.name, c.component, c.points, score, status, " ".join(reason.split()), c.description,
                  c.hidden, round(time.perf_counter() - t0, 3), ctx.metrics)


_OURS = tuple(Path(m.__file__).resolve().parent for m in (toolkit, torch, graders))


def _is_ours(filename: str) -> bool:
    """Is this file part of the toolkit, torch or the graders (not of the student)?"""
    path = Path(filename).resolve()
    return any(path.is_relative_to(d) for d in _OURS)


def _student_frame(e: BaseException) -> str:
    """' (at file:line)' for the deepest frame outside toolkit and torch, if any."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not _is_ours(f.filename)]
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
