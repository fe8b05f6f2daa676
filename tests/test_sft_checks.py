"""The SFT mask checks fail on each classic wrong mask and pass on correct ones.

The behavioural tests run the real pipeline (the base model is pretrained once and cached,
then each mask gets its own SFT run of the full budget): they are what the grader does.
"""

from pathlib import Path

import pytest
import torch

from graders import sft_mask as grader
from tests import harness
from tests.harness import PLUGINS, ROOT, Table, assert_fails, assert_passes
from toolkit.checks import Context, run_check
from toolkit.config import PipelineConfig
from toolkit.pipeline import Pipeline
from toolkit.plugins import Components, build_manager, load_submission

CORRECT = {"solution": ROOT / "solutions" / "sft_mask.py", "vectorised": PLUGINS / "sft_vectorised.py"}
SFT_MASK = Table(
    "sft_mask", CORRECT,
    wrong={  # wrong mask -> {check it fails: what the reason must say}
        "sft_shifted.py": {"sft_mask.matches_reference": "shifted by one"},
        "sft_no_end.py": {"sft_mask.matches_reference": "<|end|>"},
        "sft_inverted.py": {"sft_mask.matches_reference": "the mask is inverted"},
        "sft_user_turns.py": {"sft_mask.matches_reference": "the mask is inverted"},
        "sft_everything.py": {"sft_mask.matches_reference": "supervises every token, the prompt too (no loss mask)"},
        "sft_all_true.py": {"sft_mask.matches_reference": "the prompt too, and the padding too (no loss mask)"},
    },
    behaviour={  # wrong mask -> {behavioural check: the criterion it must fail}
        "sft_everything.py": {"sft_mask.behaviour": "writes the user's question"},
        "sft_no_end.py": {"sft_mask.behaviour": "does not stop"},
        "sft_shifted.py": {"sft_mask.behaviour": "does not answer"},
    },
)
# sft_inverted.py fails "does not answer" too (it did in every run of this file up to 2026-11-30): the
# criterion sft_shifted.py shows, for another SFT run of 30 s; matches_reference names it above.
TABLES = [SFT_MASK]


def components(path: Path) -> Components:
    return Components(build_manager(load_submission(str(path))), only="sft_mask")


def check(name: str):
    return harness.all_checks("sft_mask")[f"sft_mask.{name}"]


def ctx(path: Path, pipeline: Pipeline | None = None) -> Context:
    comps = components(path)
    c = Context(comps, "sft_mask", PipelineConfig(), log=lambda m: None)
    if pipeline is not None:
        c._pipelines[c.config] = pipeline.sharing_base(comps)
    return c


@pytest.mark.parametrize("table, check_name, path", harness.correct_cases(TABLES))
def test_reference_mask_passes_on_correct_masks(table, check_name, path):
    assert_passes(harness.unit_results(table, path)[check_name])


@pytest.mark.parametrize("table, check_name, path, says", harness.wrong_cases(TABLES))
def test_reference_mask_fails_on_wrong_masks(table, check_name, path, says):
    assert_fails(harness.unit_results(table, path)[check_name], says)
# (matches_reference is the mask's only unit check: a wrong mask has no other one to pass)



def test_diagnose_names_a_supervised_assistant_tag():
    tokens = grader.mask_cases()
    want = components(CORRECT["solution"]).sft_mask(tokens.clone(), dict(grader.SPECIAL))
    got = want | (tokens[:, 1:] == grader.ASSISTANT)
    assert "the <|assistant|> tag" in grader.diagnose(tokens, got, want)


def test_thresholds_come_from_the_worst_seed_with_the_margin():
    from graders import calibration

    figures = calibration.calibration()["figures"]
    limits = grader.thresholds()
    assert limits["answer_seen"] == pytest.approx(min(figures["answer_seen"]) - grader.MARGIN)
    assert limits["writes_user_turn"] == pytest.approx(max(figures["writes_user_turn"]) + grader.MARGIN)
    fraction, reasons = grader.score({**{m: 1.0 for m in limits}, "writes_user_turn": 0.0}, limits)
    assert fraction == 1 and not reasons
    fraction, reasons = grader.score({**{m: 1.0 for m in limits}, "writes_user_turn": 0.0, "stops": 0.0}, limits)
    assert fraction == pytest.approx(0.75) and reasons == [grader.CRITERIA[2][1].format(x=0.0, t=limits["stops"])]


def test_a_chat_model_that_learned_nothing_earns_nothing_for_what_it_does_not_do():
    """A mask that supervises nothing leaves the base model as it was: it never answers, and never
    writes a user's turn either. Not writing one counts only as far as the model answers."""
    limits = grader.thresholds()
    nothing = {"answer_seen": 0.0, "clarification": 0.0, "stops": 0.0, "writes_user_turn": 0.0}
    fraction, reasons = grader.score(nothing, limits)
    assert fraction == 0 and len(reasons) == 3 and not any("user's question" in r for r in reasons)
    half = grader.score({**nothing, "answer_seen": limits["answer_seen"] / 2}, limits)[0]
    assert half == pytest.approx((0.5 + 0.5) / 4)  # half the answers: half of the answer and user-turn criteria


# -- behaviour (the real pipeline) ----------------------------------------------------
@pytest.fixture(scope="module")
def shared_pipeline():
    """Data, tokenizer and base model built once; each test runs SFT with its own mask."""
    p = Pipeline(components(CORRECT["solution"]), PipelineConfig(), log=lambda m: None)
    p.base_model, p.sft_data
    return p


@pytest.mark.slow
def test_behaviour_passes_on_a_correct_mask(shared_pipeline):
    """The vectorised mask passes. (The solution passes in tests/test_cli.py's end-to-end run.)"""
    tokens, solution_mask = shared_pipeline.sft_data
    result = run_check(check("behaviour"), ctx(CORRECT["vectorised"], shared_pipeline))
    assert result.status == "passed", result.reason
    m = result.metrics
    assert m["answer_seen"] >= 0.9 and m["clarification"] >= 0.7 and m["stops"] >= 0.9
    assert m["writes_user_turn"] <= 0.1
    assert m["base_top"] == "Continuation" and m["base_answer"] <= 0.3
    # Same masks on the real SFT data, so (deterministic training) the same behaviour.
    assert torch.equal(components(CORRECT["vectorised"]).sft_mask(tokens.clone(), dict(shared_pipeline.tokenizer.special_tokens)),
                       solution_mask)


@pytest.mark.slow
@pytest.mark.parametrize("check_name, path, says", harness.behaviour_cases(TABLES))
def test_behaviour_fails_on_wrong_masks(shared_pipeline, check_name, path, says):
    result = run_check(check(check_name.removeprefix("sft_mask.")), ctx(path, shared_pipeline))
    assert_fails(result, says, partial=True)
