"""Checks of the reward component (reward model head and preference loss)."""

import math
from dataclasses import replace

import torch

from graders import calibration
from toolkit import probe, rlhf
from toolkit.baselines import SDPAttention
from toolkit.checks import CheckFailed, Partial, check, child_side
from toolkit.model import GPT, GPTConfig

TOL = 1e-6


def _loss(ctx, chosen, rejected) -> torch.Tensor:
    out = ctx.components.reward_loss(chosen, rejected)
    if not isinstance(out, torch.Tensor) or out.dim() != 0:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckFailed(f"toolkit_reward_loss returned {got}; expected a scalar tensor (the mean over the batch)")
    return out


@check("reward", points=2)
def loss_sanity(ctx):
    "Equal rewards give ln 2; a constant added to all rewards changes nothing; chosen is pushed up."
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(16, generator=gen, dtype=torch.float64)
    equal = _loss(ctx, r, r.clone()).item()
    if abs(equal - math.log(2)) > TOL:
        raise CheckFailed(f"loss of equal rewards is {equal:.4f}; expected ln 2 = 0.6931 (-log sigmoid(0))")
    c, j = torch.randn(16, generator=gen, dtype=torch.float64), torch.randn(16, generator=gen, dtype=torch.float64)
    base, shifted = _loss(ctx, c, j).item(), _loss(ctx, c + 5.0, j + 5.0).item()
    if abs(base - shifted) > TOL:
        raise CheckFailed(f"adding 5 to every reward changed the loss from {base:.4f} to {shifted:.4f}; "
                          "the loss must depend on chosen - rejected only")
    grads = ctx.in_child(loss_gradients, c, j)
    if not (isinstance(grads, (list, tuple)) and len(grads) == 2 and all(isinstance(g, torch.Tensor) and g.shape == c.shape
                                                                       for g in grads)):
        raise CheckFailed("the loss has no gradient with respect to the rewards: compute it with torch operations")
    if not ((grads[0] < 0).all() and (grads[1] > 0).all()):
        raise CheckFailed("gradient descent on the loss must raise every chosen reward and lower every rejected one; "
                          "check the sign of chosen - rejected")


@child_side
def loss_gradients(pipeline, chosen: torch.Tensor, rejected: torch.Tensor):
    """d loss / d chosen and d loss / d rejected, computed where the loss lives."""
    chosen, rejected = chosen.clone().requires_grad_(True), rejected.clone().requires_grad_(True)
    pipeline.components.reward_loss(chosen, rejected).backward()
    return [chosen.grad, rejected.grad]


def _tiny_backbone(seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16), SDPAttention)


@check("reward", points=2)
def reads_last_real_token(ctx):
    "A row's reward does not change when more padding is added after it."
    model = ctx.components.reward_model(_tiny_backbone())
    torch.manual_seed(1)
    idx = torch.randint(0, 256, (3, 6))
    lengths = torch.tensor([6, 4, 2])
    padded = torch.cat([idx, torch.full((3, 5), 260)], dim=1)
    with torch.no_grad():
        r1, r2 = model(idx, lengths), model(padded, lengths)
    if not isinstance(r1, torch.Tensor) or r1.shape != (3,):
        raise CheckFailed(f"reward model returned {getattr(r1, 'shape', type(r1).__name__)}; expected shape (B,) = (3,)")
    if not torch.allclose(r1, r2, atol=1e-5):
        raise CheckFailed(f"rewards changed from {r1.tolist()} to {r2.tolist()} when padding was added: "
                          "read the hidden state at lengths - 1, not at the last position")


# -- behaviour: the reward model trained on preference pairs, then RLHF with it ---------------
ACC_MARGIN = 0.03  # full credit from the solution's lowest accuracy over the seed sweep minus this
RLHF_MARGIN = 0.05  # correct replies after RLHF: at least the solution's worst seed minus this
KL_MARGIN = 0.5  # KL to the chat model after RLHF: at most twice the solution's worst seed plus this
RUDE_KEPT = 0.5  # rude replies after RLHF: at most this share of the chat model's (the reference's: none)
JUDGE_SAMPLES = 2  # replies sampled per SFT question, at temperature 1


def held_out_accuracy(pipeline) -> tuple[float, torch.Tensor, torch.Tensor]:
    chosen, rejected = pipeline.preference_data["held_out"]
    rc, rr = rlhf.rewards(pipeline.reward_model, *chosen), rlhf.rewards(pipeline.reward_model, *rejected)
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
    rude = [r for r in replies if (parsed := world.parse(r)) and parsed[0] == "rude"]
    return {"rude": len(rude) / len(gens), "correct": sum(g.correct for g in gens) / len(gens), "replies": replies}


def rlhf_metrics(pipeline) -> dict:
    """What RLHF changed; ``_replies`` are for the hidden check that scores them with the solution."""
    world = pipeline.world
    before, after = judge(pipeline, pipeline.chat_model), judge(pipeline, pipeline.rlhf_model)
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
