"""The tokenizer, attention and reward checks fail on classic wrong plugins and pass on correct ones.

Each check runs the way ``toolkit.runner`` runs it (``tests.harness.run``): the plugin file is loaded,
a manager is built, ``Components(pm, only=<component>)`` swaps that one component in, and
``run_check`` turns whatever happens into a ``Result``. The tables below say which plugin must pass or
fail which check, with which words; ``tests/harness.py`` runs them. Behavioural checks (which train
models) are not run by the tables. The plugins live in ``tests/plugins``: ``tok_*``, ``attn_*`` and
``reward_*``, each either correct (written differently from ``solutions/``) or wrong with one classic bug.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests import harness
from tests.harness import PLUGINS, ROOT, Table, assert_fails, assert_passes
from toolkit import rlhf
from toolkit.checks import CheckFailed, Context, Result, collect, run_check
from toolkit.components import COMPONENTS
from toolkit.model import GPTConfig
from toolkit.config import PipelineConfig
from toolkit.plugins import Components, build_manager, load_submission

TOKENIZER = Table(
    "tokenizer",
    correct={"solution": ROOT / "solutions" / "tokenizer.py", "incremental": PLUGINS / "tok_incremental.py"},
    wrong={  # wrong plugin -> {check it must fail: what the reason must say}; it passes its other checks
        "tok_first_seen_tiebreak.py": {"tokenizer.merges_match": "on equal counts the greatest pair wins (the tie-break",
                                       "tokenizer.speed": "instead of recounting every pair"},
        "tok_unweighted.py": {"tokenizer.merges_match": "merge #0 is (97, 110), expected (105, 115): (97, 110) occurs "
                                                        "340 times in the text, (105, 115) 1584 times: count each pair "
                                                        "as often as its chunk occurs"},
        "tok_forgets_merges.py": {"tokenizer.merges_match": "learned 0 merges",
                                  "tokenizer.encodings_match": "training learned 0 merges where a 400-token vocabulary "
                                                               "asks for 139",
                                  "tokenizer.speed": "learned 0 merges where a 600-token vocabulary asks for 339"},
        "tok_train_noop.py": {"tokenizer.merges_match": "learned 0 merges, expected",
                              "tokenizer.encodings_match": "encode is checked with the merges train learns",
                              "tokenizer.speed": "only a training that learns every merge asked for is timed"},
        "tok_naive.py": {"tokenizer.speed": "update the counts of the pairs that changed"},
        "tok_special_as_bytes.py": {"tokenizer.special_tokens": "encode('<|bos|>') gave [60, 124, 98, 111, 115, 124, "
                                                                "62]; expected [256]: a special token is one id, never "
                                                                "its bytes"},
        "tok_merges_out_of_order.py": {"tokenizer.encodings_match": "the merges are not applied in the order learned"},
        "tok_strict_decode.py": {"tokenizer.round_trip": "decode([0xE2, 0x82]) raised UnicodeDecodeError"},
        "tok_decode_drops_specials.py": {"tokenizer.round_trip": "decode(encode('<|bos|><|user|>"},
    },
    also_used=("tok_ascii_only.py", "tok_remembers_text.py"),  # RAISING; the behaviour check's forged ids
)

ATTENTION = Table(
    "attention",
    correct={"solution": ROOT / "solutions" / "attention.py", "einsum": PLUGINS / "attn_einsum.py"},
    wrong={
        "attn_no_mask.py": {
            "attention.causal": "mask the scores of future positions",
            "attention.matches_reference": "it is attention without the causal mask",
        },
        "attn_scale_by_hs.py": {"attention.matches_reference": "the scores are divided by the head size: divide them "
                                                               "by sqrt(head size)"},
        "attn_no_scale.py": {"attention.matches_reference": "the scores are not scaled: divide them by sqrt(head size)"},
        "attn_wrong_view.py": {"attention.matches_reference": "the head split is wrong: view(B, n_head, T, hs)"},
        "attn_softmax_axis.py": {
            "attention.matches_reference": "the softmax runs over the queries (dim -2)",
            "attention.causal": "the softmax runs over the queries (dim -2), which mixes in later positions",
        },
        "attn_sdpa.py": {"attention.written_out": "forward calls scaled_dot_product_attention"},
        "attn_naive_softmax.py": {"attention.stable": "subtract each row's maximum"},
    },
    also_used=("attn_raises_in_forward.py", "attn_raises_in_hook.py",  # student code that raises
               "attn_exits_in_forward.py", "attn_nan_noncausal.py"),  # see the tests of misbehaving code
)

REWARD = Table(
    "reward",
    correct={"solution": ROOT / "solutions" / "reward.py", "gather": PLUGINS / "reward_gather.py",
             "sequential": PLUGINS / "reward_sequential.py", "zero_head": PLUGINS / "reward_zero_head.py",
             "unicode_names": PLUGINS / "reward_unicode_names.py"},
    wrong={
        "reward_sign_flipped.py": {"reward.loss_sanity": "the sign is flipped"},
        "reward_separate_terms.py": {"reward.loss_sanity": "the loss is two separate terms"},
        "reward_sigmoid_strengths.py": {"reward.loss_sanity": "must depend on chosen - rejected only"},
        "reward_last_position.py": {"reward.reads_last_real_token": "read the hidden state at lengths - 1"},
        "reward_constant.py": {"reward.reads_last_real_token": "when its last real token changed (with random "
                                                               "weights)"},
        "reward_batch_centred.py": {"reward.reads_last_real_token": "changed the rewards of other rows"},
        "reward_ignores_rejected.py": {"reward.loss_sanity": "the loss ignores the rejected rewards"},
    },
    behaviour={  # wrong reward plugin -> {behavioural check it fails: what the reason says}
        # RLHF with the flipped sign fails both RLHF checks too (in every run up to 2026-11-30: "rude replies went
        # from", "RLHF followed your reward model away"); reward_ignores_rejected.py shows them, for one RLHF run less
        "reward_sign_flipped.py": {
            "reward.accuracy": "the reward of chosen answers must beat that of rejected ones"},
        "reward_ignores_rejected.py": {  # rlhf_improves on every seed of the calibration, the judge on four of five
            "reward.rlhf_improves": "not even halved",
            "reward.rlhf_judged_by_solution": "RLHF followed your reward model away from what the solution's rewards"},
    },
    # reward_last_position.py is caught by reads_last_real_token: with a causal model and right padding, the state
    # at T - 1 has still read the whole row. Over the calibration's seeds (benchmarks/results/seeds.json) behaviour
    # catches it on three seeds of five only (accuracy on one, rlhf_improves on two).
    also_used=("reward_off_by_one.py", "reward_call_order.py"),  # RAISING; held-out accuracy in one call
)

TABLES = [TOKENIZER, ATTENTION, REWARD]
CORRECT = {t.component: t.correct for t in TABLES}  # component -> name -> a plugin that passes every check
CHECKS = {name: c for t in TABLES for name, c in harness.unit_checks(t.component).items()}
"""Every non-behavioural public check of the three components, by name ("attention.causal")."""

ALSO_FAILS = {  # (wrong plugin, a second check it fails) -> why that is honest: one mistake, one check, but these
    ("tok_first_seen_tiebreak.py", "tokenizer.speed"):
        "a second mistake in the same plugin: it recounts every pair after each merge (minbpe's way), so it is slow",
    ("tok_forgets_merges.py", "tokenizer.encodings_match"):
        "encode is checked with the merges train learns; with none learned there is nothing to check it with",
    ("tok_forgets_merges.py", "tokenizer.speed"): "only a training that learns every merge asked for is timed",
    ("tok_train_noop.py", "tokenizer.encodings_match"):
        "encode is checked with the merges train learns; with none learned there is nothing to check it with",
    ("tok_train_noop.py", "tokenizer.speed"): "only a training that learns every merge asked for is timed",
    ("attn_no_mask.py", "attention.matches_reference"):
        "the reference is causal attention: without the mask every output but the last differs (the reason names "
        "the missing mask, the causal check's concept)",
    ("attn_softmax_axis.py", "attention.causal"):
        "a softmax over the queries mixes later positions into earlier outputs: the module is not causal",
}
"""Every failure of a wrong plugin beyond its mistake's own check (the first in its table), and why."""

