"""The nbgrader driver: lay out a course directory, make the student notebooks, autograde them.

One assignment per component, its source notebook in ``assignments/<assignment>/`` (of a
checkout of this repository). Typical use::

    from toolkit import course
    root = course.setup("course")          # course/source/<assignment>/, course/nbgrader_config.py
    course.generate(root)                  # course/release/<assignment>/<assignment>.ipynb, every assignment
    # students' work goes to course/submitted/<student>/attention/attention.ipynb, then
    course.autograde(root, "attention")    # {"alice": {"attention.causal": 2.0, ...}, ...}

Every step is the real nbgrader (``python -m nbgrader ...`` in a subprocess, in the course
directory, with ``environment()``), so ``cd course && nbgrader autograde attention`` does
the same by hand. The autograded test cells call ``toolkit.notebook.grade``, which runs one
check and returns its points; nbgrader records them in ``<root>/gradebook.db``, under the ids
of ``gradebook_ids``, the same ``toolkit grade --gradebook`` writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from toolkit import paths

REPO = paths.ROOT
ASSIGNMENTS = paths.ASSIGNMENTS
TIMEOUT = 900  # seconds per cell: behavioural checks train models; nbgrader's default of 30 s would kill them

CONFIG = '''\
# Written by toolkit.course.setup.
from toolkit.course import sanitize_preprocessors

c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = {db_url!r}
# Behavioural checks pretrain and fine-tune models inside a test cell: minutes, not seconds.
c.ExecutePreprocessor.timeout = {timeout}
# Put hidden tests back without nbgrader's false alarm on each of them (see RestoreHiddenTests).
c.Autograde.sanitize_preprocessors = sanitize_preprocessors()
'''

def gradebook_ids(check: str) -> tuple[str, str, str]:
    """Where check ``<component>.<name>`` is scored in an nbgrader gradebook: (assignment, notebook,
    grade cell id) = ``(component, component, "<component>-<name>")``.

    The one rule of both ways to fill a gradebook: the course (an assignment per component, its
    notebook ``assignments/<component>/<component>.ipynb``, whose test cells carry these ids) and
    ``toolkit grade --gradebook`` (``toolkit.grading.exports.write_gradebook``). So one gradebook
    can hold students autograded from their notebooks and students graded from their plugins.
    """
    component, _, name = check.partition(".")
    return component, component, f"{component}-{name}"


def check_of(grade_id: str) -> str:
    """The check a grade cell id of ``gradebook_ids`` scores: ``"sft_mask-behaviour"`` -> ``"sft_mask.behaviour"``."""
    return grade_id.replace("-", ".", 1)


def assignments() -> list[str]:
    """The assignments: folders of ``assignments/`` that hold a notebook of their own name."""
    return sorted(p.parent.name for p in ASSIGNMENTS.glob("*/*.ipynb") if p.stem == p.parent.name)


def setup(root: str | Path, names: list[str] | None = None) -> Path:
    """Make ``root`` an nbgrader course directory: ``source/<name>/`` and ``nbgrader_config.py``."""
    root = Path(root).resolve()
    for name in names or assignments():
        shutil.copytree(ASSIGNMENTS / name, root / "source" / name, dirs_exist_ok=True)
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    (root / "nbgrader_config.py").write_text(CONFIG.format(root=str(root), db_url=db_url, timeout=TIMEOUT))
    return root


def environment() -> dict[str, str]:
    """The environment for nbgrader and its kernels.

    This interpreter's ``bin`` comes first on PATH (a new gradebook runs ``alembic``); this
    toolkit's folder is on PYTHONPATH, so that the kernels import the same ``toolkit`` and
    ``graders`` even when the toolkit is not installed.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    return env


def nbgrader(root: str | Path, *args: str) -> str:
    """Run ``nbgrader ARGS`` in the course directory; its log, or RuntimeError with the log."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=environment(),
                          capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or re.search(r"\| (ERROR|CRITICAL)\]", log):
        raise RuntimeError(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}):\n{log}")
    return log


def generate(root: str | Path, assignment: str = "*") -> list[Path]:
    """``nbgrader generate_assignment``: the student notebooks, ``release/<assignment>/*.ipynb``.

    Solutions and hidden tests are taken out. ``assignment`` may be a glob: ``"*"`` makes every
    assignment in one nbgrader run (each run spends seconds importing nbgrader).
    """
    nbgrader(root, "generate_assignment", assignment, "--force")
    return sorted(Path(root, "release").glob(f"{assignment}/*.ipynb"))


def autograde(root: str | Path, assignment: str, student: str = "*") -> dict[str, dict[str, float]]:
    """``nbgrader autograde`` ``submitted/<student>/<assignment>/``; student -> check -> points.

    ``student`` may be a glob: ``"*"`` grades every submission in one nbgrader run.
    """
    nbgrader(root, "autograde", assignment, "--student", student, "--force")
    graded = sorted(Path(root, "autograded").glob(f"{student}/{assignment}"))
    return {path.parent.name: scores(root, assignment, path.parent.name) for path in graded}


def scores(root: str | Path, assignment: str, student: str) -> dict[str, float]:
    """Points per check of a graded submission, read from ``<root>/gradebook.db`` (check name -> score)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(root).resolve() / 'gradebook.db'}") as gb:
        return {check_of(g.name): g.score for nb in gb.find_submission(assignment, student).notebooks
                for g in nb.grades}


# -- autograding without false alarms ----------------------------------------------------------
def released_source(source: str) -> str:
    """A cell's source as ``nbgrader generate_assignment`` releases it: the lines from
    ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` removed (as its ClearHiddenTests does)."""
    kept, hidden = [], False
    for line in source.split("\n"):
        if "BEGIN HIDDEN TESTS" in line:
            hidden = True
        elif "END HIDDEN TESTS" in line:
            hidden = False
        elif not hidden:
            kept.append(line)
    return "\n".join(kept)


def _restore_hidden_tests():
    """nbgrader's ``OverwriteCells``, which puts the instructor's version of every locked cell back
    before autograding, without its false alarm on hidden tests.

    ``generate_assignment`` records a test cell's checksum with its hidden tests, then releases it
    without them; so on autograding every such cell "has changed!" (jupyter/nbgrader#1961), for
    every student, and the warning that should flag a tampered cell flags them all. A cell that is
    exactly what was released gets its hidden tests back first, quietly; any other change to a
    locked cell is still reported and overwritten.
    """
    from nbgrader.api import MissingEntry
    from nbgrader.preprocessors import OverwriteCells

    class RestoreHiddenTests(OverwriteCells):
        def preprocess_cell(self, cell, resources, cell_index):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id is not None:
                try:
                    source = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
                except MissingEntry:
                    source = None
                if source is not None and source.locked and cell.source == released_source(source.source):
                    cell.source = source.source
            return super().preprocess_cell(cell, resources, cell_index)

    return RestoreHiddenTests


def sanitize_preprocessors() -> list[type]:
    """``nbgrader autograde``'s first preprocessors, ``OverwriteCells`` replaced by ``RestoreHiddenTests``."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import OverwriteCells

    default = Autograde.class_traits()["sanitize_preprocessors"].default()
    return [_restore_hidden_tests() if p is OverwriteCells else p for p in default]
