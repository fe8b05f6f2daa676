"""The toolkit as a regular install: its wheel, in a fresh venv, grading from another folder.

The rest of the suite runs the editable checkout, where every file is at hand; here a file
missing from the package (a snapshot, calibration.json, a shipped model, the Gradescope runner, a
solution the hidden checks compare with) would show. The wheel is built once
(``toolkit.gradescope.build_wheel``, the wheel ``toolkit gradescope`` zips), listed against the
checkout's files, and installed with the pinned versions into a venv without pip (this suite's
pip installs into it: ``pip --python``).

``toolkit run solutions/`` from the venv trains no more than the checkout's run: it uses the same
model cache (``TOOLKIT_CACHE``, else ``~/.cache/toolkit``), whose keys hash the code's text, not
its path, and the default configuration's base and chat models come with the wheel.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from toolkit.components import COMPONENTS
from toolkit.gradescope import copy_source
from toolkit.cache import default_cache_dir

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [name.rstrip("*") for name in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]]

@pytest.fixture(scope="module")
def autograder(tmp_path_factory) -> Path:
    """What Gradescope unpacks in /autograder/source from ``toolkit gradescope sampler.zip -c sampler``,
    under a folder that stands for /autograder (it holds source/; each test adds submission/ and results/)."""
    tmp = tmp_path_factory.mktemp("gradescope")
    out = subprocess.run([sys.executable, "-m", "toolkit.cli", "gradescope", tmp / "sampler.zip", "-c", "sampler"],
                         cwd=tmp, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(tmp / "sampler.zip") as zf:
        zf.extractall(tmp / "autograder" / "source")
    return tmp / "autograder"


@pytest.fixture(scope="module")
def wheel(autograder) -> Path:
    """The zip's wheel: the one this file installs, as the zip's setup.sh installs it on Gradescope."""
    return next((autograder / "source").glob("toolkit-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel) -> Path:
    """A fresh venv with the wheel and its pinned dependencies; its bin/ folder. Not under pytest's
    tmp_path, which only its owner may enter: a root grader's sandboxed child drops to another uid,
    and must reach the venv's Python and toolkit (as on Gradescope, in /autograder/venv)."""
    path = Path(tempfile.mkdtemp(prefix="toolkit-venv-"))
    path.chmod(0o755)
    venv.create(path, with_pip=False)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(path / "bin" / "python"), "install", "--quiet",
                    "--no-compile", "-c", str(ROOT / "constraints.txt"), str(wheel)], check=True)
    yield path / "bin"
    subprocess.run(["sh", "-c", 'rm -rf -- "$0" &', str(path)], check=True)  # 0.9 GB: a minute here, in the background


@pytest.fixture
def elsewhere(tmp_path) -> dict:
    """Keyword arguments of ``subprocess.run`` in a folder that is not the checkout, with no checkout on
    PYTHONPATH: the venv's copy of the toolkit is the only one it can import."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASSIGNMENT", "FAST")}
    return {"cwd": tmp_path, "env": env, "capture_output": True, "text": True}


def package_files() -> set[str]:
    """The checkout's files in the package folders: tracked, or new and not ignored (git's view)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *PACKAGES],
                            cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return {f for f in listed.stdout.splitlines() if (ROOT / f).is_file()}


def test_the_wheel_holds_every_file_of_the_packages_and_nothing_else(wheel):
    """Whatever grading reads ships: snapshots, calibration, the shipped models, the Gradescope runner,
    the source notebooks, the hidden checks and the solutions they compare with (this is the
    instructor's wheel; the student release leaves the last two out)."""
    files = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    expected = package_files()
    assert files == expected, f"missing: {sorted(expected - files)}; extra: {sorted(files - expected)}"
    assert {"graders/snapshots/calibration.json", "graders/gradescope/run_autograder", "graders/gradescope/setup.sh",
            "assignments/sampler/sampler.ipynb", "graders/hidden/checks.py", "solutions/sampler.py",
            "toolkit/data/capitals.tsv"} <= files
    assert any(f.startswith("toolkit/data/") and f.endswith(".pt") for f in files)