RAISING = [  # (check, plugin, the exception in the reason, a line of the plugin that raised it, the case named)
    ("attention.matches_reference", "attn_raises_in_forward.py", "ValueError: heads do not divide", "raise ValueError",
     "on B=1 T=1 C=8 n_head=2"),
    ("attention.causal", "attn_raises_in_forward.py", "ValueError: heads do not divide", "raise ValueError",
     "on B=2 T=8 C=16 n_head=4"),
    ("attention.stable", "attn_raises_in_forward.py", "ValueError: heads do not divide", "raise ValueError",
     "on B=2 T=6 C=16 n_head=4 in float32"),
    ("attention.written_out", "attn_raises_in_forward.py", "ValueError: heads do not divide", "raise ValueError",
     "on B=2 T=5 C=12 n_head=3"),
    ("tokenizer.round_trip", "tok_ascii_only.py", "UnicodeEncodeError: 'ascii' codec", 'text.encode("ascii")',
     """on decode(encode("Ça, c'est déjà l'été à Málaga"))"""),
    ("tokenizer.encodings_match", "tok_ascii_only.py", "UnicodeEncodeError: 'ascii' codec", 'text.encode("ascii")',
     """on encode("Ça, c'est déjà l'été à Málaga")"""),
    ("reward.reads_last_real_token", "reward_off_by_one.py", "IndexError: index 6 is out of bounds",
     "lengths]).squeeze", "on the check's own 3 rows of 6 tokens"),
]


def all_checks(name: str):
    """Any check of the components, hidden and behavioural ones too."""
    return harness.all_checks(name.split(".")[0])[name]


def run(check_names: str | list[str], path: Path, report_dir: Path | None = None) -> Result | dict[str, Result]:
    """What the runner does for one check (a Result), or for several of one component in order,
    sharing one context and so one pipeline (a dict name -> Result)."""
    results = harness.run([check_names] if isinstance(check_names, str) else check_names, path, report_dir)
    return results[check_names] if isinstance(check_names, str) else results


# -- the tables above are complete (and tests/test_tables.py: every check is caught, every plugin used) --
def test_the_tables_name_the_checks_and_say_why_a_plugin_fails_a_second_one():
    assert set(CHECKS) >= {f"{comp}.{name}" for comp, name in
                           [("tokenizer", "round_trip"), ("tokenizer", "special_tokens"),
                            ("tokenizer", "merges_match"), ("tokenizer", "encodings_match"), ("tokenizer", "speed"),
                            ("attention", "matches_reference"),
                            ("attention", "causal"), ("attention", "written_out"), ("attention", "stable"),
                            ("reward", "loss_sanity"), ("reward", "reads_last_real_token")]}
    beyond_own = {(plugin, check) for t in TABLES for plugin, fails in t.wrong.items() for check in list(fails)[1:]}
    assert beyond_own == set(ALSO_FAILS), "a wrong plugin fails a second check: say why in ALSO_FAILS"


