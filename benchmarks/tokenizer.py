"""Training time of the solution's BPE tokenizer against a naive BPE, on two 1 MB texts.

    python benchmarks/tokenizer.py [--repeats 3] [--bytes 1000000] [--vocab 1000] [--out benchmarks/results/tokenizer.json]

Figure: seconds to train a 1,000-token vocabulary on 1 MB of text, for ``solutions/tokenizer.py``
and for ``tests/plugins/tok_naive.py`` (a correct BPE that recounts every pair after each merge),
both loaded as submissions, on the same text in the same run, taking turns; medians of
``--repeats``. Both learn the same merges (checked). Two texts:

* ``words``: made-up words (``graders.tokenizer.speed_corpus``, ~2,500 distinct chunks), where
  counting pairs is the work. Target (2 cores): the solution at least 10 times faster.
* ``corpus``: the pipeline's pretraining corpus (as ``benchmarks/run.py`` takes it). It has a
  few hundred distinct chunks only, so counting them (printed as ``chunk_count``), a step both
  tokenizers share, is most of either time and caps the ratio; reported, no target.

Exit 1 if the target is missed or the merges differ.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graders.tokenizer import speed_corpus  # noqa: E402
from toolkit.config import PipelineConfig  # noqa: E402
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components, build_manager, load_submission  # noqa: E402
from benchmarks.common import report  # noqa: E402
from toolkit.tokenizer import pretokenize, split_special  # noqa: E402

TOKENIZERS = {"solution": ROOT / "solutions", "naive": ROOT / "tests" / "plugins" / "tok_naive.py"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bytes", type=int, default=1_000_000, help="length of the text (characters; the corpus is ASCII)")
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tokenizer.json")
    args = ap.parse_args()

    config = PipelineConfig()
    texts = {"words": speed_corpus(n_words=args.bytes // 5)[: args.bytes],
             "corpus": Pipeline(Components(), config, log=lambda m: None).corpus[: args.bytes]}
    comps = {name: Components(build_manager(load_submission(str(path))), only="tokenizer")
             for name, path in TOKENIZERS.items()}
    specials = comps["solution"].tokenizer().special_tokens
    figures, merges_differ = {}, []
    for label, text in texts.items():
        times: dict[str, list[float]] = {name: [] for name in [*comps, "chunk_count"]}
        merges = {}
        for _ in range(args.repeats):
            for name, c in comps.items():
                tok = c.tokenizer()
                t0 = time.perf_counter()
                tok.train(text, args.vocab)
                times[name].append(time.perf_counter() - t0)
                merges[name] = tok.merges
            t0 = time.perf_counter()
            n_chunks = len(Counter(c for part in split_special(text) if part not in specials for c in pretokenize(part)))
            times["chunk_count"].append(time.perf_counter() - t0)
        f = {f"{name}_s": statistics.median(ts) for name, ts in times.items()}
        f.update(naive_over_solution=f["naive_s"] / f["solution_s"], text_bytes=len(text.encode("utf-8")),
                 distinct_chunks=n_chunks, merges=len(merges["solution"]))
        figures[label] = f
        if merges["solution"] != merges["naive"]:
            merges_differ.append(label)
        print(f"{label}: {f['text_bytes']:,} bytes, {n_chunks} distinct chunks, vocabulary {args.vocab}, "
              f"{f['merges']} merges, medians of {args.repeats}")
        for name in ("solution", "naive", "chunk_count"):
            print(f"  {name:12} {f[f'{name}_s']:8.3f} s")
        print(f"  naive / solution {f['naive_over_solution']:.1f}x" + ("  target >= 10" if label == "words" else ""))

    missed = [f"the solution and the naive BPE learned different merges on {label}" for label in merges_differ]
    if figures["words"]["naive_over_solution"] < 10:
        missed.append(f"naive_over_solution on words = {figures['words']['naive_over_solution']:.2f}, target >= 10")
    return report(args.out, figures, missed, repeats=args.repeats)


if __name__ == "__main__":
    sys.exit(main())
