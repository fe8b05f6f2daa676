"""Check definitions, one module per component; snapshots in ``snapshots/``.

Public checks (this folder) ship to students and compare against snapshots recorded from
the instructor's solutions. Hidden checks live in ``hidden/`` and never ship.
"""

import importlib


def instructor_seed(name: str, public: int) -> int:
    """The instructor's seed ``name`` of ``graders.hidden``, which a student's copy of the graders lacks
    (so no submission can know what it draws; the same on every run, as grading is), else ``public``."""
    return getattr(_hidden(), name, public)


def seeds_are_public() -> bool:
    """True in a student's copy of the graders (``graders.hidden`` empty or absent): the held-out text
    and the unit checks' contexts are drawn from public seeds, and the instructor's grading draws its own."""
    hidden = _hidden()
    return hidden is None or not any(name.endswith("_SEED") for name in vars(hidden))


def _hidden():
    """The instructor's ``graders.hidden``, or None in a copy without it."""
    try:
        return importlib.import_module("graders.hidden")
    except ImportError:
        return None