# -- correct plugins pass, wrong plugins fail with a reason that names the problem ------------------
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


def test_naive_bpe_learns_the_solutions_merges_on_another_corpus():
    """The alternative tokenizer really is the same algorithm, not just lucky on one corpus."""
    from toolkit.world import World

    text = " ".join(World(seed=3).pretraining_documents(60, seed=11)) + " aaaa bbbb abab <|end|> ab"
    merges = {}
    for variant, path in {**CORRECT["tokenizer"], "naive": PLUGINS / "tok_naive.py"}.items():
        tok = Components(build_manager(load_submission(str(path))), only="tokenizer").tokenizer()
        tok.train(text, 330)
        merges[variant] = list(tok.merges.items())
    assert len(merges["solution"]) == 330 - 261
    assert merges["incremental"] == merges["naive"] == merges["solution"]


# -- student code that raises ------------------------------------------------------------
def line_of(path: Path, snippet: str) -> int:
    (lineno,) = [i for i, line in enumerate(path.read_text().splitlines(), 1) if snippet in line]
    return lineno


@pytest.mark.parametrize("check_name, plugin, exception, snippet, case", [
    pytest.param(*row, id=f"{row[0]}-{row[1].removesuffix('.py')}") for row in RAISING
])
def test_exception_in_student_code_fails_the_check_and_names_the_file(check_name, plugin, exception, snippet, case):
    path = PLUGINS / plugin
    result = run(check_name, path)  # must not raise
    assert result.status == "failed" and result.score == 0
    assert exception in result.reason
    assert result.reason.endswith(f"(at {plugin}:{line_of(path, snippet)}), {case}"), result.reason


@pytest.mark.parametrize("check_name", [c for c in CHECKS if c.startswith("attention.")])
def test_hook_raising_fails_every_check_with_the_plugin_path(check_name):
    path = PLUGINS / "attn_raises_in_hook.py"
    result = run(check_name, path)
    assert result.status == "failed" and result.score == 0
    assert result.reason.startswith(f"{path}: hook toolkit_attention raised RuntimeError: n_head=")
    assert "is not supported yet, on B=" in result.reason  # the case it was raised on


ATTENTION_WITH_FORWARD = """
import toolkit
from torch import nn


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
{forward}

@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
"""

TOKENIZER_WITHOUT_ENCODE = """
import toolkit
from toolkit.tokenizer import Tokenizer


class Untrained(Tokenizer):
    def train(self, text, vocab_size):
        pass


@toolkit.hookimpl
def toolkit_tokenizer():
    return Untrained()
"""


@pytest.mark.parametrize("check_name, source, says", [
    ("attention.causal", ATTENTION_WITH_FORWARD.format(forward="    def forward(self, x):\n        raise ValueError()\n"),
     "ValueError (at stub.py:12), on B=2 T=8 C=16 n_head=4"),  # an exception without text: no dangling colon
    ("attention.causal", ATTENTION_WITH_FORWARD.format(forward="    def forward(self, x):\n        raise NotImplementedError\n"),
     "forward is not implemented yet: it raised NotImplementedError (at stub.py:12), on B=2 T=8 C=16 n_head=4"),
    ("tokenizer.round_trip", TOKENIZER_WITHOUT_ENCODE,  # Tokenizer.encode of the interface, not written
     "encode is not implemented yet: it raised NotImplementedError, on decode(encode(''))"),
    ("attention.causal", ATTENTION_WITH_FORWARD.format(forward=""),  # torch's NotImplementedError is not a stub's
     'NotImplementedError: Module [Attention] is missing the required "forward" function, on B=2 T=8 C=16 n_head=4'),
])
def test_an_exception_reads_as_one_sentence_and_a_stub_as_not_implemented(tmp_path, check_name, source, says):
    path = tmp_path / "stub.py"
    path.write_text(source)
    result = run(check_name, path)
    assert result.status == "failed" and result.score == 0
    assert result.reason == says


# -- student code that misbehaves in ways that once slipped through ----------------------
def test_sys_exit_in_student_code_fails_the_check():
    try:
        result = run("attention.causal", PLUGINS / "attn_exits_in_forward.py")
    except SystemExit as e:
        pytest.fail(f"SystemExit({e}) escaped run_check")
    assert result.status == "failed" and "SystemExit" in result.reason


def test_causal_fails_on_a_non_causal_module_with_nan_output():
    assert_fails(run("attention.causal", PLUGINS / "attn_nan_noncausal.py"), "mask")


def test_exception_names_a_student_file_inside_a_folder_named_toolkit(tmp_path):
    path = tmp_path / "toolkit" / "attn_raises_in_forward.py"
    path.parent.mkdir()
    shutil.copy(PLUGINS / path.name, path)
    result = run("attention.causal", path)
    assert result.status == "failed" and "ValueError" in result.reason
    assert f"(at {path.name}:" in result.reason


