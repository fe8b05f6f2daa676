"""How long a student waits for a verdict, and the memory grading takes.

    python benchmarks/feedback.py [--repeats 3] [--skip-cold] [--skip-slow] [--profile DIR] [--out benchmarks/results/feedback.json]

Each figure is the wall time of ``python -m toolkit run ...`` as a subprocess, from the
command to its exit (interpreter start and ``import torch`` included), median of
``--repeats`` runs; the cold run is done once. Peak memory is the most the command's
processes held resident at once (its lanes together; sampled every 0.2 s from /proc). Targets (2 cores):

    toolkit run solutions/ -c COMPONENT --fast     < 5 s, each of the seven components
    toolkit run solutions/ -c sft_mask             < 20 s, warm cache
    toolkit run solutions/ -c sampler              < 30 s, warm cache (the temperature dial included)
    toolkit run solutions/ -c block                < 30 s, warm cache (40 steps from scratch, the reference's weights)
    toolkit run solutions/ -c optimizer            < 30 s, warm cache (two 50-step pretrainings)
    toolkit run solutions/                         < 60 s, warm cache (all five, behavioural checks included)
    toolkit run solutions/                         < 180 s, cold cache (an empty TOOLKIT_CACHE; the base and baseline chat
                                                   models are the toolkit's own, toolkit/data: run.py times pretraining and SFT)
    peak RSS of grading the whole submission       < 2 GB

*Warm cache* means the cache holds what an earlier run trained, as after a student's first
run, except the models trained with the submission's own components after pretraining: a
student who edits a component pays for those again. Those are the chat model of its SFT
mask (``sft-<key>.pt``), its reward model and the RLHF model (never cached: see
``Pipeline.reward_key``). What does not depend on the submission stays cached: the base
models, the chat model the reward checks start from (the baseline's mask) and the
instructor's reward model of the hidden check. Each warm run gets a fresh TOOLKIT_CACHE
that links the files of a pool, but for the submission's; the pool starts as the cold
run's cache, or with ``--skip-cold`` as the current TOOLKIT_CACHE (default
~/.cache/toolkit). A run that still had to train something not of the submission adds it
to the pool and is run again, not counted. Every run must pass all its checks. Exit 1 if
a target is missed or a run fails. ``--skip-slow``: only the ``--fast`` runs.

``--profile DIR``: one more run of each warm figure under pyinstrument (``pip install -e '.[bench]'``),
after the timed ones and not counted, writes where its time goes to ``DIR/<figure>.txt``. That run
is ``--processes 1``: the profiler sees one process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.cache import default_cache_dir  # noqa: E402
from toolkit.pipeline import Pipeline
from toolkit.components import COMPONENTS  # noqa: E402
from toolkit.plugins import Components, build_manager, load_submission  # noqa: E402
from benchmarks.common import report  # noqa: E402

TOOLKIT = ["-m", "toolkit", "run", "solutions/"]


def run(args: list[str], cache: Path, profile: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak memory (MB) of ``toolkit run solutions/ ARGS``; raises if it does not pass.
    ``profile``: run it in one process (``--processes 1``: a profile sees only its own process) under
    pyinstrument, which writes its report there."""
    wrap = ["-m", "pyinstrument", "-i", "0.01", "-r", "text", "-o", str(profile)] if profile else []
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *wrap, *TOOLKIT, *args, *(["--processes", "1"] if profile else [])],
                                cwd=ROOT, env={**os.environ, "TOOLKIT_CACHE": str(cache)},
                                stdout=subprocess.DEVNULL, stderr=err)
        peak = wait_for(proc)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(['toolkit run solutions/', *args])} exited with {proc.returncode}:\n{tail}")
    return seconds, peak


def wait_for(proc: subprocess.Popen) -> float:
    """Wait for ``proc`` to end; the most memory (MB) it and its processes held at once, sampled every 0.2 s."""
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.2)
    return peak


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and every process under it (``toolkit run``'s lanes), in MB, from
    Linux's /proc; pages the processes share (torch's libraries) count once per process."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
            pass
    return total / 2**20


def submission_files() -> set[str]:
    """Names of the cache files of models trained with the submission's components after pretraining."""
    mask = Pipeline(Components(build_manager(load_submission(str(ROOT / "solutions"))), only="sft_mask"), log=print)
    return {f"sft-{mask.chat_key()}.pt"}


