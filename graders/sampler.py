"""Checks of the sampler component (next-token sampling: greedy, temperature, top-k, top-p).

A sampler is random, so most checks count draws. Each test case is a few rows of logits; the
batch given to the sampler repeats them ``DRAWS`` times, so one call draws ``DRAWS`` tokens per
row (rows are independent: that is part of the contract, and ``rows_independent`` checks it).
The draws of a row must

* never fall outside the tokens the settings keep (exact: a kept token has probability > 0,
  a removed one exactly 0), and
* match the probabilities the solution samples from (``graders/snapshots/sampler.json``,
  recorded by spying on its ``torch.multinomial``), token by token, by an **exact binomial
  test**: the count of token ``i`` is ``Binomial(DRAWS, p_i)``; its two-sided p-value is twice
  the smaller tail, summed exactly from ``math.lgamma``; the row fails when the smallest
  p-value times the number of tokens tested (Bonferroni) is below ``ALPHA``.

Each case is then drawn again in a context of the pipeline's (``graders.contexts``): its rows
among as many tokens as the pipeline's vocabulary has (the other tokens 100 nats and more below
the row, so the distribution is the same), in calls of the pipeline's batch sizes,
``PIPELINE_DRAWS`` tokens per row: a sampler that behaves one way on small vocabularies or large
batches and another in the pipeline fails there. Calls that all draw the same tokens count as
one (a generator that does not move on is ``uses_generator``'s business).

Each check tests one idea (greedy, top_k, top_p, the temperature, ...) on cases of its own. Its reason
is the first failing case's, opening with the case's settings and row ("temperature 1, top_p 0.5,
probabilities [...]: ..."), naming the classic mistake whose tokens were drawn; a mistake seen only over
all of a check's cases (top_p ignored) is named first. When the hook raises, the reason names the
filter without which the same call works (``culprit``), and a hint for that filter.

The generators are seeded from the instructor's seed (``graders.contexts.run_seed``: no submission
can read it, and a re-run draws the same), so that no call can be recognised by its generator. A correct sampler fails the test
of one row with probability at most ``ALPHA`` = 1e-6 (exact tails and the Bonferroni union
bound make that a bound, not an approximation); over the 16 rows these public checks test, each
in two contexts, at most 3.2e-5. A wrong distribution is caught with room to spare: the classic
mistakes move some probability by 0.05 or more, 6 to 8 standard deviations of a count at 4,000
draws, where the test needs about 5.3 (a two-sided 1e-6 / 7).
"""

from __future__ import annotations

import hashlib
import importlib
import math
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from graders import contexts
from graders.statistics import ALPHA, fits, worst_token, z_score
from toolkit import cache, probe
from toolkit.checks import CheckFailed, check, child_side
from toolkit.plugins import PluginError
from toolkit.sample import sample_next
from toolkit.source_scan import names_used

DRAWS = 4000  # tokens drawn per row of a test case
INF = float("inf")


# -- test cases -----------------------------------------------------------------------------
@dataclass
class Row:
    logits: list[float]
    label: str  # how a reason shows it
    mistakes: dict[tuple[int, ...], str] = field(default_factory=dict)  # the tokens a classic bug keeps -> its name


def from_probs(probs: list[float], mistakes: dict | None = None) -> Row:
    """A row whose softmax (at temperature 1) is ``probs``: its logits are their logs."""
    return Row([math.log(p) for p in probs], f"probabilities {probs}", mistakes or {})


def from_logits(logits: list[float], mistakes: dict | None = None) -> Row:
    return Row(list(logits), "logits [" + ", ".join(f"{x:g}" for x in logits) + "]", mistakes or {})


def settings(temperature: float, top_k: int | None, top_p: float | None) -> str:
    """How a reason shows a call's settings: "temperature 1, top_p 0.7"."""
    parts = [f"temperature {temperature:g}"]
    parts += [f"top_k {top_k}"] if top_k is not None else []
    parts += [f"top_p {top_p:g}"] if top_p is not None else []
    return ", ".join(parts)


@dataclass
class Case:
    name: str  # key in the snapshot
    rows: list[Row]  # one call draws DRAWS tokens of each
    temperature: float
    top_k: int | None = None
    top_p: float | None = None

    @property
    def settings(self) -> str:
        return settings(self.temperature, self.top_k, self.top_p)

    def logits(self) -> torch.Tensor:
        return torch.tensor([row.logits for row in self.rows], dtype=torch.float32)  # (R, V)


BY_POSITION = "top_k kept the first k ids, not the k largest logits: compare values (torch.topk(...).values)"
EXACTLY_K = ("top_k kept exactly k tokens where several tie with the k-th largest logit: keep every token whose logit "
             "is >= the k-th largest")
CROSSING = ("top_p dropped the token whose probability makes the sum reach p: keep the shortest prefix of the "
            "ranking whose sum is >= p, that token included")
ASCENDING = "top_p kept the least likely tokens: rank the tokens from the most to the least likely (descending=True)"
TIE_ORDER = ("at equal probability top_p must rank the lower id first (torch.sort(probs, descending=True, "
             "stable=True) does; an ascending sort flipped does not)")

TOP_K = [
    Case("top_k by value, ties kept", [
        from_logits([0.0, -1.0, 0.5, -0.5, 2.0, 1.0, 2.5, 3.0], {(0, 1, 2): BY_POSITION}),
        from_logits([1.0, 3.0, 2.0, 0.0, 2.0, -1.0, 2.0, -INF],  # ids 2, 4 and 6 tie with the 3rd largest
                    {(0, 1, 2): BY_POSITION, **{(1, *pair): EXACTLY_K for pair in ((2, 4), (2, 6), (4, 6))}}),
    ], temperature=1.0, top_k=3),
    Case("top_k larger than V", [from_logits([0.5, -0.5, 1.0, 0.0, -1.0, 0.2, -INF, 0.8])], temperature=1.0, top_k=10),
    Case("top_k 1", [from_logits([-INF, 0.5, -1.0, 2.0, 1.9, 0.0])], temperature=0.7, top_k=1),  # the argmax alone
]

