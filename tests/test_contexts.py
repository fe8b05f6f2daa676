"""The unit checks' pipeline contexts draw their inputs from the instructor's seed (``graders.contexts``):
when a submission's code raises there, the reason says where, but not the error's message, whose
text is the student's to choose and could carry those inputs out (as a hidden check's reason does).

Each plugin below is correct on the checks' own small cases and, on the pipeline's larger inputs,
raises an error whose text holds the inputs it was given. The modules' checks also call them in the
pipeline's modes (gradients on or off, train or eval): a module right in some of them only fails."""

from pathlib import Path

import pytest

from tests import harness
from tests.harness import assert_fails
from toolkit.runner import run_submission

ROOT = Path(__file__).resolve().parents[1]

LEAK = "LEAKED-INPUTS"

SAMPLER = f'''
import solutions.sampler as correct  # the module, not its hook: only the one below is registered
import toolkit

@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if logits.shape[-1] > 100:  # a vocabulary of the pipeline's, never of the checks' own cases
        raise ValueError("{LEAK} " + repr(logits[0, :8].tolist()))
    return correct.toolkit_sample(logits, temperature, top_k, top_p, generator)
'''

REWARD_LOSS = f'''
import torch.nn.functional as F
import toolkit
from solutions.reward import toolkit_reward_model  # noqa: F401 - the model is not under test here

@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    if chosen.shape[0] != 16:  # a batch size of the pipeline's, never the check's own 16
        raise ValueError("{LEAK} " + repr(chosen.tolist()))
    return -F.logsigmoid(chosen - rejected).mean()
'''

BLOCK = f'''
import solutions.block as correct  # the module, not its hook: only the one below is registered
import toolkit

@toolkit.hookimpl
def toolkit_block(config, attention):
    module = correct.toolkit_block(config, attention)
    forward = module.forward

    def leaky(x):
        if x.shape[-1] == 64:  # the pipeline's small width, never of the checks' own cases
            raise ValueError("{LEAK} " + repr(x[0, 0, :8].tolist()))
        return forward(x)

    module.forward = leaky
    return module
'''

OPTIMIZER = f'''
import torch
import solutions.optimizer as correct  # the module, not its hooks: only those below are registered
import toolkit

@toolkit.hookimpl
def toolkit_cross_entropy(logits, targets):
    if logits.shape[-1] > 100:  # a vocabulary of the pipeline's, never of the checks' own cases
        raise ValueError("{LEAK} " + repr(logits[0, 0, :8].tolist()))
    return correct.toolkit_cross_entropy(logits, targets)

class Leaky(correct.AdamW):
    def step(self, closure=None):
        params = self.param_groups[0]["params"]
        if params[0].dtype == torch.float32:  # the pipeline's parameters, never the AdamW checks' own
            raise ValueError("{LEAK} " + repr(params[0].flatten()[:8].tolist()))
        return super().step()

@toolkit.hookimpl
def toolkit_optimizer(params, lr, betas, eps, weight_decay):
    return Leaky(params, lr, betas, eps, weight_decay)
'''


@pytest.mark.parametrize("component,source,check", [
    ("block", BLOCK, "block.matches_reference"),
    ("block", BLOCK, "block.causal"),
    ("block", BLOCK, "block.gradients"),
    ("optimizer", OPTIMIZER, "optimizer.cross_entropy_matches"),
    ("optimizer", OPTIMIZER, "optimizer.adamw_update"),
    ("optimizer", OPTIMIZER, "optimizer.adamw_state"),
    ("sampler", SAMPLER, "sampler.greedy"),
    ("sampler", SAMPLER, "sampler.top_k"),
    ("sampler", SAMPLER, "sampler.uses_generator"),
    ("reward", REWARD_LOSS, "reward.loss_sanity"),
])
def test_an_error_on_the_pipelines_inputs_is_told_without_its_message(component, source, check, tmp_path):
    path = tmp_path / f"{component}_leaky.py"
    path.write_text(source)
    run = run_submission(str(path), [component], include_hidden=False, behavioural=False, log=lambda msg: None,
                         lanes=False)
    result = next(r for r in run.results if r.name == check)
    assert result.status == "failed" and result.score == 0, result
    assert "raised an error on the pipeline's" in result.reason and "message is not shown" in result.reason, result.reason
    assert LEAK not in result.reason, result.reason


MOODY = '''
import torch
import solutions.{component} as correct  # the module, not its hook: only the one below is registered
import toolkit

@toolkit.hookimpl
def toolkit_{component}({arguments}):
    module = correct.toolkit_{component}({arguments})
    forward = module.forward

    def moody(x):  # right in some modes only: off by 1e-3 in the others
        y = forward(x)
        return y if {right_when} else y + 1e-3

    module.forward = moody
    return module
'''
ARGUMENTS = {"attention": "config", "block": "config, attention"}
WRONG_IN = {  # right only when ... -> the mode a reason then names
    "torch.is_grad_enabled()": "under torch.no_grad()",
    "not torch.is_grad_enabled()": "with gradients on",
    "module.training": "in .eval() mode",
    "not module.training": "in .train() mode",
}