def cached(folder: Path) -> list[Path]:
    """What a run keeps in its cache folder: models (``*.pt``) and the reference samplers' draws (``dial-*.json``)."""
    return [*folder.glob("*.pt"), *folder.glob("dial-*.json")]


def link_cache(pool: Path, folder: Path, own: set[str]) -> None:
    """Link into ``folder`` everything of ``pool`` but the submission's ``own``: a warm cache."""
    for f in cached(pool):
        if f.name not in own:
            (folder / f.name).symlink_to(f.resolve())


def warm_run(args: list[str], pool: Path, own: set[str], profile: Path | None = None) -> tuple[float, float]:
    """``run`` in a fresh cache holding the pool's files but the submission's own (see the docstring)."""
    while True:
        with tempfile.TemporaryDirectory() as d:
            link_cache(pool, Path(d), own)
            result = run(args, Path(d), profile)
            new = [f for f in cached(Path(d)) if not f.is_symlink() and f.name not in own]
            if not new:
                return result
            for f in new:
                shutil.move(f, pool / f.name)
            print(f"  (trained {', '.join(f.name for f in new)} first: now in the pool; not counted, again)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-cold", action="store_true", help="leave out the cold-cache run (minutes)")
    ap.add_argument("--skip-slow", action="store_true", help="only the --fast runs (implies --skip-cold)")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="also profile each figure's run (not counted)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "feedback.json")
    args = ap.parse_args()

    # (name, toolkit run arguments, target in seconds, warm cache or cold, repeats)
    runs = [(f"fast_{c}", ["-c", c, "--fast"], 5, "warm", args.repeats) for c in COMPONENTS]
    if not args.skip_slow:
        runs += [("sft_mask_warm", ["-c", "sft_mask"], 20, "warm", args.repeats),
                 ("sampler_warm", ["-c", "sampler"], 30, "warm", args.repeats),
                 ("block_warm", ["-c", "block"], 30, "warm", args.repeats),  # issue 34: the behavioural part in 30 s
                 ("optimizer_warm", ["-c", "optimizer"], 30, "warm", args.repeats),
                 ("whole_warm", [], 60, "warm", args.repeats)]
        if not args.skip_cold:
            runs.insert(0, ("whole_cold", [], 180, "cold", 1))  # first: its cache fills the pool
    figures: dict[str, float] = {}
    missed: list[str] = []
    own = submission_files()
    with tempfile.TemporaryDirectory() as pool_dir:
        pool = Path(pool_dir)
        link_cache(default_cache_dir(), pool, own=set())
        for name, cli, target, cache, repeats in runs:
            print(f"{' '.join(['toolkit run solutions/', *cli])} ({cache} cache, {repeats}x) ...", flush=True)
            try:
                if cache == "cold":
                    with tempfile.TemporaryDirectory() as d:
                        results = [run(cli, Path(d))]
                        for f in cached(Path(d)):
                            shutil.move(f, pool / f.name)
                else:
                    results = [warm_run(cli, pool, own) for _ in range(repeats)]
            except RuntimeError as e:
                print(e)
                missed.append(f"{name}: toolkit run failed")
                continue
            seconds = statistics.median(s for s, _ in results)
            figures[f"{name}_s"] = seconds
            figures[f"{name}_peak_rss_MB"] = max(m for _, m in results)
            print(f"  {name:18} {seconds:8.1f} s  (runs: {', '.join(f'{s:.1f}' for s, _ in results)}; target < {target} s)"
                  f"  peak RSS {figures[f'{name}_peak_rss_MB']:.0f} MB", flush=True)
            if seconds >= target:
                missed.append(f"{name}_s = {seconds:.1f}, target < {target}")
            if args.profile and cache == "warm":
                args.profile.mkdir(parents=True, exist_ok=True)
                warm_run(cli, pool, own, args.profile / f"{name}.txt")
                print(f"  profile: {args.profile / f'{name}.txt'}", flush=True)
    whole = [v for k, v in figures.items() if k.startswith("whole_") and k.endswith("_peak_rss_MB")]
    if whole:
        figures["grading_peak_rss_MB"] = max(whole)
        print(f"peak RSS of grading the whole submission: {max(whole):.0f} MB (target < 2048 MB)")
        if max(whole) >= 2048:
            missed.append(f"grading_peak_rss_MB = {max(whole):.0f}, target < 2048")

    return report(args.out, figures, missed, repeats=args.repeats)


if __name__ == "__main__":
    sys.exit(main())
