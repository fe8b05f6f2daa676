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
from functools import cache

from toolkit.checks import SNAPSHOT_DIR, CheckFailed

PATH = SNAPSHOT_DIR / "calibration.json"
CALIBRATED = (  # the figures the sweep keeps
    "answer_seen", "answer_held_out", "correct_held_out", "clarification", "stops", "writes_user_turn", "base_answer",
    "headline_chat_answer", "base_val_loss", "reward_accuracy", "chat_rude", "rlhf_rude", "chat_correct",
    "rlhf_correct", "kl", "reward_gain", "tok_bpb", "tok_shuffled_bpb")


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


def points_lost(run: dict) -> list[str]:
    """What the behavioural checks would take from the solution under this seed, by the thresholds of
    ``graders/snapshots/calibration.json`` (its figures are those the checks grade)."""
    from graders import reward as reward_grader
    from graders import sft_mask as sft_grader
    from graders import tokenizer as tokenizer_grader
    try:
        from graders.hidden.checks import gain_full  # the instructor's copy only
    except ModuleNotFoundError:
        gain_full = None

    lost = []
    if "answer_seen" in run:
        fraction, reasons = sft_grader.score(run, sft_grader.thresholds())
        lost += [f"sft_mask.behaviour: {r}" for r in reasons]
    if "reward_accuracy" in run:
        fraction, reason = reward_grader.accuracy_score(run["reward_accuracy"])
        lost += [f"reward.accuracy: {reason}"] if fraction < 1 else []
        lost += [f"reward.rlhf_improves: {r}" for r in reward_grader.rlhf_failures(run)]
        if gain_full is not None and run["reward_gain"] < gain_full():
            lost.append(f"reward.rlhf_judged_by_solution: gain {run['reward_gain']:.2f}")
    if "tok_bpb" in run:
        fraction, reason = tokenizer_grader.bpb_score(run["tok_bpb"])
        lost += [f"tokenizer.behaviour: {reason}"] if fraction < 1 else []
        lost += [] if run["tok_bpb"] < run["tok_shuffled_bpb"] else ["tokenizer.behaviour: shuffled text as easy"]
    return lost
