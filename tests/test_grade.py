"""``toolkit grade``: a class of six submissions, each graded in its own subprocess.

The class: alice (correct attention, SFT mask and reward), bob (attention without the causal
mask, nothing else), carol (raises at import), dave (alice with renamed variables, new
comments and another layout), erin (sleeps forever at import, spending no CPU time: where
children have cgroups the wall-clock backstop ends it, after 3 times ``--timeout``) and frank
(kills its own process). It is graded twice with ``--fast`` and without the tokenizer, whose
checks are the slowest, by three workers: about 90 s of CPU in all, under two minutes on two
busy cores.
"""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.checks import CheckStatus, Result
from toolkit.cli import main
from toolkit.components import COMPONENTS
from toolkit.grading import cgroup, wire
from toolkit.grading.batch import BACKSTOP, Options, child_slots, why_gone
from toolkit.grading.exports import cell, to_gradescope
from toolkit.grading.intake import find_submissions, inspect
from toolkit.grading.record import Record, Status
from toolkit.grading.similarity import normalised_tokens, similarity, submission_code

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"
HOSTILE = ROOT / "tests" / "hostile"
HAS_NBGRADER = importlib.util.find_spec("nbgrader") is not None
OPTIONS = ["--fast", "--timeout", "30", "--workers", "3", "-c", "attention", "-c", "sft_mask", "-c", "reward"]
MAX_TOTAL = (7 + 2) + (3 + 2) + (4 + 1)  # attention, sft_mask, reward unit checks: (public + hidden)
ERIN = f"did not finish within {30 * BACKSTOP if cgroup.mode() else 30} s of wall-clock time"  # she sleeps


def _dave_attention() -> str:
    """alice's attention, renamed, re-commented and re-formatted: the same code to a grader's eye."""
    src = (PLUGINS / "attn_einsum.py").read_text()
    for old, new in [("EinsumAttention", "MyAttention"), ("scores", "att"), ("weights", "probs"),
                     ("allowed", "keep"), ("qkv", "proj"), ("hs", "head_size"), ('"""A correct', '"""My')]:
        src = src.replace(old, new)
    src = src.replace("probs = att.exp()", "# softmax, by hand\n        probs = att.exp()")
    return "# Homework 1, by dave\n" + src.replace("probs, v)", "probs,\n                         v)")


def _write_class(folder: Path) -> Path:
    for student in ("alice", "dave"):
        (folder / student).mkdir(parents=True)
        for name in ("sft_vectorised.py", "reward_gather.py"):
            (folder / student / name).write_text((PLUGINS / name).read_text())
    (folder / "alice" / "attention.py").write_text((PLUGINS / "attn_einsum.py").read_text())
    (folder / "dave" / "attention.py").write_text(_dave_attention())
    (folder / "bob.py").write_text((PLUGINS / "attn_no_mask.py").read_text())
    (folder / "carol.py").write_text("import toolkit\n\nraise RuntimeError('work in progress')\n")
    (folder / "erin.py").write_text("import time\n\nwhile True:\n    time.sleep(0.1)\n")
    (folder / "frank.py").write_text("import os\n\nos._exit(3)\n")
    (folder / ".hidden").mkdir()
    (folder / "notes.txt").write_text("not a submission\n")
    return folder


def toolkit_grade(submissions: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit.cli", "grade", str(submissions), "--out", str(out),
                           *OPTIONS, *extra], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def klass(tmp_path_factory) -> Path:
    return _write_class(tmp_path_factory.mktemp("class"))


@pytest.fixture(scope="module")
def graded(klass, tmp_path_factory):
    """The class graded once, with an nbgrader gradebook when nbgrader is installed: (out dir, process)."""
    out = tmp_path_factory.mktemp("grades")
    proc = toolkit_grade(klass, out, *(["--gradebook", str(out / "gradebook.db")] if HAS_NBGRADER else []))
    return out, proc


