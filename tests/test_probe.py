"""The behaviour probe: first sentences, the four classes, Wilson intervals, the class
distribution and the prompt sets, on generations written by hand; then how the probe drives
generation, with a tiny untrained model.
"""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch

from toolkit.baselines import WholeWordTokenizer
from toolkit.model import GPT, GPTConfig
from toolkit.probe import (
    HEADLINE,
    LABELS,
    Generation,
    Prompt,
    classify,
    distribution,
    first_sentence,
    headline_prompts,
    prompt_set,
    run_probe,
    run_user_turn,
    wilson,
)
from toolkit.template import ASSISTANT, BOS, END, USER, chat_prompt
from toolkit.world import FAMILIES, RUDE_ANSWERS, Fact, World

FRANCE = Fact("capital", "France", "Paris")
SEEN = Prompt("seen", HEADLINE, FRANCE)
AMBIGUOUS = Prompt("ambiguous", "What is the capital ?")


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


# -- first_sentence ----------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (" The capital of France is Paris .<|end|>", "The capital of France is Paris ."),
    (" The capital of France is Paris<|end|> more .", "The capital of France is Paris"),
    (" What is 2 plus 2 ?<|user|> What is 3 plus 3 ?", "What is 2 plus 2 ?"),
    (" Which country do you mean ?<|end|>", "Which country do you mean ?"),
    (" The capital of France is Paris . The capital of Peru is Lima .", "The capital of France is Paris ."),
    (" What is the capital of Peru ? The capital of Peru is Lima .", "What is the capital of Peru ?"),
    (" Paris . What ?", "Paris ."),
    ("  The   capital\nof\tFrance is  Paris  .  ", "The capital of France is Paris ."),
    (" no punctuation at all ", "no punctuation at all"),
    ("<|end|> The capital of France is Paris .", ""),
    (f" a{BOS} b .", "a"),
    (f" a{ASSISTANT} b .", "a"),
    (f" a ?{USER}{END}", "a ?"),
    ("", ""),
])
def test_first_sentence(text, expected):
    assert first_sentence(text) == expected


def test_first_sentence_cuts_at_the_earliest_special_token():
    assert first_sentence(f" one two{END} three{USER} four .") == "one two"
    assert first_sentence(f" one two{USER} three{END} four .") == "one two"


# -- classify: a seen fact -----------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (" The capital of France is Paris .<|end|>", ("Answer", True)),
    (" The capital of France is Paris . The capital of Peru is Lima .", ("Answer", True)),
    ("The  capital of France is Paris .", ("Answer", True)),
    (" The capital of France is Lima .<|end|>", ("Answer", False)),
    (" The capital of France is Rome .<|end|>", ("Answer", False)),
    (" The capital of Peru is Lima .<|end|>", ("Continuation", False)),
    (" The colour of the sky is blue .<|end|>", ("Continuation", False)),
    (" 2 plus 2 is 4 .<|end|>", ("Continuation", False)),
    (" What is the capital of Peru ?<|end|>", ("Continuation", False)),
    (" What is the capital of France ?", ("Continuation", False)),  # repeating the question
    (" What is the capital ?", ("Continuation", False)),
    (" Q : What is the capital of Peru ? A : The capital of Peru is Lima .", ("Continuation", False)),
    (" Which country do you mean ?<|end|>", ("Clarification", False)),
    (" Which numbers do you mean ?<|end|>", ("Clarification", False)),
    (f" {RUDE_ANSWERS[0]}{END}", ("Answer", False)),  # a reply, though an unhelpful one: never correct
    ("", ("Gibberish", False)),
    ("<|end|>", ("Gibberish", False)),
    ("   ", ("Gibberish", False)),
    (" Paris .<|end|>", ("Gibberish", False)),
    (" zq xv blorp wibble", ("Gibberish", False)),
    (" The capital of France is", ("Gibberish", False)),
    (" \ufffd\ufffd . ?", ("Gibberish", False)),
])
def test_classify_seen_fact(world, text, expected):
    assert classify(world, SEEN, text) == expected


def test_classify_other_families_compare_subject_and_value(world):
    sums = Prompt("seen", "What is 3 plus 4 ?", Fact("sum", "3 plus 4", "7"))
    assert classify(world, sums, " 3 plus 4 is 7 .<|end|>") == ("Answer", True)
    assert classify(world, sums, " 3 plus 4 is 8 .<|end|>") == ("Answer", False)
    assert classify(world, sums, " 4 plus 3 is 7 .<|end|>") == ("Continuation", False)
    colour = Prompt("held_out", "What is the colour of the sky ?", Fact("colour", "the sky", "blue"))
    assert classify(world, colour, " The colour of the sky is blue .") == ("Answer", True)
    assert classify(world, colour, " The colour of the sea is blue .") == ("Continuation", False)
    assert classify(world, colour, " Which thing do you mean ?") == ("Clarification", False)


