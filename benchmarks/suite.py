"""The test suite's time per test file, so that its growth is seen (issue 20).

    python benchmarks/suite.py [--out benchmarks/results/suite.json] [-- PYTEST ARGS]

Runs the whole suite once, as ``make test`` does (``pytest -q``: two files at a time, from the
``addopts`` of ``pyproject.toml``), with a JUnit report, and sums
the time of every test (setup, call and teardown) per file. The target: the whole suite in at most
12 minutes on 2 cores from a cold model cache (``TOOLKIT_CACHE`` pointing at an empty folder),
which is what CI pays. It exits 1 if a test fails or the target is missed. Quote the figures of
one run on a quiet machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402

TARGET_S = 12 * 60


def per_file(junit: Path) -> dict[str, dict]:
    """test file -> {"seconds", "tests"} from a JUnit report."""
    files: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "tests": 0})
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("classname", "").split(".")[:2]  # tests.test_x(.Class)
        key = "/".join(name) + ".py"
        files[key]["seconds"] += float(case.get("time", 0))
        files[key]["tests"] += 1
    return dict(sorted(files.items(), key=lambda kv: -kv[1]["seconds"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "suite.json")
    ap.add_argument("pytest_args", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", f"--junitxml={junit}", *args.pytest_args],
                              cwd=ROOT)
        wall = time.perf_counter() - t0
        files = per_file(junit)
    print(f"\n{'file':36} {'tests':>6} {'seconds':>9}")
    for name, f in files.items():
        print(f"{name:36} {f['tests']:6d} {f['seconds']:9.1f}")
    print(f"{'whole suite (wall)':36} {sum(f['tests'] for f in files.values()):6d} {wall:9.1f}")
    missed = [] if wall <= TARGET_S else [f"whole suite {wall:.0f} s > {TARGET_S} s"]
    if proc.returncode != 0:
        missed.append(f"pytest exited with {proc.returncode}")
    return report(args.out, {"wall_s": round(wall, 1), "files": files}, missed, pytest_args=args.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
