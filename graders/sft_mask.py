"""Checks of the SFT loss mask component."""

import contextlib
import random

import torch

from graders import calibration, contexts
from toolkit import probe
from toolkit.checks import CheckFailed, Partial, check
from toolkit.data_stages import check_mask
from toolkit.template import encode_batch
from toolkit.tokenizer import SPECIAL_TOKENS

SPECIAL = {s: 256 + i for i, s in enumerate(SPECIAL_TOKENS)}
BOS, USER, ASSISTANT, END, PAD = (SPECIAL[s] for s in SPECIAL_TOKENS)
NAMES = {v: k for k, v in SPECIAL.items()}


def mask_cases(n: int = 48, seed: int = 0, max_len: int = 28) -> torch.Tensor:
    """Chat rows of 1-3 turns with random content ids, some truncated, right-padded."""
    rng = random.Random(seed)
    content = lambda: [rng.choice([rng.randrange(256), rng.randrange(261, 600)]) for _ in range(rng.randint(1, 6))]
    rows = []
    for _ in range(n):
        ids = [BOS]
        for _ in range(rng.randint(1, 3)):
            ids += [USER] + content() + [ASSISTANT] + content() + [END]
        rows.append(ids[:max_len])
    T = max(map(len, rows))
    return torch.tensor([r + [PAD] * (T - len(r)) for r in rows])


def turns(tokens: torch.Tensor, special: dict[str, int]) -> dict[str, torch.Tensor]:
    """(N, T - 1) each, with the tokenizer's ids ``special``: where the target tokens[b, t + 1] is a token
    the user wrote (``"user"``: tags aside), and where it is the assistant's (``"assistant"``: its content
    and the <|end|> that closes its turn; the mask, as the snapshot holds it)."""
    speaker = {special["<|user|>"]: "user", special["<|assistant|>"]: "assistant"}
    out = {who: torch.zeros_like(tokens, dtype=torch.bool) for who in ("user", "assistant")}
    for b, row in enumerate(tokens.tolist()):
        who = None  # whose turn it is
        for t, tok in enumerate(row):
            if tok not in special.values():
                if who:
                    out[who][b, t] = True
                continue
            if tok == special["<|end|>"] and who == "assistant":
                out["assistant"][b, t] = True  # the <|end|> closing its turn is the assistant's to write
            who = speaker.get(tok)
    return {who: m[:, 1:] for who, m in out.items()}


def user_content(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T - 1): True where the target tokens[b, t + 1] is a token the user wrote (tags aside)."""
    return turns(tokens, SPECIAL)["user"]


def diagnose(tokens: torch.Tensor, got: torch.Tensor, want: torch.Tensor) -> str:
    """One sentence naming the classic mistake behind a wrong mask: the patterns of the whole mask
    first (no mask, inverted, shifted), then the single tokens it gets wrong."""
    targets = tokens[:, 1:]
    real = targets != PAD
    if got[real].all():
        padding = ", and the padding too" if got[~real].any() else ""
        return (f"the mask supervises every token, the prompt too{padding} (no loss mask): only the assistant's "
                "tokens and the <|end|> that closes its turn count")
    user = user_content(tokens)
    if (got & want).sum() <= 0.1 * want.sum() and (got & user).sum() >= 0.5 * user.sum():
        return ("the mask is inverted: it supervises the user's turns instead of the assistant's (mask[b, t] is True "
                "when tokens[b, t + 1] is the assistant's, or the <|end|> closing its turn)")
    if torch.equal(got[:, :-1], want[:, 1:]) or torch.equal(got[:, 1:], want[:, :-1]):
        return "the mask is shifted by one position: mask[b, t] is about the target tokens[b, t + 1]"
    for tok, what in ((ASSISTANT, "the <|assistant|> tag"), (USER, "the <|user|> tag"), (PAD, "padding"), (BOS, "<|bos|>")):
        if (got & (targets == tok)).any():
            return f"the mask supervises {what}, which is part of the prompt, not of the answer"
    if (want & ~got & (targets == END)).any():
        return "the mask leaves out the <|end|> that closes the assistant's turn: the model would never learn to stop"
    if (got & ~want).any():
        b, t = (got & ~want).nonzero()[0].tolist()
        return f"row {b}: target {t} (a user's token) is supervised; only the assistant's tokens and its <|end|> count"
    b, t = (want & ~got).nonzero()[0].tolist()
    return f"row {b}: target {t} (an assistant's token) is not supervised; every turn of the assistant counts"


def pipeline_conversations(ctx) -> tuple[torch.Tensor, dict[str, int]]:
    """The SFT conversations as the pipeline hands them to the mask (``sft_data``: encoded by its
    tokenizer, a block and one token wide) and that tokenizer's special ids."""
    ref = contexts.reference_pipeline(ctx)
    tokens, _ = encode_batch(ref.tokenizer, ref.conversations, ref.model_config.block_size + 1)
    return tokens, dict(ref.tokenizer.special_tokens)