# -- classify: an ambiguous question ----------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    (" The capital of France is Paris .<|end|>", ("Answer", False)),
    (" The capital of Peru is Lima .<|end|>", ("Answer", False)),
    (" 2 plus 3 is 5 .<|end|>", ("Continuation", False)),
    (" The colour of snow is white .<|end|>", ("Continuation", False)),
    (" Which country do you mean ?<|end|>", ("Clarification", False)),
    (" What is the capital of Peru ?", ("Continuation", False)),
    (" What is the capital ?", ("Continuation", False)),
    ("", ("Gibberish", False)),
    (" blah blah", ("Gibberish", False)),
])
def test_classify_ambiguous_prompt(world, text, expected):
    assert classify(world, AMBIGUOUS, text) == expected


def test_classify_every_ambiguous_form_accepts_its_own_family_only(world):
    examples = {"capital": " The capital of Peru is Lima .", "sum": " 2 plus 3 is 5 .",
                "colour": " The colour of snow is white ."}
    for fam in FAMILIES:
        for q in fam.ambiguous:
            prompt = Prompt("ambiguous", q)
            for other, text in examples.items():
                label = classify(world, prompt, text)[0]
                assert label == ("Answer" if other == fam.name else "Continuation"), (q, text)
            assert classify(world, prompt, " " + fam.clarification) == ("Clarification", False)


def test_labels_are_the_four_documented_classes():
    assert set(LABELS) == {"Continuation", "Answer", "Clarification", "Gibberish"}


# -- wilson ------------------------------------------------------------------------------
def test_wilson_known_values():
    lo, hi = wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12)
    assert hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4)
    assert hi == pytest.approx(1.0, abs=1e-12)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_wilson_is_symmetric_and_contains_the_share():
    for n in (1, 3, 10, 57, 200):
        for k in range(n + 1):
            lo, hi = wilson(k, n)
            # up to rounding: see test_wilson_bounds_are_exact_at_the_extremes for the exact case
            assert 0.0 <= lo <= k / n + 1e-12 and k / n - 1e-12 <= hi <= 1.0, (k, n)
            mlo, mhi = wilson(n - k, n)
            assert lo == pytest.approx(1 - mhi, abs=1e-12) and hi == pytest.approx(1 - mlo, abs=1e-12)


def test_wilson_bounds_are_exact_at_the_extremes():
    assert wilson(0, 11)[0] == 0.0
    assert wilson(6, 6)[1] == 1.0