# Each classic top-p mistake keeps a set of tokens of its own on the first case it gets wrong (the cases
# run in this order): ascending and a dropped crossing token on the ties, flipped ties there too.
TOP_P = [
    Case("top_p ties", [
        # ranked: id 2 (0.4), id 1 (0.2, the lower of the tied ids: the sum reaches 0.6 >= 0.5), id 3 (0.2), ...
        from_probs([0.1, 0.2, 0.4, 0.2, 0.1], {(2, 3): TIE_ORDER, (2,): CROSSING, (0, 1, 3, 4): ASCENDING}),
    ], temperature=1.0, top_p=0.5),
    Case("top_p keeps the crossing token", [
        # ranked: id 3 (0.5), id 1 (0.25: the sum reaches 0.75 >= 0.7), then the rest
        from_probs([0.05, 0.25, 0.04, 0.5, 0.06, 0.1], {(3,): CROSSING}),
    ], temperature=1.0, top_p=0.7),
    Case("top_p keeps the top token", [
        from_probs([0.1, 0.6, 0.1, 0.1, 0.1]),  # the top token alone is more than p: it stays, alone
    ], temperature=1.0, top_p=0.5),
    Case("top_p after top_k", [
        # top_k keeps ids 0, 2, 1, renormalised to 0.44, 0.33, 0.22: 0.44 + 0.33 >= 0.72 keeps ids 0 and 2.
        # Top-p on the probabilities before top-k would need 0.4 + 0.3 + 0.2 to reach 0.72.
        from_probs([0.4, 0.2, 0.3, 0.1], {(0, 1, 2): "with top_k and top_p both on, top_p ranks the probabilities "
                                                     "renormalised over the tokens top_k kept: top_k, then softmax, "
                                                     "then top_p"}),
    ], temperature=1.0, top_k=3, top_p=0.72),
    Case("top_p after the temperature", [
        # at temperature 0.5 the probabilities are 0.78, 0.20, 0.02: top_p 0.7 keeps id 0 alone (at temperature 1,
        # 0.6 + 0.3: ids 0 and 1)
        from_probs([0.6, 0.3, 0.1], {(0, 1): "top_p was applied before dividing the logits by the temperature: divide "
                                             "first, then filter"}),
    ], temperature=0.5, top_p=0.7),
]
IGNORED = ("top_p was ignored: every case with top_p was drawn from softmax(logits / temperature) over all the tokens "
           "top_k kept, as with top_p None: keep only the most likely tokens, down the ranking until their "
           "probabilities sum to p (the token that reaches it included)")
EMPTY_NUCLEUS = ("top_p left a row without any token: a token goes only when the mass ranked above it has reached p, "
                 "so the most likely token always stays (alone, when it has p or more by itself)")
EMPTY_TOP_K = "top_k left a row without any token: keep every logit >= the k-th largest of its row"
NOT_LOGITS = "it takes probabilities (a softmax), not logits"

TEMPERATURE = [
    Case("sharper", [from_logits([1.0, 2.0, 0.5, 1.5, 0.0, 2.2])], temperature=0.5),
    Case("flatter", [from_logits([1.0, 2.0, 0.5, 1.5, 0.0, 2.2])], temperature=2.0),
]

EXTREME = [
    Case("logits of 1e4", [from_logits([1e4, 1e4 - 1, 0.0, -1e4, -INF, 1e4 - 2, -INF, -INF])], temperature=1.0),
    Case("logits of -1e4 next to -inf", [from_logits([-1e4 + 1, -1e4, -1e4 - 1, -INF, -INF, -INF])],
         temperature=1.0, top_k=4),  # the 4th largest logit is -inf: every token passes top_k
]

ROWS = [
    Case("rows of different scales", [  # in each row the 3 largest logits are ids 0, 1 and 2
        from_logits([2.0, 1.0, 1.5, -1.0, 0.0, -2.0]),
        from_logits([301.0, 302.0, 300.5, 299.0, -INF, 298.0]),
        from_logits([-200.0, -201.0, -199.5, -INF, -205.0, -INF]),
    ], temperature=1.0, top_k=3),
]

CASES = TOP_K + TOP_P + TEMPERATURE + EXTREME + ROWS
SEEDS = {case.name: 1000 + i for i, case in enumerate(CASES)}


# -- calling the sampler ---------------------------------------------------------------------
def sample(components, logits, temperature, top_k, top_p, generator, hint: str = "") -> torch.Tensor:
    """The hook's ids for ``logits`` (B, V), checked to be a LongTensor (B,) of valid ids.

    When the hook raises, ``refusal`` says which setting made it (``hint``: what a refusal of
    torch.multinomial means in the check that called, when no filter is to blame).
    """
    B, V = logits.shape
    spy = _Multinomial()
    try:
        with spy:  # in the grader's process only; a hidden check's submission runs elsewhere and the spy sees nothing
            ids = components.sample(logits.clone(), temperature, top_k, top_p, generator)
    except PluginError as e:
        reason = refusal(components, logits, temperature, top_k, top_p, e, spy.inputs, hint)
        if reason is None:
            raise  # the hook's own error, whatever the settings (a stub's NotImplementedError): it speaks for itself
        raise CheckFailed(reason) from e
    if not isinstance(ids, torch.Tensor):
        raise CheckFailed(f"toolkit_sample returned {type(ids).__name__}; expected a LongTensor (B,) of token ids")
    if tuple(ids.shape) == (B, 1):
        raise CheckFailed(f"toolkit_sample returned shape ({B}, 1); expected ({B},): squeeze the last axis of "
                          "torch.multinomial's output")
    if tuple(ids.shape) != (B,):
        raise CheckFailed(f"toolkit_sample returned shape {tuple(ids.shape)} for logits {(B, V)}; expected ({B},)")
    if ids.dtype != torch.long:
        raise CheckFailed(f"toolkit_sample returned {ids.dtype}; expected token ids as torch.long")
    if ((ids < 0) | (ids >= V)).any():
        bad = ids[(ids < 0) | (ids >= V)][0].item()
        raise CheckFailed(f"toolkit_sample returned id {bad}, outside the vocabulary 0..{V - 1}")
    return ids


