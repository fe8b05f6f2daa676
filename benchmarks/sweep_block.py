"""The block's from-scratch curve over a seed sweep: how far the reference's own curve moves with the
seed, and how far correct blocks written differently (and the wrong ones) sit from it.

    python benchmarks/sweep_block.py [--seeds 0 1 2 3 4]

Seed ``s`` draws the initial weights and the order of the batches (the data stay seed 0's, the
snapshot's): another seed stands in for another machine, whose rounding makes the curve drift.
It writes only the ``block_`` figures of ``graders/snapshots/calibration.json`` (the rest is
``benchmarks/seeds.py``'s), one value per seed of that file:

* ``block_seed_gap``: |mean gap over the curve's tail| between the solution under seed s and under seed 0;
* ``block_curve_gap``: the largest |gap| between a correct block written differently and the solution, both under s.

The wrong blocks' gaps under each seed go to ``benchmarks/results/block_sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graders import block, calibration  # noqa: E402
from toolkit.config import PipelineConfig  # noqa: E402
from toolkit.data_stages import BASE_DATA  # noqa: E402
from toolkit.pipeline import Pipeline  # noqa: E402
from toolkit.plugins import Components, build_manager, load_submission  # noqa: E402

PLUGINS = ROOT / "tests" / "plugins"
CORRECT = [ROOT / "solutions" / "block.py", PLUGINS / "block_fused_mlp.py", PLUGINS / "block_handwritten.py"]
WRONG = [PLUGINS / f"block_{name}.py" for name in ("detached_mlp", "post_norm")]


def curve(path: Path, seed: int, data: Pipeline) -> list[float]:
    """The block's short curve under ``seed``, on ``data``'s data."""
    config = PipelineConfig()
    config = replace(config, seed=seed, pretrain=replace(config.pretrain, seed=seed))
    pipeline = Pipeline(Components(build_manager(load_submission(str(path))), only="block"), config, log=lambda m: None)
    for stage in (*BASE_DATA, "train_stream"):
        pipeline.__dict__[stage] = getattr(data, stage)
    return block.short_training_curve(pipeline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=calibration.calibration()["seeds"])
    args = parser.parse_args()
    data = Pipeline(log=lambda m: None)
    base = curve(CORRECT[0], 0, data)  # the snapshot's
    seed_gap, curve_gap, wrong = [], [], {p.stem: [] for p in WRONG}
    for seed in args.seeds:
        ref = base if seed == 0 else curve(CORRECT[0], seed, data)
        seed_gap.append(round(abs(block.tail_gap(ref, base)), 4))
        curve_gap.append(round(max(abs(block.tail_gap(curve(p, seed, data), ref)) for p in CORRECT[1:]), 6))
        for p in WRONG:
            wrong[p.stem].append(round(block.tail_gap(curve(p, seed, data), ref), 4))
        print(f"seed {seed}: seed gap {seed_gap[-1]}, correct gap {curve_gap[-1]}, "
              + ", ".join(f"{k} {v[-1]}" for k, v in wrong.items()), flush=True)
    doc = json.loads(calibration.PATH.read_text())
    assert doc["seeds"] == args.seeds, "calibration.json holds one value per seed of its own: sweep those seeds"
    doc["figures"].update(block_seed_gap=seed_gap, block_curve_gap=curve_gap)
    calibration.PATH.write_text(json.dumps(doc, indent=1) + "\n")
    out = ROOT / "benchmarks" / "results" / "block_sweep.json"
    out.write_text(json.dumps({"seeds": args.seeds, "steps": block.CURVE_STEPS, "tail": block.CURVE_TAIL,
                               "block_seed_gap": seed_gap, "block_curve_gap": curve_gap, "wrong_gap": wrong},
                              indent=1) + "\n")
    print(f"wrote the block_ figures of {calibration.PATH.relative_to(ROOT)} and {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
