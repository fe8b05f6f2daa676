"""Where the toolkit's files are: every path of the checkout (or of site-packages) starts here.

``ROOT`` holds ``toolkit/`` and, beside it, the package of checks (``graders/``: its snapshots
and, in the instructor's copy, ``hidden/``), the instructor's ``solutions/`` and the nbgrader
``assignments/``. A student's release has no solutions, no assignments and no hidden checks.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout or site-packages
TOOLKIT = ROOT / "toolkit"
GRADERS = ROOT / "graders"  # the check package's folder (its module name: ``toolkit.components.CHECKS``)
SNAPSHOTS = GRADERS / "snapshots"  # what the public checks compare with, and calibration.json
HIDDEN = GRADERS / "hidden"  # the instructor's hidden checks
SOLUTIONS = ROOT / "solutions"
ASSIGNMENTS = ROOT / "assignments"


def solution(component: str) -> Path:
    """The instructor's solution of ``component``."""
    return SOLUTIONS / f"{component}.py"


def snapshot(name: str) -> Path:
    """The snapshot ``name`` (a component's, or ``calibration``)."""
    return SNAPSHOTS / f"{name}.json"


def notebook(component: str) -> Path:
    """The nbgrader source notebook of ``component``."""
    return ASSIGNMENTS / component / f"{component}.ipynb"