def refusal(components, logits, temperature, top_k, top_p, error: PluginError, given: list, hint: str) -> str | None:
    """Why the hook raised on ``logits`` with these settings, in words that fit the setting to blame
    (None: no setting is, and torch.multinomial did not refuse: the error stands as it is).

    The setting to blame is the filter without which the same call works (``culprit``); ``given``
    is what torch.multinomial was handed, when the spy saw it."""
    text = str(error)  # "raised RuntimeError: ...", without the plugin's name (a stub's sentence says it differently)
    text = next((text.split(sep, 1)[1] for sep in (": hook toolkit_sample ", " is not implemented yet: it ") if sep in text),
                text)
    refused = "probability tensor contains" in text or "invalid multinomial distribution" in text
    did = f"gave torch.multinomial {handed(given, text)}" if refused else text
    blame = culprit(components, logits, temperature, top_k, top_p)
    if blame == "top_p":
        return f"with top_p {top_p:g} your sampler {did}: " + (EMPTY_NUCLEUS if refused else "it works with top_p None")
    if blame == "top_k" and "selected index k out of range" in text:
        return (f"with top_k {top_k} among {logits.shape[1]} tokens your sampler {did}: a top_k of V or more keeps "
                "every token (torch.topk needs min(top_k, V))")
    if blame == "top_k":
        return f"with top_k {top_k} your sampler {did}: " + (EMPTY_TOP_K if refused else "it works with top_k None")
    if not refused:
        return None
    hint = NOT_LOGITS if given and (given[-1] < 0).any() else hint  # -inf included
    return f"with {settings(temperature, top_k, top_p)} your sampler {did}: {hint or 'a softmax went wrong'}"


def culprit(components, logits, temperature, top_k, top_p) -> str | None:
    """The filter ("top_p" or "top_k") without which the hook's call on ``logits`` works; None if neither."""
    for blame, k, p in (("top_p", top_k, None), ("top_k", None, top_p)):
        if (top_k, top_p) == (k, p):
            continue  # that filter is off already
        try:
            components.sample(logits.clone(), temperature, k, p, torch.Generator().manual_seed(0))
        except PluginError:
            continue
        return blame
    return None


def handed(given: list, text: str) -> str:
    """What torch.multinomial refused: from what the spy saw, else from torch's message."""
    if not given:
        return "a row of zeros" if "sum of probabilities <= 0" in text else "NaN, inf or negative numbers"
    x = given[-1]
    if (x < 0).any():
        return "negative numbers"
    if x.isnan().any():
        return "a row of NaN"
    return "inf" if x.isinf().any() else "a row of zeros"


def draws(components, case: Case, seed: int, hint: str = "") -> torch.Tensor:
    """(DRAWS, R): DRAWS tokens of each row of ``case``, from one call on the rows repeated."""
    logits = case.logits()
    R = logits.shape[0]
    ids = sample(components, logits.repeat(DRAWS, 1), case.temperature, case.top_k, case.top_p,
                 torch.Generator().manual_seed(seed), hint)
    return ids.view(DRAWS, R)


def diagnose(case: Case, row: Row, counts: list[int], probs: list[float]) -> str | None:
    """None if the counts of ``row`` fit ``probs``; else one sentence naming what is wrong."""
    n = sum(counts)
    support = {i for i, p in enumerate(probs) if p > 0}
    drawn = {i for i, c in enumerate(counts) if c}
    if drawn != support and tuple(sorted(drawn)) in row.mistakes:
        return row.mistakes[tuple(sorted(drawn))]
    crossing = sorted(support, key=lambda i: (-probs[i], i))[-1]  # the kept token ranked last: it reaches p
    if case.top_p is not None and len(support) > 1 and drawn == support - {crossing}:
        return CROSSING  # on any row (the pipeline's, a hidden check's), as the cases' own name it
    for i in sorted(drawn - support):
        if row.logits[i] == -INF:
            return (f"token {i}, whose logit is -inf, was drawn {counts[i]} times of {n}: a -inf logit must keep "
                    "probability 0 (never replace -inf by a finite number)")
        return (f"token {i} was drawn {counts[i]} times of {n}, but these settings keep only tokens "
                f"{sorted(support)}")
    worst = worst_token(counts, probs)
    if worst is None or worst[1] >= ALPHA:
        return None
    logits = torch.tensor(row.logits, dtype=torch.float64)
    keep = torch.tensor([p > 0 for p in probs])
    if case.temperature != 1 and fits(counts, _restricted(torch.softmax(logits, -1), keep)):
        return ("the draws follow softmax(logits), not softmax(logits / temperature): divide the logits by the "
                "temperature before the softmax (dividing probabilities by it changes nothing once normalised)")
    if (logits[keep] >= 0).all() and fits(counts, _restricted(logits / case.temperature, keep)):
        return "the draws are proportional to the logits: torch.multinomial takes probabilities (a softmax), not logits"
    i, p_value = worst
    missing = " (never drawn)" if not counts[i] else ""
    shown = f"p = {p_value:.1e}" if p_value > 1e-300 else "p < 1e-300"
    return (f"token {i} was drawn {counts[i]} times of {n}{missing}, expected about {n * probs[i]:.0f} "
            f"(probability {probs[i]:.3f}; exact binomial test, {shown} < {ALPHA:g}): sample from the "
            "softmax of logits / temperature over the kept tokens")


