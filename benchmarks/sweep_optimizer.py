"""The optimizer check's short pretraining over seeds: the gaps of correct and wrong optimizers.

    python benchmarks/sweep_optimizer.py [--seeds 0 1 2 3 4] [--write]

For each seed (the small GPT's initial weights and the order of its batches; another seed stands in
for another machine's rounding), the reference run (torch's AdamW and cross-entropy) and one run per
plugin, as ``graders.optimizer.trains_like_reference`` makes them: the solution and a correct
optimizer written otherwise (``torch._foreach_*``, the loss by logsumexp and gather), and the three
AdamW mistakes a one-parameter unit test lets through. Each run's gap to the reference is its loss
minus the reference's at each step; the figures are the largest gap over the first 30 steps and
over the last 20.

``--write`` puts these figures, and only these, in ``graders/snapshots/calibration.json`` (keys
``optimizer_*``; ``graders.calibration.FIGURES`` lists them): the correct plugins' worst gap per seed
sets the bands (``graders.optimizer.bands``), and the smallest gap of a wrong one per seed shows they
stand clear of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graders import calibration  # noqa: E402
from graders import optimizer as grader  # noqa: E402
from toolkit.pipeline import Pipeline  # noqa: E402
from toolkit.plugins import Components, build_manager, load_submission  # noqa: E402
from toolkit.train import adamw, cross_entropy  # noqa: E402

CORRECT = {"solution": ROOT / "solutions" / "optimizer.py", "foreach": ROOT / "tests" / "plugins" / "opt_foreach.py"}
WRONG = {name: ROOT / "tests" / "plugins" / f"opt_{name}.py" for name in ("shared_step", "stale_lr", "keyed_by_shape")}


def training(path: Path) -> dict:
    components = Components(build_manager(load_submission(str(path))), only="optimizer")
    return dict(optimizer=components.optimizer, loss=components.cross_entropy)


def run_seed(pipeline: Pipeline, seed: int) -> dict:
    """Each plugin's (largest gap over the first steps, over the last ones, mean gap over the first) under ``seed``."""
    reference = grader.short_pretraining(pipeline, adamw, cross_entropy, seed)
    out = {}
    for name, path in {**CORRECT, **WRONG}.items():
        t0 = time.perf_counter()
        gap = [a - b for a, b in zip(grader.short_pretraining(pipeline, seed=seed, **training(path)), reference)]
        first, tail = gap[: grader.FIRST], gap[grader.FIRST:]
        out[name] = {"first": max(map(abs, first)), "tail": max(map(abs, tail)),
                     "mean_first": sum(first) / len(first), "seconds": round(time.perf_counter() - t0, 2)}
        print(f"seed {seed} {name:15s} " + " ".join(f"{k} {v:.4g}" for k, v in out[name].items()), flush=True)
    return out


def figures(runs: list[dict]) -> dict[str, list[float]]:
    """calibration.json's optimizer figures: one value per seed."""
    return {"optimizer_first_gap": [round(max(r[n]["first"] for n in CORRECT), 7) for r in runs],
            "optimizer_tail_gap": [round(max(r[n]["tail"] for n in CORRECT), 7) for r in runs],
            "optimizer_wrong_first_gap": [round(min(r[n]["first"] for n in WRONG), 4) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    pipeline = Pipeline(log=lambda msg: None)
    runs = [run_seed(pipeline, seed) for seed in args.seeds]
    found = figures(runs)
    print(json.dumps(found, indent=1))
    if args.write:
        doc = json.loads(calibration.PATH.read_text())
        assert doc["seeds"] == args.seeds, f"calibration.json's seeds are {doc['seeds']}: sweep the same ones"
        doc["figures"].update(found)
        calibration.PATH.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {', '.join(found)} to {calibration.PATH.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
