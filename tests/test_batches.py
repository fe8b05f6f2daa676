"""Crash-safe batches (``toolkit.grading.store``) and grading through Dask (``--scheduler``)."""

import csv
import importlib.util
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"
STUDENTS = ["attn_einsum", "attn_no_mask", "attn_scale_by_hs", "attn_sdpa"]  # two correct, two wrong
OPTIONS = ["--fast", "-c", "attention", "--timeout", "60", "--workers", "1"]


def _class(folder: Path) -> Path:
    folder.mkdir()
    for s in STUDENTS:
        (folder / f"{s}.py").write_text((PLUGINS / f"{s}.py").read_text())
    return folder


def _grade(klass: Path, out: Path, **kw):
    cmd = [sys.executable, "-m", "toolkit.cli", "grade", str(klass), "--out", str(out), *OPTIONS]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _rows_in_store(out: Path) -> int:
    try:
        with sqlite3.connect(out / "results.sqlite", timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_batch_killed_half_way_resumes_without_losing_or_repeating(tmp_path):
    klass = _class(tmp_path / "class")
    out = tmp_path / "killed"
    proc = _grade(klass, out, start_new_session=True)
    deadline = time.monotonic() + 240
    while _rows_in_store(out) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    _, killed_stderr = proc.communicate()
    done = _rows_in_store(out)
    assert 1 <= done < len(STUDENTS), f"killed after {done} submissions (want 1 to {len(STUDENTS) - 1}): {killed_stderr[-2000:]}"

    again = _grade(klass, out)
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-3000:]
    m = re.search(r"grading (\d+) of (\d+) submissions \((\d+) already in", stderr)
    assert m and (int(m[1]), int(m[2]), int(m[3])) == (len(STUDENTS) - done, len(STUDENTS), done), stderr[-2000:]
    assert _rows_in_store(out) == len(STUDENTS)

    whole = _grade(klass, tmp_path / "whole")
    _, stderr = whole.communicate(timeout=600)
    assert whole.returncode == 0, stderr[-3000:]
    resumed, uninterrupted = (out / "grades.csv").read_text(), (tmp_path / "whole" / "grades.csv").read_text()
    assert resumed == uninterrupted

    rerun = _grade(klass, out)  # everything in the store: nothing graded again
    _, stderr = rerun.communicate(timeout=600)
    assert f"grading 0 of {len(STUDENTS)} submissions" in stderr


def test_a_changed_submission_is_graded_again(tmp_path):
    from toolkit.grading.batch import Options
    from toolkit.grading.intake import content_hash, inspect
    from toolkit.grading.record import Record, Status
    from toolkit.grading.store import Store, grader_version

    (tmp_path / "a.py").write_text("x = 1\n")
    before = content_hash(inspect("a", tmp_path / "a.py"))
    (tmp_path / "a.py").write_text("x = 2\n")
    assert content_hash(inspect("a", tmp_path / "a.py")) != before
    assert grader_version(Options(fast=True), "bwrap") != grader_version(Options(fast=False), "bwrap")
    store = Store(tmp_path / "results.sqlite")
    record = Record("a", Status.LOAD_ERROR, [], error="x")
    store.put("a", before, "v1", record)
    assert store.get("a", before, "v1") == record and store.get("a", before, "v2") is None


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed is not installed (.venv/bin/pip install -c constraints.txt -e '.[grid]')")
def test_grading_through_a_dask_cluster(tmp_path):
    from distributed import LocalCluster

    from toolkit.grading.batch import Options, grade_class
    from toolkit.grading.intake import find_submissions

    klass = tmp_path / "class"
    klass.mkdir()
    for s in ("attn_einsum", "attn_no_mask"):
        (klass / f"{s}.py").write_text((PLUGINS / f"{s}.py").read_text())
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, host="127.0.0.1", protocol="tcp://",
                      dashboard_address=":0") as cluster:
        records = grade_class(find_submissions(klass), tmp_path / "out", Options(True, ("attention",), 60), 2,
                              scheduler=cluster.scheduler_address)
    assert {s: r.status for s, r in records.items()} == {"attn_einsum": "graded", "attn_no_mask": "graded"}
    assert records["attn_einsum"].total == 9 and records["attn_no_mask"].total < 9
    with (tmp_path / "out" / "grades.csv").open() as f:
        assert [r["student"] for r in csv.DictReader(f)] == ["attn_einsum", "attn_no_mask"]