def _rows(out: Path) -> dict[str, dict]:
    with (out / "grades.csv").open() as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_batch_completes_with_exit_0_and_every_status(graded):
    out, proc = graded
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6 submissions: 3 graded, 1 load_error, 1 timeout, 1 crashed" in proc.stderr
    rows = _rows(out)
    assert list(rows) == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert {s: r["status"] for s, r in rows.items()} == {
        "alice": "graded", "bob": "graded", "carol": "load_error", "dave": "graded", "erin": "timeout", "frank": "crashed"}


def test_csv_scores_missing_components_and_totals(graded):
    rows = _rows(graded[0])
    alice, bob = rows["alice"], rows["bob"]
    assert list(alice)[1:5] == ["attention.matches_reference", "attention.causal", "attention.stable",
                                "attention.written_out"]
    assert alice["total"] == alice["max_total"] == str(MAX_TOTAL) and alice["missing"] == ""
    assert alice["attention.causal"] == "2" and alice["reward.loss_sanity"] == "2"
    assert bob["attention.causal"] == "0" and bob["attention.written_out"] == "1"
    assert bob["missing"] == "sft_mask reward" and bob["sft_mask.matches_reference"] == ""
    assert float(bob["total"]) < MAX_TOTAL
    for student in ("carol", "erin", "frank"):
        assert rows[student]["total"] == "0" and rows[student]["max_total"] == str(MAX_TOTAL)


def test_grading_twice_gives_a_byte_identical_csv(graded, klass, tmp_path):
    proc = toolkit_grade(klass, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "grades.csv").read_bytes() == (graded[0] / "grades.csv").read_bytes()


def test_gradescope_results(graded):
    out = graded[0]
    alice = json.loads((out / "gradescope" / "alice" / "results.json").read_text())
    assert alice["score"] == MAX_TOTAL and alice["visibility"] == "visible" and alice["stdout_visibility"] == "hidden"
    assert alice["execution_time"] > 0 and "output" in alice
    assert all(t["status"] == "passed" and t["score"] == t["max_score"] for t in alice["tests"])
    visibility = {t["name"]: t["visibility"] for t in alice["tests"]}
    assert visibility["attention.causal"] == "visible" and visibility["attention.random_shapes"] == "after_published"
    bob = {t["name"]: t for t in json.loads((out / "gradescope" / "bob" / "results.json").read_text())["tests"]}
    assert bob["attention.causal"]["status"] == "failed" and "mask" in bob["attention.causal"]["output"]
    assert bob["reward.loss_sanity"]["output"].startswith("not provided")
    erin = json.loads((out / "gradescope" / "erin" / "results.json").read_text())
    assert erin["score"] == 0 and ERIN in erin["output"]


def test_feedback_gives_the_reasons(graded):
    feedback = graded[0] / "feedback"
    bob = (feedback / "bob" / "index.html").read_text()
    assert "mask the scores of future positions" in bob and f"<b>2 / {MAX_TOTAL}</b>" in bob
    assert "not provided: the submission has no reward hooks" in bob
    assert "not graded: " in (feedback / "carol" / "index.html").read_text()
    assert "RuntimeError: work in progress" in (feedback / "carol" / "index.html").read_text()
    assert ERIN in (feedback / "erin" / "index.html").read_text()
    assert "exited with code 3" in (feedback / "frank" / "index.html").read_text()


def test_summary_flags_alice_and_dave_not_bob(graded):
    out = graded[0]
    page = (out / "summary.html").read_text()
    assert "data:image/png;base64," in page and (out / "summary.png").stat().st_size > 10_000
    similar = page.split("<h2>Similar submissions</h2>")[1].split("<h2>")[0]
    assert "<td>attention</td><td>alice</td><td>dave</td>" in similar
    assert "bob" not in similar
    assert "<code>attention.causal</code>" in page


