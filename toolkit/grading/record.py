"""What grading one submission gives: a ``Record``, built by the grader from its own rubric.

The rubric (``rubric``) is the list of checks a grading runs. A record holds one ``Result`` per
check of the rubric, in its order: the ones the grader judged, and for the others zero points
with the reason they did not run (the component is not provided; the submission could not be
loaded, timed out or crashed). Scores are clamped to ``[0, points]`` and the total is computed
in one place, ``Record.total``. Nothing in a record comes from the child but the values its
checks measured (see ``toolkit.grading.remote``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from toolkit.checks import Check, CheckStatus, Result, collect
from toolkit.components import COMPONENTS


class Status(StrEnum):
    """How grading a submission ended."""

    GRADED = "graded"  # every check of the rubric ran or was not provided
    LOAD_ERROR = "load_error"  # refused at intake, or its code could not be loaded
    TIMEOUT = "timeout"  # past its time (CPU time of its cgroup, or wall clock): checks not judged by then score 0
    CRASHED = "crashed"  # its process ended or broke the protocol: checks not judged by then score 0

    @property
    def word(self) -> str:
        """As a page says it: "load error"."""
        return self.value.replace("_", " ")


def rubric(components: tuple[str, ...] | list[str] = (), fast: bool = False) -> list[Check]:
    """The checks a grading runs, in order: every check of ``components`` (all when empty), hidden
    ones where this copy of the graders has them, behavioural ones unless ``fast``."""
    from toolkit.runner import hidden_available

    checks = collect(list(components) or None, include_hidden=hidden_available())
    return [c for c in checks if not (c.behavioural and fast)]


@dataclass
class Record:
    student: str
    status: Status
    results: list[Result]  # one per check of the rubric, in its order
    missing: list[str] = field(default_factory=list)  # components the submission does not provide
    error: str = ""  # one sentence when not graded
    seconds: float = 0.0
    sandbox: str = ""
    log: str = ""  # for the instructor only (summary.html): the child's last lines of stderr when it stopped
    starved: bool = False  # timed out while the submissions graded beside it held the CPU: graded again alone

    @classmethod
    def of(cls, student: str, checks: list[Check], judged: list[Result], status: Status, error: str = "",
           provided: list[str] | None = None, **kw) -> Record:
        """The record of ``checks``: the ``judged`` results, and every other check not run, with why.
        ``provided``: the components the submission provides (None: unknown, it was not loaded)."""
        by_name = {r.name: r for r in judged}
        missing = [] if provided is None else [c for c in dict.fromkeys(ch.component for ch in checks)
                                               if c not in provided]
        results = []
        for c in checks:
            if c.name in by_name:
                results.append(by_name[c.name])
            elif c.component in missing:
                hooks = ", ".join(COMPONENTS[c.component].hooks)
                results.append(Result.not_run(c, f"not provided: the submission has no {c.component} hooks ({hooks})"))
            else:
                results.append(Result.not_run(c, f"not graded: {error}" if error else "not run"))
        return cls(student, status, results, missing, error, **kw)

    @property
    def total(self) -> float:
        return round(sum(min(max(r.score, 0.0), r.points) for r in self.results), 4)

    @property
    def max_total(self) -> float:
        return round(sum(r.points for r in self.results), 4)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> Record:
        d = json.loads(text)
        results = [Result(**{**r, "status": CheckStatus(r["status"])}) for r in d.pop("results")]
        return cls(**{**d, "status": Status(d["status"]), "results": results})
