"""The nbgrader assignments: the source notebooks, the student versions, and autograding them.

* Every source notebook in ``assignments/`` is a well-formed nbgrader notebook whose test
  cells call ``toolkit.notebook.grade`` once per public check, worth the check's points; its
  numbered headings run 1, 2, 3, ... and each hidden test cell comes after a card that says
  what it checks without showing the check.
* The real ``nbgrader generate_assignment`` (through ``toolkit.course``) takes every line of
  every solution out and leaves the test cells as they were.
* The source notebooks, solutions included, pass their own checks when executed in a
  kernel (tokenizer, attention, reward and sampler, the test cells of behavioural checks left out; the
  SFT notebook trains a model for a minute and is not executed here), and load as
  submissions with ``toolkit.plugins.load_submission``. No output of theirs names a path of
  this machine (the pipeline's log names the model it loaded, not where).
* End to end on attention (its fast checks): a correct and a wrong (unmasked) submission
  go through the real ``nbgrader autograde``, with no false alarm about the hidden tests'
  checksums, and the gradebook holds their points. The failed cell shows its reason once,
  with no traceback through the toolkit.
* One gradebook, two ways in: a student autograded by the course and another graded by
  ``toolkit grade --gradebook`` land under the same assignment, notebook and cell ids
  (``toolkit.course.gradebook_ids``).

Everything is written under pytest's temporary directories; the kernels are this
interpreter's (a ``python3`` kernelspec for ``sys.executable`` is put first on JUPYTER_PATH).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from toolkit import course, docs
from toolkit.checks import collect
from toolkit.components import COMPONENTS
from toolkit.plugins import load_submission, provided_components

ROOT = course.REPO

NAMES = list(COMPONENTS)
EXECUTED = [name for name in NAMES if name != "sft_mask"]  # sft_mask's behaviour cell trains for a minute or more
FAST = "attention_fast"  # an extra assignment: attention without its behavioural test cells
NOTEBOOKS = {name: course.ASSIGNMENTS / name / f"{name}.ipynb" for name in NAMES}
CHECKS = {c.name: c for c in collect(NAMES, include_hidden=True)}
TEST_CELL = 'from toolkit.notebook import grade\ngrade("{}", globals())'
HIDDEN_TEST_CELL = ('from toolkit.notebook import grade\n### BEGIN HIDDEN TESTS\n'
                    'grade("{}", globals())\n### END HIDDEN TESTS')
HIDDEN_CARD = "**Hidden check: published after the deadline**"
MACHINE = sorted({str(ROOT), str(Path.home()), sys.prefix, tempfile.gettempdir(), "/home/", "/work/", "/tmp/",
                  "/Users/", "site-packages"})
"""Where a path of this machine would show: none of these may appear in a notebook or its outputs."""


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def grading(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def grade_cells(nb) -> list:
    return [c for c in nb.cells if grading(c).get("grade") and not grading(c).get("solution")]


def answer_cells(nb) -> list:
    return [c for c in nb.cells if grading(c).get("solution")]


def solution_regions(source: str) -> list[list[str]]:
    """The lines between each ``### BEGIN SOLUTION`` and ``### END SOLUTION``."""
    regions, current = [], None
    for line in source.splitlines():
        if "### BEGIN SOLUTION" in line:
            current = []
        elif "### END SOLUTION" in line:
            regions.append(current)
            current = None
        elif current is not None:
            current.append(line)
    assert current is None, "a solution region is not closed"
    return regions


def check_cells(path) -> dict[str, tuple[str, float]]:
    """The test cells of a notebook that run a check (a released hidden one runs none): grade_id -> (check, points)."""
    return {grading(c)["grade_id"]: (check, float(grading(c)["points"])) for c in read(path).cells
            if (check := docs.checked_by(c))}


def check_of(cell) -> str:
    return re.search(r'grade\("([\w.]+)", globals\(\)\)', cell.source).group(1)