@check("sft_mask", points=3)
def matches_reference(ctx):
    "Exactly the reference mask on 48 chats (1-3 turns, truncated, padded), and on the pipeline's own conversations, as it calls the mask (all of them, and some drawn)."
    rng = contexts.run_seed(ctx)
    tokens, special = pipeline_conversations(ctx)
    rows = sorted(rng.sample(range(len(tokens)), rng.randint(2, len(tokens) - 1)))
    cases = [(mask_cases(), dict(SPECIAL), "48 chats of the check's own", True),
             (tokens, special, f"the pipeline's {len(tokens)} conversations", False),
             (tokens[rows], special, f"{len(rows)} of the pipeline's conversations", False)]

    def judge(case) -> None:
        tokens, special, what, own = case
        with contextlib.nullcontext() if own else contexts.message_hidden(what):
            got = check_mask(ctx.components.sft_mask(tokens.clone(), dict(special)), tokens, ctx.components.source("sft_mask"))
        want = torch.tensor(ctx.snapshot()["masks"], dtype=torch.bool) if own else turns(tokens, special)["assistant"]
        if not torch.equal(got, want):
            raise CheckFailed(diagnose(tokens, got, want) if own else f"the mask differs from the reference's on {what}")

    contexts.judged_everywhere(ctx, cases, judge, said=lambda case: case[2])


# -- behaviour -------------------------------------------------------------------------
MARGIN = 0.10  # thresholds are the solution's rates minus this margin
USER_TURNS = 30  # replies sampled to a bare <|user|>
STOPS, USER_TURN = "stops after an answer\nor a question back", "writes a user turn\nafter <|user|>"  # bars of the chart