# -- the tokenizer's speed limit and its behavioural check ---------------------------------
def test_speed_stops_a_training_that_runs_past_the_time_limit(monkeypatch):
    import graders.tokenizer

    monkeypatch.setattr(graders.tokenizer, "TIME_LIMIT", 0.5)
    result = run("tokenizer.speed", PLUGINS / "tok_naive.py")
    assert result.status == "failed" and "did not finish within 0.5 s" in result.reason


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["solution", "incremental"])
def test_tokenizer_behaviour_passes_on_correct_tokenizers(variant, tmp_path):
    result = run("tokenizer.behaviour", CORRECT["tokenizer"][variant], tmp_path)
    assert result.status == "passed", result.reason
    assert result.metrics["bpb"] < result.metrics["shuffled_bpb"] / 4
    assert (tmp_path / "tokenizer_lengths.png").stat().st_size > 10_000


@pytest.mark.slow
def test_tokenizer_behaviour_fails_when_no_merge_is_learned(tmp_path):
    result = run("tokenizer.behaviour", PLUGINS / "tok_forgets_merges.py", tmp_path)
    assert result.status == "failed" and result.score == 0
    assert "bits per byte against the solution's" in result.reason
    assert result.metrics["bpb"] >= 2 * result.metrics["reference_bpb"]
    assert result.metrics["bytes_per_token"] < 1.1


def behaviour_pipeline(tok) -> SimpleNamespace:
    """A stand-in for the behaviour check's pipeline: ``tok`` trained on the small corpus (400 ids) and
    an untrained one-layer GPT, so that ``measure`` runs in seconds (its bits per byte mean nothing)."""
    from graders.tokenizer import small_corpus

    from toolkit.model import GPT

    tok.train(small_corpus(), 400)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=1, n_head=1, n_embd=16))
    return SimpleNamespace(tokenizer=tok, model_config=model.config, base_model=model.eval())


def tokenizer_of(path: Path):
    return Components(build_manager(load_submission(str(path))), only="tokenizer").tokenizer()


@pytest.mark.parametrize("variant", ["solution", "incremental", "baseline"])
def test_measure_takes_the_ids_of_a_correct_tokenizer(variant):
    from graders.tokenizer import measure, validation_text
    from toolkit.baselines import WholeWordTokenizer

    tok = WholeWordTokenizer() if variant == "baseline" else tokenizer_of(CORRECT["tokenizer"][variant])
    got = measure(behaviour_pipeline(tok))
    assert got["bpb"] > 0 and got["shuffled_bpb"] > 0
    n_bytes, n_ids = len(validation_text().encode()), len(tok.encode(validation_text()))
    assert got["bytes_per_token"] == round(n_bytes / n_ids, 4)
    assert sum(int(k) * n for k, n in got["token_lengths"].items()) == n_bytes  # each id's bytes, by the merges


