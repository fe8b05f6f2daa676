"""Throughput of ``toolkit grade`` and the cost of its sandbox, measured in one run (issue 8).

    python -u benchmarks/grading.py [--students 8] [--repeats 3] [--full] [--dask]
                                    [--out benchmarks/results/grading.json]

The class is ``--students`` copies of the instructor's solutions (``solutions/``, one sub-folder
per student), graded with ``--fast`` (unit checks only, so the figures are about the grading
machinery; ``--full`` adds the behavioural checks, which train models). Every run is a whole
``toolkit grade`` command with a fresh ``--out`` (the results store would otherwise skip
everything); the configurations take turns in each repeat, and the figures are medians over
``--repeats``:

- ``subs_per_min``: submissions per minute of wall-clock time, with ``--workers 1`` and
  ``--workers 2`` (and ``--scheduler local --workers 2`` with ``--dask``), bubblewrap sandbox;
  ``speedup_2_over_1`` is their ratio (2.0 would be perfect on two free cores).
- ``s_per_submission``: wall-clock seconds / students with ``--workers 1``, with bubblewrap and
  with ``TOOLKIT_SANDBOX=rlimits`` (plain subprocess with resource limits);
  ``sandbox_overhead_s`` is the difference, ``sandbox_ratio`` bwrap / rlimits.
- ``child_s``: median seconds one submission took in ``grade_one`` (copying it into its box,
  starting the child, every check judged in the grader over the pipe), from ``results.sqlite``;
  ``parent_s`` (``--workers 1``): wall-clock minus the sum of those, i.e. what ``toolkit grade``
  pays once (interpreter and torch start-up, rubric, outputs, summary with its similarity pairs).
- ``checks_in_process_s`` and ``checks_over_pipe_s``: the checks' own seconds for one submission
  (the sum of every result's ``seconds``, start-up excluded), run in one process by ``toolkit run
  --json`` and judged in the grader over the pipe by ``toolkit grade``; ``pipe_overhead_s`` is
  their difference: what "the child answers, the grader computes and judges" costs per submission.

It exits 1 if a run fails or its ``grades.csv`` does not have every student ``graded``.
These machines are shared: quote the medians of one run on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.grading import sandbox  # noqa: E402  (stdlib only: no torch in this process)


class GradingFailed(Exception):
    pass


def make_class(folder: Path, students: int) -> Path:
    """``students`` sub-folders, each a copy of solutions/*.py."""
    for i in range(students):
        shutil.copytree(ROOT / "solutions", folder / f"student{i:02d}", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def grade(klass: Path, out: Path, students: int, args: list[str], env: dict) -> dict:
    """One ``toolkit grade`` run: wall-clock seconds, each submission's ``run_one`` seconds, the sandbox modes."""
    cmd = [sys.executable, "-m", "toolkit.cli", "grade", str(klass), "--out", str(out), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise GradingFailed(f"exit {proc.returncode}: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    with (out / "grades.csv").open() as f:
        statuses = {row["student"]: row["status"] for row in csv.DictReader(f)}
    if len(statuses) != students or set(statuses.values()) != {"graded"}:
        raise GradingFailed(f"{out / 'grades.csv'}: {len(statuses)} of {students} rows, statuses {statuses}")
    with sqlite3.connect(out / "results.sqlite") as db:
        records = [json.loads(r) for (r,) in db.execute("SELECT record FROM results")]
    return {"wall": wall, "child": [r["seconds"] for r in records], "modes": {r["sandbox"] for r in records},
            "checks": [sum(x["seconds"] for x in r["results"]) for r in records]}


def run_in_process(student: Path, args: list[str], env: dict) -> float:
    """The checks' own seconds for ``student`` run by ``toolkit run --json`` in one process."""
    cmd = [sys.executable, "-m", "toolkit.cli", "run", str(student), "--json", "--processes", "1", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise GradingFailed(f"exit {proc.returncode}: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return sum(r["seconds"] for r in json.loads(proc.stdout)["results"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=8, help="copies of solutions/ in the class")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="behavioural checks too (default: --fast)")
    ap.add_argument("--dask", action="store_true", help="also --scheduler local --workers 2 (needs the grid extra: pip install -c constraints.txt -e '.[grid]')")
    ap.add_argument("--timeout", type=float, default=600, help="toolkit grade --timeout")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "grading.json")
    args = ap.parse_args()

    common = ([] if args.full else ["--fast"]) + ["--timeout", str(args.timeout)]
    base_env = {k: v for k, v in os.environ.items() if k != "TOOLKIT_SANDBOX"}
    configs = {  # name -> (toolkit grade options, environment)
        "bwrap_w1": (["--workers", "1"], base_env),
        "bwrap_w2": (["--workers", "2"], base_env),
        "rlimits_w1": (["--workers", "1"], {**base_env, "TOOLKIT_SANDBOX": "rlimits"}),
    }
    if args.dask:
        configs["dask_local_w2"] = (["--workers", "2", "--scheduler", "local"], base_env)
    os.environ.pop("TOOLKIT_SANDBOX", None)  # mode() below: what the default runs get
    print(f"sandbox mode here: {sandbox.mode()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"{args.students} students x {args.repeats} repeats, {'full' if args.full else '--fast'}")

    runs: dict[str, list[dict]] = {name: [] for name in configs}
    in_process: list[float] = []
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-") as tmp:
        klass = make_class(Path(tmp) / "class", args.students)
        for rep in range(args.repeats):
            try:
                in_process.append(run_in_process(klass / "student00", [] if args.full else ["--fast"], base_env))
            except GradingFailed as e:
                print(f"FAILED toolkit run, repeat {rep + 1}: {e}")
                return 1
            print(f"  {'toolkit run':14} repeat {rep + 1}: checks {in_process[-1]:7.1f} s in one process")
            for name, (options, env) in configs.items():
                try:
                    run = grade(klass, Path(tmp) / f"{name}-{rep}", args.students, common + options, env)
                except GradingFailed as e:
                    print(f"FAILED {name}, repeat {rep + 1}: {e}")
                    return 1
                runs[name].append(run)
                print(f"  {name:14} repeat {rep + 1}: {run['wall']:7.1f} s wall, sandbox {', '.join(run['modes'])}")

    figures: dict[str, float] = {}
    for name, rs in runs.items():
        wall = statistics.median(r["wall"] for r in rs)
        child = [s for r in rs for s in r["child"]]
        figures[f"{name}_wall_s"] = wall
        figures[f"{name}_subs_per_min"] = 60 * args.students / wall
        figures[f"{name}_s_per_submission"] = wall / args.students
        figures[f"{name}_child_s"] = statistics.median(child)
        if name.endswith("_w1"):
            figures[f"{name}_parent_s"] = statistics.median(r["wall"] - sum(r["child"]) for r in rs)
    figures["checks_in_process_s"] = statistics.median(in_process)
    figures["checks_over_pipe_s"] = statistics.median(c for r in runs["bwrap_w1"] for c in r["checks"])
    figures["pipe_overhead_s"] = figures["checks_over_pipe_s"] - figures["checks_in_process_s"]
    figures["speedup_2_over_1"] = figures["bwrap_w2_subs_per_min"] / figures["bwrap_w1_subs_per_min"]
    if args.dask:
        figures["dask_speedup_over_w1"] = figures["dask_local_w2_subs_per_min"] / figures["bwrap_w1_subs_per_min"]
    figures["sandbox_overhead_s"] = figures["bwrap_w1_s_per_submission"] - figures["rlimits_w1_s_per_submission"]
    figures["sandbox_overhead_child_s"] = figures["bwrap_w1_child_s"] - figures["rlimits_w1_child_s"]
    figures["sandbox_ratio"] = figures["bwrap_w1_s_per_submission"] / figures["rlimits_w1_s_per_submission"]

    modes = {name: sorted(set().union(*(r["modes"] for r in rs))) for name, rs in runs.items()}
    print(f"\n{'figure':34} {'median':>9}")
    for name, value in figures.items():
        print(f"{name:34} {value:9.2f}")
    print("sandbox used: " + "; ".join(f"{n}: {', '.join(m)}" for n, m in modes.items()))
    if modes["bwrap_w1"] != ["bwrap"]:
        print("NOTE: bubblewrap did not run here, so the sandbox comparison compares rlimits with rlimits")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "environment": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                        "sandbox_mode": sandbox.mode()},
        "students": args.students, "repeats": args.repeats, "mode": "full" if args.full else "fast",
        "sandbox_used": modes, "figures": figures,
        "runs": {n: [{"wall_s": r["wall"], "child_s": r["child"]} for r in rs] for n, rs in runs.items()},
    }, indent=1) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