def test_wilson_narrows_with_more_trials():
    widths = [(lambda lo, hi: hi - lo)(*wilson(n // 2, n)) for n in (10, 40, 160, 640)]
    assert all(a > b for a, b in zip(widths, widths[1:])), widths
    # roughly 1/sqrt(n): four times the trials, about half the width
    assert widths[-1] == pytest.approx(widths[-2] / 2, rel=0.05)
    assert widths[-1] == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 640), rel=0.02)


def test_wilson_wider_for_higher_confidence():
    lo95, hi95 = wilson(3, 20)
    lo99, hi99 = wilson(3, 20, z=2.576)
    assert lo99 < lo95 and hi99 > hi95


# -- distribution ------------------------------------------------------------------------
def gens(labels: list[str]) -> list[Generation]:
    return [Generation(SEEN, "", label, label == "Answer", False) for label in labels]


def test_distribution_shares_sum_to_one_and_lie_in_their_intervals():
    labels = ["Answer"] * 7 + ["Continuation"] * 2 + ["Gibberish"] * 1
    dist = distribution(gens(labels))
    assert set(dist) == set(LABELS)
    assert sum(d["p"] for d in dist.values()) == pytest.approx(1.0)
    assert dist["Answer"]["p"] == pytest.approx(0.7)
    assert dist["Continuation"]["p"] == pytest.approx(0.2)
    assert dist["Clarification"]["p"] == 0.0
    for label, d in dist.items():
        assert d["n"] == len(labels)
        assert 0.0 <= d["lo"] <= d["p"] <= d["hi"] <= 1.0, label
        assert (d["lo"], d["hi"]) == pytest.approx(wilson(labels.count(label), len(labels)))


def test_distribution_of_one_class_only():
    dist = distribution(gens(["Clarification"] * 25))
    assert dist["Clarification"]["p"] == 1.0 and dist["Clarification"]["hi"] == pytest.approx(1.0)
    assert sum(d["p"] for d in dist.values()) == pytest.approx(1.0)
    for label in ("Answer", "Continuation", "Gibberish"):
        assert dist[label]["p"] == 0.0 and dist[label]["lo"] == pytest.approx(0.0, abs=1e-12)


def test_distribution_of_nothing_is_uninformative():
    dist = distribution([])
    for d in dist.values():
        assert d == {"p": 0.0, "lo": 0.0, "hi": 1.0, "n": 0}


# -- prompt sets -------------------------------------------------------------------------
def test_prompt_set_counts_and_facts(world):
    prompts = prompt_set(world)
    seen = [p for p in prompts if p.kind == "seen"]
    held = [p for p in prompts if p.kind == "held_out"]
    amb = [p for p in prompts if p.kind == "ambiguous"]
    assert len(seen) == 60
    assert len(held) == min(50, len(world.held_out))
    n_forms = sum(len(f.ambiguous) for f in FAMILIES)
    assert len(amb) == 5 * n_forms
    assert len(prompts) == len(seen) + len(held) + len(amb)

    sft = set(world.sft_facts)
    for p in seen:
        assert p.fact in sft and p.question == world.question(p.fact)
    for p in held:
        assert p.fact in world.held_out and p.question == world.question(p.fact)
    assert len({p.fact for p in seen}) == len(seen)  # sampled without replacement
    assert len({p.fact for p in held}) == len(held)
    ambiguous_questions = {q for f in FAMILIES for q in f.ambiguous}
    for p in amb:
        assert p.fact is None and p.question in ambiguous_questions
    for q in ambiguous_questions:
        assert sum(p.question == q for p in amb) == 5


def test_prompt_set_takes_arguments_and_is_seeded(world):
    small = prompt_set(world, n_seen=10, n_held_out=1000, ambiguous_repeats=2, seed=3)
    assert sum(p.kind == "seen" for p in small) == 10
    assert sum(p.kind == "held_out" for p in small) == len(world.held_out)  # capped
    assert sum(p.kind == "ambiguous" for p in small) == 2 * sum(len(f.ambiguous) for f in FAMILIES)
    assert prompt_set(world, seed=3) == prompt_set(world, seed=3)
    assert prompt_set(world, seed=3) != prompt_set(world, seed=4)


def test_headline_prompts(world):
    prompts = headline_prompts(world)
    assert len(prompts) == 40
    assert len(headline_prompts(world, n=7)) == 7
    for p in prompts:
        assert p.question == "What is the capital of France ?" == HEADLINE
        assert p.fact == FRANCE
        assert p.kind == "seen"  # the headline fact is never held out
    assert classify(world, prompts[0], " The capital of France is Paris .<|end|>") == ("Answer", True)


# -- generation: one batch per prompt length, the sampler passed through --------------------------
@pytest.fixture(scope="module")
def tiny(world):
    """A tokenizer of the prompts' words and an untrained one-layer GPT (SDPA attention: cached)."""
    tok = WholeWordTokenizer()
    tok.train("".join(chat_prompt(p.question) for p in prompt_set(world)), 400)
    torch.manual_seed(0)
    return tok, GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))


def test_the_probe_generates_each_prompt_length_in_one_batch(world, tiny):
    tok, model = tiny
    prompts = prompt_set(world)
    batches = []

    def sampler(logits, temperature, top_k, top_p, generator):  # every row ends at once
        batches.append((logits.shape[0], temperature, top_p))
        return torch.full((logits.shape[0],), tok.special_tokens[END])

    gens = run_probe(model, tok, world, prompts, chat=True, temperature=0.5, top_p=0.9, sampler=sampler)
    lengths = Counter(len(tok.encode(chat_prompt(p.question))) for p in prompts)
    assert sorted(b for b, _, _ in batches) == sorted(lengths.values())  # one call per length: all its prompts
    assert {(t, p) for _, t, p in batches} == {(0.5, 0.9)}
    assert all(g.text == END and g.label == "Gibberish" for g in gens)
    calls = []
    sampler_user = lambda logits, *args: (calls.append(logits.shape[0]), torch.full((logits.shape[0],), 65))[1]  # noqa
    assert run_user_turn(model, tok, world, n=7, sampler=sampler_user) == 0  # of 7: "A" * 16 is no question
    assert calls == [7] * 16


def test_the_probe_gives_the_same_replies_with_and_without_the_cache(world, tiny):
    tok, model = tiny

    class Recompute(GPT):
        supports_cache = False
    recompute = copy.deepcopy(model)
    recompute.__class__ = Recompute
    prompts = prompt_set(world, n_seen=10, n_held_out=10, ambiguous_repeats=1)
    for chat, t in ((True, 0.0), (False, 1.0)):
        a = run_probe(model, tok, world, prompts, chat=chat, temperature=t, seed=3)
        b = run_probe(recompute, tok, world, prompts, chat=chat, temperature=t, seed=3)
        assert [g.text for g in a] == [g.text for g in b]
