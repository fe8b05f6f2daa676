"""The instructor's grading wing: a class graded with student code in sandboxed children.

A student reading ``toolkit/`` learns from the pipeline and the checks; this package is what an
instructor runs (``toolkit grade``), and where a submission is treated as hostile:

- ``batch``: grade a class, each submission with ``grade_one``, then write its files;
- ``intake``: read a class folder and each submission without following links or trusting sizes;
- ``sandbox``: start a submission's child in bubblewrap, with resource limits and a watchdog;
- ``child``: the child, the only process that runs student code: it answers the grader's calls;
- ``wire``: what crosses the pipe: frames, the requests (``Op``), the caps on what an answer holds,
  and the grader's end of the pipe (``Channel``);
- ``remote``: the child as the checks see it: proxies that make its components look local;
- ``child_pipeline``: the grader's pipeline of a submission's component, whose every stage it builds itself;
- ``autograd``: the child's modules and hooks in the grader's autograd graph (their gradients
  asked of the child), so that the grader trains every model itself;
- ``record``: what grading one submission gives, built from the grader's rubric;
- ``store``: the records of a batch on disk, so that a stopped batch resumes;
- ``exports``: grades.csv, Gradescope's results.json, feedback pages, summary, gradebook;
- ``similarity``: pairs of near-identical code.
"""

import sys


class NotLinux(Exception):
    """The grading wing was started on another OS than Linux."""


def require_linux() -> None:
    """Raise NotLinux, with the sentence to show, unless this is Linux. Call it before importing the
    wing's modules: a submission's sandbox is Linux's (bubblewrap, ``resource`` limits), so elsewhere
    they do not even import. What students run (``toolkit run``, ``chat``, the notebooks) never needs
    this package."""
    if not sys.platform.startswith("linux"):
        name = {"darwin": "macOS", "win32": "Windows"}.get(sys.platform, sys.platform)
        raise NotLinux(f"toolkit grade runs on Linux only, not on {name}: it sandboxes each submission with "
                       "Linux's bubblewrap and resource limits (toolkit run works here)")
