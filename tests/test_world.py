"""The generated world: its facts, the held-out split, the three data sets and ``parse``.

Everything here is plain Python (no torch), so the whole file runs in about a second.
"""

from __future__ import annotations

from collections import Counter

import pytest

from toolkit.world import (
    FAMILIES,
    FAMILY,
    HEADLINE_SUBJECT,
    RUDE_ANSWERS,
    Fact,
    World,
    all_facts,
)

N_DOCS = 3000  # a realistic pretraining corpus size


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0)


@pytest.fixture(scope="module")
def docs(world) -> list[str]:
    return world.pretraining_documents(N_DOCS, seed=0)


@pytest.fixture(scope="module")
def conversations(world) -> list[list[tuple[str, str]]]:
    return world.sft_conversations(seed=0)


def by_family(facts) -> dict[str, list[Fact]]:
    out: dict[str, list[Fact]] = {}
    for f in facts:
        out.setdefault(f.family, []).append(f)
    return out


def doc_kind(doc: str) -> str:
    """Which of the three document kinds ``doc`` is: facts, quiz or sheet."""
    if doc.startswith("Q : "):
        return "sheet"
    if doc.endswith(" ?"):
        return "quiz"
    assert doc.endswith(" ."), doc
    return "facts"


# -- the facts ------------------------------------------------------------------------
def test_at_least_100_capitals_and_two_other_families_with_facts():
    families = by_family(all_facts())
    assert set(families) == {f.name for f in FAMILIES} == {"capital", "sum", "colour"}
    assert len(families["capital"]) >= 100
    others = [name for name in families if name != "capital"]
    assert len(others) >= 2
    for name in others:
        assert len(families[name]) > 0, name
    # the sums are right, the subjects within a family are unique and the headline exists
    for f in families["sum"]:
        a, b = f.subject.split(" plus ")
        assert int(a) + int(b) == int(f.value), f
    for name, members in families.items():
        subjects = [f.subject for f in members]
        assert len(subjects) == len(set(subjects)), name
    assert Fact("capital", "France", "Paris") in families["capital"]


def test_facts_have_no_stray_whitespace_or_sentence_punctuation():
    """Subjects and values become words of sentences; a "." or "?" in them would cut a sentence."""
    for f in all_facts():
        for text in (f.subject, f.value):
            assert text and text == text.strip() and "\t" not in text, f
            assert "." not in text and "?" not in text, f


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7, 42, 123])
def test_headline_subject_is_never_held_out(seed):
    world = World(seed=seed)
    assert all(f.subject != HEADLINE_SUBJECT for f in world.held_out)
    france = next(f for f in world.facts if f.subject == HEADLINE_SUBJECT)
    assert france in world.sft_facts


def test_held_out_split_has_the_right_size_per_family_and_partitions_the_facts(world):
    assert set(world.sft_facts) | world.held_out == set(world.facts)
    assert set(world.sft_facts).isdisjoint(world.held_out)
    facts, held = by_family(world.facts), by_family(world.held_out)
    for fam in FAMILIES:
        eligible = [f for f in facts[fam.name] if f.subject != HEADLINE_SUBJECT]
        assert len(held[fam.name]) == round(world.held_out_share * len(eligible)), fam.name
        assert len(held[fam.name]) > 0, fam.name