def output_text(nb) -> str:
    """Every text the notebook's code cells show: streams, values, errors' tracebacks (not images)."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts += [out.get("text", ""), *out.get("traceback", [])]
            texts += [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(t if isinstance(t, str) else "".join(t) for t in texts)


def machine_paths(text: str) -> list[str]:
    return [m for m in MACHINE if m in text]


def without_behavioural_tests(nb) -> nbformat.NotebookNode:
    """The notebook without the test cells of behavioural checks (they train models for minutes)."""
    slow = {c.id for c in grade_cells(nb) if CHECKS[check_of(c)].behavioural}
    nb.cells = [c for c in nb.cells if c.id not in slow]
    return nb


# -- the source notebooks, as committed ------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_source_notebook_is_a_clean_nbgrader_notebook(name):
    nb = read(NOTEBOOKS[name])
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    ids = [grading(c)["grade_id"] for c in nb.cells if grading(c)]
    assert len(ids) == len(set(ids)), "grade_id values must be unique"
    assert not machine_paths(NOTEBOOKS[name].read_text(encoding="utf-8"))
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {cell.id} is committed with outputs"
        if grading(cell):
            assert grading(cell)["schema_version"] == 3
            assert re.fullmatch(r"[\w-]+", grading(cell)["grade_id"])
    answers = answer_cells(nb)
    assert answers, "no autograded answer cell"
    for cell in answers:
        assert grading(cell)["grade"] is False and cell.cell_type == "code"
        assert solution_regions(cell.source), f"answer cell {cell.id} has no ### BEGIN SOLUTION region"
        assert "scaled_dot_product_attention" not in cell.source
    for cell in grade_cells(nb):
        assert grading(cell)["locked"] is True


@pytest.mark.parametrize("name", NAMES)
def test_one_test_cell_per_check_worth_its_points(name):
    cells = grade_cells(read(NOTEBOOKS[name]))
    named = [check_of(c) for c in cells]
    assert sorted(named) == sorted(set(named)), "a check has two test cells"
    missing = {n for n, c in CHECKS.items() if c.component == name} - set(named)  # hidden ones too
    assert not missing, f"checks without a test cell: {sorted(missing)}"
    for cell, check in zip(cells, named):
        assert check in CHECKS and CHECKS[check].component == name, f"{check} is not a check of {name}"
        assert grading(cell)["points"] == CHECKS[check].points, f"{check}: the cell's points differ from @check's"
        assert course.gradebook_ids(check) == (name, name, grading(cell)["grade_id"]), "ids: one rule for every path"
        assert cell.id == grading(cell)["grade_id"]
        template = HIDDEN_TEST_CELL if CHECKS[check].hidden else TEST_CELL
        assert cell.source == template.format(check)
    assert check_cells(NOTEBOOKS[name]) == {
        grading(c)["grade_id"]: (check, float(CHECKS[check].points)) for c, check in zip(cells, named)}


@pytest.mark.parametrize("path", sorted(course.ASSIGNMENTS.glob("**/*.ipynb")), ids=lambda p: p.stem)
def test_numbered_headings_run_in_order(path):
    """``## 1. ...``, ``## 2. ...``: every numbered heading of a notebook, in order, none skipped."""
    numbers, fenced = [], False
    for cell in read(path).cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            fenced ^= line.startswith("```")
            if not fenced and (m := re.match(r"#+ +(\d+)\. ", line)):
                numbers.append(int(m.group(1)))
    assert numbers and numbers == list(range(1, len(numbers) + 1)), f"numbered headings: {numbers}"


@pytest.mark.parametrize("name", NAMES)
def test_each_hidden_test_cell_comes_after_its_card(name):
    """The card says the cell is a hidden check, its points and what it checks, but not its name
    (``generate_assignment`` takes the name out of the cell; the card stays)."""
    cells = read(NOTEBOOKS[name]).cells
    hidden = [i for i, c in enumerate(cells) if "### BEGIN HIDDEN TESTS" in c.source]
    assert len(hidden) == sum(c.hidden and c.component == name for c in CHECKS.values())
    for i in hidden:
        card, check = cells[i - 1], CHECKS[check_of(cells[i])]
        assert card.cell_type == "markdown" and card.source.startswith(HIDDEN_CARD), f"no card before {check.name}"
        points = grading(cells[i])["points"]
        assert card.source.startswith(f"{HIDDEN_CARD} ({points:g} point{'s' * (points != 1)}). ")
        assert len(card.source) > len(HIDDEN_CARD) + 60, f"the card of {check.name} does not say what it checks"
        assert check.name not in card.source and check.name.split(".")[1] not in card.source


