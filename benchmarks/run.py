"""Speed, memory and behaviour figures of the reference pipeline, measured in one run.

    python benchmarks/run.py [--repeats 3] [--out benchmarks/results.json]

Pretraining runs from an empty cache, the shipped base model left aside, so the figure is what
a first run pays with another configuration. Times are medians over ``--repeats`` where a stage
is cheap enough to repeat. The targets (issue 2) are printed next to each figure; the script
exits 1 if one is missed. These machines are shared: quote the medians of one run, never assert
times in unit tests.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graders.sft_mask import behaviour_metrics  # noqa: E402
from toolkit.probe import Label  # noqa: E402
from toolkit.config import PipelineConfig  # noqa: E402
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components, build_manager, load_submission  # noqa: E402
from benchmarks.common import report  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    args = ap.parse_args()

    config = PipelineConfig()
    solutions = build_manager(load_submission(str(ROOT / "solutions")))
    figures: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as cache:
        # Tokenizers: 1 MB of the pipeline's corpus to a 1,000-token vocabulary.
        p = Pipeline(Components(solutions, only="sft_mask"), config, cache_dir=Path(cache), log=lambda m: None,
                     shipped=False)  # pretrain, as a changed configuration does, rather than load the shipped model
        text = p.corpus[:1_000_000]
        for name, comps in (("solution", Components(solutions, only="tokenizer")), ("baseline", Components())):
            figures[f"tokenizer_train_1MB_{name}_s"] = median_time(lambda: comps.tokenizer().train(text, 1000), args.repeats)
        figures["tokenizer_ratio_solution_over_baseline"] = (
            figures["tokenizer_train_1MB_solution_s"] / figures["tokenizer_train_1MB_baseline_s"])

        # The pipeline the SFT check runs: baseline tokenizer and attention, the solution's mask.
        t0 = time.perf_counter()
        _ = p.base_model
        figures["pretrain_s"] = p.timings["pretrain"]
        figures["base_total_s"] = time.perf_counter() - t0  # data + tokenizer + pretraining
        figures["base_val_loss"] = p.val_loss(p.base_model)
        t0 = time.perf_counter()
        m = behaviour_metrics(p)
        figures["sft_s"] = p.timings["sft"]
        figures["probe_s"] = time.perf_counter() - t0 - p.timings["sft"]
        figures.update({k: v for k, v in m.items() if not k.startswith("_") and isinstance(v, float)})
        figures["headline_base_continuation"] = m["_dists"]["headline"]["base"][Label.CONTINUATION]["p"]
        figures["headline_chat_answer"] = m["_dists"]["headline"]["chat"][Label.ANSWER]["p"]
        base_top = m["base_top"]
    figures["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    targets = [  # (figure, comparison, bound)
        ("pretrain_s", "<=", 180), ("sft_s", "<=", 60),
        ("answer_seen", ">=", 0.9), ("base_answer", "<=", 0.3), ("clarification", ">=", 0.7),
        ("answer_held_out", ">=", 0.5),  # an aim, reported
    ]
    missed = []
    print(f"{'figure':42} {'value':>10}  target")
    for name, value in figures.items():
        target = next((f"{op} {b}" for n, op, b in targets if n == name), "")
        print(f"{name:42} {value:10.3f}  {target}")
    print(f"{'base model most frequent class':42} {base_top:>10}  Continuation")
    for name, op, bound in targets:
        if not (figures[name] <= bound if op == "<=" else figures[name] >= bound):
            missed.append(f"{name} = {figures[name]:.3f}, target {op} {bound}")
    if base_top != Label.CONTINUATION:
        missed.append(f"base model's most frequent class is {base_top}")
    return report(args.out, figures, missed, repeats=args.repeats)


if __name__ == "__main__":
    sys.exit(main())
