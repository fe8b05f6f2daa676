"""A small generated world of facts, and the texts the pipeline trains on.

Three fact families (capitals of 123 countries, sums of small numbers, colours of things).
From them we write:

* a pretraining corpus of documents: fact lists ("The capital of Peru is Lima . ..."),
  quiz lists ("What is the capital of Peru ? What is the capital of Chad ? ...") and
  question/answer sheets ("Q : What is the capital of Peru ? A : The capital of Peru is
  Lima ."). A model pretrained on it is a completion engine: given a bare question at the
  start of a text it writes another question, as a quiz list would. The sheets teach it to
  copy the subject of a question into its answer, which SFT later relies on (they are the
  only pretraining text in which a question is followed by its answer);
* chat conversations for SFT in the ``<|user|>`` / ``<|assistant|>`` template, with
  clarifying questions for ambiguous prompts; a share of facts is held out of SFT so the
  probe can tell "SFT taught the format" from "SFT taught the fact";
* preference pairs (a helpful correct answer against a rude or wrong one).

Every sentence is written with spaces around punctuation ("Paris .") so that words and
punctuation are separate chunks for the tokenizer. Everything is seeded.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from importlib import resources

HEADLINE_SUBJECT = "France"  # "What is the capital of France ?", the course's headline question


@dataclass(frozen=True)
class Family:
    """A kind of fact and the ways the world talks about it."""

    name: str
    statement: str  # answers and fact lists, e.g. "The capital of {subject} is {value} ."
    question: str  # quiz lists and chat prompts, e.g. "What is the capital of {subject} ?"
    ambiguous: tuple[str, ...]  # questions that do not say which subject
    clarification: str  # the chat model's answer to an ambiguous question
    subject_pattern: str = r".+?"  # regex that a subject of this family matches


@dataclass(frozen=True)
class Fact:
    family: str
    subject: str
    value: str


FAMILIES = (
    Family(
        "capital",
        "The capital of {subject} is {value} .",
        "What is the capital of {subject} ?",
        ("What is the capital ?", "Which city is the capital ?"),
        "Which country do you mean ?",
    ),
    Family(
        "sum",
        "{subject} is {value} .",
        "What is {subject} ?",
        ("What is the sum ?", "How much is the sum ?"),
        "Which numbers do you mean ?",
        subject_pattern=r"\d+ plus \d+",
    ),
    Family(
        "colour",
        "The colour of {subject} is {value} .",
        "What is the colour of {subject} ?",
        ("What is the colour ?", "Which colour is it ?"),
        "Which thing do you mean ?",
    ),
)
FAMILY = {f.name: f for f in FAMILIES}

COLOURS = {
    "a banana": "yellow", "a lemon": "yellow", "the sun": "yellow", "a canary": "yellow",
    "grass": "green", "a leaf": "green", "a frog": "green", "a lime": "green",
    "the sky": "blue", "the sea": "blue", "a sapphire": "blue", "a blueberry": "blue",
    "snow": "white", "milk": "white", "a cloud": "white", "a swan": "white",
    "coal": "black", "a crow": "black", "the night": "black", "ink": "black",
    "a tomato": "red", "blood": "red", "a ruby": "red", "a cherry": "red",
    "an orange": "orange", "a carrot": "orange", "a pumpkin": "orange",
    "chocolate": "brown", "a bear": "brown", "soil": "brown",
}
class Kind(StrEnum):
    """The kinds of sentence ``World.parse`` recognises."""

    STATEMENT = "statement"  # a fact: "The capital of France is Paris ."
    QUESTION = "question"
    CLARIFICATION = "clarification"  # asking back on an ambiguous question
    SHEET = "sheet"  # a line of a Q/A sheet: "Q : ... A : ..."
    RUDE = "rude"  # one of RUDE_ANSWERS


RUDE_ANSWERS = ("Look it up yourself .", "I do not care .", "Ask someone else .")


def _capitals() -> dict[str, str]:
    text = resources.files("toolkit.data").joinpath("capitals.tsv").read_text(encoding="utf-8")
    return dict(line.split("\t") for line in text.splitlines() if line.strip())


def all_facts() -> list[Fact]:
    facts = [Fact("capital", c, city) for c, city in _capitals().items()]
    facts += [Fact("sum", f"{a} plus {b}", str(a + b)) for a in range(1, 11) for b in range(1, 11)]
    facts += [Fact("colour", thing, colour) for thing, colour in COLOURS.items()]
    return facts


def _fill(template: str, fact: Fact) -> str:
    return template.format(subject=fact.subject, value=fact.value)


@dataclass
class World:
    """The facts, which of them SFT sees, and generators for every data set."""

    seed: int = 0
    held_out_share: float = 0.2  # share of each family's facts held out of SFT
    # pretraining documents: fact lists, Q/A sheets, quiz lists. Half are sheets: with (0.3, 0.3, 0.4) one
    # seed's base model of five did not learn to copy the subject asked (held-out Answer 0.44, headline 0.52)
    mix: tuple[float, float, float] = (0.2, 0.5, 0.3)
    sheet_pairs: int = 3  # at most this many question/answer pairs on a Q/A sheet
    ambiguous_per_form: int = 12  # SFT chats per ambiguous question
    multi_turn_share: float = 0.25  # share of SFT conversations with two turns
    rude_share: float = 0.3  # share of SFT facts also answered rudely
    facts: list[Fact] = field(default_factory=all_facts)

    def __post_init__(self):
        rng = random.Random(self.seed)
        self.held_out: set[Fact] = set()
        for fam in FAMILIES:  # the headline's fact is always seen in SFT
            members = [f for f in self.facts if f.family == fam.name and f.subject != HEADLINE_SUBJECT]
            self.held_out.update(rng.sample(members, round(self.held_out_share * len(members))))
        self.sft_facts = [f for f in self.facts if f not in self.held_out]

    # -- sentences --------------------------------------------------------------------
    @staticmethod
    def statement(fact: Fact) -> str:
        return _fill(FAMILY[fact.family].statement, fact)

    @staticmethod
    def question(fact: Fact) -> str:
        return _fill(FAMILY[fact.family].question, fact)

    # -- pretraining ------------------------------------------------------------------
    def pretraining_documents(self, n_docs: int, seed: int = 0) -> list[str]:
        """``n_docs`` documents: fact lists, Q/A sheets and quiz lists in proportions ``self.mix``."""
        rng = random.Random(seed)
        docs = []
        for _ in range(n_docs):
            fam = rng.choice(FAMILIES)
            members = [f for f in self.facts if f.family == fam.name]
            picked = rng.sample(members, rng.randint(3, 6))
            kind = rng.choices(("facts", "sheet", "quiz"), weights=self.mix)[0]
            if kind == "facts":
                sentences = [self.statement(f) for f in picked]
            elif kind == "quiz":
                sentences = [self.question(f) for f in picked]
            else:
                sentences = [f"Q : {self.question(f)} A : {self.statement(f)}" for f in picked[: self.sheet_pairs]]
            docs.append(" ".join(sentences))
        return docs

    # -- chat -------------------------------------------------------------------------
    def sft_conversations(self, seed: int = 0) -> list[list[tuple[str, str]]]:
        """Conversations as lists of (role, text); only facts not held out.

        Every fact is asked and answered once; for a ``self.rude_share`` of them the data holds a
        second, rude answer ("Look it up yourself ."), as real instruction data has bad answers
        among the good ones. The chat model learns to be rude now and then, which RLHF removes.
        The headline question (``HEADLINE_SUBJECT``) is never answered rudely; its random draws
        are made all the same, so the other conversations do not depend on that rule.
        """
        rng = random.Random(seed)
        turns = []
        for f in self.sft_facts:
            turns.append((self.question(f), self.statement(f)))
            rude = rng.choice(RUDE_ANSWERS) if rng.random() < self.rude_share else None
            if rude and f.subject != HEADLINE_SUBJECT:  # the course's headline question is never snubbed
                turns.append((self.question(f), rude))
        for fam in FAMILIES:
            turns += [(q, fam.clarification) for q in fam.ambiguous] * self.ambiguous_per_form
        rng.shuffle(turns)
        conversations, i = [], 0
        while i < len(turns):
            n = 2 if rng.random() < self.multi_turn_share and i + 1 < len(turns) else 1
            conv = []
            for q, a in turns[i:i + n]:
                conv += [("user", q), ("assistant", a)]
            conversations.append(conv)
            i += n
        return conversations

    def preference_pairs(self, seed: int = 0, per_fact: int = 1) -> list[tuple[str, str, str]]:
        """(question, chosen, rejected): the correct polite answer over a rude or a wrong one,
        ``per_fact`` draws for each fact (a pair drawn twice is kept once)."""
        rng = random.Random(seed)
        pairs = []
        for f in self.facts:
            same = [g for g in self.facts if g.family == f.family and g.value != f.value]
            for _ in range(per_fact):
                wrong = Fact(f.family, f.subject, rng.choice(same).value)
                rejected = rng.choice([rng.choice(RUDE_ANSWERS), self.statement(wrong)])
                pairs.append((self.question(f), self.statement(f), rejected))
        return list(dict.fromkeys(pairs))

    # -- reading sentences back -------------------------------------------------------
    @cached_property
    def _patterns(self) -> list[tuple[Kind, str, re.Pattern]]:
        """(kind, family, regex) for every sentence form the world uses."""
        def rx(template: str, subject: str = r".+?") -> re.Pattern:
            body = re.escape(template).replace(r"\{subject\}", f"(?P<subject>{subject})")
            return re.compile("^" + body.replace(r"\{value\}", r"(?P<value>.+?)") + "$")
        out = []
        for fam in FAMILIES:
            forms = [(Kind.CLARIFICATION, fam.clarification), (Kind.STATEMENT, fam.statement),
                     (Kind.QUESTION, fam.question)]
            forms += [(Kind.QUESTION, q) for q in fam.ambiguous]
            out += [(kind, fam.name, rx(t, fam.subject_pattern)) for kind, t in forms]
        out += [(Kind.SHEET, "", re.compile(r"^(Q|A) :.*$"))]
        out += [(Kind.RUDE, "", rx(r)) for r in RUDE_ANSWERS]
        return out

    def parse(self, sentence: str) -> tuple[Kind, str, dict[str, str]] | None:
        """Recognise a sentence: (kind, family, fields) or None if the world never says it."""
        sentence = " ".join(sentence.split())
        for kind, fam, pattern in self._patterns:
            m = pattern.match(sentence)
            if m:
                return kind, fam, m.groupdict()
        return None