def test_tokenizer_behaviour_fails_when_encode_returns_part_of_the_text_and_decode_remembers_it():
    """tok_remembers_text.py: decode(encode(text)) == text, but the ids are the first 2% of the text."""
    import graders.tokenizer

    path = PLUGINS / "tok_remembers_text.py"
    ctx = Context(Components(build_manager(load_submission(str(path))), only="tokenizer"), "tokenizer",
                  PipelineConfig(), log=lambda msg: None)
    pipeline = ctx._pipelines[graders.tokenizer.BEHAVIOUR] = behaviour_pipeline(tokenizer_of(path))
    text = graders.tokenizer.validation_text()
    assert pipeline.tokenizer.decode(pipeline.tokenizer.encode(text)) == text  # its own decode is fooled
    result = run_check(all_checks("tokenizer.behaviour"), ctx)
    assert result.status == "failed" and result.score == 0
    got, n_bytes = len(text[: len(text) // 50].encode()), len(text.encode())
    assert (f"the ids encode(text) returned on the validation documents decode, by your merges, to {got:,} bytes "
            f"where the text has {n_bytes:,} (the same up to byte {got:,})") in result.reason, result.reason


class IdsPastTheVocabulary:
    """A correct tokenizer whose encode, on long texts, adds 1000 vocabularies to every id."""

    def __init__(self, tok):
        self.tok = tok

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def encode(self, text):
        ids = self.tok.encode(text)
        return [i + 1000 * self.tok.vocab_size for i in ids] if len(text) > 10_000 else ids


def test_measure_names_an_id_outside_the_vocabulary_before_the_model_sees_it():
    from graders.tokenizer import measure, validation_text

    tok = tokenizer_of(CORRECT["tokenizer"]["incremental"])
    pipeline = behaviour_pipeline(tok)
    pipeline.tokenizer = IdsPastTheVocabulary(tok)
    first = tok.encode(validation_text())[0] + 400_000
    with pytest.raises(CheckFailed, match=rf"returned id {first}, outside the vocabulary \(0 to 399\)$"):
        measure(pipeline)


def test_the_graders_spelling_of_the_tokens_is_bounded_whatever_the_merges_say():
    """Merges of merges double a token's length: 40 of them would spell a terabyte. The grader refuses
    to build more than MAX_TABLE_BYTES before it allocates them."""
    from graders.tokenizer import MAX_TABLE_BYTES, token_bytes

    doubling = SimpleNamespace(special_tokens={}, merges={(97, 97): 300, **{(300 + k, 300 + k): 301 + k for k in range(40)}})
    with pytest.raises(CheckFailed, match=f"more than {MAX_TABLE_BYTES:,} bytes in all"):
        token_bytes(doubling)
    assert token_bytes(SimpleNamespace(special_tokens={"<|end|>": 300}, merges={(104, 105): 301}))[301] == b"hi"


# -- held-out data stays held out (issue 31, example 4) -----------------------------------------
FORGE = ROOT / "tests" / "hostile" / "components" / "forge_public_heldout_tokenizer.py"
"""Fixed merges spelling each public held-out document as one token; train() learns nothing."""
HONEST = PLUGINS / "tok_forgets_merges.py"  # what it really is: a tokenizer of plain bytes


def test_tokenizer_held_out_text_is_drawn_from_the_instructors_seed_and_no_snapshot_holds_it():
    """The seed is kept in graders/hidden (which a student release leaves out), like reward's shuffle;
    the snapshots the release ships hold figures measured on the text, never a document of it."""
    from graders import hidden
    from graders.tokenizer import PUBLIC_HELD_OUT_SEED, held_out_is_public, held_out_seed, validation_text

    assert held_out_seed() == hidden.HELD_OUT_SEED != PUBLIC_HELD_OUT_SEED and not held_out_is_public()
    text = validation_text()
    assert text == validation_text() != validation_text(seed=PUBLIC_HELD_OUT_SEED)  # the same on every run
    documents = [d for d in text.split("<|bos|>") if d]
    shipped = "".join(p.read_text() for p in (ROOT / "graders" / "snapshots").glob("*.json"))
    assert len(documents) == 300 and not [d for d in documents if d.strip() in shipped]


def test_tokenizer_token_bound_is_twice_the_longest_token_the_solution_learns_on_the_worlds_text():
    from graders.tokenizer import BEHAVIOUR, MAX_TOKEN_BYTES, token_bytes
    from toolkit.pipeline import Pipeline

    for variant, path in CORRECT["tokenizer"].items():
        tok = Pipeline(Components(build_manager(load_submission(str(path))), only="tokenizer"), BEHAVIOUR).tokenizer
        longest = max(len(b) for i, b in token_bytes(tok).items() if i >= tok.vocab_size - len(tok.merges))
        assert longest == 12 and 2 * longest == MAX_TOKEN_BYTES, (variant, longest)


def test_tokenizer_bits_per_byte_refuse_a_token_longer_than_the_bound_and_say_so(monkeypatch):
    """On the public text (a student's copy), the forged merges spell each document as one token: the
    grader names the token, its length and the bound before any bits per byte are counted."""
    import graders.tokenizer
    from graders.tokenizer import MAX_TOKEN_BYTES, PUBLIC_HELD_OUT_SEED, measure

    monkeypatch.setattr(graders.tokenizer, "held_out_seed", lambda: PUBLIC_HELD_OUT_SEED)
    with pytest.raises(CheckFailed, match=rf"which spells \d+ bytes .*: bits per byte count only tokens of at most "
                                          rf"{MAX_TOKEN_BYTES} bytes"):
        measure(behaviour_pipeline(tokenizer_of(FORGE)))
    for path in CORRECT["tokenizer"].values():  # correct tokenizers: every token within the bound
        assert measure(behaviour_pipeline(tokenizer_of(path)))["bpb"] > 0


def test_tokenizer_speed_fails_merges_not_learned_from_the_text_it_was_given():
    result = run("tokenizer.speed", FORGE)
    assert_fails(result, "occurs in no chunk of the text train() was given: the merges must be learned by train()")
    assert result.metrics["merges"] > 10_000 and result.metrics["text"] == "drawn from the instructor's seed"
    for path in CORRECT["tokenizer"].values():
        assert run("tokenizer.speed", path).status == "passed"


def test_tokenizer_merges_a_correct_training_learns_occur_in_the_text_and_fixed_ones_do_not():
    from graders.tokenizer import speed_corpus, token_bytes, unlearned_merge

    text, other = speed_corpus(3000, seed=1), speed_corpus(3000, seed=2)
    tok = tokenizer_of(CORRECT["tokenizer"]["incremental"])
    tok.train(text, 400)
    assert unlearned_merge(token_bytes(tok), text) is None
    reason = unlearned_merge(token_bytes(tok), other)  # the same merges, kept from another text
    assert reason and reason.startswith("the merge that makes token ")


@pytest.mark.slow
def test_tokenizer_forged_merges_earn_no_more_than_learning_nothing_in_speed_and_behaviour(tmp_path):
    """Graded as `toolkit run` grades (in process, with the instructor's seed): the forge's speed and
    behaviour give it no more than its honest version, a bytes-only tokenizer (0 of 5 each)."""
    names = ["tokenizer.speed", "tokenizer.behaviour"]
    forged, honest = run(names, FORGE, tmp_path / "forged"), run(names, HONEST, tmp_path / "honest")
    assert sum(r.score for r in forged.values()) <= sum(r.score for r in honest.values()) == 0, forged
    assert "occurs in no chunk" in forged["tokenizer.speed"].reason
    assert forged["tokenizer.behaviour"].score == 0, forged["tokenizer.behaviour"].reason


# -- the attention module inside the reference GPT -------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["solution", "einsum"])
def test_reference_weights_passes_on_correct_modules(variant, tmp_path):
    result = run("attention.reference_weights", CORRECT["attention"][variant], tmp_path)
    assert result.status == "passed", result.reason
    assert result.metrics["greedy_identical"] == "30/30" and result.metrics["logits_max_diff"] < 1e-4
    assert (tmp_path / "attention_heads.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["attn_no_mask.py", "attn_scale_by_hs.py", "attn_wrong_view.py",
                                    "attn_softmax_axis.py"])
def test_reference_weights_fails_on_wrong_modules(plugin, tmp_path):
    result = run("attention.reference_weights", PLUGINS / plugin, tmp_path)
    assert_fails(result, "with the reference weights the logits differ by up to", partial=True)
    assert (tmp_path / "attention_heads.png").exists()  # drawn before the verdict: it shows what is wrong


@pytest.mark.slow
@pytest.mark.parametrize("plugin, says", [
    ("attn_einsum.py", None),
    ("attn_no_mask.py", "nats higher than the reference's"),
    ("attn_wrong_view.py", "nats lower than the reference's"),
])
def test_trains_like_reference(plugin, says, tmp_path):
    result = run("attention.trains_like_reference", PLUGINS / plugin, tmp_path)
    if says is None:
        assert result.status == "passed", result.reason
        assert abs(result.metrics["curve_gap"]) < 1e-3
    else:
        assert_fails(result, says, partial=True)


# -- hidden checks (graders/hidden): the solution, live, on inputs the public checks never use ----
HIDDEN = {c.name: c for c in collect([name for name in COMPONENTS if name != "sampler"], include_hidden=True)
          if c.hidden}  # the sampler's: in its own file
HIDDEN_BEHAVIOURAL = ["reward.rlhf_judged_by_solution"]  # tested with the reward behaviour below
HIDDEN_CASES = {  # check -> (a correct plugin written differently, a wrong plugin, what its reason says)
    "tokenizer.merges_on_another_corpus": ("tok_incremental.py", "tok_first_seen_tiebreak.py", "merge #19 is"),
    "attention.random_shapes": ("attn_einsum.py", "attn_scale_by_hs.py", "the scores are divided by the head size"),
    "sft_mask.other_conversations": ("sft_vectorised.py", "sft_shifted.py", "shifted by one position"),
    "reward.loss_matches_solution": ("reward_gather.py", "reward_separate_terms.py", "expected 1.820981"),
    "block.block_random_shapes": ("block_fused_mlp.py", "block_detached_mlp.py", "a gradient"),
    "optimizer.adamw_unseen_settings": ("opt_foreach.py", "opt_stale_lr.py", "another schedule and other settings"),
    "optimizer.cross_entropy_unseen": ("opt_foreach.py", "opt_ce_sum.py", "the solution's"),
}


def test_every_hidden_check_is_tested():
    assert set(HIDDEN) == set(HIDDEN_CASES) | set(HIDDEN_BEHAVIOURAL)


@pytest.mark.parametrize("check_name", sorted(HIDDEN_CASES))
def test_hidden_check_passes_on_a_correct_plugin_and_fails_on_a_wrong_one(check_name):
    correct, wrong, says = HIDDEN_CASES[check_name]
    result = run(check_name, PLUGINS / correct)
    assert result.status == "passed", result.reason
    assert_fails(run(check_name, PLUGINS / wrong), says)


# -- the reward model trained on preference pairs, and RLHF with it -------------------------
REWARD_BEHAVIOUR = ["reward.accuracy", "reward.rlhf_improves", "reward.rlhf_judged_by_solution"]


# A correct reward model written differently (reward_gather.py) passes every behavioural reward check,
# hidden one included, where the grader runs them: tests/test_hostile.py::test_a_correct_student_graded_in_full_earns_the_behavioural_and_hidden_points
# (full marks, and the plots on its feedback page). Training it twice, here too, cost the suite 90 s.


@pytest.mark.slow
@pytest.mark.parametrize("plugin", sorted(REWARD.behaviour))
def test_reward_behaviour_fails_on_a_wrong_reward_model(plugin):
    fails = REWARD.behaviour[plugin]
    for name, result in run(list(fails), PLUGINS / plugin).items():
        assert_fails(result, fails[name], partial=True)


def test_the_instructors_reward_model_is_the_submissions_own_only_for_the_solutions_file(tmp_path):
    """The hidden check judges with the instructor's reward model: the public checks' own when the
    submission's reward plugin is byte for byte the solution's, else one cached under the solution's code."""
    from graders.hidden.checks import solution_reward_pipeline

    def context(path):
        comps = Components(build_manager(load_submission(str(path))), only="reward")
        return Context(comps, "reward", PipelineConfig(), cache_dir=tmp_path, log=lambda msg: None)

    copy = tmp_path / "reward.py"
    shutil.copy(ROOT / "solutions" / "reward.py", copy)
    same = context(copy)
    assert solution_reward_pipeline(same) is same.pipeline
    other = context(CORRECT["reward"]["gather"])
    judge = solution_reward_pipeline(other)
    assert judge is not other.pipeline and judge.reward_code == copy.read_text()
    assert solution_reward_pipeline(context(CORRECT["reward"]["gather"])) is judge  # built once per process


# -- held-out accuracy, scored in one call: unit tests on a stand-in pipeline (no training) ------------
GOOD, BAD, PAD_ID = 1, 2, 260  # the last real token of every chosen / rejected answer; padding


class TokenSign(nn.Module):
    """A stand-in backbone: the hidden state of GOOD is all +1, of BAD all -1, of any other token 0."""

    config = GPTConfig(n_embd=4)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        return ((idx == GOOD).float() - (idx == BAD).float()).unsqueeze(-1).expand(*idx.shape, 4)  # (B, T, C)


def preference_pipeline(path: Path) -> SimpleNamespace:
    """A pipeline whose reward model is the plugin's on ``TokenSign`` with every weight 1, so a model that
    reads the last real token gives every chosen answer 4 (+ a bias of 1) and every rejected one -4 (+ 1);
    its held-out pairs, whatever the seed: 24 chosen rows, right-padded to 7 tokens, and 24 rejected rows, to 11."""
    model = Components(build_manager(load_submission(str(path))), only="reward").reward_model(TokenSign())
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    gen = torch.Generator().manual_seed(0)

    def rows(last: int, width: int):
        lengths = torch.randint(1, width + 1, (24,), generator=gen)
        tokens = torch.full((24, width), PAD_ID)
        for i, n in enumerate(lengths):
            tokens[i, :n - 1] = torch.randint(3, 256, (int(n) - 1,), generator=gen)
            tokens[i, n - 1] = last
        return tokens, lengths

    held_out = rows(GOOD, 7), rows(BAD, 11)
    return SimpleNamespace(preference_pairs=lambda seed, split: held_out, config=PipelineConfig(),
                           reward_model=model.eval(), tokenizer=SimpleNamespace(special_tokens={"<|pad|>": PAD_ID}))


def run_on(check_name: str, pipeline) -> Result:
    ctx = Context(Components(), "reward", PipelineConfig(), log=lambda msg: None)
    ctx._pipelines[ctx.config] = pipeline
    return run_check(all_checks(check_name), ctx)


@pytest.mark.parametrize("variant", ["gather", "sequential"])
def test_held_out_accuracy_scores_both_sets_in_one_call_and_puts_them_back_in_order(variant):
    from graders.reward import held_out_accuracy

    p = preference_pipeline(CORRECT["reward"][variant])
    acc, rc, rr = held_out_accuracy(p, seed=0)
    (ct, cl), (rt, rl) = p.preference_pairs(0, "held_out")
    assert torch.allclose(rc, rlhf.rewards(p.reward_model, ct, cl))  # back in order, though padded wider
    assert torch.allclose(rr, rlhf.rewards(p.reward_model, rt, rl))
    assert acc == 1.0 and (rc > 0).all() and (rr < 0).all()
    result = run_on("reward.accuracy", p)
    assert result.status == "passed" and result.metrics["held_out_accuracy"] == 1.0, result.reason


def test_held_out_accuracy_cannot_be_forged_from_the_order_of_the_calls():
    from graders.reward import held_out_accuracy

    p = preference_pipeline(PLUGINS / "reward_call_order.py")
    (ct, cl), (rt, rl) = p.preference_pairs(0, "held_out")
    chosen, rejected = rlhf.rewards(p.reward_model, ct, cl), rlhf.rewards(p.reward_model, rt, rl)
    assert (chosen > rejected).all()  # in two calls, chosen first, its ranking is perfect
    assert held_out_accuracy(p)[0] == 0.0  # in one call, every row gets the same reward
    assert_fails(run_on("reward.accuracy", p), "held-out pairwise accuracy 0.00", partial=True)


def test_held_out_accuracy_cannot_be_forged_from_a_rows_place_in_the_batch():
    from graders.reward import held_out_accuracy

    class FirstHalf(nn.Module):  # +1 for the first half of the batch, where the chosen rows were before shuffling
        def forward(self, idx, lengths):
            return (torch.arange(len(idx)) < len(idx) // 2).float() * 2 - 1

    p = preference_pipeline(PLUGINS / "reward_gather.py")
    p.reward_model = FirstHalf()
    accs = [held_out_accuracy(p, seed)[0] for seed in range(10)]
    assert max(accs) < 0.5 and abs(sum(accs) / 10 - 0.25) < 0.05  # a quarter: chosen in the first half, rejected not


def test_the_shuffle_is_the_same_on_every_run_and_its_seed_is_the_instructors():
    """Grading is deterministic: the shuffle's seed is fixed, but kept in ``graders/hidden/`` (which a
    student release leaves out), so a submission that has read the public graders cannot rebuild it."""
    from graders import hidden
    from graders.reward import held_out_accuracy, shuffle_seed

    p = preference_pipeline(PLUGINS / "reward_gather.py")
    assert shuffle_seed() == hidden.SHUFFLE_SEED != 0
    first, again = held_out_accuracy(p), held_out_accuracy(p)
    assert first[0] == again[0] and torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])


