"""Run the checks on a submission: each component it provides, swapped in one at a time."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

import toolkit
from toolkit.checks import CheckStatus, Context, Result, run_components
from toolkit.pipeline import PipelineConfig
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
    hidden = Path(__file__).resolve().parent.parent / "graders" / "hidden"
    return any(p.name != "__init__.py" for p in hidden.glob("*.py"))


def run_submission(spec: str | None, components: list[str] | None = None, config: PipelineConfig | None = None,
                   report_dir: Path | None = None, cache_dir: Path | None = None, include_hidden: bool = False,
                   behavioural: bool = True, log=lambda msg: print(msg, file=sys.stderr)) -> Run:
    """Grade ``spec`` (None: the baselines). Raises SubmissionError if it cannot be loaded, and
    NotProvided if ``components`` names one it does not provide.

    ``behavioural=False`` leaves out the checks that train models (seconds instead of minutes).
    """
    config = config or PipelineConfig()
    plugins = [] if spec is None else load_submission(spec)
    pm = build_manager(plugins)
    provided = list(provided_components(plugins)) if plugins else list(COMPONENTS)
    sources = {p.name: p.source for p in plugins}
    if components and any(c not in provided for c in components):
        raise NotProvided(provided)
    wanted = components or list(COMPONENTS)
    results = run_components([c for c in wanted if c in provided],
                             lambda comp: Context(Components(pm, only=comp), comp, config, report_dir, cache_dir, log,
                                                  sources=sources),
                             include_hidden, behavioural, log)
    missing = [c for c in wanted if c not in provided]
    return Run(str(spec or "baselines"), results, missing, include_hidden and hidden_available(), environment(config))