def test_the_sdist_holds_what_the_wheel_holds(wheel, tmp_path):
    """An sdist, built by setuptools as ``python -m build --sdist`` would, makes the same wheel."""
    source = copy_source(tmp_path / "source")
    built = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path / "dist")],
                           cwd=source, capture_output=True, text=True)
    if built.returncode != 0 and "No module named 'setuptools'" in built.stderr:
        pytest.skip("setuptools is not installed in this venv")
    assert built.returncode == 0, built.stderr[-2000:]
    with tarfile.open(tmp_path / "dist" / built.stdout.split()[-1]) as sdist:
        files = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n} <= files


@pytest.mark.slow
def test_the_installed_toolkit_grades_the_solutions_in_full(installed, elsewhere, tmp_path):
    """`toolkit run solutions/ --report DIR --json` from the venv, in two processes: every check passes
    (the lanes' training meets the calibrated figures), the report has every plot, and the shipped
    models are found in the venv: neither is trained into the cache (other models may be, by this run
    or by a test running beside it: only the shipped ones' names are looked for)."""
    where = subprocess.run([installed / "python", "-c", "import toolkit; print(toolkit.__file__)"], **elsewhere)
    assert where.stdout.startswith(str(installed.parent)), where.stdout + where.stderr
    shipped = {p.name for p in (ROOT / "toolkit" / "data").glob("*.pt")}  # the base model and the baseline's chat model
    assert {name.split("-")[0] for name in shipped} == {"base", "sft"}, shipped
    out = subprocess.run([installed / "toolkit", "run", ROOT / "solutions", "--report", tmp_path / "report", "--json",
                          "--processes", "2"], **elsewhere)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["passed"] and doc["score"] == doc["max_score"] > 0
    assert {r["component"] for r in doc["results"]} == set(COMPONENTS)
    assert doc["environment"]["threads"] == 2 and doc["environment"]["torch"].startswith("2.13.0")
    assert not shipped & {p.name for p in default_cache_dir().glob("*.pt")}
    behaviour = next(r for r in doc["results"] if r["name"] == "sft_mask.behaviour")["metrics"]
    assert behaviour["answer_seen"] >= 0.9 and behaviour["clarification"] >= 0.7
    assert behaviour["base_answer"] <= 0.3 and behaviour["base_top"] == "Continuation"
    report = tmp_path / "report"
    html = (report / "index.html").read_text()
    plots = ["tokenizer_lengths", "attention_heads", "attention_curve", "block_curve", "optimizer_gap", "sft_headline",
             "sft_all", "sft_signatures", "sft_loss", "reward_histogram", "rlhf_curves", "rlhf_headline", "sampler_dial"]
    assert html.count("data:image/png;base64,") == len(plots)
    assert all(f'data-plot="{name}"' in html for name in plots)  # every check's plot is embedded
    assert json.loads((report / "results.json").read_text())["score"] == doc["score"]
    assert (report / "sft_headline.png").stat().st_size > 10_000


