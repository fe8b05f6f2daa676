"""Generation with and without the KV cache, and the data stages built once per process (issue #20).

    python benchmarks/generation.py [--rounds 5] [--out benchmarks/results/generation.json]

In one process, on the pipeline's base model and on its chat model trained with the solution's
mask (both from the cache, trained first if missing), each round times, in turns (the other
one first in every other round):

* ``probe``: ``graders.sft_mask.behaviour_metrics``, all the generation of the SFT mask's
  behavioural check (140 greedy prompts to each model, 40 headline samples each, 30 user turns);
* ``rollouts``: the sampling of 30 RLHF steps (16 prompts x 4 replies, 16 tokens, T = 1);

once with the KV cache (the baseline's attention) and once recomputing the context at every
step, as for a model whose attention is a plugin's (the same weights, ``supports_cache``
False). The figure is the median over rounds of each round's ratio. Targets: the behaviour
metrics are identical both ways (the cache changes no figure); the cache is faster (ratio > 1).

``data``: the seconds a pipeline takes to build its world, corpus, conversations, baseline
tokenizer and token stream the first time in a process, then again in a new pipeline (a
copy from the process's cache).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import report  # noqa: E402
from graders.sft_mask import behaviour_metrics  # noqa: E402
from toolkit.model import GPT  # noqa: E402
from toolkit.pipeline import Pipeline  # noqa: E402
from toolkit.plugins import Components, build_manager, load_submission  # noqa: E402
from toolkit.sample import generate  # noqa: E402
from toolkit.template import BOS, END, USER, chat_prompt  # noqa: E402


class Recompute(GPT):
    """The same model, generating as a model with a plugin's attention does: no KV cache."""
    supports_cache = False


def recomputing(model: GPT) -> GPT:
    other = copy.deepcopy(model)
    other.__class__ = Recompute
    return other


def rollouts(p: Pipeline, model: GPT, steps: int = 30) -> None:
    """The sampling of ``steps`` RLHF steps (``toolkit.rlhf.rlhf``'s shapes)."""
    cfg, tok = p.config.rlhf, p.tokenizer
    stop = {tok.special_tokens[s] for s in (BOS, USER, END)}
    by_length: dict[int, list[list[int]]] = {}
    for f in p.world.sft_facts:
        ids = tok.encode(chat_prompt(p.world.question(f)))
        by_length.setdefault(len(ids), []).append(ids)
    lengths, gen = sorted(by_length), torch.Generator().manual_seed(0)
    for step in range(steps):
        group = by_length[lengths[step % len(lengths)]]
        prompts = torch.tensor([group[i % len(group)] for i in range(cfg.prompts_per_step)])
        generate(model, prompts.repeat_interleave(cfg.samples_per_prompt, 0), cfg.max_new_tokens,
                 cfg.temperature, stop_ids=stop, generator=gen)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generation.json")
    args = ap.parse_args()

    mask = lambda: Components(build_manager(load_submission(str(ROOT / "solutions"))), only="sft_mask")  # noqa: E731
    first, _ = timed(lambda: Pipeline(mask(), log=print).stream)
    again, _ = timed(lambda: Pipeline(mask(), log=print).stream)
    p = Pipeline(mask(), log=print)
    cached = {"base_model": p.base_model, "chat_model": p.chat_model}
    plain = copy.copy(p)  # the same pipeline, its models recomputing
    plain.__dict__.update({k: recomputing(m) for k, m in cached.items()})
    runs = {f"{what}_{how}": [] for what in ("probe", "rollouts") for how in ("cached", "recomputed")}
    metrics = {}
    for r in range(args.rounds):
        order = (("cached", p), ("recomputed", plain))[:: 1 if r % 2 == 0 else -1]
        for how, pipeline in order:
            seconds, m = timed(lambda: behaviour_metrics(pipeline))
            runs[f"probe_{how}"].append(seconds)
            metrics[how] = {k: v for k, v in m.items() if k != "_examples"}
            runs[f"rollouts_{how}"].append(timed(lambda: rollouts(pipeline, pipeline.chat_model))[0])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()), flush=True)

    figures = {"data_first_s": round(first, 3), "data_again_s": round(again, 3)}
    for what in ("probe", "rollouts"):
        c, u = runs[f"{what}_cached"], runs[f"{what}_recomputed"]
        figures[f"{what}_cached_s"] = round(statistics.median(c), 3)
        figures[f"{what}_recomputed_s"] = round(statistics.median(u), 3)
        figures[f"{what}_speedup"] = round(statistics.median(b / a for a, b in zip(c, u)), 2)
    figures["behaviour_identical"] = metrics["cached"] == metrics["recomputed"]
    for k, v in figures.items():
        print(f"{k}: {v}")
    missed = [] if figures["behaviour_identical"] else ["the behaviour metrics differ with and without the KV cache"]
    missed += [f"{w}_speedup = {figures[f'{w}_speedup']}, target > 1" for w in ("probe", "rollouts")
               if figures[f"{w}_speedup"] <= 1]
    return report(args.out, figures, missed, rounds=args.rounds, runs=runs)


if __name__ == "__main__":
    sys.exit(main())