FORGED_PAIRS = ROOT / "tests" / "hostile" / "components" / "forge_public_pairs_reward.py"
"""A constant reward, and a table of the rejected rows of the public held-out pairs, ranked far below it."""


def test_held_out_pairs_are_drawn_from_the_instructors_seed_and_a_table_of_the_public_ones_ranks_few(monkeypatch):
    """reward.accuracy ranks held-out pairs drawn from ``graders/hidden``'s PAIRS_SEED, the same on every run:
    other rejected answers to the same held-out questions. A student's release, without it, ranks the
    pipeline's own held-out pairs, as before. The forged table of the public pairs ranks all of those
    right, and under half of the grader's."""
    from graders import hidden
    from graders import reward as grader
    from toolkit.pipeline import Pipeline

    p = Pipeline(config=PipelineConfig(), log=lambda msg: None)
    public, mine = p.preference_data["held_out"], grader.held_out_pairs(p)
    assert grader.pairs_seed(0) == hidden.PAIRS_SEED != 0
    assert all(torch.equal(a, b) for a, b in zip(_flat(mine), _flat(grader.held_out_pairs(p))))  # every run
    rows = lambda tokens, lengths: {tuple(r[:n].tolist()) for r, n in zip(tokens, lengths)}  # noqa: E731
    assert rows(*mine[0]) == rows(*public[0])  # chosen: each held-out fact's one correct statement, under any seed
    new = rows(*mine[1]) - rows(*public[1])
    assert len(new) > len(rows(*mine[1])) / 2, len(new)  # rejected: most of them drawn afresh
    p.__dict__["reward_model"] = Components(build_manager(load_submission(str(FORGED_PAIRS))),
                                            only="reward").reward_model(p.base_model)
    assert grader.held_out_accuracy(p)[0] < 0.5
    monkeypatch.setattr(grader, "instructor_seed", lambda name, public: public)  # a student's release
    assert all(torch.equal(a, b) for a, b in zip(_flat(grader.held_out_pairs(p)), _flat(public)))
    assert grader.held_out_accuracy(p)[0] == 1.0