def run_autograder(installed: Path, submission: Path, results: Path, elsewhere: dict, runner: Path | None = None,
                   **env: str) -> dict:
    """``runner`` (by default the installed package's graders/gradescope/run_autograder) on ``submission``,
    with the venv's Python; its results.json."""
    autograder = runner.parent.parent if runner else results.parent  # a zip's source/ is in it
    runner = runner or next(installed.parent.glob("lib/python*/site-packages/graders/gradescope/run_autograder"))
    env = {**elsewhere["env"], "AUTOGRADER": str(autograder), "PYTHON": str(installed / "python"),
           "SUBMISSION": str(submission), "RESULTS": str(results), **env}
    proc = subprocess.run(["bash", runner], **{**elsewhere, "env": env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((results / "results.json").read_text())


def full_marks(results: dict) -> bool:
    return results["score"] == sum(t["max_score"] for t in results["tests"]) > 0 and \
        all(t["status"] == "passed" for t in results["tests"])


def test_the_zip_holds_the_runner_its_setup_the_wheel_and_the_assignment(autograder):
    source = autograder / "source"
    assert sorted(p.name for p in source.iterdir()) == ["assignment", "constraints.txt", "run_autograder", "setup.sh",
                                                        "toolkit-0.1.0-py3-none-any.whl"]
    assert (source / "assignment").read_text() == "sampler\n"
    setup = (source / "setup.sh").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in setup  # documented, not run here


@pytest.mark.slow
def test_the_zips_runner_grades_its_assignment_in_full(autograder, installed, elsewhere, tmp_path):
    """The zip's run_autograder on the installed wheel reads the assignment from the zip (no ASSIGNMENT
    set) and grades the sampler only: solutions/sampler.py alone gets every sampler check, behavioural
    ones included, with full marks, and no other component's check; an empty file gets 0, every check
    "not graded" (FAST=1: the empty file loads nothing, so no check would run anyway)."""
    runner = autograder / "source" / "run_autograder"

    def grade(name: str, code: str, **env: str) -> dict:
        (tmp_path / name).mkdir()
        (tmp_path / name / "sampler.py").write_text(code)
        return run_autograder(installed, tmp_path / name, tmp_path / f"{name}-results", elsewhere, runner=runner, **env)

    solution = grade("solution", (ROOT / "solutions" / "sampler.py").read_text())
    assert full_marks(solution), solution["output"]
    names = [t["name"] for t in solution["tests"]]
    assert all(name.startswith("sampler.") for name in names) and "sampler.temperature_dial" in names
    assert "not provided" not in json.dumps(solution).lower()
    empty = grade("empty", "", FAST="1")
    assert empty["score"] == 0 and "no toolkit hooks found" in empty["output"]
    assert all(t["output"].startswith("not graded: ") for t in empty["tests"])


@pytest.mark.slow
def test_run_autograder_grades_the_whole_course(installed, elsewhere, tmp_path):
    """No assignment set: every component's unit checks (FAST=1), full marks for solutions/."""
    results = run_autograder(installed, ROOT / "solutions", tmp_path / "results", elsewhere, FAST="1")
    assert full_marks(results), results["output"]
    assert {t["name"].split(".")[0] for t in results["tests"]} == set(COMPONENTS)


@pytest.mark.slow
def test_a_submission_cannot_import_the_installed_solutions(installed, elsewhere, tmp_path):
    """The wheel holds the solutions that the hidden checks compare with, in site-packages: the sandboxed
    child must not reach them (``from solutions.sampler import toolkit_sample`` scores full marks)."""
    from toolkit.grading import sandbox

    if not sandbox.bwrap_works():
        pytest.skip("without bubblewrap a child can read every file (README, 'Grading untrusted code')")
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "sampler.py").write_text("from solutions.sampler import toolkit_sample  # noqa: F401\n")
    results = run_autograder(installed, tmp_path / "submission", tmp_path / "results", elsewhere, ASSIGNMENT="sampler",
                             FAST="1")
    assert results["score"] == 0 and "No module named 'solutions" in results["output"]  # 'solutions.sampler' too


@pytest.mark.slow
def test_toolkit_gradescope_needs_a_checkout(installed, elsewhere, tmp_path):
    """The installed toolkit cannot build its own wheel: one sentence, nothing written."""
    out = subprocess.run([installed / "toolkit", "gradescope", tmp_path / "a.zip"], **elsewhere)
    assert out.returncode == 2 and not (tmp_path / "a.zip").exists()
    assert out.stderr.strip().endswith("holds no pyproject.toml: the wheel is built from a checkout of the toolkit")
