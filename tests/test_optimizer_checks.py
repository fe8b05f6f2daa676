"""The optimizer checks (cross-entropy and AdamW) fail on classic wrong plugins and pass on correct ones.

The unit checks compare with torch's own in the grader; the behavioural check pretrains a small GPT
for 50 steps with the plugin's loss and optimizer and compares each step's loss with the reference
run's (torch's AdamW and cross-entropy, the same seed), recomputed live. The three AdamW mistakes
below pass a one-parameter unit test of the kind Stanford CS336 uses (one ``nn.Linear`` without bias,
one learning rate) and fail that check, whose reason names each. Cost: about 25 s on 2 busy cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests import harness
from tests.harness import PLUGINS, ROOT, Table, assert_fails, assert_passes
from toolkit.plugins import Components, build_manager, load_submission

BEHAVIOUR = "optimizer.trains_like_reference"
CORRECT = {"solution": ROOT / "solutions" / "optimizer.py", "foreach": PLUGINS / "opt_foreach.py"}
OPTIMIZER = Table(
    "optimizer", CORRECT,
    wrong={  # wrong plugin -> {unit check it fails: what the reason says}; it passes the others
        "opt_shared_step.py": {"optimizer.adamw_state": "one step count shared by all parameters"},
        "opt_stale_lr.py": {"optimizer.adamw_state": "the learning rate is read once, at construction (stale)"},
        "opt_keyed_by_shape.py": {"optimizer.adamw_state": "parameters of one shape share their state (keyed by shape)"},
        # one mistake of the update rule shows with one parameter and with several alike
        "opt_l2_decay.py": {"optimizer.adamw_update": "weight decay is added to the gradient (Adam with L2)",
                            "optimizer.adamw_state": "weight decay is added to the gradient (Adam with L2)"},
        "opt_no_bias_correction.py": {"optimizer.adamw_update": "no bias correction",
                                      "optimizer.adamw_state": "no bias correction"},
        "opt_ce_log_softmax.py": {"optimizer.cross_entropy_stable": "log(softmax(z)) gives -inf for a very unlikely "
                                                                    "target"},
        # a sum is wrong on every logits, huge ones too
        "opt_ce_sum.py": {"optimizer.cross_entropy_matches": "the loss is the sum over the B*T positions",
                          "optimizer.cross_entropy_stable": "the loss is the sum over the B*T positions"},
        "opt_calls_torch.py": {"optimizer.written_out": "the code uses torch.optim.AdamW, F.cross_entropy"},
    },
    behaviour={  # the three mistakes a one-parameter unit test lets through, named by the behavioural check
        "opt_shared_step.py": {BEHAVIOUR: "one step count shared by all parameters"},
        "opt_stale_lr.py": {BEHAVIOUR: "the learning rate is read once, at construction (stale)"},
        "opt_keyed_by_shape.py": {BEHAVIOUR: "parameters of one shape share their state (keyed by shape)"},
    },
    sources=True,
)
TABLES = [OPTIMIZER]
CS336_MISSES = list(OPTIMIZER.behaviour)


@pytest.mark.parametrize("table, check_name, path", harness.correct_cases(TABLES))
def test_check_passes_on_correct_plugin(table, check_name, path):
    assert_passes(harness.unit_results(table, path)[check_name])


@pytest.mark.parametrize("table, check_name, path, says", harness.wrong_cases(TABLES))
def test_check_fails_on_wrong_plugin(table, check_name, path, says):
    assert_fails(harness.unit_results(table, path)[check_name], says)


@pytest.mark.parametrize("table, check_name, path", harness.other_cases(TABLES))
def test_wrong_plugin_passes_the_checks_of_other_mistakes(table, check_name, path):
    assert_passes(harness.unit_results(table, path)[check_name])


def test_the_baseline_returns_torchs_own_and_is_not_written_out():
    result = harness.run(["optimizer.written_out"], None)["optimizer.written_out"]
    assert_fails(result, "the hooks call torch's own")


# -- the three mistakes a one-parameter unit test misses ----------------------------------------
def cs336_style_unit_test(path: Path, steps: int = 100) -> float:
    """Stanford CS336's kind of AdamW test: one nn.Linear without bias (one parameter), one learning rate,
    ``steps`` steps of a regression loss, the plugin's weights against torch.optim.AdamW's: the largest gap."""
    optimizer = Components(build_manager(load_submission(str(path))), only="optimizer").optimizer
    models = []
    for make in (optimizer, lambda p, lr, betas, eps, wd: torch.optim.AdamW(p, lr=lr, betas=betas, eps=eps,
                                                                            weight_decay=wd)):
        torch.manual_seed(42)
        model = torch.nn.Linear(3, 2, bias=False)
        opt = make(list(model.parameters()), 1e-3, (0.9, 0.999), 1e-8, 0.01)
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            x, y = torch.randn(8, 3, generator=gen), torch.randn(8, 2, generator=gen)
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        models.append(model.weight.detach())
    return (models[0] - models[1]).abs().max().item()


@pytest.mark.parametrize("plugin", CS336_MISSES)
def test_the_mistake_passes_a_one_parameter_unit_test(plugin):
    assert cs336_style_unit_test(PLUGINS / plugin) <= 1e-6


@pytest.mark.parametrize("check_name, path, says", harness.behaviour_cases(TABLES))
def test_the_behavioural_check_fails_it_and_names_it(check_name, path, says):
    result = harness.run([check_name], path, sources=True)[check_name]
    assert_fails(result, says)
    assert result.metrics["first_gap"] > 5 * result.metrics["first_band"], result.metrics


@pytest.mark.parametrize("variant", list(CORRECT))
def test_the_behavioural_check_passes_correct_plugins(variant, tmp_path):
    result = harness.run([BEHAVIOUR], CORRECT[variant], report_dir=tmp_path, sources=True)[BEHAVIOUR]
    assert_passes(result)
    assert (tmp_path / "optimizer_gap.png").is_file()
    assert result.metrics["first_gap"] < result.metrics["first_band"] / 100


# -- under toolkit grade: the optimizer steps in the child ------------------------------------
def test_under_toolkit_grade_the_checks_read_the_same(tmp_path):
    """A class of two graded by ``toolkit grade`` (every check, the behavioural one too): the optimizer of
    each steps in its child (``RemoteOptimizer``), and the reasons are those of ``toolkit run``."""
    import csv
    import json

    klass = tmp_path / "class"
    klass.mkdir()
    (klass / "ada.py").write_text((PLUGINS / "opt_foreach.py").read_text())
    (klass / "bo.py").write_text((PLUGINS / "opt_stale_lr.py").read_text())
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "grade", str(klass), "--out", str(out), "--timeout",
                           "120", "--workers", "1", "-c", "optimizer"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (out / "grades.csv").open() as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["ada"]["status"] == "graded" and rows["bo"]["status"] == "graded"
    assert (rows["ada"]["total"], rows["bo"]["total"]) == ("14", "7"), rows  # hidden checks included
    tests = {student: {t["name"]: t for t in json.loads((out / "gradescope" / student / "results.json").read_text())["tests"]}
             for student in ("ada", "bo")}
    stale = "the learning rate is read once, at construction (stale)"
    assert stale in tests["bo"]["optimizer.adamw_state"]["output"]
    assert stale in tests["bo"][BEHAVIOUR]["output"] and tests["bo"][BEHAVIOUR]["score"] == 0
    assert (out / "feedback" / "bo" / "optimizer_gap.png").is_file()


# -- the pipeline's contexts (graders/contexts.py) ------------------------------------------------------
HOSTILE = ROOT / "tests" / "hostile" / "components"
LARGE_VOCABULARY_SUM = '''
import solutions.optimizer as correct  # the module, not its hooks: only those below are registered
import toolkit

@toolkit.hookimpl
def toolkit_cross_entropy(logits, targets):
    loss = correct.toolkit_cross_entropy(logits, targets)
    return loss if logits.shape[-1] <= 100 else loss * targets.numel()  # the sum, beyond the checks' vocabularies

@toolkit.hookimpl
def toolkit_optimizer(params, lr, betas, eps, weight_decay):
    return correct.toolkit_optimizer(params, lr, betas, eps, weight_decay)
'''


def test_an_optimizer_wrong_only_on_a_gpts_parameters_in_float32_fails_both_adamw_checks():
    """forge_context_optimizer skips the bias correction when given more than 10 parameters or float32 ones,
    as the pipeline gives them; ``adamw_update`` and ``adamw_state`` now also feed it a GPT's parameters (one,
    or all) in float32 with the pipeline's settings and schedule, and name the mistake."""
    results = harness.run(OPTIMIZER.checks, HOSTILE / "forge_context_optimizer.py", sources=True)
    for name in ("optimizer.adamw_update", "optimizer.adamw_state"):
        assert_fails(results[name], "of a GPT's, in float32, the pipeline's settings): no bias correction")
    assert all(r.status == "passed" for name, r in results.items() if "adamw" not in name), results


def test_a_loss_wrong_only_on_the_pipelines_vocabularies_fails_cross_entropy_matches(tmp_path):
    """The loss of the pipeline's logits (its vocabularies, float32, its batch sizes) is judged too."""
    path = tmp_path / "optimizer_large_vocabulary.py"
    path.write_text(LARGE_VOCABULARY_SUM)
    result = harness.run(["optimizer.cross_entropy_matches"], path)["optimizer.cross_entropy_matches"]
    assert_fails(result, "in float32: the loss is the sum over the B*T positions")