# -- nbgrader: the course directory and the student versions ---------------------------
@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory):
    """JUPYTER_PATH with a ``python3`` kernelspec for this interpreter, for every kernel below."""
    path = tmp_path_factory.mktemp("jupyter")
    spec = path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(path))
        yield path


@pytest.fixture(scope="module")
def released(tmp_path_factory, kernel_path):
    """A course directory in which one ``nbgrader generate_assignment`` run made every student version.

    It has one more assignment, ``attention_fast``: the attention notebook without the test cells of
    its behavioural checks (they train models for minutes), for the end-to-end autograding test.
    """
    root = course.setup(tmp_path_factory.mktemp("course"))
    fast = root / "source" / FAST / "attention.ipynb"
    fast.parent.mkdir()
    nbformat.write(without_behavioural_tests(read(NOTEBOOKS["attention"])), fast)
    made = course.generate(root)
    assert [p.relative_to(root / "release").as_posix() for p in made] == sorted(
        [f"{n}/{n}.ipynb" for n in NAMES] + [f"{FAST}/attention.ipynb"])
    return root


def test_hidden_tests_are_released_as_nbgrader_releases_them():
    """``course.released_source`` (what RestoreHiddenTests compares a submitted cell with) is what
    nbgrader's own ClearHiddenTests makes of every hidden test cell."""
    from nbgrader.preprocessors import ClearHiddenTests

    hidden = [c for name in NAMES for c in grade_cells(read(NOTEBOOKS[name])) if "HIDDEN TESTS" in c.source]
    assert len(hidden) == sum(c.hidden for c in CHECKS.values())
    for cell in hidden:
        released = nbformat.v4.new_code_cell(cell.source)
        assert ClearHiddenTests()._remove_hidden_test_region(released)
        assert course.released_source(cell.source) == released.source == "from toolkit.notebook import grade"


def test_course_directory_config(tmp_path):
    from nbgrader.converters.autograde import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import Execute, OverwriteCells
    from traitlets.config.loader import PyFileConfigLoader

    root = course.setup(tmp_path / "course", ["attention"])
    assert (root / "source" / "attention" / "attention.ipynb").read_bytes() == NOTEBOOKS["attention"].read_bytes()
    assert not (root / "source" / "tokenizer").exists()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    assert Execute(config=config).timeout == course.TIMEOUT >= 600  # not nbgrader's 30 s
    coursedir = CourseDirectory(config=config)
    assert coursedir.root == str(root)
    assert coursedir.db_url == f"sqlite:///{root / 'gradebook.db'}"
    sanitize = Autograde(config=config).sanitize_preprocessors
    assert OverwriteCells not in sanitize and [p.__name__ for p in sanitize if issubclass(p, OverwriteCells)] == [
        "RestoreHiddenTests"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_student_version_has_no_solution(released, name):
    source, student = read(NOTEBOOKS[name]), read(released / "release" / name / f"{name}.ipynb")
    solution_lines = {line.strip() for c in answer_cells(source) for region in solution_regions(c.source)
                      for line in region if line.strip()}
    for cell in student.cells:
        if cell.cell_type == "code":
            leaked = solution_lines & {line.strip() for line in cell.source.splitlines()}
            assert not leaked, f"cell {cell.id} of the student version shows solution lines: {sorted(leaked)}"
            assert "BEGIN SOLUTION" not in cell.source and "HIDDEN TESTS" not in cell.source
    stubs = {c.id: c.source.count("raise NotImplementedError()") for c in answer_cells(student)}
    assert stubs == {c.id: len(solution_regions(c.source)) for c in answer_cells(source)}
    # The test cells reach the students unchanged (hidden tests, if any, without their hidden part).
    assert [(c.id, c.source, grading(c)["points"]) for c in grade_cells(student)] == [
        (c.id, re.sub(r"\n### BEGIN HIDDEN TESTS.*### END HIDDEN TESTS", "", c.source, flags=re.S),
         grading(c)["points"]) for c in grade_cells(source)]
    hidden = {n for n, c in CHECKS.items() if c.component == name and c.hidden}
    assert not any(h in cell.source for cell in student.cells for h in hidden)
    points = check_cells(released / "release" / name / f"{name}.ipynb")
    assert {check: p for check, p in points.values()} == {
        n: c.points for n, c in CHECKS.items() if c.component == name and not c.hidden}


# -- the source notebooks run and pass ---------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_source_notebook_loads_as_a_submission(name):
    plugins = load_submission(NOTEBOOKS[name])
    assert provided_components(plugins) == {name: str(NOTEBOOKS[name])}
    assert not hasattr(plugins[0].module, "grade"), "the test cells ran while loading the submission"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXECUTED)