def behaviour_metrics(pipeline) -> dict:
    """Probe the base and the chat model; the rates the behavioural check grades."""
    world, base, chat = pipeline.world, pipeline.base_model, pipeline.chat_model
    prompts = probe.prompt_set(world)
    b, c = pipeline.probe(base, False, prompts), pipeline.probe(chat, True, prompts)
    head = probe.headline_prompts(world, pipeline.config.headline_samples)
    t = pipeline.config.headline_temperature
    hb, hc = pipeline.probe(base, False, head, t), pipeline.probe(chat, True, head, t)
    users = {"base": pipeline.user_turn(base, n=USER_TURNS), "chat": pipeline.user_turn(chat, n=USER_TURNS)}
    of = lambda gens, kind: [g for g in gens if g.prompt.kind == kind]
    answered = lambda g: g.label == probe.Label.ANSWER
    count = lambda gens, what: probe.share(sum(map(what, gens)), len(gens))
    replies = lambda gens: [g for g in gens if g.label in (probe.Label.ANSWER, probe.Label.CLARIFICATION)]
    signatures = {name: {STOPS: count(replies(gens), lambda g: g.stopped),  # as the "stops" rate counts
                         USER_TURN: probe.share(users[name], USER_TURNS),
                         "Answer on\nheld-out facts": count(of(gens, "held_out"), answered)}
                  for name, gens in (("base", b), ("chat", c))}
    return {
        "answer_seen": probe.rate(of(c, "seen"), answered),
        "answer_held_out": probe.rate(of(c, "held_out"), answered),
        "correct_held_out": probe.rate(of(c, "held_out"), lambda g: g.correct),
        "clarification": probe.rate(of(c, "ambiguous"), lambda g: g.label == probe.Label.CLARIFICATION),
        "stops": probe.rate([g for g in c if g.label in (probe.Label.ANSWER, probe.Label.CLARIFICATION)],
                            lambda g: g.stopped),
        "writes_user_turn": users["chat"] / USER_TURNS,
        "base_answer": probe.rate(of(b, "seen") + of(b, "held_out"), answered),
        "base_top": max(probe.LABELS, key=lambda lab: sum(g.label == lab for g in b)),
        "_dists": {"all": {"base": probe.distribution(b), "chat": probe.distribution(c)},
                   "headline": {"base": probe.distribution(hb), "chat": probe.distribution(hc)},
                   "signatures": signatures},
        "_examples": [(g.prompt.question, gb.text, g.text) for g, gb in list(zip(c, b))[:: max(1, len(c) // 8)]],
    }


# (metric, the check's message when it falls short, direction): thresholds come from the
# solution's worst seed (graders/calibration.py), minus MARGIN (plus MARGIN for "at most" metrics).
CRITERIA = [
    ("answer_seen", "the chat model does not answer questions it was fine-tuned on (Answer rate {x:.2f} < {t:.2f}): "
                    "does the mask supervise the assistant's answer, not the prompt?", 1),
    ("clarification", "the chat model does not ask back on ambiguous questions (Clarification rate {x:.2f} < {t:.2f})", 1),
    ("stops", "the chat model does not stop after its answer (stop rate {x:.2f} < {t:.2f}): supervise the <|end|> token", 1),
    ("writes_user_turn", "given <|user|> alone, the chat model writes the user's question (rate {x:.2f} > {t:.2f}): "
                         "the mask supervises the user's turns", -1),
]


def thresholds() -> dict[str, float]:
    """Each criterion's threshold: the solution's worst seed, with MARGIN."""
    return {m: calibration.at_least(m, MARGIN) if d > 0 else calibration.at_most(m, MARGIN) for m, _, d in CRITERIA}


def score(m: dict, limits: dict[str, float]) -> tuple[float, list[str]]:
    """The fraction of the points the rates ``m`` earn, and what each missed criterion says:
    linear partial credit from the worst value (0 or 1) to the threshold. A criterion of what the
    chat model must not do (write the user's turn) counts only as far as it answers at all: a model
    that learned nothing does nothing wrong either, and earns nothing for it."""
    own = {metric: min(1.0, max(0.0, (m[metric] - (0.0 if d > 0 else 1.0)) / (limits[metric] - (0.0 if d > 0 else 1.0))))
           for metric, _, d in CRITERIA}
    answers = own["answer_seen"]
    fractions = [own[metric] if d > 0 else own[metric] * answers for metric, _, d in CRITERIA]
    reasons = [message.format(x=m[metric], t=limits[metric]) for metric, message, _ in CRITERIA if own[metric] < 1]
    return sum(fractions) / len(fractions), reasons


@check("sft_mask", points=5, behavioural=True)
def behaviour(ctx):
    "After SFT with this mask the chat model answers, asks back on ambiguous questions, stops, and leaves the user's turn alone."
    contexts.same_everywhere(ctx, "sft_mask.matches_reference")
    from toolkit.plots import plot_curves, plot_distributions

    m = behaviour_metrics(ctx.pipeline)
    limits = thresholds()
    if ctx.report_dir is not None:
        t = ctx.pipeline.config.headline_temperature
        for key, subtitle in (("headline", f"'{probe.HEADLINE}', sampled at temperature {t:g}"),
                              ("all", "all probe prompts, greedy")):
            plot_distributions(m["_dists"][key], f"Probability distribution: base vs chat\n{subtitle}",
                               ctx.plot_path(f"sft_{key}.png", f"Classes of the base and chat models' replies to {subtitle}, "
                                                               "with 95% intervals"))
        plot_distributions(m["_dists"]["signatures"], "What each classic mistake changes: base vs chat",
                           ctx.plot_path("sft_signatures.png", "Rates that show the classic mistakes of a mask, base "
                                                               "vs chat, with 95% intervals: stopping after the reply "
                                                               "(needs <|end|> supervised), writing a user turn (the "
                                                               "user's tokens supervised), answering held-out facts; "
                                                               "the dashed lines are the chat model's thresholds"),
                           ylabel="rate", thresholds={STOPS: (limits["stops"], True), USER_TURN: (limits["writes_user_turn"], False)},
                           judged="chat")
        plot_curves({"SFT": ctx.pipeline.curves["sft"]}, "SFT loss (masked tokens)",
                    ctx.plot_path("sft_loss.png", "SFT loss over the training steps (masked tokens)"))
    ctx.metrics.update(m, thresholds=limits, solution={k: calibration.span(k) for k in limits})
    fraction, reasons = score(m, limits)
    if reasons:
        return Partial(fraction, "; ".join(reasons))


def record(components) -> dict:
    """The solution's masks on the fixed cases. (Its behaviour sets the thresholds through the seed
    sweep: ``graders/calibration.py``.)"""
    tokens = mask_cases()
    return {"masks": components.sft_mask(tokens.clone(), dict(SPECIAL)).int().tolist()}


# the figures that matter, at the top of a student's report: (check, said from its metrics)
FIGURES = [("sft_mask.behaviour", lambda m: f"the chat model answers {m['answer_seen']:.0%} of the questions it "
                                         f"was fine-tuned on (the base model {m['base_answer']:.0%})")]