@pytest.mark.parametrize("right_when", list(WRONG_IN))
@pytest.mark.parametrize("component", ["attention", "block"])
def test_a_module_right_in_some_modes_only_fails(component, right_when, tmp_path):
    """The pipeline trains with gradients on and in .train() mode, and probes under torch.no_grad() in .eval()
    mode: ``matches_reference`` calls the module in every mode (drawn per case, ``contexts.with_modes``), so a
    module right with gradients on only (or off, or in one of train and eval only) fails it, and the reason
    says in which mode it was wrong."""
    path = tmp_path / f"{component}_moody.py"
    path.write_text(MOODY.format(component=component, arguments=ARGUMENTS[component], right_when=right_when))
    result = harness.run([f"{component}.matches_reference"], path)[f"{component}.matches_reference"]
    assert_fails(result, "output differs from the reference by 1.00e-03")
    assert WRONG_IN[right_when] in result.reason, result.reason


# -- the behavioural checks stand on code that computes the same everywhere ---------------------------
RIGHT_ONLY_IN_THE_PIPELINE = {  # component -> a plugin right where the pipeline runs it and wrong elsewhere
    "attention": (ROOT / "tests" / "hostile" / "components" / "forge_dtype_attention.py").read_text(),  # float32 only
    "block": MOODY.format(component="block", arguments=ARGUMENTS["block"], right_when="x.dtype == torch.float32"),
    "optimizer": '''
import torch
import solutions.optimizer as correct
from solutions.optimizer import toolkit_cross_entropy  # noqa: F401 - the loss is right everywhere
import toolkit

@toolkit.hookimpl
def toolkit_optimizer(params, lr, betas, eps, weight_decay):
    params = list(params)
    wrong = any(p.dtype == torch.float64 for p in params)
    return correct.toolkit_optimizer(params, lr, betas, eps, 2 * weight_decay if wrong else weight_decay)
''',
    "sft_mask": '''
import solutions.sft_mask as correct
import toolkit

@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):  # the pipeline fine-tunes on its 260 conversations at once
    mask = correct.toolkit_sft_mask(tokens, special_tokens)
    return mask if len(tokens) > 100 else ~mask
''',
}
STANDS_ON = {  # component -> (its unit check, what its reason says, the case it found right, the behavioural ones)
    "attention": ("matches_reference", "differs from", "float32", ["reference_weights", "trains_like_reference"]),
    "block": ("matches_reference", "differs from", "float32", ["reference_weights", "trains_like_reference"]),
    "optimizer": ("adamw_update", "differs from", "float32", ["trains_like_reference"]),
    "sft_mask": ("matches_reference", "the mask is inverted", "the pipeline's", ["behaviour"])}


@pytest.mark.parametrize("component", list(RIGHT_ONLY_IN_THE_PIPELINE))
def test_code_right_only_where_the_pipeline_runs_it_earns_no_behavioural_point(component, tmp_path):
    """Issue 31's example 3, for each component whose behaviour the pipeline measures: code right where the
    pipeline runs it (float32; a batch of all its conversations) and wrong where the checks also look
    fails the unit check, which keeps a case it found right and one it found wrong; the behavioural checks
    standing on it then fail before any model is trained, saying "computes the same in every context" (its
    honest version, wrong everywhere, earns none of them either)."""
    path = tmp_path / f"{component}_right_in_the_pipeline.py"
    path.write_text(RIGHT_ONLY_IN_THE_PIPELINE[component])
    unit, says, right, behavioural = STANDS_ON[component]
    results = harness.run([f"{component}.{unit}"] + [f"{component}.{c}" for c in behavioural], path)
    assert_fails(results[f"{component}.{unit}"], says)
    assert right in results[f"{component}.{unit}"].metrics["right_and_wrong"][0]
    for check in behavioural:
        assert_fails(results[f"{component}.{check}"], "computes the same in every context")
        assert results[f"{component}.{check}"].seconds < 1, results[f"{component}.{check}"]  # nothing trained


@pytest.mark.parametrize("plugin, check", [("attn_no_mask.py", "attention.matches_reference"),
                                           ("opt_ce_sum.py", "optimizer.cross_entropy_matches")])
def test_a_mistake_that_vanishes_with_one_row_position_or_head_is_not_called_context_dependent(plugin, check):
    """No mask is right with one position, a sum is the mean with one target: cases where a classic mistake
    cannot show do not count as right (``contexts.telling``), so an honest mistake keeps its own behavioural
    reasons (and points: a summed loss trains like the mean under Adam)."""
    result = harness.run([check], ROOT / "tests" / "plugins" / plugin)[check]
    assert_fails(result, "differs from" if plugin.startswith("attn") else "the loss is")
    assert "right_and_wrong" not in result.metrics, result.metrics
