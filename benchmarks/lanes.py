"""Does ``toolkit run`` in two lanes answer sooner than in one process, with the same results?

    python benchmarks/lanes.py [--rounds 2] [--out benchmarks/results/lanes.json]

Issue 20 asked whether two trainings side by side beat one with two threads on the pipeline's
tiny matrices, and if so to train a submission's components concurrently. ``toolkit run`` now
can check ``toolkit.runner.SECOND_LANE``'s components (the reward model and the sampler) in a
second process beside the others, each process at the pipeline's pinned 2 threads (by default
where the machine has 4 cores or more). This times
the warm whole run of ``toolkit run solutions/`` (the cache as in ``feedback.py``: all but the
submission's own chat model) both ways in each round, one after the other:

* ``one_process``: ``toolkit run solutions/ --processes 1``, every component in one process;
* ``lanes``: ``toolkit run solutions/ --processes 2`` (the default where there are 4 cores).

and compares every check's score and trained figures (``FIGURES``) between the two: the lanes do
the same arithmetic, so they must be equal, and the calibration holds as it is. Peak memory is
the processes' resident memory together (``feedback.wait_for``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402
from benchmarks.feedback import link_cache, submission_files, wait_for  # noqa: E402
from toolkit.cache import default_cache_dir  # noqa: E402
from toolkit.runner import SECOND_LANE  # noqa: E402

FIGURES = {"answer_seen", "answer_held_out", "clarification", "stops", "writes_user_turn", "accuracy", "kl",
           "curve_gap", "bpb", "val_loss"}  # trained figures a check reports: equal when the arithmetic is
WAYS = {"one_process": ["--processes", "1"], "lanes": ["--processes", "2"]}


def warm_whole_run(extra: list[str], own: set[str]) -> tuple[float, float, dict[str, dict]]:
    """Wall seconds and peak memory (MB) of ``toolkit run solutions/ --json EXTRA`` in a fresh warm
    cache, and what every check gave: name -> {"score", "metrics"} (the figures to compare)."""
    with tempfile.TemporaryDirectory(prefix="lanes-") as cache, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err:  # files: a run that fills a pipe nobody reads yet would stall
        link_cache(default_cache_dir(), Path(cache), own)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "toolkit", "run", "solutions/", "--json", *extra], cwd=ROOT,
                                env={**os.environ, "TOOLKIT_CACHE": cache}, stdout=out, stderr=err)
        peak = wait_for(proc)
        seconds = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"exited with {proc.returncode}:\n{err.read().decode(errors='replace')[-2000:]}")
        results = {r["name"]: {"score": r["score"], "metrics": {k: v for k, v in r["metrics"].items() if k in FIGURES}}
                   for r in json.load(out)["results"]}
    return seconds, peak, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lanes.json")
    args = ap.parse_args()
    own = submission_files()
    times: dict[str, list[float]] = {name: [] for name in WAYS}
    peaks: dict[str, list[float]] = {name: [] for name in WAYS}
    same: list[bool] = []  # every check's score and figures the same both ways?
    for r in range(args.rounds):
        got = {}
        for name, extra in WAYS.items():
            seconds, peak, got[name] = warm_whole_run(extra, own)
            times[name].append(round(seconds, 1))
            peaks[name].append(round(peak))
            print(f"round {r}: {name:12} {seconds:7.1f} s, peak {peak:5.0f} MB", flush=True)
        same.append(got["lanes"] == got["one_process"])
        print(f"round {r}: the same scores and figures both ways: {same[-1]}", flush=True)
    figures = {f"{name}_s": statistics.median(t) for name, t in times.items()}
    figures.update({f"{name}_runs_s": t for name, t in times.items()})
    figures.update({f"{name}_peak_MB": max(p) for name, p in peaks.items()})
    figures["same_results"] = all(same)
    figures["lanes_over_one_process"] = round(statistics.median(a / b for a, b in zip(times["lanes"],
                                                                                         times["one_process"])), 3)
    print(f"lanes / one process, paired by round: {figures['lanes_over_one_process']:.2f}")
    missed = [] if all(same) else ["the lanes' scores or figures differ from one process's"]
    return report(args.out, figures, missed, rounds=args.rounds, second_lane=list(SECOND_LANE))


if __name__ == "__main__":
    sys.exit(main())