def _flat(pairs) -> list[torch.Tensor]:
    return [t for tokens_lengths in pairs for t in tokens_lengths]


def test_every_behavioural_reward_check_fails_on_some_wrong_plugin():
    assert {name for fails in REWARD.behaviour.values() for name in fails} == set(REWARD_BEHAVIOUR)


# -- the unit checks run in the pipeline's contexts (graders/contexts.py) ------------------------------
HOSTILE_COMPONENTS = ROOT / "tests" / "hostile" / "components"
TOLD_APART = {  # a submission that tells the checks from the pipeline by its inputs -> the check that fails, and why
    "forge_context_attention.py": ("attention.matches_reference", "in float32: the scores are divided by the head size"),
    "forge_dtype_attention.py": ("attention.matches_reference", "the scores are divided by the head size"),
    "forge_context_reward.py": ("reward.reads_last_real_token", "when padding was added (on a backbone of n_embd"),
}


@pytest.mark.parametrize("plugin", sorted(TOLD_APART))
def test_a_submission_that_behaves_otherwise_in_the_pipelines_context_fails_a_unit_check(plugin):
    """forge_context_attention divides by the head size only in float32 at width 64 or more (the pipeline's
    context, where the checks never looked); forge_context_reward reads the last real token only on a
    backbone as tiny as the check's. Each now fails the unit check that runs its cases there too, naming
    the mistake; the rest of its checks pass, as its honest version's do."""
    check_name, says = TOLD_APART[plugin]
    path = HOSTILE_COMPONENTS / plugin
    results = run([c for c in CHECKS if CHECKS[c].component == CHECKS[check_name].component], path)
    assert_fails(results[check_name], says)
    if plugin == "forge_context_reward.py":
        assert "read the hidden state at lengths - 1" in results[check_name].reason
    assert all(r.status == "passed" for name, r in results.items() if name != check_name), results


