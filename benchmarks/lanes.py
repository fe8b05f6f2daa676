"""Would grading a submission's components side by side, in two processes, answer sooner?

    python benchmarks/lanes.py [--rounds 2] [--out benchmarks/results/lanes.json]

Issue 20 asks whether two single-threaded trainings side by side beat one two-threaded one
on the pipeline's tiny matrices, and if so, to train a submission's components concurrently.
This measures the whole answer a student waits for, not a training step: the warm run of
``toolkit run solutions/`` (the cache as in ``feedback.py``: all but the submission's own chat
model), timed three ways in each round, one after the other:

* ``sequential``: one process, every component, 2 threads (what ``toolkit run`` does now);
* ``lanes_1_thread``: two processes at once, each with 1 torch thread, one running
  ``LANES[0]``'s components and the other ``LANES[1]``'s; the figure is when the last ends;
* ``lanes_2_threads``: the same two lanes with 2 threads each (OpenMP's passive wait).

The lanes pin their thread count by replacing ``toolkit.pipeline.seed_everything`` in their
process. Each way's scores and trained figures (``FIGURES``) are compared with the sequential
run's of the same round: with 2 threads a lane does the same arithmetic, so they must be equal,
and the lever would need no new calibration; with 1 thread they may differ by rounding.
"""

from __future__ import annotations

import argparse
import contextlib
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
from benchmarks.feedback import link_cache, submission_files  # noqa: E402
from toolkit.components import COMPONENTS  # noqa: E402
from toolkit.pipeline import default_cache_dir  # noqa: E402

LANES = (("sft_mask", "tokenizer", "attention"), ("reward", "sampler"))  # about even: SFT against reward + RLHF
CHILD = ("import sys, torch, toolkit.pipeline as p\n"
         "threads = int(sys.argv[1])\n"
         "p.seed_everything = lambda seed, _: (torch.manual_seed(seed), torch.set_num_threads(threads))\n"
         "from toolkit.cli import main\n"
         "main(['run', 'solutions/', *sys.argv[2:]])\n")


FIGURES = {"answer_seen", "answer_held_out", "clarification", "stops", "writes_user_turn", "accuracy", "kl",
           "curve_gap", "bpb", "val_loss"}  # trained figures a check reports: equal when the arithmetic is


def run_lanes(lanes: list[tuple[str, ...]], threads: int, own: set[str]) -> tuple[float, dict[str, dict]]:
    """Wall seconds until the last of ``lanes`` (one process each, started together, in one fresh warm
    cache) has passed, and what every check gave: name -> {"score", "metrics"} (the figures to compare)."""
    with tempfile.TemporaryDirectory(prefix="lanes-") as cache, contextlib.ExitStack() as files:
        link_cache(default_cache_dir(), Path(cache), own)
        env = {**os.environ, "TOOLKIT_CACHE": cache, "OMP_WAIT_POLICY": "PASSIVE"}
        # stdout and stderr to files: a lane that fills a pipe nobody reads yet would stall
        outs, errs = ([files.enter_context(tempfile.TemporaryFile()) for _ in lanes] for _ in range(2))
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(threads), "--json",
                                   *(a for c in lane for a in ("-c", c))], cwd=ROOT, env=env, stdout=out, stderr=err)
                 for lane, out, err in zip(lanes, outs, errs)]
        for proc in procs:
            proc.wait()
        seconds = time.perf_counter() - t0
        results = {}
        for proc, out, err in zip(procs, outs, errs):
            out.seek(0), err.seek(0)
            if proc.returncode != 0:
                raise RuntimeError(f"lane exited with {proc.returncode}:\n{err.read().decode(errors='replace')[-2000:]}")
            results.update({r["name"]: {"score": r["score"],
                                        "metrics": {k: v for k, v in r["metrics"].items() if k in FIGURES}}
                            for r in json.load(out)["results"]})
    return seconds, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "lanes.json")
    args = ap.parse_args()
    assert sorted(c for lane in LANES for c in lane) == sorted(COMPONENTS), "the lanes must cover every component"
    own = submission_files()
    ways = {"sequential": ([tuple(COMPONENTS)], 2), "lanes_1_thread": (list(LANES), 1),
            "lanes_2_threads": (list(LANES), 2)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    same: dict[str, list[bool]] = {name: [] for name in ways}  # every check's score and figures as sequential's?
    for r in range(args.rounds):
        got = {}
        for name, (lanes, threads) in ways.items():
            seconds, got[name] = run_lanes(lanes, threads, own)
            times[name].append(round(seconds, 1))
            same[name].append(got[name] == got["sequential"])
            print(f"round {r}: {name:16} {times[name][-1]:7.1f} s, the same scores and figures as sequential: "
                  f"{same[name][-1]}", flush=True)
    figures = {f"{name}_s": statistics.median(t) for name, t in times.items()}
    figures.update({f"{name}_runs_s": t for name, t in times.items()})
    figures.update({f"{name}_same_as_sequential": all(v) for name, v in same.items() if name != "sequential"})
    figures["lanes_1_thread_over_sequential"] = statistics.median(
        a / b for a, b in zip(times["lanes_1_thread"], times["sequential"]))
    print(f"two lanes, 1 thread each / sequential, paired by round: {figures['lanes_1_thread_over_sequential']:.2f}")
    return report(args.out, figures, [], rounds=args.rounds, lanes=[list(lane) for lane in LANES])


if __name__ == "__main__":
    sys.exit(main())
