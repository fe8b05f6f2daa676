"""The test suite's time per test file, so that its growth is seen (issue 20).

    python benchmarks/suite.py [--out benchmarks/results/suite.json] [-- PYTEST ARGS]

Runs the whole suite once, as ``make test`` does (``pytest -q``: three files at a time, from the
``addopts`` of ``pyproject.toml``), and sums per file the wall time of every test (setup, call
and teardown) and the CPU time it took: of the test process and of the processes it started
and waited for (the CLI runs, the grader's children). A file whose CPU time is far below its
wall time waits (for a model the other worker trains, a child's timeout): the place to look
before a file that computes. This module is also the pytest plugin (``-p benchmarks.suite``)
that records each test's start, end and CPU time, one JSON line per test. The target: the
whole suite in at most 12 minutes on 2 cores from a cold model cache (``TOOLKIT_CACHE``
pointing at an empty folder), which is what CI pays. It exits 1 if a test fails or the target
is missed. Quote the figures of one run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402

TARGET_S = 12 * 60
TIMELINE = "SUITE_TIMELINE"  # environment: the folder the plugin writes its JSON lines to


# -- the plugin, in each pytest process (xdist's workers included) ----------------------------
def _cpu() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Time one test (setup, call, teardown) where it runs: in a worker, or in the one process."""
    folder = os.environ.get(TIMELINE)
    t0, cpu0 = time.time(), _cpu()
    yield
    if folder:
        line = {"test": item.nodeid, "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
                "start": t0, "end": time.time(), "cpu": _cpu() - cpu0}
        with open(Path(folder) / f"{os.getpid()}.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


# -- the summary --------------------------------------------------------------------------------
def per_file(folder: Path) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """test file -> {"seconds", "cpu_seconds", "tests"}, the ten longest tests and the thirty that took
    the most CPU time, from the plugin's lines."""
    files: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "cpu_seconds": 0.0, "tests": 0})
    tests = [json.loads(line) for f in folder.glob("*.jsonl") for line in f.read_text().splitlines()]
    for t in tests:
        f = files[t["test"].split("::")[0]]
        f["seconds"] += t["end"] - t["start"]
        f["cpu_seconds"] += t["cpu"]
        f["tests"] += 1
    for f in files.values():
        f["seconds"], f["cpu_seconds"] = round(f["seconds"], 1), round(f["cpu_seconds"], 1)
    def row(t: dict) -> dict:
        return {"test": t["test"], "seconds": round(t["end"] - t["start"], 1), "cpu_seconds": round(t["cpu"], 1)}

    longest = [row(t) for t in sorted(tests, key=lambda t: t["start"] - t["end"])[:10]]
    costliest = [row(t) for t in sorted(tests, key=lambda t: -t["cpu"])[:30]]
    return dict(sorted(files.items(), key=lambda kv: -kv[1]["seconds"])), longest, costliest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "suite.json")
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0, cpu0 = time.perf_counter(), os.times()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "benchmarks.suite", *args.pytest_args],
                              cwd=ROOT, env={**os.environ, TIMELINE: tmp})
        wall, cpu1 = time.perf_counter() - t0, os.times()
        files, longest, costliest = per_file(Path(tmp))
    cpu = cpu1.children_user + cpu1.children_system - cpu0.children_user - cpu0.children_system
    print(f"\n{'file':36} {'tests':>6} {'seconds':>9} {'CPU s':>9}")
    for name, f in files.items():
        print(f"{name:36} {f['tests']:6d} {f['seconds']:9.1f} {f['cpu_seconds']:9.1f}")
    print(f"{'whole suite (wall)':36} {sum(f['tests'] for f in files.values()):6d} {wall:9.1f} {cpu:9.1f}")
    missed = [] if wall <= TARGET_S else [f"whole suite {wall:.0f} s > {TARGET_S} s"]
    if proc.returncode != 0:
        missed.append(f"pytest exited with {proc.returncode}")
    busy = cpu / wall / (os.cpu_count() or 1)  # by the processes' own accounting
    figures = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cores_busy": round(busy, 2),
               "files": files, "longest_tests": longest, "costliest_tests": costliest}
    return report(args.out, figures, missed, pytest_args=args.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