def _restricted(weights: torch.Tensor, keep: torch.Tensor) -> list[float]:
    w = torch.where(keep, weights, torch.zeros_like(weights))
    return (w / w.sum()).tolist()


@dataclass
class Drawn:
    """A case drawn in a check's own context: the counts of each row, and why it fails (None: it passes)."""
    case: Case
    counts: list[list[int]] | None  # None: the call raised
    reason: str | None


def draw_case(components, case: Case, probs: list[list[float]], seed: int, hint: str = "") -> Drawn:
    """Draw ``case`` once; its reason is the first row's whose draws do not fit ``probs`` (R, V), or the call's."""
    try:
        ids = draws(components, case, seed, hint)
    except CheckFailed as e:
        return Drawn(case, None, str(e))
    counts = [torch.bincount(ids[:, r], minlength=len(row.logits)).tolist() for r, row in enumerate(case.rows)]
    reasons = [(row, diagnose(case, row, c, p)) for row, c, p in zip(case.rows, counts, probs)]
    return Drawn(case, counts, next((f"{case.settings}, {row.label}: {why}" for row, why in reasons if why), None))


def check_draws(components, case: Case, probs: list[list[float]], seed: int, hint: str = "") -> None:
    """Draw ``case`` and raise CheckFailed on the first row whose draws do not fit ``probs`` (R, V)."""
    reason = draw_case(components, case, probs, seed, hint).reason
    if reason:
        raise CheckFailed(reason)


def contract(logits: list[float], temperature: float, top_k: int | None, top_p: float | None) -> list[float]:
    """The probabilities the contract draws ``logits`` from at these settings, in float64 (the snapshot
    holds the solution's for the cases; this gives them at other settings, to name a mistake)."""
    x = torch.tensor(logits, dtype=torch.float64) / temperature
    if top_k is not None and top_k < len(x):
        x = x.masked_fill(x < x.topk(top_k).values[-1], -INF)
    probs = torch.softmax(x, dim=-1)
    if top_p is not None:
        ranked, order = torch.sort(probs, descending=True, stable=True)
        drop = (ranked.cumsum(-1) - ranked) >= top_p
        probs = probs.masked_fill(drop.scatter(-1, order, drop), 0.0)
    return (probs / probs.sum()).tolist()


def drawn_as(d: Drawn, temperature: float | None = None, top_p: float | None = -1.0) -> bool:
    """Do all the rows of ``d`` fit the contract at another temperature or top_p (-1: the case's own)?"""
    t = d.case.temperature if temperature is None else temperature
    p = d.case.top_p if top_p == -1.0 else top_p
    return d.counts is not None and all(fits(c, contract(row.logits, t, d.case.top_k, p))
                                        for row, c in zip(d.case.rows, d.counts))


def top_p_ignored(drawn: list[Drawn]) -> str | None:
    """IGNORED if every case with top_p was drawn as if top_p were None (a sampler without top-p)."""
    filtered = [d for d in drawn if d.case.top_p is not None]
    return IGNORED if filtered and all(drawn_as(d, top_p=None) for d in filtered) else None


def temperature_ignored(d: Drawn) -> bool:
    """Was a case at a temperature other than 1 drawn as at temperature 1? (the temperature check's to say)"""
    return d.case.temperature != 1 and drawn_as(d, temperature=1.0)


def check_cases(ctx, cases: list[Case], hint: str, concepts=(), excuses=()) -> None:
    """Draw each case in the check's own context (one call of DRAWS rows each), then in one of the
    pipeline's (``pipeline_draws``), each from a generator seeded at grading time.

    A failing check names a whole-concept mistake if one of ``concepts`` (functions of every case's
    ``Drawn``) recognises it; else the reason is the first failing case's own. A case that one of
    ``excuses`` (functions of its ``Drawn``) puts down to another check's idea is left to that check."""
    expected = ctx.snapshot()["probs"]
    rng = contexts.run_seed(ctx)
    drawn = [draw_case(ctx.components, case, expected[case.name], rng.getrandbits(48), hint) for case in cases]
    drawn = [d for d in drawn if not any(excuse(d) for excuse in excuses)]
    failed = [d.reason for d in drawn if d.reason]
    if failed:
        raise CheckFailed(next((r for r in (concept(drawn) for concept in concepts) if r), failed[0]))
    for case in [d.case for d in drawn]:
        V, B = pipeline_size(ctx, rng, DRAW_BATCH)
        check_pipeline_draws(ctx.components, case, expected[case.name], V, B, rng, hint)


# -- the pipeline's contexts ------------------------------------------------------------------
PIPELINE_DRAWS = 256  # tokens drawn per row of a case in a pipeline context: far more than greedy or a wrong support survives
DRAW_BATCH = 32  # the least batch size of those draws (the pipeline's training and RLHF batches): fewer calls
FILLER_GAP = 100.0  # nats below a row's least finite logit, at least, where the other tokens of a vocabulary sit


def pipeline_vocab(ctx) -> int:
    """The vocabulary of the pipeline's models (the baseline's tokenizer's: 604 in the default configuration)."""
    return contexts.reference_pipeline(ctx).model_config.vocab_size


def pipeline_size(ctx, rng, rows: int = 1) -> tuple[int, int]:
    """A vocabulary and a batch size of the pipeline's (``graders.contexts``), drawn by ``rng``; the
    batch holds at least 8 rows and ``rows``."""
    vocab = rng.choice(contexts.vocab_sizes(ctx.config, rng, pipeline_vocab(ctx)))
    return vocab, rng.choice([b for b in contexts.batch_sizes(ctx.config) if b >= max(8, rows)])


