"""The behaviour probe: what does a model do when asked a question?

Each generation is put in one of four classes by reading its first sentence (up to the
first ``.`` or ``?``, or up to a special token) with the world's sentence patterns:

* **Clarification**: a clarifying question, e.g. "Which country do you mean ?";
* **Answer**: a statement about what was asked, e.g. "The capital of France is Paris ."
  for "What is the capital of France ?" (right or wrong: ``correct`` says which), or for
  an ambiguous question any fact statement of its family. A rude reply ("Ask someone
  else .") is an Answer too, never correct: the model replied as the assistant, unhelpfully
  (the reward check measures how often);
* **Continuation**: any other sentence the world uses: another question, a fact about
  something else, a line of a Q/A sheet; the text goes on as a document would;
* **Gibberish**: anything else, including an empty reply.

The distribution over the classes comes with 95% Wilson confidence intervals;
``toolkit.plots.plot_distributions`` draws it as the grouped bar chart "base vs chat".
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from enum import StrEnum

import torch

from toolkit.sample import Sampler, generate, sample_next
from toolkit.template import ASSISTANT, BOS, END, USER, base_prompt, chat_prompt
from toolkit.world import FAMILIES, Fact, Kind, World

class Label(StrEnum):
    """The probe's classes, in the order the charts show them, each with its colour there (declared here only)."""

    CONTINUATION = "Continuation"
    ANSWER = "Answer"
    CLARIFICATION = "Clarification"
    GIBBERISH = "Gibberish"

    @property
    def colour(self) -> str:
        """Its colour in the charts."""
        return LABEL_COLOURS[self]


LABEL_COLOURS = {Label.CONTINUATION: "#4e79a7", Label.ANSWER: "#59a14f", Label.CLARIFICATION: "#f28e2b",
                 Label.GIBBERISH: "#bab0ac"}


LABELS = tuple(Label)
HEADLINE = "What is the capital of France ?"


@dataclass(frozen=True)
class Prompt:
    kind: str  # "seen" (fact in SFT data), "held_out" (only in pretraining) or "ambiguous"
    question: str
    fact: Fact | None = None


@dataclass
class Generation:
    prompt: Prompt
    text: str  # decoded new tokens, special tokens included
    label: Label
    correct: bool  # an Answer with the right value
    stopped: bool  # the reply is one sentence closed by <|end|>

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prompt"] = {"kind": self.prompt.kind, "question": self.prompt.question}
        return d


def first_sentence(text: str) -> str:
    """The text up to the first special token, then up to and including the first . or ?"""
    cut = min((i for i in (text.find(s) for s in (BOS, USER, ASSISTANT, END)) if i >= 0), default=len(text))
    text = text[:cut]
    ends = [i for i in (text.find("."), text.find("?")) if i >= 0]
    return " ".join(text[: min(ends) + 1].split()) if ends else " ".join(text.split())


def classify(world: World, prompt: Prompt, text: str) -> tuple[Label, bool]:
    """(label, correct) for one generation; see the module docstring for the rules."""
    parsed = world.parse(first_sentence(text))
    if parsed is None or not first_sentence(text):
        return Label.GIBBERISH, False
    kind, family, fields = parsed
    if kind == Kind.CLARIFICATION:
        return Label.CLARIFICATION, False
    if kind == Kind.RUDE:
        return Label.ANSWER, False
    if kind == Kind.STATEMENT:
        if prompt.fact is None and family == _family_of(prompt.question):
            return Label.ANSWER, False
        if prompt.fact is not None and family == prompt.fact.family and fields["subject"] == prompt.fact.subject:
            return Label.ANSWER, fields["value"] == prompt.fact.value
    return Label.CONTINUATION, False


def _family_of(question: str) -> str | None:
    return next((f.name for f in FAMILIES if question in f.ambiguous), None)


