"""The block checks fail on each classic wrong block and pass on correct ones written differently.

The unit checks run once per plugin (``tests/harness.py``); the behavioural ones train the 40-step
curve of each block they name (about 6 s each) and read the reference base model from the cache.
"""

import pytest

from graders import block as grader
from tests import harness
from tests.harness import PLUGINS, ROOT, Table, assert_fails, assert_passes

BLOCK = Table(
    "block",
    correct={"solution": ROOT / "solutions" / "block.py", "fused_mlp": PLUGINS / "block_fused_mlp.py",
             "handwritten": PLUGINS / "block_handwritten.py"},
    wrong={  # wrong plugin -> {check it fails: what the reason must say}; it passes its other checks
        "block_post_norm.py": {"block.matches_reference": "post-norm: the LayerNorm comes after the residual sum"},
        "block_no_residual.py": {"block.matches_reference": "a missing residual: the attention's output replaces x"},
        "block_unbiased_var.py": {"block.matches_reference": "the LayerNorm uses the unbiased variance"},
        "block_ln_time_axis.py": {
            "block.matches_reference": "the LayerNorm runs over the wrong axis (time, dim 1)",
            "block.causal": "the LayerNorm runs over the time axis (dim 1), which mixes in later positions",
        },
        "block_tanh_gelu.py": {"block.matches_reference": "the tanh GELU"},
        "block_gamma_zero.py": {"block.parameters": "ln_1's γ (weight) starts at 0 on average, not 1: γ initialised "
                                                    "to zero"},
        "block_detached_mlp.py": {"block.gradients": "a detached branch (.detach() on the MLP branch"},
        "block_own_attention.py": {"block.uses_given_attention": "builds an attention of its own from config"},
    },
    behaviour={  # the forward is right on loaded weights: only training shows it
        "block_detached_mlp.py": {"block.trains_like_reference": "nats higher than the reference's"},
    },
)
TABLES = [BLOCK]
ALSO_FAILS = {  # (wrong plugin, a second check it fails) -> why that is honest
    ("block_ln_time_axis.py", "block.causal"):
        "normalising over time mixes later positions into earlier ones: the same mistake breaks causality",
}


def test_a_wrong_plugin_fails_a_second_check_only_for_a_reason():
    beyond_own = {(plugin, check) for plugin, fails in BLOCK.wrong.items() for check in list(fails)[1:]}
    assert beyond_own == set(ALSO_FAILS)


@pytest.mark.parametrize("table, check_name, path", harness.correct_cases(TABLES))
def test_check_passes_on_correct_plugin(table, check_name, path):
    assert_passes(harness.unit_results(table, path)[check_name])


@pytest.mark.parametrize("table, check_name, path, says", harness.wrong_cases(TABLES))
def test_check_fails_on_wrong_plugin(table, check_name, path, says):
    assert_fails(harness.unit_results(table, path)[check_name], says)


@pytest.mark.parametrize("table, check_name, path", harness.other_cases(TABLES))
def test_wrong_plugin_passes_the_checks_of_other_mistakes(table, check_name, path):
    """Each check is specific: one bug costs the points of its own checks only."""
    assert_passes(harness.unit_results(table, path)[check_name])


def test_every_mistake_the_grader_names_is_one_of_a_wrong_plugin():
    """Each classic mistake of ``MISTAKES`` differs from the reference on the checks' shapes."""
    case = grader.Case(2, 5, 12, 3)
    state = grader.seeded_state(case.C, case.seed)
    x = grader.torch.randn(case.B, case.T, case.C, dtype=grader.torch.float64)
    right = grader.textbook(state, x, case.nh)
    with grader.torch.no_grad():
        assert (grader.reference(state, x, case.nh)(x) - right).abs().max() < 1e-12
    for mistake, _ in grader.MISTAKES:
        assert (grader.textbook(state, x, case.nh, **mistake) - right).abs().max() > 1e-4, mistake


# -- behaviour: the blocks inside the reference GPT (the base model comes from the cache) -------------
@pytest.mark.slow
def test_reference_weights_passes_on_a_correct_block_and_fails_on_post_norm():
    result = harness.run(["block.reference_weights"], PLUGINS / "block_fused_mlp.py")["block.reference_weights"]
    assert result.status == "passed", result.reason
    assert result.metrics["greedy_identical"] == f"{grader.N_PROMPTS}/{grader.N_PROMPTS}"
    assert result.metrics["logits_max_diff"] < 1e-4
    wrong = harness.run(["block.reference_weights"], PLUGINS / "block_post_norm.py")["block.reference_weights"]
    assert_fails(wrong, "with the reference weights the logits differ by up to")


@pytest.mark.slow
def test_trains_like_reference_passes_on_a_correct_block_written_differently(tmp_path):
    result = harness.run(["block.trains_like_reference"], PLUGINS / "block_fused_mlp.py",
                         report_dir=tmp_path)["block.trains_like_reference"]
    assert result.status == "passed", result.reason
    assert abs(result.metrics["curve_gap"]) < 1e-3 and (tmp_path / "block_curve.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("check_name, path, says", harness.behaviour_cases(TABLES))
def test_behaviour_fails_on_a_block_whose_forward_is_right(check_name, path, says):
    assert_fails(harness.run([check_name], path)[check_name], says)


# -- the pipeline's contexts (graders/contexts.py) ------------------------------------------------------
HOSTILE = ROOT / "tests" / "hostile" / "components"


def test_a_block_post_norm_only_in_the_pipelines_training_fails_as_post_norm_does():
    """forge_context_block is post-norm only with gradients on, in float32, at width 64 or more: where the
    pipeline trains its GPT, and where no unit check used to look. ``matches_reference`` now meets it there
    (the pipeline's widths, in every mode) and names the mistake; ``gradients`` compares its backward, there,
    with central differences of its own float64 forward, the pre-norm one. Its honest version, block_post_norm,
    passes ``gradients`` (its backward follows its forward) and fails the hidden check: both earn 5 of 10."""
    results = harness.run(BLOCK.checks, HOSTILE / "forge_context_block.py")
    assert_fails(results["block.matches_reference"], "in float32: post-norm: the LayerNorm comes after the residual sum")
    assert_fails(results["block.gradients"], "backward does not follow the forward")
    assert all(r.status == "passed" for name, r in results.items() if name not in ("block.matches_reference",
                                                                                   "block.gradients")), results
