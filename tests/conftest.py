"""Put the repository root on sys.path, so that tests can ``import toolkit`` and ``import solutions``.

``make test`` runs three test files at a time (pytest-xdist, ``-n 3 --dist loadfile``): many tests
wait on the children of a class grading, so a third file keeps 2 cores busy (13 min against 14:48 warm
with two). While one trains, the others' torch threads must sleep rather than spin, or pools on 2 cores
train 3.7x slower. OpenMP's passive wait policy (read when torch is first imported) changes no result.
"""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
BOXES = pytest.StashKey[set]()  # the grading boxes in TMPDIR when the suite started
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _boxes() -> set:
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("toolkit-grade-*"))


def pytest_sessionstart(session):
    session.config.stash[BOXES] = _boxes()


def pytest_sessionfinish(session, exitstatus):
    """The suite leaves no grading box in TMPDIR, even where a test kills a grader with kill -9
    (the next grader sweeps it: ``toolkit.grading.sandbox.sweep_boxes``). Checked once, after every
    worker has finished; a box whose grader still runs (another suite's, beside this one) is not ours."""
    if hasattr(session.config, "workerinput"):
        return
    from toolkit.grading.sandbox import stale

    left = sorted(str(p) for p in _boxes() - session.config.stash[BOXES] if stale(p))
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(f"error: the suite left {len(left)} grading box(es) behind: {', '.join(left)}", red=True)
        session.exitstatus = 1
