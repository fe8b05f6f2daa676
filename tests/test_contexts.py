"""The unit checks' pipeline contexts draw their inputs from the instructor's seed (``graders.contexts``):
when a submission's code raises there, the reason says where, but not the error's message, whose
text is the student's to choose and could carry those inputs out (as a hidden check's reason does).

Each plugin below is correct on the checks' own small cases and, on the pipeline's larger inputs,
raises an error whose text holds the inputs it was given."""

import pytest

from toolkit.runner import run_submission

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


@pytest.mark.parametrize("component,source,check", [
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
