"""Checks of the reward component (reward model head and preference loss)."""

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from graders import calibration, contexts, instructor_seed
from toolkit import probe, rlhf
from toolkit.checks import CheckFailed, Partial, check, on_case
from toolkit.model import GPT, GPTConfig
from toolkit.template import PAD
from toolkit.world import Kind

TOL = 1e-6  # float64
TOL32 = 1e-5  # float32: the loss of 64 rewards is a mean of float32 terms, off by ~1e-7
LOSS_TOL = {torch.float64: TOL, torch.float32: TOL32}


def _loss(ctx, chosen, rejected) -> torch.Tensor:
    out = ctx.components.reward_loss(chosen, rejected)
    if not isinstance(out, torch.Tensor) or out.dim() != 0:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckFailed(f"toolkit_reward_loss returned {got}; expected a scalar tensor (the mean over the batch)")
    return out


@check("reward", points=2)
def loss_sanity(ctx):
    "Equal rewards give ln 2; a constant added to all rewards changes nothing; chosen is pushed up (float64 and float32, the pipeline's batch sizes)."
    rng = contexts.run_seed(ctx)
    cases = [(torch.float64, 16, torch.Generator().manual_seed(0))]  # the check's own, then the pipeline's
    cases += [(dtype, rng.choice(contexts.batch_sizes(ctx.config)), contexts.torch_seed(rng)) for dtype in contexts.DTYPES]
    for i, (dtype, B, gen) in enumerate(cases):
        what = f"{B} rewards in {str(dtype).removeprefix('torch.')}"
        with on_case(what) if i == 0 else contexts.message_hidden(what):
            _loss_sanity(ctx, dtype, B, gen)


def _loss_sanity(ctx, dtype: torch.dtype, B: int, gen: torch.Generator) -> None:
    tol = LOSS_TOL[dtype]
    where = "" if (dtype, B) == (torch.float64, 16) else f" ({str(dtype).removeprefix('torch.')}, B={B})"
    r = torch.randn(B, generator=gen, dtype=torch.float64).to(dtype)
    equal = _loss(ctx, r, r.clone()).item()
    if abs(equal - math.log(2)) > tol:
        raise CheckFailed(f"loss of equal rewards is {equal:.4f}; expected ln 2 = 0.6931 (-log sigmoid(0)){where}"
                          f"{unequal_loss(equal, r.double(), tol)}")
    c, j = (torch.randn(B, generator=gen, dtype=torch.float64).to(dtype) for _ in range(2))
    base, shifted = _loss(ctx, c, j).item(), _loss(ctx, c + 5.0, j + 5.0).item()
    if abs(base - shifted) > tol:
        raise CheckFailed(f"adding 5 to every reward changed the loss from {base:.4f} to {shifted:.4f}{where}; "
                          "the loss must depend on chosen - rejected only")
    grads = loss_gradients(ctx, c, j)
    if not (isinstance(grads, (list, tuple)) and len(grads) == 2 and all(isinstance(g, torch.Tensor) and g.shape == c.shape
                                                                       for g in grads)):
        raise CheckFailed("the loss has no gradient with respect to the rewards: compute it with torch operations")
    if (grads[0] > 0).all() and (grads[1] < 0).all():
        raise CheckFailed(f"the sign is flipped: gradient descent on the loss lowers every chosen reward and raises "
                          f"every rejected one{where}; check the sign of chosen - rejected")
    if not ((grads[0] < 0).all() and (grads[1] > 0).all()):
        raise CheckFailed(f"gradient descent on the loss must raise every chosen reward and lower every rejected "
                          f"one{where}; the loss is -log sigmoid(chosen - rejected)")


def unequal_loss(loss: float, r: torch.Tensor, tol: float) -> str:
    """What a loss of equal rewards ``r`` that is not ln 2 computes instead, when it is a classic mistake."""
    if abs(loss - (-F.logsigmoid(r)).mean().item()) <= tol:
        return ": the loss ignores the rejected rewards; compare the two: -log sigmoid(chosen - rejected)"
    if abs(loss - (-F.logsigmoid(r) - F.logsigmoid(-r)).mean().item()) <= tol:
        return (": the loss is two separate terms, one per reward, not a comparison of the two; use "
                "-log sigmoid(chosen - rejected)")
    return ""


