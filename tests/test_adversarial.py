"""Hostile submissions (``tests/hostile/``) graded in ONE batch with correct ones.

Every hostile one gets a clear reason and zero for what it broke, every correct one full
marks, the batch finishes and nothing leaks or is lost. (``tests/test_hostile.py`` grades the
submissions that attack the grader itself: forged results, paths, nesting, markup.) With bubblewrap (when it works here)
the children also see no network, no ``solutions/`` and no ``graders/hidden/``; without it the
file-system assertions that need it are skipped. About two minutes on two cores (the backstop ends
the sleepers after 75 s).
"""

import csv
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.grading import cgroup, sandbox
from toolkit.grading.batch import BACKSTOP

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "hostile"
CORRECT = ROOT / "tests" / "plugins" / "attn_einsum.py"
FULL = 3 + 2 + 1 + 1 + 2  # attention: public unit checks + hidden random_shapes
OPTIONS = ["--fast", "-c", "attention", "--timeout", "25", "--workers", "3", "--nproc", "64", "--memory-gb", "3"]
BWRAP = sandbox.bwrap_works()
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap is not installed or cannot create namespaces here")
PROCESSES_BOUNDED = BWRAP or os.geteuid() != 0  # RLIMIT_NPROC never applies to root
GRADER_ATTACKS = ("forge_", "escape_", "stop_", "exhaust_", "inject_")  # tests/test_hostile.py grades these
MACHINE_ATTACKS = sorted(f for f in HOSTILE.glob("*.py") if not f.name.startswith(GRADER_ATTACKS))

# what a child that spins, and one that sleeps or blocks, is told: with a cgroup, it ran out of CPU time,
# or was ended by the wall-clock backstop (3 times 25 s); without, it ran out of wall-clock time
WALL = "did not finish within 25 s of wall-clock time"
SPINS = "did not finish within 25 s of CPU time" if cgroup.mode() else WALL
WAITS = f"did not finish within {25 * BACKSTOP} s of wall-clock time" if cgroup.mode() else WALL
# student -> (status, reason fragment); "graded" ones list their expected total too
EXPECTED = {
    "infinite_loop": ("timeout", SPINS),
    "long_sleep": ("timeout", WAITS),
    "fork_bomb": ("timeout", "did not finish within"),  # its processes fork, fail and sleep: either clock
    "hook_never_returns": ("timeout", WAITS),
    "memory_bomb": ("load_error", "MemoryError"),
    "exit_at_import": ("load_error", "importing it raised SystemExit: 0"),
    "os_exit_in_hook": ("crashed", "exited with code 0 before grading ended"),
    "keyboard_interrupt": ("graded", "KeyboardInterrupt"),  # raised in forward: every check fails, nothing stops
    "segfault": ("crashed", "killed by SIGSEGV"),
    "fake_result": ("crashed", "the submission's process"),  # its garbage frame, or its exit, ends it
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    klass = tmp_path_factory.mktemp("class")
    for f in MACHINE_ATTACKS:
        if f.stem == "fork_bomb" and not PROCESSES_BOUNDED:
            continue  # as root without bubblewrap nothing bounds its processes: it would hit the whole machine
        shutil.copy(f, klass / f.name)
    shutil.copy(CORRECT, klass / "good_file.py")
    (klass / "good_folder").mkdir()
    shutil.copy(CORRECT, klass / "good_folder" / "attention.py")
    out = tmp_path_factory.mktemp("grades")
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "grade", str(klass), "--out", str(out), *OPTIONS],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    with (out / "grades.csv").open() as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return klass, out, proc, rows


def _reason(out: Path, student: str) -> str:
    return html.unescape((out / "feedback" / student / "index.html").read_text())


def test_there_are_at_least_15_hostile_submissions():
    assert len(MACHINE_ATTACKS) >= 15


def test_the_batch_finishes_and_loses_nothing(batch):
    klass, out, proc, rows = batch
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(rows) == sorted(p.stem for p in klass.iterdir())
    assert f"sandbox: {sandbox.mode()}" in proc.stderr


def test_correct_submissions_get_full_marks(batch):
    rows = batch[3]
    for student in ("good_file", "good_folder", "print_gigabytes", "side_effects"):
        assert rows[student]["status"] == "graded" and rows[student]["total"] == str(FULL), (student, rows[student])


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_each_hostile_gets_zero_and_a_reason(batch, student):
    out, rows = batch[1], batch[3]
    if student == "fork_bomb" and not PROCESSES_BOUNDED:
        pytest.skip("as root without bubblewrap nothing bounds a fork bomb's processes")
    status, reason = EXPECTED[student]
    assert rows[student]["status"] == status and rows[student]["total"] == "0", rows[student]
    assert reason in _reason(out, student)


def test_wrong_outputs_lose_the_checks_they_break(batch):
    rows = batch[3]
    for student in ("returns_nan", "wrong_shape", "wrong_dtype"):
        assert rows[student]["status"] == "graded"
        assert rows[student]["attention.matches_reference"] == "0" and rows[student]["attention.random_shapes"] == "0"
        assert float(rows[student]["total"]) <= 2


def test_monkeypatching_the_child_changes_no_verdict(batch):
    """It replaces torch.allclose, the checks and the runner in its own process: the checks run in
    the grader's, so it earns what its attention (no causal mask) earns: stable and written_out."""
    rows = batch[3]
    assert rows["monkeypatch"]["status"] == "graded" and rows["monkeypatch"]["total"] == "2", rows["monkeypatch"]
    assert rows["monkeypatch"]["attention.causal"] == "0"


@needs_bwrap
def test_no_network_no_solutions_no_hidden_checks_no_writes(batch):
    out, rows = batch[1], batch[3]
    assert rows["network"]["status"] == "load_error" and "Network is unreachable" in _reason(out, "network")
    assert rows["read_secrets"]["status"] == "load_error"
    assert "No such file or directory" in _reason(out, "read_secrets")
    assert rows["write_outside"]["status"] == "load_error" and "Read-only file system" in _reason(out, "write_outside")
    assert not (ROOT / "toolkit" / "pwned.py").exists() and not (batch[0] / "pwned.txt").exists()


def test_fallback_rlimits_only(tmp_path):
    """Without bubblewrap (forced): limits still hold, a fake result still earns nothing."""
    env = {**os.environ, "TOOLKIT_SANDBOX": "rlimits", "PYTHONPATH": str(ROOT)}
    script = (f"import json, sys\nfrom pathlib import Path\nfrom toolkit.grading.batch import Options, grade_one\n"
              f"from toolkit.grading.intake import inspect\n"
              f"o = Options(fast=True, components=('attention',), timeout=25, nproc=64, memory=3 << 30)\n"
              f"r = {{n: grade_one(inspect(n, Path(p)), o) for n, p in "
              f"[('good', {str(CORRECT)!r}), ('fake', {str(HOSTILE / 'fake_result.py')!r}), "
              f"('bomb', {str(HOSTILE / 'memory_bomb.py')!r})]}}\n"
              f"print(json.dumps({{n: dict(status=x.status, total=x.total, error=x.error, sandbox=x.sandbox) "
              f"for n, x in r.items()}}))\n")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "warning: bubblewrap" in proc.stderr
    assert {n: r["sandbox"] for n, r in records.items()} == {n: "rlimits only" for n in records}
    assert records["good"]["status"] == "graded" and records["good"]["total"] == FULL
    assert records["fake"]["status"] == "crashed"
    assert records["bomb"]["status"] == "load_error" and "MemoryError" in records["bomb"]["error"]