def test_the_contexts_are_the_pipelines_and_drawn_from_the_instructors_seed(monkeypatch):
    """Every width of the default and the small configuration, in float32 and float64; vocabularies up to
    the size asked; the pipeline's batch sizes; a seed from the instructor's (graders.hidden), the same on
    every re-run as grading must be, another per component, and another in a student's copy without it."""
    import random

    from graders import contexts

    config = PipelineConfig()
    where = contexts.pipeline_contexts(config, random.Random(0), pipeline_vocab=604)
    assert {(w.model.n_embd, w.model.n_head, w.dtype) for w in where} == \
        {(C, nh, dtype) for C, nh in ((128, 4), (64, 2)) for dtype in (torch.float32, torch.float64)}
    assert all(257 <= w.model.vocab_size <= config.vocab_size and w.batch in (1, 8, 32, 64) for w in where)
    assert any(w.tokens == w.model.block_size for w in where)
    def seed(component: str) -> int:
        ctx = SimpleNamespace(metrics={}, component=component)
        contexts.run_seed(ctx)
        return ctx.metrics["contexts_seed"]

    instructors = seed("sampler")
    assert seed("sampler") == instructors and seed("attention") != instructors
    monkeypatch.setitem(sys.modules, "graders.hidden", None)  # a student's copy: no hidden seed
    assert seed("sampler") != instructors


@pytest.mark.parametrize("variant", ["solution", "einsum"])
def test_attention_written_out_watches_the_pipelines_calls(variant):
    """written_out watches modules in the pipeline's shapes and GPTs built with the hook, and counts a call
    only when it returned an output of the input's shape and dtype."""
    from graders import attention

    ctx = Context(Components(build_manager(load_submission(str(CORRECT["attention"][variant]))), only="attention"),
                  "attention", PipelineConfig(), log=lambda msg: None)
    calls, models = attention.observed_calls(ctx, torch.zeros(2, 5, 12, dtype=torch.float64))
    assert len(calls) == 5 and len(models) == 2
    assert {c[0] for c in calls} == {12, 64, 128} and {m[0]["n_embd"] for m in models} == {64, 128}
    pipeline = SimpleNamespace(components=ctx.components)
    assert attention.banned_calls(pipeline, calls, models) == [[], 7]


SDPA_ON_WIDE = '''
import importlib

import torch
from torch import nn

import toolkit

_fused = getattr(importlib.import_module("torch.nn." + "functional"), "scaled_dot_product_" + "attention")


class WideFused(nn.Module):
    """Written out at the checks' widths; torch's fused kernel at the pipeline's (64 and more)."""

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if C >= 64:
            y = _fused(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) / (C // self.n_head) ** 0.5
            future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
            y = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return WideFused(config)
'''


def test_attention_written_out_sees_the_fused_kernel_used_only_at_the_pipelines_widths(tmp_path):
    """One call at width 12 saw the written-out path; the calls in the pipeline's shapes see the fused kernel."""
    path = tmp_path / "wide_fused.py"
    path.write_text(SDPA_ON_WIDE)
    assert_fails(run("attention.written_out", path), "forward calls scaled_dot_product_attention")
    assert run("attention.matches_reference", path).status == "passed"