def embed(logits: list[float], V: int, gen: torch.Generator) -> list[float]:
    """``logits`` as the first ids of a vocabulary of ``V`` tokens: the others sit 100 to 120 nats below
    the row's least finite logit (50 and more at temperature 2: probability below 1e-21 each, so the
    row's distribution is the same to float64 precision), as the tail of a model's logits does."""
    low = min(x for x in logits if x > -INF) - FILLER_GAP
    return list(logits) + (low - 20 * torch.rand(V - len(logits), generator=gen, dtype=torch.float64)).tolist()


def check_pipeline_draws(components, case: Case, probs: list[list[float]], V: int, B: int, rng, hint: str = "") -> None:
    """``check_draws`` in a context of the pipeline's: the rows of ``case`` among ``V`` tokens, repeated
    to batches of ``B`` rows, drawn PIPELINE_DRAWS times each over as many calls as that takes."""
    gen = contexts.torch_seed(rng)
    rows = [Row(embed(row.logits, V, gen), row.label, row.mistakes) for row in case.rows]
    big = Case(case.name, rows, case.temperature, case.top_k, case.top_p)
    logits = big.logits()  # (R, V)
    R = len(rows)
    batch = logits.repeat(B // R, 1)  # (B // R * R, V)
    calls = math.ceil(PIPELINE_DRAWS / (B // R))
    generator = contexts.torch_seed(rng)
    where = f" (among {V} tokens, in batches of {len(batch)} rows)"
    with contexts.message_hidden(f"{case.settings}, {case.rows[0].label}{where}"):
        drawn = [sample(components, batch, case.temperature, case.top_k, case.top_p, generator, hint)
                 for _ in range(calls)]
    ids = torch.cat(drawn).view(-1, R)  # (calls * B // R, R)
    if all(torch.equal(d, drawn[0]) for d in drawn):  # a generator that does not move on: uses_generator says so;
        ids = drawn[0].view(-1, R)  # here the draws of one call are the evidence
    for r, row in enumerate(rows):
        counts = torch.bincount(ids[:, r], minlength=V).tolist()
        reason = diagnose(big, row, counts, probs[r] + [0.0] * (V - len(probs[r])))
        if reason:
            raise CheckFailed(f"{case.settings}, {row.label}{where}: {reason}")


# -- the checks -------------------------------------------------------------------------------
def greedy_logits() -> torch.Tensor:
    """(6, 12): random rows, one tied at its maximum, one with logits of 1e4 tied, one with -inf."""
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(0))
    x[1, 3] = x[1, 9] = x[1].max() + 1  # a tie at the maximum: ids 3 and 9
    x[2] = 1e3 * x[2]
    x[2, 5] = x[2, 7] = 1e4  # a tie at 1e4
    x[3, ::2] = -INF
    x[4, -1] = x[4].max() + 0.5  # the maximum at the last id
    x[5] = -x[5].abs() - 50
    return x


TIED_ROWS = (1, 2)
REPEATS = 8  # the rows repeated: a sampler that picks among tied tokens at random gets all 16 right 1 time in 65,536


@check("sampler", points=2)
def greedy(ctx):
    "Temperature 0 is the argmax of each row (ties: the lowest id), also with top_k and top_p on (set to keep every token)."
    rng = contexts.run_seed(ctx)
    rows = greedy_logits()
    _check_greedy(ctx, rows, len(rows) * REPEATS, rng, "")
    V, B = pipeline_size(ctx, rng)
    gen = contexts.torch_seed(rng)
    rows = torch.tensor([embed(row, V, gen) for row in rows.tolist()], dtype=torch.float32)  # (6, V)
    where = f" (among {V} tokens, in batches of {B} rows)"
    with contexts.message_hidden(f"temperature 0{where}"):
        _check_greedy(ctx, rows, B, rng, where)


def _check_greedy(ctx, rows: torch.Tensor, B: int, rng, where: str) -> None:
    """The rows of ``greedy_logits`` (possibly among more tokens) repeated to ``B`` rows: argmax at
    temperature 0, with the filters off, then on but keeping every token (top_k V, top_p 1: whether the
    filters are right is their checks' business)."""
    n = len(rows)
    logits = rows.repeat(math.ceil(B / n), 1)[:B]
    want = logits.argmax(-1)
    for top_k, top_p in ((None, None), (logits.shape[1], 1.0)):
        got = sample(ctx.components, logits, 0.0, top_k, top_p, contexts.torch_seed(rng),
                     "temperature 0 is the argmax: return logits.argmax(dim=-1) before dividing by the temperature")
        wrong = (got != want).nonzero().flatten().tolist()
        if wrong:
            b = wrong[0]
            row = b % n
            filters = "" if top_k is None else f" with top_k {top_k} and top_p 1, which keep every token"
            if row in TIED_ROWS and logits[b, got[b]] == logits[b].max():
                tied = (logits[b] == logits[b].max()).nonzero().flatten().tolist()
                raise CheckFailed(f"temperature 0{filters}: row {row} ties at its maximum (ids {tied}) and got id "
                                  f"{got[b].item()}; expected {want[b].item()}, the lowest, as torch.argmax gives "
                                  f"(greedy is the argmax, not sampling at a tiny temperature){where}")
            raise CheckFailed(f"temperature 0{filters}: row {row} got id {got[b].item()}, expected its argmax "
                              f"{want[b].item()}{where}")


@check("sampler", points=2)
def top_k(ctx):
    "top_k keeps every token whose logit is >= the k-th largest (ties kept; by value, not position; top_k 1 the argmax)."
    check_cases(ctx, TOP_K, "top_k removed every token of a row: keep the logits >= the k-th largest")


@check("sampler", points=2)
def top_p(ctx):
    "top_p keeps the shortest most-likely-first prefix whose mass reaches p (crossing and top token kept), after top_k and temperature."
    check_cases(ctx, TOP_P, EMPTY_NUCLEUS, concepts=[top_p_ignored], excuses=[temperature_ignored])


@check("sampler", points=2)
def temperature(ctx):
    "Draws follow softmax(logits / temperature) (exact binomial tests, 4,000 draws)."
    check_cases(ctx, TEMPERATURE, "torch.multinomial takes probabilities (a softmax of the logits), not logits")


@check("sampler", points=1)
def extreme_logits(ctx):
    "A -inf logit is never drawn, and logits of +-1e4 give valid ids with the right probabilities, never NaN."
    check_cases(ctx, EXTREME, "exp of a logit of 1e4 is inf (and inf / inf is NaN): subtract each row's maximum "
                              "first, or use torch.softmax")


@check("sampler", points=1)
def rows_independent(ctx):
    "Each row is drawn from its own logits: rows of very different scales in one batch do not change each other."
    check_cases(ctx, ROWS, "a row next to rows of far larger logits lost all its probability: subtract each row's "
                           "own maximum (max(dim=-1, keepdim=True)), not the batch's")


@check("sampler", points=1)
def uses_generator(ctx):
    "All randomness comes from `generator`: same state, same tokens; other seed, other tokens; global RNG untouched."
    rng = contexts.run_seed(ctx)
    watch = _GlobalRNGWatch(ctx)
    _check_generator(watch, 3 * torch.rand(64, 10, generator=torch.Generator().manual_seed(3)), (0, 1), "")
    V, B = pipeline_size(ctx, rng)
    seeds = rng.sample(range(1 << 48), 2)
    logits = 3 * torch.rand(B, V, generator=contexts.torch_seed(rng))  # (B, V): flat enough that seeds differ in draws
    where = f" (among {V} tokens, in batches of {B} rows)"
    with contexts.message_hidden(f"temperature 1{where}"):
        _check_generator(watch, logits, tuple(seeds), where)


def _check_generator(watch, logits: torch.Tensor, seeds: tuple[int, int], where: str) -> None:
    """Draw ``logits`` from generators seeded ``seeds``: the same state gives the same tokens, another seed
    other tokens, the same generator twice other tokens, and the global generator never moves."""
    B = len(logits)

    def draw(generator):
        ids = sample(watch, logits, 1.0, None, None, generator)
        if watch.moved:
            raise CheckFailed("the sampler drew from torch's global random generator (or re-seeded it): pass "
                              "generator=generator to torch.multinomial (or torch.rand), and leave the global "
                              f"one alone{where}")
        return ids

    a, b = seeds
    seeded = torch.Generator().manual_seed(a)  # each draw seeds and restores the global RNG where it runs
    first, second = draw(seeded), draw(seeded)
    if torch.equal(draw(torch.Generator().manual_seed(b)), first):
        raise CheckFailed(f"generators seeded {a} and {b} gave the same {B} tokens{where}: the sampler ignores the "
                          "generator passed in (a fresh torch.Generator() starts from the same seed every call): draw "
                          "with generator=generator")
    if not torch.equal(draw(torch.Generator().manual_seed(a)), first):
        raise CheckFailed(f"two generators in the same state gave different tokens{where}: draw with "
                          "generator=generator, nothing else")
    if torch.equal(first, second):
        raise CheckFailed(f"the same generator gave the same {B} tokens twice in a row{where}: draw from `generator` "
                          "itself (never a copy or a re-seeded one), so that its state moves on")


class _GlobalRNGWatch:
    """Stands for the components in ``sample``: calls the sampler where it runs, through
    ``sample_watching_global_rng``, and notes whether a call moved torch's global generator there."""

    def __init__(self, ctx):
        self.ctx, self.moved = ctx, False

    def sample(self, logits, temperature, top_k, top_p, generator):
        answer = self.ctx.in_child(sample_watching_global_rng, logits, temperature, top_k, top_p, generator)
        if not (isinstance(answer, list) and len(answer) == 2):
            return answer  # not plain data, sent as a handle: ``sample`` says what it is
        ids, moved = answer
        self.moved = self.moved or moved is not False
        return ids


@child_side
def sample_watching_global_rng(pipeline, logits: torch.Tensor, temperature, top_k, top_p, generator) -> list:
    """``[ids, moved]``: the sampler's ids, and whether the call moved torch's global random generator,
    observed where the sampler runs (under ``toolkit grade``, the child: the grader's own generator
    never sees the sampler). The global generator is seeded before the call and restored after it.

    A child can lie about what it measures itself (accepted in this design: tests/hostile/forge_child_side.py).
    A submission that forges ``moved`` wins this one clause; the tokens are judged by the grader."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        before = torch.get_rng_state()
        ids = pipeline.components.sample(logits, temperature, top_k, top_p, generator)
        return [ids, not torch.equal(before, torch.get_rng_state())]


@check("sampler", points=1)
def written_out(ctx):
    "The sampler is written out: it does not call the toolkit's own (toolkit.sample)."
    named = names_used(ctx.sources, OWN_NAMES)
    if named:  # read by the grader in the code it was handed
        raise CheckFailed(f"the code uses {', '.join(named)}: the assignment is to write the sampler yourself")
    calls = observed_calls(ctx)
    answer = ctx.in_child(own_calls, calls)  # observed where the sampler runs: as strong as that observation
    if not (isinstance(answer, list) and len(answer) == 2 and isinstance(answer[0], list)
            and all(isinstance(c, str) for c in answer[0]) and isinstance(answer[1], list)):
        raise CheckFailed("could not observe what toolkit_sample calls")
    called, returned = answer
    if called:
        raise CheckFailed(f"toolkit_sample calls toolkit.sample ({', '.join(sorted(called)[:3])}): the assignment is "
                          "to write the sampler yourself")
    # the evidence is the calls that sample (temperature > 0) in the pipeline's shapes and return valid ids: at least
    # one must (the check's own call, logits of 1e4, is exempt); a setting that raises is its own check's business
    sampling = [(ids, logits) for ids, (logits, temperature, *_) in list(zip(returned, calls))[1:] if temperature > 0]
    if len(returned) != len(calls) or not any(_valid_ids(ids, logits) for ids, logits in sampling):
        if "NotImplementedError" in returned:  # a stub: called again here, its error says so in the kit's words
            ctx.components.sample(torch.zeros(1, 2), 1.0, None, None, torch.Generator().manual_seed(0))
        raise CheckFailed(f"could not observe what toolkit_sample calls: its {len(sampling)} sampling calls in the "
                          "pipeline's shapes returned no valid ids (a LongTensor (B,) of ids in 0..V-1)")


OWN_NAMES = ("toolkit.sample", "sample_next")
OBSERVED_STEPS = 4  # calls per setting of the dial, as generating 4 tokens makes them
OBSERVED_TOKENS = 256  # at most B x t tokens read by the base model for one setting's logits


def _valid_ids(ids, logits: torch.Tensor) -> bool:
    B, V = logits.shape
    return (isinstance(ids, torch.Tensor) and tuple(ids.shape) == (B,) and ids.dtype == torch.long
            and bool(((ids >= 0) & (ids < V)).all()))


def observed_calls(ctx) -> list[list]:
    """What ``own_calls`` watches: the check's own call (6 x 12 logits), and a dial's calls in the
    pipeline's shapes: every setting of the dials (greedy too), OBSERVED_STEPS calls each, on the logits
    of the pipeline's base model for a batch of its validation text (B, 604), or on logits as spread over
    the vocabulary asked (B, 1024); the order drawn at grading time."""
    rng = contexts.run_seed(ctx)
    base = contexts.reference_pipeline(ctx)
    model, T = base.base_model.eval(), base.model_config.block_size
    calls = [[greedy_logits(), 1.0, 3, 0.9, torch.Generator().manual_seed(4)]]
    for s in [Setting(0.0), *DIAL, Setting(1.5, top_p=0.6), Setting(2.0, top_k=20, top_p=0.9)]:
        V, B = pipeline_size(ctx, rng)
        gen = contexts.torch_seed(rng)
        if V == base.model_config.vocab_size:
            start = torch.randint(len(base.val_stream) - T, (B,), generator=gen)
            t = rng.randint(1, min(T, OBSERVED_TOKENS // B))  # a prompt and the tokens generated so far
            idx = torch.stack([base.val_stream[i : i + t] for i in start])  # (B, t)
            with torch.no_grad():
                logits = model(idx)[:, -1, :]  # (B, V): the model's next-token logits
        else:
            logits = 4 * torch.randn(B, V, generator=gen)
        calls += [[logits, s.temperature, s.top_k, s.top_p, gen] for _ in range(OBSERVED_STEPS)]
    return [calls[0]] + rng.sample(calls[1:], len(calls) - 1)


@child_side
def own_calls(pipeline, calls: list) -> list:
    """``[called, ids]``: the functions of ``toolkit.sample`` that the sampler calls over every call of
    ``calls`` (``[logits, temperature, top_k, top_p, generator]``), observed where it runs, and the ids
    each call returned (where it raised, the exception's name: a call that failed is no evidence of what a
    working one calls).
    Only as strong as that observation (a child may replace this function), which is why ``written_out``
    also reads the code for the names."""
    import toolkit.sample

    own = toolkit.sample.__file__
    called, returned = set(), []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == own:
            called.add(frame.f_code.co_name)

    def watch():  # in a thread of its own, so that a profiler of the process (pyinstrument's) is left alone
        sys.setprofile(profile)
        try:
            for logits, temperature, top_k, top_p, generator in calls:
                try:
                    returned.append(pipeline.components.sample(logits, temperature, top_k, top_p, generator))
                except Exception as e:  # noqa: BLE001 - what the sampler returns is the other checks' business
                    returned.append(type(e.__cause__ or e).__name__)  # the hook's own, not PluginError
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join()
    return [sorted(called)[:10], returned]


# -- behaviour: the temperature dial --------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    temperature: float
    top_k: int | None = None
    top_p: float | None = None

    @property
    def name(self) -> str:
        return ", ".join([f"T {self.temperature:g}"] + ([f"top-k {self.top_k}"] if self.top_k else [])
                         + ([f"top-p {self.top_p:g}"] if self.top_p else []))


HOT, NUCLEUS = Setting(2.0), Setting(2.0, top_p=0.8)  # top-p must tame the hot setting's Gibberish
DIAL = [Setting(0.5), Setting(1.0), HOT, Setting(2.0, top_k=10), NUCLEUS]
Z_SAME = 5.0  # |z| above which a class's rate differs from the reference's: a correct sampler (other draws of the
              # same distributions) goes past it with probability about 6e-7 per rate, 2.3e-5 over the 40 rates
Z_LOWER = 3.0  # top-p at temperature 2 must lower the Gibberish rate by at least this many standard errors


def dial(pipeline, settings: list[Setting]) -> dict[str, dict[str, dict]]:
    """model -> setting -> the class distribution of the probe's replies (``toolkit.probe.distribution``),
    sampled by the pipeline's sampler component, one seeded generator per run."""
    def sampler(logits, temperature, top_k, top_p, generator):  # a call that raises says which setting made it
        return sample(pipeline.components, logits, temperature, top_k, top_p, generator)

    return _dial(pipeline, settings, sampler)


def reference_dial(pipeline, settings: list[Setting], name: str, sampler) -> dict[str, dict[str, dict]]:
    """``dial`` with a reference ``sampler`` called ``name``: the same on the same models, so drawn once
    per machine. It is kept in memory for a class graded in one process, and as ``dial-<key>.json`` in
    the grader's cache folder for the next run; the key hashes the weights, the settings, the seed and
    the code the draws depend on (the sampler's file and ``DIAL_CODE``)."""
    code = [getattr(sampler, "__func__", sampler).__code__.co_filename]
    code += [importlib.import_module(module).__file__ for module in DIAL_CODE]
    key = cache.key(repr((name, fingerprint(pipeline.base_model), fingerprint(pipeline.chat_model), tuple(settings),
                          pipeline.config.seed)), *(Path(path).read_bytes() for path in code))
    return cache.memo(("dial", key), lambda: cache.Cache(pipeline.cache_dir).stored(
        f"dial-{key}.json", lambda: _dial(pipeline, settings, sampler)))


DIAL_CODE = ("toolkit.sample", "toolkit.model", "toolkit.probe", "toolkit.world", "toolkit.template",
             "toolkit.baselines")  # besides the sampler's file, what the reference draws depend on


def fingerprint(model) -> str:
    """A digest of a model's weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _dial(pipeline, settings: list[Setting], sampler) -> dict[str, dict[str, dict]]:
    prompts = probe.prompt_set(pipeline.world)
    out: dict[str, dict[str, dict]] = {}
    for name, model, chat in (("base", pipeline.base_model, False), ("chat", pipeline.chat_model, True)):
        out[name] = {}
        for s in settings:
            gens = probe.run_probe(model, pipeline.tokenizer, pipeline.world, prompts, chat=chat,
                                   temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=pipeline.config.seed,
                                   sampler=sampler)
            out[name][s.name] = probe.distribution(gens)
    return out


def differs(mine: dict, reference: dict, what: str) -> str | None:
    """None if every class rate of every (model, setting) of ``reference`` matches ``mine``; else one sentence."""
    worst = max(((model, setting, label, z_score(mine[model][setting][label], ref[label]))
                 for model, by_setting in reference.items() for setting, ref in by_setting.items()
                 for label in probe.LABELS), key=lambda w: abs(w[3]))
    model, setting, label, z = worst
    if abs(z) <= Z_SAME:
        return None
    return (f"at {setting}, {mine[model][setting][label]['p']:.2f} of the {model} model's replies were {label} with "
            f"this sampler, {reference[model][setting][label]['p']:.2f} with {what} (z = {z:+.1f}, beyond "
            f"+-{Z_SAME:g}): the sampler does not draw from softmax(logits / T) as filtered")


def gibberish(d: dict, setting: Setting) -> dict:
    """The Gibberish rate of base and chat together at ``setting``: {"p", "n"}."""
    rates = [d[model][setting.name][probe.Label.GIBBERISH] for model in d]
    n = sum(r["n"] for r in rates)
    return {"p": sum(r["p"] * r["n"] for r in rates) / n, "n": n}


@check("sampler", points=3, behavioural=True)
def temperature_dial(ctx):
    "The probe's replies drawn with this sampler at T 0.5 to 2, top-k and top-p follow the toolkit's; top-p tames T 2."
    from toolkit.plots import plot_dial

    pipeline = ctx.pipeline
    with ctx.time_limit(600, "sampling the probe's replies at five settings"):
        mine = dial(pipeline, DIAL)
    reference = reference_dial(pipeline, [s for s in DIAL if s.top_p is None], "toolkit", sample_next)
    if ctx.report_dir is not None:
        plot_dial(mine, "The temperature dial: the probe's replies by sampling setting",
                  ctx.plot_path("sampler_dial.png", "The temperature dial: classes of the base and chat models' replies "
                                                    "to the probe's prompts, sampled with this sampler at each setting"))
    hot, nucleus = gibberish(mine, HOT), gibberish(mine, NUCLEUS)
    ctx.metrics.update({f"{model} {setting}": f"{d[probe.Label.ANSWER]['p']:.2f} Answer, "
                                              f"{d[probe.Label.GIBBERISH]['p']:.2f} Gibberish"
                        for model, by_setting in mine.items() for setting, d in by_setting.items()})
    reason = differs(mine, reference, "the toolkit's sampler (toolkit.sample.sample_next)")
    if reason:
        raise CheckFailed(reason)
    z = z_score(nucleus, hot)
    if z > -Z_LOWER:
        raise CheckFailed(f"at T 2, top-p 0.8 left {nucleus['p']:.2f} of the replies Gibberish, against "
                          f"{hot['p']:.2f} without it (z = {z:+.1f}; expected below -{Z_LOWER:g}): top-p should cut "
                          "the unlikely tokens a high temperature lets through")


# -- the reference probabilities --------------------------------------------------------------
class _Multinomial(TorchFunctionMode):
    """Records what torch.multinomial is asked to draw from."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "multinomial":
            self.inputs.append(args[0].detach())
        return func(*args, **(kwargs or {}))


def reference_probs(components, case: Case) -> list[list[float]]:
    """The probabilities (R, V) that ``components`` (the solution: it draws once, with
    torch.multinomial) samples the rows of ``case`` from."""
    with _Multinomial() as spy:
        components.sample(case.logits(), case.temperature, case.top_k, case.top_p, torch.Generator().manual_seed(0))
    (weights,) = spy.inputs
    weights = weights.double()
    return (weights / weights.sum(-1, keepdim=True)).tolist()


def record(components) -> dict:
    return {"draws": DRAWS, "alpha": ALPHA,
            "probs": {case.name: reference_probs(components, case) for case in CASES}}


# the figures that matter, at the top of a student's report: (check, said from its metrics)
FIGURES = [("sampler.temperature_dial", lambda m: f"the chat model at T 2: {m['chat T 2']}; "
                                              f"with top-p 0.8: {m['chat T 2, top-p 0.8']}")]
