"""The student's side runs where POSIX does not: ``toolkit run``, ``--report``, ``toolkit chat`` and a
notebook's test cells, without ``fcntl``, ``resource``, ``signal.SIGALRM`` or ``os.O_NOFOLLOW``.

We have no Windows machine, so each test runs the toolkit in a subprocess that imitates one: a
``sitecustomize.py`` (``SIMULATION``), in a folder put first on PYTHONPATH, runs in every interpreter
started with that environment (``toolkit run``'s spawned second lane too) and takes away what
Windows lacks, before the toolkit is imported:

- ``fcntl``, ``resource``, ``termios``, ``pwd`` and ``grp`` cannot be imported;
- ``signal.SIGALRM``, ``SIGKILL``, ``alarm``, ``setitimer``, ``getitimer``, ``pause`` and the
  ``ITIMER_*`` are gone;
- ``os.O_NOFOLLOW``, ``O_DIRECTORY``, ``fork``, ``setsid``, ``killpg``, ``setpgrp``, ``getuid``,
  ``geteuid``, ``setuid``, ``setgid``, ``setgroups``, ``lchown`` and ``fchmod`` are gone;
- ``sys.platform`` is ``"win32"`` in the process the test starts.

What this cannot imitate: the libraries (torch, click, filelock, matplotlib, multiprocessing, ...)
choose their Windows code by ``sys.platform``, and ``msvcrt`` and ``_winapi`` do not exist here. So
they are imported before the patches and run their Linux code (their maintainers test the Windows
one): filelock its ``flock`` lock, which also needs ``os.O_NONBLOCK`` (kept; the toolkit only reads it
with ``getattr``, and one test takes it away); multiprocessing its Linux start-up of a lane, which reads
``sys.platform`` as it runs (kept Linux's in that test and in the lane). ``os.name``, path separators
and Windows' file semantics stay Linux's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import pytest

from toolkit.checks import collect
from toolkit.components import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]

SIMULATION = '''
import os, signal, sys

win32 = os.environ.pop("SIMULATE_WIN32", "")  # popped: spawned children keep Linux's platform
# the libraries, imported as this OS has them (on Windows they pick their Windows code themselves)
import filelock
if win32:
    import click, nbformat, pluggy, torch
    import matplotlib.backends.backend_agg, matplotlib.figure, rich.console, rich.table

for name in ("fcntl", "resource", "termios", "pwd", "grp"):
    sys.modules[name] = None  # import fails
for name in ("SIGALRM", "SIGKILL", "alarm", "setitimer", "getitimer", "pause", "ITIMER_REAL", "ITIMER_VIRTUAL",
             "ITIMER_PROF"):
    delattr(signal, name)
for name in ("O_NOFOLLOW", "O_DIRECTORY", "fork", "setsid", "killpg", "setpgrp", "getuid", "geteuid", "setuid",
             "setgid", "setgroups", "lchown", "fchmod"):
    delattr(os, name)
if win32:
    sys.platform = "win32"
'''


def simulated(tmp_path: Path, *argv, input: str | None = None, win32: bool = True) -> subprocess.CompletedProcess:
    """``python ARGV`` in the repository, in an interpreter without POSIX (``SIMULATION``); ``win32``
    False: ``sys.platform`` stays this one's."""
    site = tmp_path / "simulation"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SIMULATION)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
           "SIMULATE_WIN32": "1" if win32 else ""}
    return subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True,
                          input=input, timeout=300)


def toolkit(*args) -> subprocess.CompletedProcess:
    """``toolkit ARGS`` as it runs here."""
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def scores(stdout: str) -> dict[str, float]:
    return {r["name"]: r["score"] for r in json.loads(stdout)["results"]}


def test_run_with_report_gives_full_marks_without_posix(tmp_path):
    """``toolkit run solutions/ --fast --report OUT --json`` without POSIX: no traceback, full marks, a
    report page, and every check's score the same as on Linux (``tokenizer.speed`` runs under the time limit)."""
    out = simulated(tmp_path, "-m", "toolkit.cli", "run", "solutions/", "--fast", "--report", tmp_path / "report",
                    "--json")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["score"] == run["max_score"] > 0
    assert (tmp_path / "report" / "index.html").read_text().startswith("<!doctype html>")
    linux = toolkit("run", "solutions/", "--fast", "--json")
    assert scores(out.stdout) == scores(linux.stdout)