# -- SFT conversations ----------------------------------------------------------------
def test_conversations_follow_the_template(conversations):
    assert conversations
    for conv in conversations:
        assert 1 <= len(conv) // 2 <= 2 and len(conv) % 2 == 0
        roles = [role for role, _ in conv]
        assert roles == ["user", "assistant"] * (len(conv) // 2)
    assert any(len(conv) == 4 for conv in conversations)  # some multi-turn conversations
    assert any(len(conv) == 2 for conv in conversations)


def test_every_sft_fact_is_answered_and_some_are_also_snubbed_but_never_the_headline(world, conversations):
    pairs = {(q, a) for conv in conversations for (_, q), (_, a) in zip(conv[::2], conv[1::2])}
    rude = 0
    for f in world.sft_facts:
        q = world.question(f)
        assert (q, world.statement(f)) in pairs, f
        snubbed = any((q, r) in pairs for r in RUDE_ANSWERS)
        assert not (snubbed and f.subject == HEADLINE_SUBJECT), "the headline question got a rude answer"
        rude += snubbed
    assert 0.2 < rude / len(world.sft_facts) < 0.4  # rude_share = 0.3: RLHF has something to remove


def test_held_out_facts_never_appear_in_sft_text(world, conversations):
    texts = [text for conv in conversations for _, text in conv]
    assert texts
    exact = set(texts)
    joined = "\n".join(texts)
    for f in world.held_out:
        assert world.question(f) not in exact, f
        assert world.statement(f) not in exact, f
        # nor inside any longer text (every turn text is a single sentence anyway)
        assert world.statement(f) not in joined, f
        assert world.question(f) not in joined, f
    # and the parsed subjects of every turn are those of SFT facts only
    held_subjects = {(f.family, f.subject) for f in world.held_out}
    for text in texts:
        parsed = world.parse(text)
        assert parsed is not None, text
        kind, family, fields = parsed
        if "subject" in fields:
            assert (family, fields["subject"]) not in held_subjects, text


def test_ambiguous_questions_are_answered_with_their_family_clarification(conversations):
    ambiguous = {q: fam for fam in FAMILIES for q in fam.ambiguous}
    seen = Counter()
    for conv in conversations:
        for (role_q, q), (role_a, a) in zip(conv[::2], conv[1::2]):
            assert (role_q, role_a) == ("user", "assistant")
            if q in ambiguous:
                assert a == ambiguous[q].clarification, (q, a)
                seen[q] += 1
            else:  # a clarification only ever answers an ambiguous question
                assert a not in {fam.clarification for fam in FAMILIES}, (q, a)
    assert set(seen) == set(ambiguous)
    assert all(n == 12 for n in seen.values())  # ambiguous_per_form default


# -- pretraining documents --------------------------------------------------------------
def test_pretraining_documents_have_the_requested_count_and_all_three_kinds(docs):
    assert len(docs) == N_DOCS
    kinds = Counter(doc_kind(d) for d in docs)
    assert set(kinds) == {"facts", "quiz", "sheet"}
    for kind, share in zip(("facts", "sheet", "quiz"), World().mix):  # each kind near its share of the documents
        assert abs(kinds[kind] / N_DOCS - share) < 0.05, (kinds, World().mix)


def test_every_document_is_made_of_sentences_the_world_says(world, docs):
    for doc in docs[:300]:
        kind = doc_kind(doc)
        if kind == "sheet":
            lines = ["Q : " + part for part in doc.split("Q : ")[1:]]
            assert 1 <= len(lines) <= 3
            for line in lines:
                assert world.parse(line)[0] == "sheet", line
                q, a = line[len("Q : "):].split(" A : ")
                pq, pa = world.parse(q), world.parse(a)
                assert pq[0] == "question" and pa[0] == "statement", line
                assert pq[2]["subject"] == pa[2]["subject"]  # the answer copies the subject
        else:
            end = " ." if kind == "facts" else " ?"
            sentences = [s + end for s in doc.split(end) if s.strip()]
            assert 3 <= len(sentences) <= 6, doc
            expected = "statement" if kind == "facts" else "question"
            parsed = [world.parse(s) for s in sentences]
            assert all(p is not None and p[0] == expected for p in parsed), doc
            assert len({p[1] for p in parsed}) == 1, doc  # one family per document


def test_held_out_statements_appear_in_pretraining(world, docs):
    corpus = "\n".join(docs)
    held = sorted(world.held_out, key=lambda f: (f.family, f.subject))
    found = [f for f in held if world.statement(f) in corpus]
    assert len(found) >= 0.9 * len(held), [f for f in held if f not in found]
    for fam in FAMILIES:  # every family contributes
        assert any(f.family == fam.name for f in found), fam.name


# -- determinism --------------------------------------------------------------------
def test_same_seed_gives_identical_data():
    a, b = World(seed=5), World(seed=5)
    assert a.held_out == b.held_out and a.sft_facts == b.sft_facts
    assert a.pretraining_documents(200, seed=3) == b.pretraining_documents(200, seed=3)
    assert a.sft_conversations(seed=3) == b.sft_conversations(seed=3)
    assert a.preference_pairs(seed=3) == b.preference_pairs(seed=3)


def test_different_seeds_give_different_data():
    a, b = World(seed=0), World(seed=1)
    assert a.held_out != b.held_out
    w = World(seed=0)
    assert w.pretraining_documents(200, seed=0) != w.pretraining_documents(200, seed=1)
    assert w.sft_conversations(seed=0) != w.sft_conversations(seed=1)
    assert w.preference_pairs(seed=0) != w.preference_pairs(seed=1)


# -- parse ------------------------------------------------------------------------------
def test_parse_recognises_statements_and_questions_of_every_fact(world):
    for f in world.facts:
        assert world.parse(world.statement(f)) == ("statement", f.family, {"subject": f.subject, "value": f.value})
        assert world.parse(world.question(f)) == ("question", f.family, {"subject": f.subject})


def test_parse_examples():
    world = World()
    assert world.parse("The capital of France is Paris .") == (
        "statement", "capital", {"subject": "France", "value": "Paris"})
    assert world.parse("What is 3 plus 4 ?") == ("question", "sum", {"subject": "3 plus 4"})
    assert world.parse("3 plus 4 is 7 .") == ("statement", "sum", {"subject": "3 plus 4", "value": "7"})
    assert world.parse("The colour of the sky is blue .") == (
        "statement", "colour", {"subject": "the sky", "value": "blue"})
    # a wrong value is still a statement, with the value as written
    assert world.parse("The capital of France is Lima .") == (
        "statement", "capital", {"subject": "France", "value": "Lima"})
    # whitespace is normalised
    assert world.parse("  The capital of\tFrance  is Paris .\n") == (
        "statement", "capital", {"subject": "France", "value": "Paris"})


def test_parse_recognises_ambiguous_questions_and_clarifications():
    world = World()
    for fam in FAMILIES:
        for q in fam.ambiguous:
            assert world.parse(q) == ("question", fam.name, {}), q
        assert world.parse(fam.clarification) == ("clarification", fam.name, {}), fam.name


def test_parse_recognises_sheet_lines_and_rude_answers():
    world = World()
    line = "Q : What is the capital of Peru ? A : The capital of Peru is Lima ."
    assert world.parse(line) == ("sheet", "", {})
    assert world.parse("A : The capital of Peru is Lima .") == ("sheet", "", {})
    for rude in RUDE_ANSWERS:
        assert world.parse(rude) == ("rude", "", {}), rude


@pytest.mark.parametrize("text", [
    "", "   ", "Paris .", "hello world", "The capital of France is Paris",  # no full stop
    "What is the capital of France", "What is banana plus 2 ?", "banana plus 2 is 5 .",
    "Which city do you mean ?", "Q: no space before the colon", "The capital is Paris .",
    "zxq wvv . ?", "<|end|>",
])
def test_parse_returns_none_for_unknown_text(text):
    assert World().parse(text) is None


# -- preference pairs -------------------------------------------------------------------
def test_preference_pairs(world):
    pairs = world.preference_pairs(seed=0)
    assert len(pairs) == len(world.facts)
    kinds = Counter()
    for f, (question, chosen, rejected) in zip(world.facts, pairs):
        assert question == world.question(f)
        assert chosen == world.statement(f)
        assert rejected != chosen
        if rejected in RUDE_ANSWERS:
            kinds["rude"] += 1
            continue
        kind, family, fields = world.parse(rejected)
        assert (kind, family, fields["subject"]) == ("statement", f.family, f.subject), rejected
        assert fields["value"] != f.value, rejected
        # the wrong value is a real value of the same family
        assert fields["value"] in {g.value for g in world.facts if g.family == f.family}
        kinds["wrong"] += 1
    assert kinds["rude"] > 0 and kinds["wrong"] > 0, kinds
    assert FAMILY["capital"].statement.format(subject="France", value="Paris") in {c for _, c, _ in pairs}
