"""``toolkit gradescope OUT_ZIP``: a ready Gradescope autograder, one assignment per zip.

Gradescope builds an image from the zip, running its ``setup.sh`` once, then runs its
``run_autograder`` on every submission. The zip holds:

- ``setup.sh`` and ``run_autograder``, from ``graders/gradescope/``;
- the toolkit's wheel with the instructor's graders (hidden checks, solutions, snapshots and
  the shipped models), which ``setup.sh`` installs;
- ``constraints.txt``: the version of every dependency;
- ``assignment``: the components ``run_autograder`` grades (empty: the whole course).

The wheel is built from a checkout, so this runs there, not from an installed toolkit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from toolkit.paths import GRADERS, ROOT

RUNNER = GRADERS / "gradescope"


def copy_source(dest: Path) -> Path:
    """Copy what the toolkit's wheel is built from to ``dest``: ``pyproject.toml``, its README and the
    package folders it includes. A build from the copy ships exactly the checkout's files: setuptools
    builds inside the source folder, and would ship the stale files an earlier build left in ``build/``."""
    if not (ROOT / "pyproject.toml").is_file():
        raise FileNotFoundError(f"{ROOT} holds no pyproject.toml: the wheel is built from a checkout of the toolkit")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in config["tool"]["setuptools"]["packages"]["find"]["include"]:
        shutil.copytree(ROOT / name.rstrip("*"), dest / name.rstrip("*"), ignore=ignore)
    for name in ("pyproject.toml", config["project"]["readme"]):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def build_wheel(folder: Path) -> Path:
    """Build the toolkit's wheel into ``folder`` with pip, as ``pip install .`` builds it; return it."""
    source = copy_source(folder / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder), str(source)],
                   check=True)
    shutil.rmtree(source)
    return next(folder.glob("toolkit-*.whl"))


def write_autograder(out: str | Path, components: list[str] | tuple[str, ...] = ()) -> Path:
    """Write the autograder zip for ``components`` (empty: the whole course) to ``out``; return it."""
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp))
        partial = Path(tmp) / "autograder.zip"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in (RUNNER / "setup.sh", RUNNER / "run_autograder", ROOT / "constraints.txt", wheel):
                zf.write(path, path.name)  # keeps the scripts' executable bits
            zf.writestr("assignment", " ".join(components) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(partial, out)  # complete or not there at all
    return out