def test_the_second_lane_runs_without_posix(tmp_path):
    """``toolkit run``'s two lanes (the second a process started by multiprocessing's spawn, which gets
    the simulation from ``sitecustomize`` too) give the solution's unit checks full marks. Here
    ``sys.platform`` stays Linux's: multiprocessing's Linux code, which starts the lane, reads it as it runs."""
    script = textwrap.dedent("""
        import json
        from toolkit.components import COMPONENTS
        from toolkit.config import PipelineConfig
        from toolkit.runner import SECOND_LANE, Job, in_lanes

        job = Job("solutions", PipelineConfig(), None, None, include_hidden=True, behavioural=False)
        results = in_lanes([[c for c in COMPONENTS if c not in SECOND_LANE], list(SECOND_LANE)], job, lambda m: None)
        print(json.dumps({r.name: [r.score, r.points] for r in results}))
        """)
    out = simulated(tmp_path, "-c", script, win32=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    results = json.loads(out.stdout)
    assert {name.split(".")[0] for name in results} == set(COMPONENTS)
    assert all(score == points for score, points in results.values()), results


def test_a_notebooks_test_cells_pass_without_posix(tmp_path):
    """The tokenizer notebook's code cells, run in order as a kernel would (the behavioural test cell,
    which trains a model, left out): every test cell's ``toolkit.notebook.grade`` prints PASSED, the
    time-limited ``tokenizer.speed`` included, and none raises."""
    behavioural = {c.name for c in collect(["tokenizer"], include_hidden=True) if c.behavioural}
    nb = nbformat.read(ROOT / "assignments" / "tokenizer" / "tokenizer.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and not any(f'"{b}"' in c.source for b in behavioural)]
    tests = [c.split('grade("')[1].split('"')[0] for c in cells if "grade(" in c]
    assert "tokenizer.speed" in tests
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    script = textwrap.dedent("""
        import json, sys
        namespace = {"__name__": "__main__"}  # a kernel's: the cells' globals()
        for i, cell in enumerate(json.load(open(sys.argv[1]))):
            exec(compile(cell, f"<cell {i}>", "exec"), namespace)
        """)
    out = simulated(tmp_path, "-c", script, tmp_path / "cells.json")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    for check in tests:
        assert f"PASSED {check}:" in out.stdout, out.stdout


def test_chat_answers_without_posix(tmp_path):
    """``toolkit chat`` with the solution's sampler, at temperature 0, answers one question from stdin.
    (``solutions/sampler.py``: its chat model ships with the toolkit and loads in seconds; the whole
    ``solutions/`` has its own mask, whose chat model a cold cache trains for minutes: tests/test_cli.py.)"""
    out = simulated(tmp_path, "-m", "toolkit.cli", "chat", "solutions/sampler.py", "-t", "0",
                    input="What is the capital of France ?\n")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.strip() == "The capital of France is Paris ."


ENDLESS_TOKENIZER = '''
"""The solution's tokenizer, but training a 600-token vocabulary (the speed check's) never ends."""
import toolkit
from solutions.tokenizer import BPETokenizer


class Endless(BPETokenizer):
    def train(self, text, vocab_size):
        while vocab_size == 600:
            pass
        return super().train(text, vocab_size)


@toolkit.hookimpl
def toolkit_tokenizer():
    return Endless()
'''


def test_the_time_limit_stops_an_endless_training_without_signals(tmp_path):
    """Without SIGALRM, a training that never returns fails ``tokenizer.speed`` with a time-limit reason
    (its limit set to 1 s here), and the tokenizer's other checks still run and pass."""
    (tmp_path / "endless.py").write_text(ENDLESS_TOKENIZER)
    script = textwrap.dedent("""
        import sys
        import graders.tokenizer
        from toolkit.cli import main

        graders.tokenizer.TIME_LIMIT = 1.0
        main(sys.argv[1:], prog_name="toolkit")
        """)
    out = simulated(tmp_path, "-c", script, "run", tmp_path / "endless.py", "--fast", "--json")
    assert "Traceback" not in out.stderr, out.stderr
    results = {r["name"]: r for r in json.loads(out.stdout)["results"]}
    assert results["tokenizer.speed"]["status"] == "failed"
    assert "did not finish within 1 s" in results["tokenizer.speed"]["reason"]
    others = [r for name, r in results.items() if name != "tokenizer.speed"]
    assert others and all(r["status"] == "passed" for r in others), others


def test_the_simulation_lacks_posix_and_a_plot_is_read_without_it(tmp_path):
    """The simulated interpreter lacks what the other tests claim it lacks; and there, with
    ``os.O_NONBLOCK`` taken away too, ``toolkit.report.read_plot`` reads a plot and still refuses a
    link to one (by an lstat, where ``O_NOFOLLOW`` is missing)."""
    (tmp_path / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp_path / "link.png").symlink_to(tmp_path / "plot.png")
    script = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        print(sys.platform, [m for m in ("fcntl", "resource", "termios") if sys.modules.get(m, 0) is not None],
              [n for n in ("SIGALRM", "setitimer", "alarm") if hasattr(signal, n)],
              [n for n in ("O_NOFOLLOW", "fork", "setsid", "killpg") if hasattr(os, n)])
        del os.O_NONBLOCK
        from toolkit.report import read_plot
        folder = Path(sys.argv[1])
        print(read_plot(folder, "plot.png") == (folder / "plot.png").read_bytes(), read_plot(folder, "link.png"))
        """)
    out = simulated(tmp_path, "-c", script, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["win32 [] [] []", "True None"]


def test_grade_says_in_one_sentence_that_it_needs_linux(tmp_path):
    """``toolkit grade`` elsewhere than on Linux: exit 2 and one sentence that says Linux, not a traceback."""
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "amy.py").write_text((ROOT / "solutions" / "attention.py").read_text())
    out = simulated(tmp_path, "-m", "toolkit.cli", "grade", tmp_path / "class", "--out", tmp_path / "grades")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: toolkit grade runs on Linux only, not on Windows: it sandboxes each submission with Linux's "
        "bubblewrap and resource limits (toolkit run works here)"]
    assert not (tmp_path / "grades").exists()


# -- the time limit itself --------------------------------------------------------------------
ALARM_CASES = {  # what the time limit without signals must do, each run in a simulated interpreter
    "stops a pure Python loop within twice its limit": """
t0 = time.monotonic()
try:
    with alarm(1.0):
        spin()
except OutOfTime:
    assert 1.0 <= time.monotonic() - t0 < 2.0, time.monotonic() - t0
else:
    raise AssertionError("not stopped")
""",
    "raises nothing after a block that ended, even one that ends as its limit passes (100 times)": """
with alarm(0.2):
    pass
spin(0.4)
for _ in range(100):
    try:
        with alarm(0.002):
            spin(0.002)
    except OutOfTime:
        pass
    spin(0.005)
""",
    "works in a thread that is not the main one (a notebook kernel's)": """
caught = []
def check():
    try:
        with alarm(0.3):
            spin()
    except OutOfTime:
        caught.append(True)
thread = threading.Thread(target=check)
thread.start()
thread.join(5)
assert caught == [True], caught
""",
}


@pytest.mark.parametrize("case", list(ALARM_CASES))
def test_alarm_without_signals(case, tmp_path):
    """``alarm`` where there is no SIGALRM (Windows) raises OutOfTime into the block's thread from a
    watchdog thread. Run in an interpreter of its own: an exception raised into a thread is the kind of
    state a test must not leave in the suite's process."""
    script = textwrap.dedent("""
        import threading, time
        from toolkit.alarm import OutOfTime, alarm

        def spin(seconds=60.0):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
    """) + ALARM_CASES[case] + "\nprint('ok')\n"
    out = simulated(tmp_path, "-c", script)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# -- the cache lock ---------------------------------------------------------------------------
def test_two_threads_needing_one_model_take_turns(tmp_path):
    """The cache's file lock (filelock, on every OS): of two pipelines that need the same model at once,
    one trains it and saves it, the other waits for it and loads it."""
    import torch

    from toolkit.pipeline import Pipeline

    trainings, logs = [], []

    def train():
        trainings.append(1)
        time.sleep(0.5)  # the other thread reaches the lock meanwhile
        return [1.0]

    def need_model():
        Pipeline(cache_dir=tmp_path, log=logs.append)._train_or_load(torch.nn.Linear(2, 2), "pretrain", "base-test",
                                                                      train, "training")

    threads = [threading.Thread(target=need_model) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(trainings) == 1
    assert sum("loaded from cache" in m for m in logs) == 1