def prompt_set(world: World, n_seen: int = 60, n_held_out: int = 50, ambiguous_repeats: int = 5, seed: int = 0) -> list[Prompt]:
    """Questions on facts seen in SFT, on held-out facts, and ambiguous questions."""
    rng = random.Random(seed)
    held = sorted(world.held_out, key=lambda f: (f.family, f.subject))
    prompts = [Prompt("seen", world.question(f), f) for f in rng.sample(world.sft_facts, n_seen)]
    prompts += [Prompt("held_out", world.question(f), f) for f in rng.sample(held, min(n_held_out, len(held)))]
    prompts += [Prompt("ambiguous", q) for fam in FAMILIES for q in fam.ambiguous] * ambiguous_repeats
    return prompts


def headline_prompts(world: World, n: int = 40) -> list[Prompt]:
    fact = next(f for f in world.facts if f.subject == "France")
    return [Prompt("seen" if fact not in world.held_out else "held_out", HEADLINE, fact)] * n


def run_probe(model, tokenizer, world: World, prompts: list[Prompt], chat: bool,
              temperature: float = 1.0, max_new_tokens: int = 20, seed: int = 0, top_k: int | None = None,
              top_p: float | None = None, sampler: Sampler = sample_next) -> list[Generation]:
    """Generate one reply per prompt (sampled, seeded) and classify it.

    Prompts of one length are generated together, one batch each (``toolkit.sample.generate``),
    shortest first, all drawing from one generator seeded with ``seed``."""
    render = chat_prompt if chat else base_prompt
    stop = {tokenizer.special_tokens[s] for s in (BOS, USER, END)}
    gen = torch.Generator().manual_seed(seed)
    encoded = [tokenizer.encode(render(p.question)) for p in prompts]
    by_length = defaultdict(list)  # batch prompts of equal length together
    for i, ids in enumerate(encoded):
        by_length[len(ids)].append(i)
    texts: list[str] = [""] * len(prompts)
    for length in sorted(by_length):
        rows = by_length[length]
        outs = generate(model, torch.tensor([encoded[i] for i in rows]), max_new_tokens,
                        temperature=temperature, top_k=top_k, stop_ids=stop, generator=gen, top_p=top_p,
                        sampler=sampler)
        for i, out in zip(rows, outs):
            texts[i] = tokenizer.decode(out)
    results = []
    for p, text in zip(prompts, texts):
        label, correct = classify(world, p, text)
        stopped = text.endswith(END) and first_sentence(text) == " ".join(text[: -len(END)].split())
        results.append(Generation(p, text, label, correct, stopped))
    return results


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else min(lo, p)), (1.0 if k == n else max(hi, p))  # exact despite rounding


def share(k: int, n: int) -> dict[str, float]:
    """``k`` of ``n`` as {"p", "lo", "hi", "n"}: the rate with its 95% Wilson interval."""
    lo, hi = wilson(k, n)
    return {"p": k / n if n else 0.0, "lo": lo, "hi": hi, "n": n}


def distribution(gens: list[Generation]) -> dict[str, dict[str, float]]:
    """Label -> {"p", "lo", "hi", "n"}: the share of each class with its 95% interval."""
    return {label: share(sum(g.label == label for g in gens), len(gens)) for label in LABELS}


def rate(gens: list[Generation], what) -> float:
    return sum(map(what, gens)) / len(gens) if gens else 0.0


def run_user_turn(model, tokenizer, world: World, n: int = 30, seed: int = 0,
                  top_p: float | None = None, sampler: Sampler = sample_next) -> int:
    """How many of ``n`` replies to a bare ``<|bos|><|user|>`` write a user's question.

    A chat model whose loss counted the user's turns has learned to write them; one trained
    on the assistant's turns only has never been taught what follows ``<|user|>``.
    """
    ids = torch.tensor([tokenizer.encode(BOS + USER)] * n)
    stop = {tokenizer.special_tokens[s] for s in (BOS, ASSISTANT, END)}
    outs = generate(model, ids, 16, temperature=1.0, stop_ids=stop, generator=torch.Generator().manual_seed(seed),
                    top_p=top_p, sampler=sampler)
    parsed = [world.parse(first_sentence(tokenizer.decode(o))) for o in outs]
    return sum(p is not None and p[0] == Kind.QUESTION for p in parsed)