def test_source_notebook_passes_its_checks(name, tmp_path, kernel_path):
    """Executed in a kernel like a student would (behavioural checks, which train models, left out)."""
    from nbclient import NotebookClient

    nb = without_behavioural_tests(read(NOTEBOOKS[name]))
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nsys.prefix"))
    NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=course.environment())
    errors = [(c.id, o.ename, o.evalue) for c in nb.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert nb.cells[-1].outputs[0].data["text/plain"] == repr(sys.prefix), "the kernel is not this interpreter"
    nb.cells.pop()
    assert not machine_paths(output_text(nb)), "an output names a path of this machine"
    tests = grade_cells(nb)
    assert tests
    for cell in tests:
        check = check_of(cell)
        streams = [o for o in cell.outputs if o.output_type == "stream"]
        assert all(o.name == "stdout" for o in streams), f"{check} wrote to stderr: nbgrader would give 0"
        assert "".join(o.text for o in streams).startswith(f"PASSED {check}:")
        result = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert float(result[0].data["text/plain"]) == CHECKS[check].points  # nbgrader's partial-credit value


def test_a_test_cell_says_which_model_it_loaded_not_where(capsys):
    """The behavioural test cells (not executed here) load the base model that ships with the toolkit;
    the log ``grade`` gives their pipeline names the file, not its folder on this machine."""
    from toolkit.notebook import _log
    from toolkit.config import PipelineConfig
    from toolkit.pipeline import Pipeline
    from toolkit.plugins import Components

    Pipeline(Components(), PipelineConfig(), log=_log).base_model
    out = capsys.readouterr().out
    assert re.fullmatch(r"pretrain: loaded shipped with the toolkit base-\w+\.pt\n", out), out
    assert not machine_paths(out)


# -- end to end: nbgrader autograde, read back from the gradebook -------------------------
def submit(root, student: str, code: str) -> None:
    """``submitted/<student>/attention_fast/attention.ipynb``: the student version, ``code`` as the answer."""
    nb = read(root / "release" / FAST / "attention.ipynb")
    (answer,) = answer_cells(nb)
    answer.source = code
    path = root / "submitted" / student / FAST / "attention.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)


@pytest.mark.slow
def test_autograde_attention_end_to_end(released):
    from nbgrader.preprocessors import OverwriteCells

    (answer,) = answer_cells(read(NOTEBOOKS["attention"]))
    solution = "\n".join(ln for ln in answer.source.splitlines() if "### " not in ln)
    assert "masked_fill" in solution
    submit(released, "good", solution)
    submit(released, "bad", "\n".join(ln for ln in solution.splitlines() if "masked_fill" not in ln))

    log = course.nbgrader(released, "autograde", FAST, "--student", "*", "--force")
    assert "has changed" not in log  # the hidden test is put back without nbgrader's false alarm (RestoreHiddenTests)
    graded = {student: course.scores(released, FAST, student) for student in ("bad", "good")}

    full = dict(check_cells(released / "source" / FAST / "attention.ipynb").values())
    assert set(full) == {n for n, c in CHECKS.items() if c.component == "attention" and not c.behavioural}
    assert graded["good"] == full
    assert set(graded["bad"]) == set(full)
    assert graded["bad"]["attention.causal"] == 0
    assert sum(graded["bad"].values()) < sum(full.values())
    assert graded["bad"]["attention.written_out"] == full["attention.written_out"]  # the rest still earns its points

    # The failed cell: its reason once, as the error, with no traceback (the toolkit's frames are no help).
    bad = read(released / "autograded" / "bad" / FAST / "attention.ipynb")
    (error,) = [o for c in bad.cells if c.id == "attention-causal" for o in c.outputs if o.output_type == "error"]
    assert error.ename == "CheckNotPassed" and "future" in error.evalue, error.evalue
    assert error.traceback == [f"CheckNotPassed: {error.evalue}"]
    assert output_text(bad).count(error.evalue) == 1
    assert "FAILED attention.causal: 0/2 points" in output_text(bad) and "notebook.py" not in output_text(bad)
    good = read(released / "autograded" / "good" / FAST / "attention.ipynb")
    assert not machine_paths(output_text(bad) + output_text(good))

    # Why: nbgrader's own OverwriteCells says every hidden-test cell "has changed!" (jupyter/nbgrader#1961)
    quoted = "Attribute 'checksum' for cell attention-random_shapes has changed!"
    assert quoted in (course.ASSIGNMENTS / "README.md").read_text()
    plain = overwrite_warnings(OverwriteCells, released, "good")
    assert [m for m in plain if "has changed" in m] and all(m.startswith(quoted) for m in plain if "has changed" in m)
    restore = next(p for p in course.sanitize_preprocessors() if issubclass(p, OverwriteCells))
    assert overwrite_warnings(restore, released, "good") == []


def overwrite_warnings(preprocessor, root, student: str) -> list[str]:
    """What ``preprocessor`` (nbgrader's OverwriteCells or the course's) logs on ``student``'s notebook."""
    import logging

    messages = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    pp = preprocessor()
    pp.log.addHandler(handler)
    try:
        pp.preprocess(read(root / "submitted" / student / FAST / "attention.ipynb"),
                      {"nbgrader": {"notebook": "attention", "assignment": FAST, "db_url": f"sqlite:///{root / 'gradebook.db'}"}})
    finally:
        pp.log.removeHandler(handler)
    return messages


@pytest.mark.slow
def test_one_gradebook_holds_the_course_and_toolkit_grade(released, tmp_path):
    """ann hands in the sampler notebook and is autograded by the course; ben hands in a plugin (a
    top-k that keeps the first k ids) and is graded by ``toolkit grade --gradebook`` into the course's
    own gradebook. Both land under the same assignment, notebook and cell ids."""
    import subprocess

    from nbgrader.api import Gradebook

    source, nb = read(NOTEBOOKS["sampler"]), read(released / "release" / "sampler" / "sampler.ipynb")
    solutions = {grading(c)["grade_id"]: c.source for c in answer_cells(source)}
    for cell in answer_cells(nb):
        cell.source = "\n".join(ln for ln in solutions[grading(cell)["grade_id"]].splitlines() if "### " not in ln)
    path = released / "submitted" / "ann" / "sampler" / "sampler.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    ann = course.autograde(released, "sampler", "ann")["ann"]
    shown = output_text(read(released / "autograded" / "ann" / "sampler" / "sampler.ipynb"))
    assert "loaded shipped with the toolkit base-" in shown and not machine_paths(shown)  # the dial's models

    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "ben.py").write_text((ROOT / "tests" / "plugins" / "samp_topk_by_index.py").read_text())
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "grade", tmp_path / "class", "--out", tmp_path / "out",
                           "--fast", "-c", "sampler", "--timeout", "300", "--gradebook", released / "gradebook.db"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ben = course.scores(released, "sampler", "ben")

    checks = {n: c.points for n, c in CHECKS.items() if c.component == "sampler"}
    assert ann == checks  # every check, hidden one included, at full points
    assert set(ben) == set(checks) and ben["sampler.top_k"] == 0 and ben["sampler.top_p"] == checks["sampler.top_p"]
    with Gradebook(f"sqlite:///{released / 'gradebook.db'}") as gb:
        cells = {student: sorted(g.name for g in gb.find_submission_notebook("sampler", "sampler", student).grades)
                 for student in ("ann", "ben")}
        assert cells["ann"] == cells["ben"] == sorted(course.gradebook_ids(n)[2] for n in checks)
        assert gb.find_assignment("sampler").max_score == sum(checks.values())
