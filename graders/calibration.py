"""The solution's behaviour over a seed sweep, and the thresholds it sets.

Torch's CPU kernels round differently on another CPU, and hundreds of training steps amplify it:
the solution's figures move from machine to machine. Another seed stands in for another machine.
``python benchmarks/seeds.py --calibrate`` trains the pipeline with the solutions under several
seeds and writes ``graders/snapshots/calibration.json``: each figure's value under each seed.

Every behavioural threshold is the **worst seed's** figure with a stated margin, never one
recorded run's: ``at_least(figure, margin)`` is the lowest value over the seeds minus the margin,
``at_most(figure, margin)`` the highest plus it. A correct submission on another machine then
passes as long as that machine does no worse than the worst seed did here, minus the margin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from toolkit import paths
from toolkit.checks import CheckFailed

PATH = paths.snapshot("calibration")


@dataclass(frozen=True)
class Figure:
    """A figure of the solution the sweep measures under each seed (``benchmarks/seeds.py``)."""

    name: str  # its key in calibration.json and in a seed's run
    label: str = ""  # what it is, in the docs' table of behaviour ("": not in the table)
    threshold: str = ""  # "module:function" of the grader that derives a check's threshold from it
    # (a number, or a dict figure -> number); "" if no public check derives one
    rule: str = ""  # how the docs write that threshold: a format of ``t``


FIGURES = [  # the calibrated figures, in the docs' order; the sweep keeps each of them
    Figure("base_val_loss", "base model: validation loss (nats/token)"),
    Figure("base_answer", "base model: Answer rate on the 110 unambiguous prompts"),
    Figure("answer_seen", "chat model: Answer rate, facts seen in SFT (60)",
           "graders.sft_mask:thresholds", "≥ {t:.2f} (`sft_mask.behaviour`)"),
    Figure("answer_held_out", "chat model: Answer rate, facts held out of SFT (50)"),
    Figure("correct_held_out", "chat model: correct answers, facts held out of SFT (50)"),
    Figure("clarification", "chat model: Clarification rate, ambiguous prompts (30)",
           "graders.sft_mask:thresholds", "≥ {t:.2f} (`sft_mask.behaviour`)"),
    Figure("stops", "chat model: stops after its reply", "graders.sft_mask:thresholds", "≥ {t:.2f} (`sft_mask.behaviour`)"),
    Figure("writes_user_turn", "chat model: writes a user's question after a bare `<|user|>`",
           "graders.sft_mask:thresholds", "≤ {t:.2f} (`sft_mask.behaviour`)"),
    Figure("headline_chat_answer", "headline at T = 1 (200 samples): chat Answer"),
    Figure("reward_accuracy", "reward model: held-out pairwise accuracy",
           "graders.reward:accuracy_full", "full credit ≥ {t:.2f} (`reward.accuracy`)"),
    Figure("chat_rude", "chat model: rude replies at T = 1"),
    Figure("rlhf_rude", "after RLHF: rude replies"),
    Figure("rlhf_correct", "after RLHF: correct replies",
           "graders.reward:correct_floor", "≥ {t:.2f} (`reward.rlhf_improves`)"),
    Figure("kl", "after RLHF: KL to the chat model (nats per reply, measured by the grader)",
           "graders.reward:kl_limit", "≤ {t:.2f} (`reward.rlhf_improves`)"),
    Figure("tok_bpb", "tokenizer check's small GPT: bits per byte",
           "graders.tokenizer:bpb_full", "full credit ≤ {t:.3f} (`tokenizer.behaviour`)"),
    Figure("optimizer_first_gap", "optimizer check's short pretraining: largest gap to the reference, first 30 steps "
           "(nats; correct optimizers)", "graders.optimizer:bands", "≤ {t:.3f} (`optimizer.trains_like_reference`)"),
    Figure("optimizer_tail_gap", "optimizer check's short pretraining: largest gap to the reference, last 20 steps "
           "(nats; correct optimizers)", "graders.optimizer:bands", "≤ {t:.3f} (`optimizer.trains_like_reference`)"),
    Figure("optimizer_wrong_first_gap", "optimizer check's short pretraining: the smallest such gap of the three AdamW "
           "mistakes, first 30 steps (nats)"),  # benchmarks/sweep_optimizer.py writes these three
    Figure("chat_correct"),
    Figure("reward_gain"),  # the hidden reward.rlhf_judged_by_solution's (graders/hidden/checks.py: gain_full)
    Figure("tok_shuffled_bpb"),
    Figure("block_seed_gap", "block check's 40 steps from scratch: gap to seed 0's curve (nats, last 10 steps)",
           "graders.block:curve_band", "≤ {t:.3f} (`block.trains_like_reference`)"),  # benchmarks/sweep_block.py
    Figure("block_curve_gap"),  # correct blocks written differently, against the solution (benchmarks/sweep_block.py)
]
CALIBRATED = tuple(f.name for f in FIGURES)  # the figures the sweep keeps


@cache
def calibration() -> dict:
    """The sweep's record: {"seeds", "date", "machine", "figures": {figure: [value per seed]}}."""
    if not PATH.exists():
        raise CheckFailed(f"{PATH.name} is missing; the instructor writes it with `python benchmarks/seeds.py "
                          "--calibrate`")
    return json.loads(PATH.read_text())


def seeds_of(figure: str) -> list[float]:
    values = calibration()["figures"].get(figure)
    if not values:
        raise CheckFailed(f"{PATH.name} has no figure {figure!r}; re-run `python benchmarks/seeds.py --calibrate`")
    return values


def at_least(figure: str, margin: float) -> float:
    """The threshold of a figure that must be high: its worst (lowest) seed minus ``margin``."""
    return min(seeds_of(figure)) - margin


def at_most(figure: str, margin: float) -> float:
    """The threshold of a figure that must be low: its worst (highest) seed plus ``margin``."""
    return max(seeds_of(figure)) + margin


def span(figure: str) -> str:
    """``"0.90 to 1.00 over 5 seeds"``: how a reason quotes the solution's range."""
    values = seeds_of(figure)
    return f"{min(values):.2f} to {max(values):.2f} over {len(values)} seeds"
