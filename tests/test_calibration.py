"""The behavioural thresholds come from the solution's seed sweep (graders/calibration.py), and the
solution keeps every point under every seed of it, as ``benchmarks/seeds.py`` grades them."""

import pytest

from graders import calibration, reward, sft_mask
from benchmarks.seeds import points_lost
from graders.calibration import CALIBRATED


def runs() -> list[dict]:
    """Each seed's figures, as the sweep measured them."""
    figures = calibration.calibration()["figures"]
    return [{name: values[i] for name, values in figures.items()} for i in range(len(calibration.calibration()["seeds"]))]


def test_the_sweep_has_five_seeds_or_more_and_every_figure():
    cal = calibration.calibration()
    assert len(cal["seeds"]) >= 5 and cal["date"] and cal["machine"]
    assert set(CALIBRATED) <= set(cal["figures"])
    assert all(len(v) == len(cal["seeds"]) for v in cal["figures"].values())


@pytest.mark.parametrize("i", range(5))
def test_the_solution_keeps_every_point_under_every_seed(i):
    assert points_lost(runs()[i]) == []


def test_thresholds_are_the_worst_seed_with_the_margin():
    figures = calibration.calibration()["figures"]
    assert calibration.at_least("answer_seen", 0.1) == pytest.approx(min(figures["answer_seen"]) - 0.1)
    assert calibration.at_most("kl", 0.0) == max(figures["kl"])
    assert calibration.span("kl").endswith(f"over {len(figures['kl'])} seeds")


def test_a_seed_below_the_thresholds_loses_points_and_says_where():
    worst = {**runs()[0], "answer_seen": calibration.at_least("answer_seen", sft_mask.MARGIN) - 0.05,
             "kl": 2 * calibration.at_most("kl", 0.0) + reward.KL_MARGIN + 0.1, "reward_accuracy": 0.55,
             "tok_bpb": 10 * calibration.at_most("tok_bpb", 0.0)}
    lost = points_lost(worst)
    assert any(x.startswith("sft_mask.behaviour: the chat model does not answer") for x in lost)
    assert any(x.startswith("reward.rlhf_improves: KL to the chat model") for x in lost)
    assert any(x.startswith("reward.accuracy: held-out pairwise accuracy 0.55") for x in lost)
    assert any(x.startswith("tokenizer.behaviour:") for x in lost)


def test_a_missing_figure_is_one_clear_sentence(monkeypatch):
    from toolkit.checks import CheckFailed

    with pytest.raises(CheckFailed, match="has no figure 'nope'"):
        calibration.at_least("nope", 0.0)