def loss_gradients(ctx, chosen: torch.Tensor, rejected: torch.Tensor):
    """d loss / d chosen and d loss / d rejected (None: no gradient), by the grader's autograd: under
    ``toolkit grade`` the loss's node is the child's hook (``toolkit.grading.autograd``), as in training."""
    chosen, rejected = chosen.clone().requires_grad_(True), rejected.clone().requires_grad_(True)
    loss = _loss(ctx, chosen, rejected)
    if loss.requires_grad:
        loss.backward()
    return [chosen.grad, rejected.grad]


def _tiny_backbone(seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16))


MAX_PARAMS = 1 << 22  # parameters of a reward model that the grader draws at random (on the pipeline's backbone: ~1M)


def _random_weights(model, seed: int = 2):
    """``model`` with every parameter drawn at random (seeded): a head initialised at zero returns 0
    whatever it reads until it is trained, and must not look like a model that ignores its input."""
    if not isinstance(model, nn.Module):
        raise CheckFailed(f"toolkit_reward_model returned {type(model).__name__}; expected an nn.Module")
    params = dict(model.named_parameters())
    if sum(p.numel() for p in params.values()) > MAX_PARAMS:
        raise CheckFailed(f"the reward model has more than {MAX_PARAMS} parameters, too many for the check to draw "
                          "at random (the pipeline's backbone has about a million)")
    gen = torch.Generator().manual_seed(seed)
    drawn = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(p.shape[-1] if p.dim() else 1)
             for n, p in params.items() if p.is_floating_point() or p.is_complex()}  # ~ the scale of a default init
    model.load_state_dict(drawn, strict=False)
    return model


@dataclass
class Reading:
    """One case of ``reads_last_real_token``: a backbone, the dtype the reward model runs in, and rows
    ``idx`` (B, T) with ``lengths`` (B,); ``row``'s last real token is the one changed."""

    backbone: GPT
    dtype: torch.dtype
    idx: torch.Tensor
    lengths: torch.Tensor
    row: int
    pad: int  # the padding id appended
    what: str  # how a reason names the case ("" for the check's own)


def own_reading() -> Reading:
    """The check's own case: the tiny backbone, 3 rows of 6 tokens (lengths 6, 4, 2), row 1 changed."""
    torch.manual_seed(1)
    idx = torch.randint(0, 256, (3, 6))
    return Reading(_tiny_backbone(), torch.float32, idx, torch.tensor([6, 4, 2]), 1, PAD_ID, "")


PAD_ID = 260  # <|pad|> (toolkit.template): what the pipeline pads with
PADDING = 5  # padding tokens appended after the rows
READ_TOKENS = 512  # at most B x T tokens per case: a large batch gets short rows (the cost of 3 forwards)


