"""``toolkit release OUT_DIR``: what students get, and a proof that it holds no solution.

The release is the toolkit with its baselines, the public checks and their snapshots, and
the student notebooks that real nbgrader makes from ``assignments/`` (solution regions
replaced by ``raise NotImplementedError()``, hidden tests removed). It leaves out
``solutions/``, ``graders/hidden/``, the Gradescope scripts and the tests. ``leaks`` scans a
release for any line of solution code; ``build_release`` refuses to finish if it finds one.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from toolkit import course, paths

REPO = paths.ROOT
COPIED = ["toolkit", "graders", "pyproject.toml", "constraints.txt"]
LEFT_OUT = ["graders/hidden/*.py", "graders/gradescope"]  # (hidden/__init__.py stays: an empty package)
SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)
HIDDEN_REGION = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)

README = """# toolkit: student release

Set up once (Python 3.11):

    python -m venv .venv && .venv/bin/pip install -c constraints.txt -e '.[course]'

Then open a notebook in `assignments/`, implement the cells that say `raise NotImplementedError()`,
and run its test cells; or grade a plugin from the command line:

    .venv/bin/toolkit run assignments/attention/attention.ipynb      # every check
    .venv/bin/toolkit run my_attention.py --fast                     # unit checks only, in seconds

This release has the public checks only; your instructor grades with hidden checks too.
"""


def build_release(out: str | Path) -> Path:
    """Write the student release to ``out`` (which must not exist or be empty); return it.

    It is made in a temporary folder and moved to ``out`` once complete and scanned: a failure
    (nbgrader missing or failing, a leak) leaves ``out`` as it was.
    """
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: not empty; give a new folder")
    if not (REPO / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{REPO} holds no pyproject.toml: the release is made from a checkout of the toolkit")
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / "release"
        copy_toolkit(release)
        for notebook in course.generate(course.setup(Path(tmp) / "course")):
            dest = release / "assignments" / notebook.parent.name / notebook.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(notebook, dest)
        (release / "README.md").write_text(README)
        found = leaks(release)
        if found:
            raise RuntimeError(f"the release would hold solution code, e.g. {found[0]}; nothing written")
        if out.exists():
            out.rmdir()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(release, out)
    return out


def copy_toolkit(release: Path) -> None:
    """The toolkit, its public graders and what installs it, without hidden checks or the Gradescope scripts."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = REPO / name
        shutil.copytree(src, release / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, release / name)
    for pattern in LEFT_OUT:
        for path in release.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def secret_lines() -> set[str]:
    """Lines of solution code and hidden checks that appear nowhere in the public code."""
    secret, public = [], []
    for path in paths.SOLUTIONS.glob("*.py"):
        secret += path.read_text().splitlines()
    for path in paths.HIDDEN.glob("*.py"):
        secret += path.read_text().splitlines()
    for path in paths.ASSIGNMENTS.glob("*/*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            regions = SOLUTION_REGION.findall(cell.source) + HIDDEN_REGION.findall(cell.source)
            secret += [line for region in regions for line in region.splitlines()]
            given = HIDDEN_REGION.sub("", SOLUTION_REGION.sub("", cell.source))  # what students see anyway
            public += given.splitlines()
    for path in [*paths.TOOLKIT.rglob("*.py"), *paths.GRADERS.glob("*.py")]:
        public += path.read_text().splitlines()
    public = {line.strip() for line in public}
    return {s for line in secret if len(s := line.strip()) >= 20 and s not in public and not s.startswith("#")}


def leaks(release: Path) -> list[str]:
    """'file: line' for every line of ``secret_lines`` found in a file of the release."""
    secret = secret_lines()
    found = []
    for path in sorted(p for p in release.rglob("*") if p.is_file() and p.suffix in (".py", ".ipynb", ".md", ".json")):
        text = path.read_text(errors="replace")
        if path.suffix == ".ipynb":
            text = "\n".join(cell.source for cell in nbformat.reads(text, as_version=4).cells)
        lines = {line.strip() for line in text.splitlines()}
        found += [f"{path.relative_to(release)}: {s}" for s in sorted(secret & lines)]
    return found
