"""Pretraining eager or under ``torch.compile``: which is faster once compile time is counted.

    python benchmarks/compile.py [--rounds 2] [--steps 40] [--out benchmarks/results/compile.json]

Each run is a fresh subprocess that builds the pipeline's GPT (baseline attention, its default
configuration) and takes ``--steps`` steps of ``toolkit.train.pretrain``'s loop (batch 32 x
block 64, AdamW, clipping), eager or with ``torch.compile(model)`` (inductor, its default
mode). A compiled run starts from an empty inductor cache (``TORCHINDUCTOR_CACHE_DIR`` of its
own), as a student's first run or a grading child does. Figures per mode, medians over
``--rounds`` (eager and compiled take turns, a different one first in each round): the first
step's seconds (for compile: tracing and building the kernels), the median ms of a later step,
and the projected time of the pipeline's pretraining, ``first + (steps - 1) * step``, at
``PipelineConfig().pretrain.steps``. Exit 1 if compiling would pretrain faster than eager, the
mode the toolkit trains in.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import report  # noqa: E402

CHILD = """
import json, statistics, sys, time, torch
from toolkit.pipeline import Pipeline
from toolkit.train import TrainConfig, pretrain
p = Pipeline(log=lambda m: None)
model, stream = p.new_model(), p.train_stream
if sys.argv[1] == "compile":
    model.forward = torch.compile(model.forward)
times, t0 = [], time.perf_counter()
def on_step(step, loss):
    global t0
    times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
pretrain(model, stream, TrainConfig(steps=int(sys.argv[2]), lr=3e-3), on_step)
print(json.dumps({"first_s": times[0], "step_ms": 1000 * statistics.median(times[len(times) // 4:])}))
"""


def one_run(mode: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as inductor:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": inductor, "OMP_WAIT_POLICY": "PASSIVE"}
        out = subprocess.run([sys.executable, "-c", CHILD, mode, str(steps)], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    from toolkit.config import PipelineConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "compile.json")
    args = ap.parse_args()
    total = PipelineConfig().pretrain.steps
    runs: dict[str, list[dict]] = {"eager": [], "compile": []}
    for r in range(args.rounds):
        for mode in (("eager", "compile") if r % 2 == 0 else ("compile", "eager")):
            runs[mode].append(one_run(mode, args.steps))
            print(f"round {r}, {mode}: {runs[mode][-1]}", flush=True)
    figures = {}
    for mode, rs in runs.items():
        first = statistics.median(x["first_s"] for x in rs)
        step = statistics.median(x["step_ms"] for x in rs)
        figures[mode] = {"first_step_s": round(first, 2), "step_ms": round(step, 1),
                         f"pretraining_{total}_steps_s": round(first + (total - 1) * step / 1000, 1)}
        print(f"{mode:8} first step {first:6.2f} s, then {step:6.1f} ms/step: {total} steps in "
              f"{figures[mode][f'pretraining_{total}_steps_s']:.0f} s")
    key = f"pretraining_{total}_steps_s"
    missed = ([f"compiled pretraining ({figures['compile'][key]} s) beats eager ({figures['eager'][key]} s)"]
              if figures["compile"][key] < figures["eager"][key] else [])
    return report(args.out, figures, missed, rounds=args.rounds, steps=args.steps, runs=runs)


if __name__ == "__main__":
    sys.exit(main())