def pipeline_readings(ctx, rng) -> list[Reading]:
    """A case per model width of the pipeline: its own base model (a copy: the backbone the pipeline gives
    the hook) and a model of each other width with weights drawn at random; rows padded as the pipeline
    pads them, tokens over its vocabulary, a batch size and a length drawn by ``rng`` (at most READ_TOKENS
    tokens in all); the narrowest in float64."""
    base = contexts.reference_pipeline(ctx).base_model
    out = []
    for w in contexts.pipeline_contexts(ctx.config, rng, dtypes=(torch.float32,)):
        if w.model.n_embd == base.config.n_embd and w.model.n_layer == base.config.n_layer:
            backbone = copy.deepcopy(base)
        else:
            torch.manual_seed(rng.getrandbits(31))
            backbone = GPT(w.model)
        V, gen = backbone.config.vocab_size, contexts.torch_seed(rng)
        T = max(2, min(w.tokens, backbone.config.block_size - PADDING, READ_TOKENS // w.batch))
        lengths = torch.randint(1, T + 1, (w.batch,), generator=gen)
        lengths[rng.randrange(w.batch)] = T  # the longest row fills the batch, as encode_batch pads
        idx = torch.randint(0, V - 1, (w.batch, T), generator=gen)
        idx = torch.where(idx >= PAD_ID, idx + 1, idx)  # never the padding id in a real token
        idx = idx.masked_fill(torch.arange(T) >= lengths[:, None], PAD_ID)
        out.append(Reading(backbone, torch.float32, idx, lengths, rng.randrange(w.batch), PAD_ID,
                           f" (on a backbone of n_embd {backbone.config.n_embd}, {w.batch} rows of {T} tokens)"))
    min(out, key=lambda r: r.backbone.config.n_embd).dtype = torch.float64  # the narrowest: float64 is slow
    return out


READ_TOL = {torch.float32: 1e-5, torch.float64: 1e-9}  # rewards of the same rows, padded or not


@check("reward", points=2)
def reads_last_real_token(ctx):
    "A row's reward is read at its last real token: padding after it changes nothing; changing that token changes that row's reward, no other (also on the pipeline's backbones)."
    with on_case("the check's own 3 rows of 6 tokens"):
        _check_reading(ctx, own_reading())
    for case in pipeline_readings(ctx, contexts.run_seed(ctx)):
        with contexts.message_hidden(case.what.strip(" ()")):
            _check_reading(ctx, case)


def _check_reading(ctx, case: Reading) -> None:
    model = _random_weights(ctx.components.reward_model(case.backbone)).to(case.dtype)
    idx, lengths, row, what = case.idx, case.lengths, case.row, case.what
    B, T = idx.shape
    V = case.backbone.config.vocab_size
    padded = torch.cat([idx, torch.full((B, PADDING), case.pad)], dim=1)
    changed = idx.clone()
    last = changed[row, lengths[row] - 1]
    changed[row, lengths[row] - 1] = (last + 1) % min(V, 256) if not what else (last + 1) % V
    if what and changed[row, lengths[row] - 1] == case.pad:
        changed[row, lengths[row] - 1] = (last + 2) % V
    with torch.no_grad():
        r1, r2, r3 = model(idx, lengths), model(padded, lengths), model(changed, lengths)
    for r in (r1, r2, r3):
        if not isinstance(r, torch.Tensor) or r.shape != (B,):
            got = getattr(r, "shape", type(r).__name__)
            raise CheckFailed(f"reward model returned {got}; expected shape (B,) = ({B},){what}")
    atol = READ_TOL[case.dtype]
    if not torch.allclose(r1, r2, atol=atol):
        shown = f"{r1.tolist()} to {r2.tolist()}" if B <= 4 else f"{r1[:4].tolist()}... to {r2[:4].tolist()}..."
        raise CheckFailed(f"rewards changed from {shown} when padding was added{what}: "
                          "read the hidden state at lengths - 1, not at the last position")
    if torch.allclose(r1[row], r3[row], atol=atol):
        raise CheckFailed(f"row {row}'s reward stayed {r1[row].item():.4g} when its last real token changed (with random "
                          f"weights){what}: the reward must be read from the hidden state at lengths - 1")
    others = torch.arange(B) != row
    if not torch.allclose(r1[others], r3[others], atol=atol):
        raise CheckFailed(f"changing a token of row {row} changed the rewards of other rows{what}: score each row on its own")


# -- behaviour: the reward model trained on preference pairs, then RLHF with it ---------------
ACC_MARGIN = 0.03  # full credit from the solution's lowest accuracy over the seed sweep minus this
RLHF_MARGIN = 0.05  # correct replies after RLHF: at least the solution's worst seed minus this
KL_MARGIN = 0.5  # KL to the chat model after RLHF: at most twice the solution's worst seed plus this
RUDE_KEPT = 0.5  # rude replies after RLHF: at most this share of the chat model's (the reference's: none)
JUDGE_SAMPLES = 2  # replies sampled per SFT question, at temperature 1


def shuffle_seed() -> int:
    """The seed of ``held_out_accuracy``'s shuffle: the instructor's own (``graders.hidden``), which a
    student's copy of the graders lacks, so that no submission can know which row is which; the
    same on every run, as grading is. Without it (a student's ``toolkit run``): 0."""
    return instructor_seed("SHUFFLE_SEED", 0)


def pairs_seed(seed: int) -> int:
    """The seed of the held-out pairs ``held_out_accuracy`` measures on, for a pipeline of seed ``seed``:
    the instructor's own (``graders.hidden``) plus ``seed``, so that the pairs a submission can compute are
    not those it is graded on; without it (a student's ``toolkit run``): ``seed``, the pipeline's own
    held-out pairs. It hides which rejected answers are drawn, not what the public world can write: each
    chosen answer is its fact's one correct statement under every seed."""
    return instructor_seed("PAIRS_SEED", 0) + seed


def held_out_pairs(pipeline) -> tuple:
    """The pairs on the facts held out of SFT (and of the reward model's training) drawn from
    ``pairs_seed``: ((tokens, lengths) chosen, (tokens, lengths) rejected)."""
    return pipeline.preference_pairs(pairs_seed(pipeline.config.seed), "held_out")


def held_out_accuracy(pipeline, seed: int | None = None) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The share of held-out pairs (``held_out_pairs``) whose chosen answer gets the higher reward; the
    rewards of the chosen answers and of the rejected ones.

    Both sets are scored in ONE call, their rows padded to one width and shuffled together, then
    put back in order: neither the order of the calls nor a row's place in the batch tells a
    chosen answer from a rejected one, only its text does (a row-wise reward model gets the same
    rewards in any order). ``seed`` seeds the shuffle; None: ``shuffle_seed()``."""
    (ct, cl), (rt, rl) = held_out_pairs(pipeline)
    N, T = len(cl), max(ct.shape[1], rt.shape[1])
    pad = pipeline.tokenizer.special_tokens[PAD]
    tokens = torch.cat([F.pad(t, (0, T - t.shape[1]), value=pad) for t in (ct, rt)])  # (2N, T): chosen, then rejected
    lengths = torch.cat([cl, rl])  # (2N,)
    gen = torch.Generator().manual_seed(shuffle_seed() if seed is None else seed)
    order = torch.randperm(2 * N, generator=gen)  # row i of the batch is row order[i] of tokens
    r = rlhf.rewards(pipeline.reward_model, tokens[order], lengths[order])
    if r.shape != (2 * N,):
        raise CheckFailed(f"the reward model returned shape {tuple(r.shape)} for {2 * N} rows; expected ({2 * N},)")
    rewards = torch.empty_like(r)
    rewards[order] = r  # back in order: chosen rows first, then rejected ones
    rc, rr = rewards[:N], rewards[N:]
    return (rc > rr).float().mean().item(), rc, rr


@check("reward", points=3, behavioural=True)
def accuracy(ctx):
    "Trained on the preference pairs, the reward model ranks held-out pairs like the solution (its worst seed - 0.03)."
    acc, rc, rr = held_out_accuracy(ctx.pipeline)
    ctx.metrics.update(held_out_accuracy=acc, solution=calibration.span("reward_accuracy"))
    path = ctx.plot_path("reward_histogram.png", "Rewards your model gives the chosen and the rejected "
                                                  "answers of held-out pairs")
    if path:
        from toolkit.plots import plot_histograms
        plot_histograms({"chosen": rc.tolist(), "rejected": rr.tolist()}, "Rewards of held-out answers", path)
    fraction, reason = accuracy_score(acc)
    return None if fraction == 1 else Partial(fraction, reason)


def accuracy_full() -> float:
    """The held-out accuracy that earns full credit: the solution's worst seed minus ACC_MARGIN."""
    return calibration.at_least("reward_accuracy", ACC_MARGIN)


def correct_floor() -> float:
    """The fewest correct replies after RLHF: the solution's worst seed minus RLHF_MARGIN."""
    return calibration.at_least("rlhf_correct", RLHF_MARGIN)


def kl_limit() -> float:
    """The largest KL to the chat model after RLHF: twice the solution's worst seed plus KL_MARGIN."""
    return 2 * calibration.at_most("kl", 0.0) + KL_MARGIN


def accuracy_score(acc: float) -> tuple[float, str]:
    """The fraction of the points a held-out accuracy earns: full from the solution's worst seed minus
    ACC_MARGIN, none at 0.5 (chance), linear between; and what falls short says."""
    full = accuracy_full()
    if acc >= full:
        return 1.0, ""
    return max(0.0, (acc - 0.5) / (full - 0.5)), (
        f"held-out pairwise accuracy {acc:.2f} against the solution's {calibration.span('reward_accuracy')} (full "
        f"credit from {full:.2f}, none at 0.5): the reward of chosen answers must beat that of rejected ones")


def judge_prompts(world) -> list[probe.Prompt]:
    """The questions of the SFT facts, each asked JUDGE_SAMPLES times."""
    return [probe.Prompt("seen", world.question(f), f) for f in world.sft_facts] * JUDGE_SAMPLES


def judge(pipeline, model) -> dict:
    """Rates of rude and of correct replies to the SFT questions, sampled at temperature 1, and the
    replies (first sentences) themselves."""
    world = pipeline.world
    gens = pipeline.probe(model, True, judge_prompts(world), 1.0)
    replies = [probe.first_sentence(g.text) for g in gens]
    rude = [r for r in replies if (parsed := world.parse(r)) and parsed[0] == Kind.RUDE]
    return {"rude": len(rude) / len(gens), "correct": sum(g.correct for g in gens) / len(gens), "replies": replies}


def rlhf_metrics(pipeline) -> dict:
    """What RLHF changed; ``_replies`` are for the hidden check that scores them with the solution."""
    world = pipeline.world
    rlhf_model = pipeline.rlhf_model  # first: a reward model that cannot be built or trained fails before any sampling
    before, after = judge(pipeline, pipeline.chat_model), judge(pipeline, rlhf_model)
    return {"chat_rude": before["rude"], "chat_correct": before["correct"],
            "rlhf_rude": after["rude"], "rlhf_correct": after["correct"],
            "kl": rlhf.kl_divergence(pipeline.rlhf_model, pipeline.chat_model, pipeline.tokenizer,
                                     [p.question for p in judge_prompts(world)[:len(world.sft_facts)]],
                                     pipeline.config.rlhf),
            "_replies": {"chat": before["replies"], "rlhf": after["replies"]}}


def reward_gain(pipeline, replies: dict) -> float:
    """Mean reward of the RLHF model's replies minus the chat model's, by ``pipeline``'s reward model."""
    qs, T = [p.question for p in judge_prompts(pipeline.world)], pipeline.model_config.block_size
    mean = {k: rlhf.rewards(pipeline.reward_model, *rlhf.encode_replies(pipeline.tokenizer, qs, replies[k], T)).mean()
            for k in ("chat", "rlhf")}
    return (mean["rlhf"] - mean["chat"]).item()


@check("reward", points=4, behavioural=True)
def rlhf_improves(ctx):
    "RLHF with the reward model makes the chat model less rude, keeps it correct, and stays near it (KL, measured by the grader)."
    got = rlhf_metrics(ctx.pipeline)
    ctx.metrics.update(got)
    path = ctx.plot_path("rlhf_curves.png", "Mean reward and KL to the chat model over the RLHF steps")
    if path:
        from toolkit.plots import plot_curves
        curves = ctx.pipeline.curves
        plot_curves({"mean reward": curves["rlhf_reward"], "KL to the chat model": curves["rlhf_kl"]},
                    "RLHF", path, ylabel="")
    _plot_three_models(ctx)
    failures = rlhf_failures(got)
    if failures:
        return Partial(1 - len(failures) / 3, "; ".join(failures))


def rlhf_failures(got: dict) -> list[str]:
    """What RLHF's figures ``got`` miss: rude replies at least halved, correct ones no fewer than the
    solution's worst seed minus RLHF_MARGIN, KL at most twice the worst seed's plus KL_MARGIN."""
    failures = []
    if got["rlhf_rude"] > RUDE_KEPT * got["chat_rude"]:
        failures.append(f"rude replies went from {got['chat_rude']:.2f} to {got['rlhf_rude']:.2f}, not even halved "
                        f"(the solution: to {calibration.span('rlhf_rude')}): the reward model does not rank rude "
                        "answers low")
    correct = correct_floor()
    if got["rlhf_correct"] < correct:
        failures.append(f"correct replies {got['rlhf_correct']:.2f} after RLHF, below {correct:.2f} (the solution: "
                        f"{calibration.span('rlhf_correct')}): the reward model does not rank wrong answers low")
    kl_bound = kl_limit()
    if got["kl"] > kl_bound:
        failures.append(f"KL to the chat model {got['kl']:.2f} > {kl_bound:.2f} (the solution: "
                        f"{calibration.span('kl')}): the policy drifted away")
    return failures


def _plot_three_models(ctx) -> None:
    """The seed's chart with a third bar: base, chat and RLHF models on the headline question."""
    path = ctx.plot_path("rlhf_headline.png", "Classes of the base, chat and RLHF models' replies to the "
                                               "headline question, with 95% intervals")
    if path is None:
        return
    from toolkit.plots import plot_distributions

    p = ctx.pipeline
    head = probe.headline_prompts(p.world, p.config.headline_samples)
    t = p.config.headline_temperature
    dists = {"base": probe.distribution(p.probe(p.base_model, False, head, t)),
             "chat": probe.distribution(p.probe(p.chat_model, True, head, t)),
             "RLHF": probe.distribution(p.probe(p.rlhf_model, True, head, t))}
    plot_distributions(dists, f"'{probe.HEADLINE}', sampled at temperature {t:g}", path)


def record(components) -> dict:
    """Nothing: the reward checks compare with the solution's seed sweep (``graders/calibration.py``)."""
    return {}


# the figures that matter, at the top of a student's report: (check, said from its metrics)
FIGURES = [("reward.accuracy", lambda m: f"ranks {m['held_out_accuracy']:.0%} of held-out pairs right"),
           ("reward.rlhf_improves", lambda m: f"RLHF takes rude replies from {m['chat_rude']:.0%} to "
                                             f"{m['rlhf_rude']:.0%}")]