@pytest.mark.skipif(not HAS_NBGRADER, reason="nbgrader is not installed")
def test_gradebook_scores_read_back(graded):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded[0] / 'gradebook.db'}") as gb:
        graded = ("attention", "sft_mask", "reward")  # an assignment per component, as the course has (toolkit.course)
        assert sum(gb.find_submission(a, "alice").score for a in graded) == MAX_TOTAL
        assert sum(gb.find_submission(a, "carol").score for a in graded) == 0
        assert gb.find_grade("attention-causal", "attention", "attention", "bob").score == 0
        assert gb.find_grade("attention-stable", "attention", "attention", "bob").score == 1
        assert sum(gb.find_assignment(a).max_score for a in graded) == MAX_TOTAL


def test_run_autograder_writes_gradescope_results(tmp_path):
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "attention.py").write_text((PLUGINS / "attn_no_mask.py").read_text())
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "FAST": "1",
           "SUBMISSION": str(tmp_path / "submission"), "RESULTS": str(tmp_path / "results")}
    proc = subprocess.run(["bash", str(ROOT / "graders" / "gradescope" / "run_autograder")], env=env,
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    causal = next(t for t in results["tests"] if t["name"] == "attention.causal")
    assert causal["status"] == "failed" and results["score"] == 2


# -- usage errors, in process --------------------------------------------------------------
def test_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["grade", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert missing.exit_code == 2 and "no such directory" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["grade", str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    assert empty.exit_code == 2 and "no submission" in empty.output
    help_ = runner.invoke(main, ["grade", "--help"])
    assert "0  the batch completed" in help_.output and "2  usage error" in help_.output


def test_find_submissions_names_students_and_skips_hidden_entries(tmp_path):
    _write_class(tmp_path)
    found = find_submissions(tmp_path)
    assert list(found) == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert found["alice"].files == ("attention.py", "reward_gather.py", "sft_vectorised.py")
    assert found["bob"].files == ("",) and not found["bob"].refused
    (tmp_path / "bob").mkdir()
    with pytest.raises(ValueError, match="two submissions for student 'bob'"):
        find_submissions(tmp_path)


# -- pure functions ------------------------------------------------------------------------
def test_children_that_train_get_a_pair_of_cores_each():
    """Two training children on 2 cores, with 2 torch threads each, both ran past a 600 s timeout
    that one alone meets in 93 s; --fast children (mostly import torch) gain from sharing."""
    full, fast = Options(), Options(fast=True)
    assert child_slots(2, full, cpus=2) == 1 and child_slots(4, full, cpus=1) == 1
    assert child_slots(4, full, cpus=8) == 4 and child_slots(8, full, cpus=8) == 4
    assert child_slots(2, fast, cpus=2) == 2


def _r(name, score, status, reason="", points=2, hidden=False):
    return Result(name, name.split(".")[0], points, score, CheckStatus(status), reason, name, hidden, 0.0)


def test_to_gradescope_one_test_per_check():
    record = Record("bob", Status.GRADED, [_r("attention.causal", 0.0, "failed", "mask the future"),
                                           _r("attention.secret", 0.5, "partial", "half", hidden=True),
                                           _r("reward.loss_sanity", 0.0, "not run", "not provided: no reward hooks")],
                    missing=["reward"], seconds=3.2)
    doc = to_gradescope(record)
    assert doc["score"] == 0.5 and doc["execution_time"] == 3.2
    assert doc["visibility"] == "visible" and doc["stdout_visibility"] == "hidden"
    assert "0.5 / 6 points" in doc["output"] and "Not provided: reward" in doc["output"]
    causal, secret, reward = doc["tests"]
    assert causal == {"name": "attention.causal", "number": "2.1", "score": 0.0, "max_score": 2, "status": "failed",
                      "output": "mask the future", "output_format": "text", "visibility": "visible"}
    assert secret["visibility"] == "after_published" and secret["score"] == 0.5 and secret["status"] == "failed"
    assert reward["number"] == f"{list(COMPONENTS).index('reward') + 1}.1" and reward["score"] == 0 and reward["output"].startswith("not provided")


def test_a_record_clamps_scores_and_says_why_checks_did_not_run():
    from toolkit.checks import collect

    checks = [c for c in collect(["attention", "reward"], include_hidden=False) if not c.behavioural]
    judged = [_r("attention.causal", 7.0, "passed"), _r("attention.stable", -3.0, "failed", points=1)]
    record = Record.of("x", checks, judged, Status.TIMEOUT, "did not finish within 15 s", provided=["attention"])
    assert [r.name for r in record.results] == [c.name for c in checks]
    assert record.total == 2  # 7 clamped to the check's 2 points, -3 to 0
    assert record.missing == ["reward"]
    reasons = {r.name: r.reason for r in record.results}
    assert reasons["attention.matches_reference"] == "not graded: did not finish within 15 s"
    assert reasons["reward.loss_sanity"].startswith("not provided")
    assert Record.from_json(record.to_json()) == record


def test_to_gradescope_for_a_submission_that_was_not_graded():
    from toolkit.checks import collect

    checks = [c for c in collect(["attention"], include_hidden=False) if not c.behavioural]
    record = Record.of("bob", checks, [], Status.LOAD_ERROR, "bob.py: importing it raised SyntaxError")
    doc = to_gradescope(record)
    assert doc["score"] == 0 and "SyntaxError" in doc["output"]
    assert all(t["score"] == 0 and "SyntaxError" in t["output"] for t in doc["tests"])


def test_why_a_child_stopped_answering():
    gone = "the submission's process ended"
    assert why_gone(gone, -11, None, 60, 1 << 29) == (Status.CRASHED, "the submission's process was killed by "
                                                                      "SIGSEGV before grading ended")
    assert why_gone(gone, 139, None, 60, 1 << 29)[1] == why_gone(gone, -11, None, 60, 1 << 29)[1]  # bwrap: 128 + 11
    wall, cpu = "did not finish within 15 s of wall-clock time", "did not finish within 15 s of CPU time"
    assert why_gone(gone, -9, "timeout", 15, 1 << 29) == (Status.TIMEOUT, wall)  # no cgroup: the wall clock
    assert why_gone(gone, -9, "cpu", 15, 1 << 29, cpu_clock=True) == (Status.TIMEOUT, cpu)
    assert why_gone(gone, -9, "scratch", 15, 512 << 20) == (Status.CRASHED, "wrote more than 512 MB of scratch files")
    sent = "the submission's process sent data nested more than 12 deep"
    assert why_gone(sent, 0, None, 15, 1 << 29) == (Status.CRASHED, sent)
    assert why_gone(wire.LATE, -9, None, 15, 1 << 29) == (Status.TIMEOUT, wall)
    late_call = f"{wire.CALL_LATE} (60 s left in its check) and did not stop"  # not the submission's 300 s
    assert why_gone(late_call, -9, None, 300, 1 << 29) == (Status.TIMEOUT, late_call)


def test_the_childs_stderr_is_for_the_instructor_only():
    from toolkit.grading.batch import last_lines

    assert last_lines("a\n\nb\n" + "x" * 500 + "\n", n=2) == "b\n" + "x" * 300
    assert last_lines("\x1b[2J\x1b]0;t\x07ok \u202egnp.exe\n\x00\n") == "[2J]0;tok gnp.exe"  # no escapes, nor empty lines


def test_csv_cells_never_run_as_formulas():
    assert cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [cell(x) for x in ("+1", "-1", "@SUM(A1)", "\tx", "alice")] == ["'+1", "'-1", "'@SUM(A1)", "'\tx", "alice"]


def test_similarity_ignores_names_comments_docstrings_and_layout():
    alice = (PLUGINS / "attn_einsum.py").read_text()
    assert similarity(alice, _dave_attention()) == 1.0
    assert similarity(alice, (PLUGINS / "attn_no_mask.py").read_text()) < 0.9
    assert normalised_tokens('"""doc"""\nx = f(1,  # one\n      "a")\n') == ["ID", "=", "ID", "(", "1", ",", "STR", ")", "\n"]
    assert normalised_tokens("def f(:\n") == []


def test_submission_code_splits_a_file_by_component_and_reads_notebooks(tmp_path):
    import nbformat

    both = (PLUGINS / "attn_einsum.py").read_text() + "\n" + (PLUGINS / "reward_gather.py").read_text()
    (tmp_path / "both.py").write_text(both)
    code = submission_code(inspect("both", tmp_path / "both.py"))
    assert set(code) == {"attention", "reward"}
    assert "class EinsumAttention" in code["attention"] and "EinsumAttention" not in code["reward"]
    cell = nbformat.v4.new_code_cell("%matplotlib inline\n" + (PLUGINS / "attn_einsum.py").read_text())
    nb = nbformat.v4.new_notebook(cells=[cell])
    nbformat.write(nb, tmp_path / "nb.ipynb")
    assert similarity(submission_code(inspect("nb", tmp_path / "nb.ipynb"))["attention"], code["attention"]) == 1.0


def test_a_grader_error_of_any_kind_is_that_students_record_not_the_batchs_end():
    """Grading one submission may raise anything, even a BaseException (the toolkit's own OutOfTime,
    SystemExit): the student gets a crashed record and the others are graded."""
    from concurrent.futures import ThreadPoolExecutor

    from toolkit.alarm import OutOfTime
    from toolkit.grading.batch import _as_completed

    def fails(error):
        raise error

    options = Options(components=("attention",), fast=True)
    with ThreadPoolExecutor(2) as pool:
        futures = {pool.submit(fails, OutOfTime()): "amy", pool.submit(fails, SystemExit(3)): "ben",
                   pool.submit(lambda: "a record"): "cat"}
        got = dict(_as_completed(futures, None, {}, options))
    assert got["cat"] == "a record"
    for student in ("amy", "ben"):
        assert got[student].status == Status.CRASHED and "the grader failed" in got[student].error


def test_a_submission_that_timed_out_starved_is_graded_again_alone(tmp_path, monkeypatch):
    """A timeout while the others held the CPU (``Record.starved``) is not recorded: the submission is
    graded again after the others, alone, and that grade is kept; a timeout it caused itself stays."""
    from toolkit.grading import batch

    for name in ("ann", "bob", "cid"):
        (tmp_path / "class" / name).mkdir(parents=True)
        (tmp_path / "class" / name / "x.py").write_text("x = 1\n")
    running, calls = set(), []

    def grade_one(sub, options, feedback=None, cpus=2):
        running.add(sub.student)
        calls.append((sub.student, sorted(running)))
        first = [s for s, _ in calls].count(sub.student) == 1
        status = Status.TIMEOUT if sub.student in ("bob", "cid") and first else Status.GRADED
        record = Record(sub.student, status, [], seconds=1.0)
        record.starved = status == Status.TIMEOUT and sub.student == "bob"  # cid timed out on its own
        running.discard(sub.student)
        return record

    monkeypatch.setattr(batch, "grade_one", grade_one)
    monkeypatch.setattr(batch, "_local_slots", lambda workers, options: workers)
    (tmp_path / "out").mkdir()
    records = batch.grade_submissions(find_submissions(tmp_path / "class"), tmp_path / "out", Options(fast=True), 2)
    assert {s: r.status for s, r in records.items()} == {"ann": "graded", "bob": "graded", "cid": "timeout"}
    assert [s for s, _ in calls].count("bob") == 2 and calls[-1] == ("bob", ["bob"])  # last, and alone
    assert [s for s, _ in calls].count("cid") == 1


@pytest.mark.parametrize("waited, cpu, slowed", [
    (10.0, 1.0, True),  # waited a quarter of its 20 s for a CPU, and got little of it: starved
    (0.2, 0.1, False),  # slept or hung on its own: no one else's doing
    (10.0, 15.0, False),  # spun on its own CPU time, waiting besides
    (None, 0.0, True),  # the kernel does not say: assume so
])
def test_slowed_by_others_needs_a_long_wait_for_the_cpu_and_little_cpu(waited, cpu, slowed):
    from types import SimpleNamespace

    from toolkit.grading.batch import slowed_by_others

    group = SimpleNamespace(waited=lambda: waited, cpu_seconds=lambda: cpu)
    assert slowed_by_others(group, timeout=20) is slowed


# -- the child's clock ------------------------------------------------------------------------
CPU_TIMEOUT = 10  # seconds: a correct attention's child spends about 3 s of CPU time (9 s of wall) under --fast
SLEEP = 12  # seconds its first hook call sleeps: past CPU_TIMEOUT, well within the backstop (30 s)


def _grade_in_process(students: dict[str, Path], cgroups: bool) -> subprocess.Popen:
    """``grade_one`` of each student at once (one CPU each, as two workers on 2 cores get), with
    ``--fast -c attention --timeout CPU_TIMEOUT``, in a process of its own (``TOOLKIT_CGROUP=off``
    unless ``cgroups``); it prints {student: [status, total, error]} as its last line."""
    script = ("import json, sys\nfrom concurrent.futures import ThreadPoolExecutor\nfrom pathlib import Path\n"
              "from toolkit.grading.batch import Options, grade_one\nfrom toolkit.grading.intake import inspect\n"
              f"o = Options(fast=True, components=('attention',), timeout={CPU_TIMEOUT}, nproc=64, memory=3 << 30)\n"
              f"students = {({s: str(p) for s, p in students.items()})!r}\n"
              "with ThreadPoolExecutor(len(students)) as pool:\n"
              "    futures = {s: pool.submit(grade_one, inspect(s, Path(p)), o, None, 1.0)\n"
              "               for s, p in students.items()}\n"
              "print(json.dumps({s: [f.result().status, f.result().total, f.result().error]\n"
              "                  for s, f in futures.items()}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({} if cgroups else {"TOOLKIT_CGROUP": "off"})}
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _records(proc: subprocess.Popen) -> dict[str, list]:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not cgroup.mode(), reason="no writable cgroup here: --timeout is wall-clock seconds")
def test_the_timeout_counts_the_childs_cpu_time_not_its_sleep(tmp_path):
    """With a cgroup, --timeout is CPU seconds of the child's processes: a correct attention that
    sleeps SLEEP s in its first hook call (past --timeout on the wall clock, spending no CPU) is graded
    in full, one that spins in forward times out with the CPU sentence; without a cgroup the sleeper
    times out on the wall clock, as before."""
    correct = (PLUGINS / "attn_einsum.py").read_text()
    sleeper = correct.replace("def toolkit_attention(config):\n", "def toolkit_attention(config):\n"
                              f"    if not SLEPT:\n        SLEPT.append(1)\n        time.sleep({SLEEP})\n")
    sleeper = f"import time\n\nSLEPT = []\n{sleeper}"
    assert sleeper != correct
    (tmp_path / "sleeper.py").write_text(sleeper)
    spinner = HOSTILE / "infinite_loop.py"  # forward spins forever
    with_cgroup = _grade_in_process({"sleeper": tmp_path / "sleeper.py", "spinner": spinner}, cgroups=True)
    without = _grade_in_process({"sleeper": tmp_path / "sleeper.py"}, cgroups=False)
    records, wall = _records(with_cgroup), _records(without)
    assert records["sleeper"] == ["graded", 9, ""], records  # attention's FULL
    assert records["spinner"] == ["timeout", 0, f"did not finish within {CPU_TIMEOUT} s of CPU time"], records
    assert wall["sleeper"] == ["timeout", 0, f"did not finish within {CPU_TIMEOUT} s of wall-clock time"], wall


def test_the_backstop_is_stated_where_the_timeout_is_set():
    """The CLI's help states the backstop's multiple (it does not import the grading code to say it)."""
    help_ = " ".join(CliRunner().invoke(main, ["grade", "--help"]).output.split())
    assert f"a wall-clock backstop of {BACKSTOP} times as many seconds" in help_
    assert why_gone(wire.LATE, -9, None, 20, 1 << 29, cpu_clock=True) == (
        Status.TIMEOUT, f"did not finish within {BACKSTOP * 20} s of wall-clock time ({BACKSTOP} times its 20 s of "
                        "CPU time): it slept or waited")
