"""Checks of the optimizer component (the training step: next-token cross-entropy and AdamW).

The unit checks compare with torch's own, computed here in the grader: ``F.cross_entropy`` on the
same logits, ``torch.optim.AdamW`` stepped on copies of the same parameters with the same gradients
and learning rates; on their own small cases in float64, and in the pipeline's contexts
(``graders.contexts``): float32 logits of its vocabularies and batch sizes, the parameters of a GPT
with its settings (betas, eps, weight decay) and learning-rate schedule. A check makes its parameters
itself, sets their gradients and the learning rate (``param_groups[0]["lr"]``) before each
``step()``, and reads them back: the same code under ``toolkit run`` and under ``toolkit grade``
(where the optimizer steps in the child, ``RemoteOptimizer``).
A wrong trajectory is named by the classic mistake whose trajectory it is (``MISTAKES``), computed here.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.nn import functional as F

from graders import calibration, contexts
from toolkit.checks import CheckFailed, check, child_side, on_case
from toolkit.config import PipelineConfig
from toolkit.model import GPT, GPTConfig
from toolkit.pipeline import Pipeline
from toolkit.source_scan import names_used
from toolkit.train import BETAS, EPS, adamw, cross_entropy, lr_at, pretrain

# -- the cross-entropy ------------------------------------------------------------------------
CE_CASES = [(2, 5, 7, 1.0), (1, 1, 3, 3.0), (3, 4, 11, 10.0), (4, 6, 50, 0.5)]  # (B, T, V, logit scale)
CE_ATOL = 1e-9  # float64
HUGE = 1e4  # the contract's largest logits


def ce_case(B: int, T: int, V: int, scale: float, seed: int, dtype=torch.float64):
    """Logits (B, T, V) of spread ``scale`` (``HUGE``: entries of ±1e4) and targets (B, T), drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=gen, dtype=torch.float64) * scale
    if scale >= HUGE:
        logits = torch.randint(-1, 2, (B, T, V), generator=gen).double() * HUGE  # -1e4, 0, 1e4
        logits[0, 0, :2] = torch.tensor([HUGE, -HUGE], dtype=torch.float64)
    targets = torch.randint(V, (B, T), generator=gen)
    targets[0, 0] = 1  # one target at -1e4 where its row reaches 1e4: a probability of exp(-2e4)
    return logits.to(dtype), targets


def call_loss(ctx, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The submission's loss on ``logits`` and its gradient with respect to them, checked for their kind."""
    logits = logits.clone().requires_grad_(True)
    loss = ctx.components.cross_entropy(logits, targets.clone())
    if not (isinstance(loss, torch.Tensor) and loss.shape == () and loss.dtype == logits.dtype):
        got = f"shape {tuple(loss.shape)} {loss.dtype}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise CheckFailed(f"toolkit_cross_entropy returned {got}; expected a scalar tensor () in the logits' dtype")
    if not loss.requires_grad:
        raise CheckFailed("the loss is not differentiable (no gradient reaches the logits): compute it with torch "
                          "operations on the logits, no .item(), .detach() or numpy")
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


def textbook_ce(logits: torch.Tensor, targets: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """The mean cross-entropy in float64, or with one classic mistake."""
    z = logits.double()
    picked = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    if mistake == "log_softmax":
        return -torch.log(torch.softmax(z, dim=-1)).gather(-1, targets.unsqueeze(-1)).mean()
    if mistake == "no_max":
        return (z.exp().sum(-1).log() - picked).mean()
    if mistake == "axis":
        return -z.log_softmax(dim=1).gather(-1, targets.unsqueeze(-1)).mean()
    per_token = z.logsumexp(-1) - picked  # (B, T)
    return {"sum": per_token.sum(), "sum_over_T": per_token.sum(1).mean()}.get(mistake, per_token.mean())


CE_MISTAKES = [  # (the mistake, what the reason says)
    ("sum", "the loss is the sum over the B*T positions: take their mean"),
    ("sum_over_T", "the loss sums over the positions of each row and averages over the batch: take the mean over "
                   "all B*T positions"),
    ("axis", "the softmax runs over the positions (dim 1): take it over the vocabulary, the last dimension"),
    ("log_softmax", "log(softmax(z)) gives -inf for a very unlikely target: use log-sum-exp, "
                    "logsumexp(z) - z[target]"),
    ("no_max", "exp of a logit of 1e4 is inf: subtract each row's maximum before exp (log-sum-exp)"),
]


def name_ce_mistake(logits, targets, got: torch.Tensor) -> str:
    for mistake, says in CE_MISTAKES:
        wrong = textbook_ce(logits, targets, mistake)
        if torch.isfinite(wrong) and abs(got.double() - wrong).item() <= 1e-6 * (1 + abs(wrong).item()):
            return says
        if not torch.isfinite(wrong) and bool(torch.isnan(wrong)) == bool(torch.isnan(got)) and not torch.isfinite(got):
            return says
    return "it is none of the classic mistakes (sum, axis, log of softmax): compare with logsumexp(z) - z[target]"


@check("optimizer", points=2)
def cross_entropy_matches(ctx):
    "The loss and its gradient equal F.cross_entropy's on several shapes (float64, atol 1e-9) and on logits of the pipeline's vocabularies and batch sizes (float32: 1e-6 of the loss, 3e-5 of the largest gradient)."
    rng = contexts.run_seed(ctx)
    training = ctx.config.pretrain.batch_size  # the loss's largest batch: pretraining's (SFT's replay: 8)
    cases = [(ce_case(B, T, V, scale, seed=i), f"B={B} T={T} V={V}", False) for i, (B, T, V, scale) in enumerate(CE_CASES)]
    for w in contexts.pipeline_contexts(ctx.config, rng, dtypes=(torch.float32,), max_batch=training):
        B, T, V = w.batch, w.tokens, w.model.vocab_size
        cases.append((ce_case(B, T, V, 10 ** rng.uniform(-1, 1.3), rng.getrandbits(31), torch.float32),
                      f"B={B} T={T} V={V} in float32", True))
    B, T, V = BATCH, CURVE_MODEL["block_size"], contexts.reference_pipeline(ctx).model_config.vocab_size
    cases.append((ce_case(B, T, V, 1.0, rng.getrandbits(31), torch.float32), f"B={B} T={T} V={V} in float32",
                  True))  # exactly trains_like_reference's call: its batch, block and vocabulary, a new model's logits

    def judge(case) -> None:
        (logits, targets), where, pipeline = case
        with contexts.message_hidden(where) if pipeline else on_case(where):
            got, grad = call_loss(ctx, logits, targets)
        _judge_loss(logits, targets, got, grad, where)

    contexts.judged_everywhere(ctx, cases, judge, said=lambda case: case[1],
                               counts=lambda case: case[0][1].numel() >= 2)  # one target: a sum is its mean


CE_RTOL32 = 1e-6  # float32, of the loss: correct losses differ by ~1e-7
CE_GRAD_RTOL32 = 3e-5  # float32, of the largest gradient: correct ones differ by up to 4e-6 (opt_foreach)


def _judge_loss(logits, targets, got: torch.Tensor, grad: torch.Tensor, where: str) -> None:
    """The loss and its gradient against F.cross_entropy's, computed in float64 from the same logits: within
    CE_ATOL in float64; in float32, within CE_RTOL32 of the loss and CE_GRAD_RTOL32 of the largest gradient."""
    ref = logits.double().requires_grad_(True)
    want = cross_entropy(ref, targets)
    want.backward()
    f32 = logits.dtype != torch.float64
    error = abs(got.double() - want.detach()).item()
    if not error <= (CE_RTOL32 * max(1.0, abs(want.item())) if f32 else CE_ATOL):
        raise CheckFailed(f"the loss is {got.item():.6g} where F.cross_entropy gives {want.item():.6g} for {where}: "
                          f"{name_ce_mistake(logits, targets, got)}")
    grad_error = (grad.double() - ref.grad).abs().max().item()
    if not grad_error <= (CE_GRAD_RTOL32 * ref.grad.abs().max().item() if f32 else CE_ATOL):
        raise CheckFailed(f"the loss is right but its gradient differs from F.cross_entropy's by {grad_error:.2e} "
                          f"for {where}: let autograd differentiate the loss (no .detach() on a part "
                          "that depends on the logits but the row maximum)")


@check("optimizer", points=1)
def cross_entropy_stable(ctx):
    "Logits of ±1e4, a target at -1e4 among them, give F.cross_entropy's loss (float64, atol 1e-9; float32 finite)."
    for dtype in (torch.float64, torch.float32):
        logits, targets = ce_case(3, 4, 9, HUGE, seed=7, dtype=dtype)
        with on_case(f"B=3 T=4 V=9, logits of ±1e4 in {str(dtype).removeprefix('torch.')}"):
            got, _ = call_loss(ctx, logits, targets)
        want = cross_entropy(logits.double(), targets)
        tol = CE_ATOL if dtype == torch.float64 else 1e-5 * (1 + abs(want).item())
        if not abs(got.double() - want).item() <= tol:
            raise CheckFailed(f"with logits of ±1e4 ({str(dtype).removeprefix('torch.')}) the loss is {got.item():.6g} "
                              f"where F.cross_entropy gives {want.item():.6g}: {name_ce_mistake(logits, targets, got)}")


# -- AdamW: a trajectory of steps, compared with torch.optim.AdamW's --------------------------
ADAM_ATOL = 1e-10  # float64 over the steps: a correct optimizer differs by ~1e-16
STEPS = 32
UNIT = dict(betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1)  # eps large enough that where it goes shows


class Plan:
    """Parameters (float64), the gradient of each at each step (None: no gradient) and the learning rate
    of each step: what a check feeds an optimizer. With ``clip``, each step's gradients are scaled down to
    a total norm of at most ``clip``, as the pipeline's loop clips them (``toolkit.train.fit``)."""

    def __init__(self, shapes, seed: int, lrs: list[float], frozen=(), skips: dict | None = None,
                 clip: float | None = None):
        gen = torch.Generator().manual_seed(seed)
        self.initial = [torch.randn(*s, generator=gen, dtype=torch.float64) for s in shapes]
        self.frozen, self.lrs, self.shapes, skips = set(frozen), lrs, shapes, skips or {}
        self.grads = [[self._grad(s, gen) if i not in self.frozen and not (i in skips and step % skips[i] == 1)
                       else None for i, s in enumerate(shapes)] for step in range(len(lrs))]
        for grads in self.grads if clip else []:
            norm = float(sum(g.square().sum() for g in grads if g is not None)) ** 0.5
            for g in grads:
                if g is not None and norm > clip:
                    g.mul_(clip / norm)

    @staticmethod
    def _grad(shape, gen) -> torch.Tensor:
        scale = 10.0 ** torch.randint(-3, 1, (), generator=gen).item()  # gradients of 1e-3 to 1
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale

    def params(self) -> list[torch.Tensor]:
        return [p.clone().requires_grad_(i not in self.frozen) for i, p in enumerate(self.initial)]


def run_plan(make, plan: Plan, settings: dict = UNIT, dtype=torch.float64) -> list[list[torch.Tensor]]:
    """The parameters (in float64) after each step of the optimizer ``make(params, lr, betas, eps, weight_decay)``
    with ``settings``, fed ``plan`` in ``dtype``."""
    params = [p.detach().to(dtype).requires_grad_(p.requires_grad) for p in plan.params()]
    opt = make(params, plan.lrs[0], settings["betas"], settings["eps"], settings["weight_decay"])
    trajectory = []
    for step, lr in enumerate(plan.lrs):
        for p, g in zip(params, plan.grads[step]):
            p.grad = None if g is None else g.to(dtype, copy=True)
        opt.param_groups[0]["lr"] = lr
        opt.step()
        trajectory.append([p.detach().to(torch.float64, copy=True) for p in params])
    return trajectory


def textbook_adamw(plan: Plan, settings: dict = UNIT, step_count: str = "own", lr_read: str = "each_step",
                   key: str = "param", decay: str = "decoupled", bias_correction: bool = True, eps_inside: bool = False,
                   frozen_decay: bool = False) -> list[list[torch.Tensor]]:
    """AdamW by the contract's formula, or with one classic mistake: a step count for all parameters,
    counted once per step (``"global"``) or once per parameter updated (``"shared"``); the learning rate of
    the first step kept (``"stale"``); the state keyed by shape; weight decay added to the gradient (``"l2"``),
    after the update (``"after"``) or left out (``"none"``); no bias correction; eps inside the sqrt; weight
    decay of the parameters without a gradient."""
    (beta1, beta2), eps, wd = settings["betas"], settings["eps"], settings["weight_decay"]
    params = [p.clone() for p in plan.initial]
    states, shared, trajectory = {}, 0, []
    for step, lr in enumerate(plan.lrs):
        lr = plan.lrs[0] if lr_read == "stale" else lr
        shared += step_count == "global"
        for i, (p, g) in enumerate(zip(params, plan.grads[step])):
            if g is None:
                if frozen_decay:
                    p.mul_(1 - lr * wd)
                continue
            s = states.setdefault(tuple(p.shape) if key == "shape" else i,
                                  dict(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p)))
            s["t"] += 1
            shared += step_count == "shared"
            t = s["t"] if step_count == "own" else shared
            if decay == "l2":
                g = g + wd * p
            elif decay == "decoupled":
                p.mul_(1 - lr * wd)
            s["m"] = beta1 * s["m"] + (1 - beta1) * g
            s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
            m_hat, v_hat = (s["m"] / (1 - beta1 ** t), s["v"] / (1 - beta2 ** t)) if bias_correction else (s["m"], s["v"])
            p.sub_(lr * m_hat / ((v_hat + eps).sqrt() if eps_inside else v_hat.sqrt() + eps))
            if decay == "after":
                p.mul_(1 - lr * wd)
        trajectory.append([p.clone() for p in params])
    return trajectory


MISTAKES = [  # (the formula with one classic mistake, what the reason says), the most common first
    (dict(step_count="shared"), "one step count shared by all parameters (it grows once per parameter updated): keep "
                                "t per parameter, in self.state[p]"),
    (dict(step_count="global"), "one step count for all parameters, counted at every step even for a parameter "
                                "without a gradient: keep t per parameter, in self.state[p], and skip p.grad None"),
    (dict(lr_read="stale"), "the learning rate is read once, at construction (stale): read group['lr'] at every step, "
                            "the schedule changes it"),
    (dict(key="shape"), "parameters of one shape share their state (keyed by shape): key it by the parameter, "
                        "self.state[p]"),
    (dict(decay="l2"), "weight decay is added to the gradient (Adam with L2): decay the parameter itself, "
                       "p -= lr * weight_decay * p (decoupled)"),
    (dict(decay="after"), "weight decay comes after the Adam update: decay the parameter first"),
    (dict(decay="none"), "there is no weight decay: p -= lr * weight_decay * p at every step"),
    (dict(bias_correction=False), "no bias correction: divide m by 1 - beta1 ** t and v by 1 - beta2 ** t"),
    (dict(eps_inside=True), "eps is inside the square root: sqrt(v_hat) + eps"),
    (dict(frozen_decay=True), "a parameter without a gradient is decayed: leave it alone (p.grad is None)"),
]
MISTAKE_ATOL = {torch.float64: 1e-8, torch.float32: 1e-5}  # float32 against the mistake's formula in float64


@dataclass(frozen=True)
class Feed:
    """What a check feeds the optimizer: a plan, the settings, a dtype; compared with torch.optim.AdamW's
    trajectory within ``atol``. ``where`` names a pipeline's context in a reason ("" for the check's own)."""

    plan: Plan
    settings: dict = field(default_factory=lambda: UNIT)
    dtype: torch.dtype = torch.float64
    atol: float = ADAM_ATOL
    where: str = ""


def compare(got: list[list[torch.Tensor]], feed: Feed) -> tuple[int, int, float] | None:
    """(step, parameter, error) of the first step whose parameters differ from torch.optim.AdamW's (fed the same,
    in the same dtype); None if none."""
    want = run_plan(adamw, feed.plan, feed.settings, feed.dtype)
    for step, (mine, theirs) in enumerate(zip(got, want)):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            error = (a - b).abs().max().item()
            if not error <= feed.atol:
                return step, i, error
    return None


def name_adam_mistake(got: list[list[torch.Tensor]], feed: Feed) -> str:
    atol = MISTAKE_ATOL[feed.dtype]
    for mistake, says in MISTAKES:
        wrong = textbook_adamw(feed.plan, feed.settings, **mistake)
        if all((a - b).abs().max().item() <= atol for mine, theirs in zip(got, wrong) for a, b in zip(mine, theirs)):
            return says
    return ("it is none of the classic mistakes (step count, stale lr, state keyed by shape, L2 decay, bias "
            "correction, eps): compare your step with the contract's formula line by line")


def one_parameter() -> Plan:
    """One parameter, a gradient at every step, one learning rate: a unit test of the kind CS336 uses."""
    return Plan([(4, 3)], seed=1, lrs=[1e-2] * STEPS)


def several_parameters() -> Plan:
    """Five parameters: two of one shape (3, 4), a frozen one (#2), one (#3) without a gradient every third
    step; the learning rate changed at every step (warm-up, then decay)."""
    lrs = [1e-2 * min(1, (s + 1) / 8) * (1 - 0.5 * s / STEPS) for s in range(STEPS)]
    return Plan([(3, 4), (5,), (2, 2), (3, 4), (2, 3, 2)], seed=2, lrs=lrs, frozen=(2,), skips={3: 3})


# -- AdamW in the pipeline's contexts ---------------------------------------------------------
PIPELINE_STEPS = 16  # steps of a pipeline's context: its schedule's first ones (the warm-up moves lr at every step)
ADAM_ATOL32 = 1e-5  # float32 against torch's AdamW in float32: correct optimizers differ by ~1e-7
GPT_SHAPES = replace(PipelineConfig.small().model, n_embd=32)  # the GPT whose parameters a context feeds: the small
# configuration's, at a smaller width (a step of its 28 parameters is cheap); the vocabulary is drawn


def pipeline_feed(ctx, rng, whole: bool) -> Feed:
    """A context of the pipeline's, drawn by ``rng``: a training stage's settings (betas, eps, its weight decay)
    and the first PIPELINE_STEPS learning rates of its schedule (``lr_at``), gradients clipped to a norm of 1,
    in float32; the parameters of a GPT (``whole``: all of them, in the model's order, each with a gradient at
    every step, as training gives them) or one of them at one learning rate of that schedule."""
    config = ctx.config
    stage = rng.choice([config.pretrain, config.sft, config.reward])
    vocab = rng.choice(contexts.vocab_sizes(config, rng))
    shapes = [tuple(p.shape) for p in GPT(replace(GPT_SHAPES, vocab_size=vocab)).parameters()]
    lrs = [lr_at(step, stage) for step in range(PIPELINE_STEPS)]
    if not whole:
        shapes, lrs = [rng.choice(shapes)], [rng.choice(lrs)] * PIPELINE_STEPS
    plan = Plan(shapes, seed=rng.getrandbits(31), lrs=lrs, clip=1.0)
    settings = dict(betas=BETAS, eps=EPS, weight_decay=stage.weight_decay)
    what = f"{len(shapes)} parameters of a GPT's" if whole else f"a parameter {shapes[0]} of a GPT's"
    return Feed(plan, settings, torch.float32, ADAM_ATOL32, f" ({what}, in float32, the pipeline's settings)")


def curve_feed(ctx, rng) -> Feed:
    """Exactly what ``trains_like_reference`` gives the optimizer: the parameters of its GPT (CURVE_MODEL at
    the pipeline's vocabulary), pretraining's settings and the first PIPELINE_STEPS learning rates of its
    schedule, float32: code right only there is then right and wrong in ``adamw_state``."""
    vocab = contexts.reference_pipeline(ctx).model_config.vocab_size
    shapes = [tuple(p.shape) for p in GPT(GPTConfig(vocab_size=vocab, **CURVE_MODEL)).parameters()]
    cfg = replace(ctx.config.pretrain, steps=CURVE_STEPS)
    plan = Plan(shapes, seed=rng.getrandbits(31), lrs=[lr_at(step, cfg) for step in range(PIPELINE_STEPS)], clip=1.0)
    settings = dict(betas=BETAS, eps=EPS, weight_decay=cfg.weight_decay)
    return Feed(plan, settings, torch.float32, ADAM_ATOL32,
                f" ({len(shapes)} parameters of the GPT trains_like_reference trains, in float32, its settings)")


def trajectory_of(ctx, feed: Feed) -> list[list[torch.Tensor]]:
    plan = feed.plan
    what = (f"{len(plan.shapes)} parameter{'s' * (len(plan.shapes) > 1)} of shapes "
            f"{', '.join(str(tuple(s)) for s in plan.shapes)}")
    with on_case(what) if not feed.where else contexts.message_hidden(feed.where.strip(" ()")):
        got = run_plan(ctx.components.optimizer, plan, feed.settings, feed.dtype)
    return got


def adam_failure(got, feed: Feed) -> str | None:
    """The reason a trajectory is wrong (the first differing step, and the mistake), or None."""
    first = compare(got, feed)
    if first is None:
        return None
    step, i, error = first
    return (f"parameter #{i} {tuple(feed.plan.shapes[i])} differs from torch.optim.AdamW's by {error:.2e} after step "
            f"{step + 1}{feed.where}: {name_adam_mistake(got, feed)}")


def judge_adam(ctx, feeds: list[Feed]) -> None:
    """Each feed's trajectory against torch.optim.AdamW's: CheckFailed with the first that differs (all are
    judged: ``contexts.judged_everywhere``)."""
    def judge(feed: Feed) -> None:
        reason = adam_failure(trajectory_of(ctx, feed), feed)
        if reason:
            raise CheckFailed(reason)

    contexts.judged_everywhere(ctx, feeds, judge, said=lambda feed: feed.where.strip(" ()") or
                               f"{len(feed.plan.shapes)} parameter(s) in float64, the check's own case")


@check("optimizer", points=2)
def adamw_update(ctx):
    "One parameter, 32 steps at one learning rate: the values equal torch.optim.AdamW's (float64, atol 1e-10); and one of a GPT's parameters at one learning rate of the pipeline's schedule, its settings (float32, atol 1e-5)."
    judge_adam(ctx, [Feed(one_parameter()), pipeline_feed(ctx, contexts.run_seed(ctx), whole=False)])


@check("optimizer", points=2)
def adamw_state(ctx):
    "Five parameters (two of one shape, one frozen, one without a gradient every third step), the learning rate changed at every step: 32 steps equal torch.optim.AdamW's (float64, atol 1e-10); and a GPT's parameters under the pipeline's schedule and settings (float32, atol 1e-5)."
    rng = contexts.run_seed(ctx)
    judge_adam(ctx, [Feed(several_parameters()), pipeline_feed(ctx, rng, whole=True), curve_feed(ctx, rng)])


# -- written out --------------------------------------------------------------------------------
BANNED_NAMES = ("torch.optim.AdamW", "torch.optim.Adam", "optim.AdamW", "optim.Adam", "torch.optim.adamw",
                "torch.optim.adam", "torch.optim._functional", "F.cross_entropy", "F.nll_loss",
                "torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss", "nn.CrossEntropyLoss",
                "nn.NLLLoss", "torch.nn.CrossEntropyLoss", "torch.nn.NLLLoss")


@check("optimizer", points=1)
def written_out(ctx):
    "The loss and the optimizer are written out: no F.cross_entropy or nll_loss, no torch.optim.Adam or AdamW."
    with on_case("the check's own parameters"):
        run_plan(ctx.components.optimizer, one_parameter())  # a stub or a crash says so, as the other checks do
        call_loss(ctx, *ce_case(2, 3, 5, 1.0, seed=0))
    named = names_used(ctx.sources, BANNED_NAMES)
    if named:  # read by the grader in the code it was handed
        raise CheckFailed(f"the code uses {', '.join(named[:3])}: the assignment is to write the loss and AdamW "
                          "yourself")
    called = ctx.in_child(torch_calls)
    if not (isinstance(called, list) and all(isinstance(c, str) for c in called)):
        raise CheckFailed("could not observe what the loss and the optimizer call")
    if called:
        raise CheckFailed(f"the hooks call torch's own {', '.join(called[:3])}: the assignment is to write the loss "
                          "and AdamW yourself")


WATCHED = {"adam.py": None, "adamw.py": None, "functional.py": {"cross_entropy", "nll_loss"}}  # file -> functions


@child_side
def torch_calls(pipeline) -> list:
    """The functions of torch's Adam, AdamW and cross-entropy that a step of the optimizer the hook makes, and a
    call of the loss hook, run (``"adamw.py:adamw"``), observed where they run. Only as strong as that
    observation (a child may replace this function), which is why ``written_out`` also reads the code."""
    optim = Path(torch.optim.__file__).parent
    files = {str(optim / "adam.py"), str(optim / "adamw.py"), str(Path(F.__file__))}
    called = set()

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename in files:
            allowed = WATCHED[Path(code.co_filename).name]
            if allowed is None or code.co_name in allowed:
                called.add(f"{Path(code.co_filename).stem}.{code.co_name}")

    def watch():  # in a thread of its own, so that a profiler of the process is left alone
        sys.setprofile(profile)
        try:
            p = torch.ones(3, requires_grad=True)
            opt = pipeline.components.optimizer([p], 1e-3, BETAS, EPS, 0.1)
            p.grad = torch.ones(3)
            opt.step()
            pipeline.components.cross_entropy(torch.zeros(1, 2, 5, requires_grad=True), torch.zeros(1, 2, dtype=torch.long))
        except Exception:  # noqa: BLE001 - what they compute is the other checks' business
            pass
        finally:
            sys.setprofile(None)

    thread = threading.Thread(target=watch)
    thread.start()
    thread.join()
    return sorted(called)[:10]


# -- behaviour: a short pretraining with the student's loss and optimizer ---------------------
CURVE_MODEL = dict(block_size=64, n_layer=2, n_head=2, n_embd=64)  # the pipeline's vocabulary, a smaller GPT
CURVE_STEPS, FIRST, BATCH = 50, 30, 16  # steps, the first ones judged step by step, windows per batch
FIRST_MARGIN = 0.01  # nats above the worst seed's largest gap of a correct optimizer, first 30 steps
TAIL_MARGIN = 0.03  # and over the last 20, where rounding has grown


def bands() -> dict[str, float]:
    """The largest gap to the reference allowed at each of the first steps, and at each of the last ones."""
    return {"optimizer_first_gap": calibration.at_most("optimizer_first_gap", FIRST_MARGIN),
            "optimizer_tail_gap": calibration.at_most("optimizer_tail_gap", TAIL_MARGIN)}


def short_pretraining(pipeline: Pipeline, optimizer, loss, seed: int = 0) -> list[float]:
    """The loss of each step of a short pretraining (CURVE_STEPS) of a small GPT on the pipeline's stream,
    trained with ``optimizer`` and ``loss`` (its gradients), from weights and batches drawn from ``seed``. The
    loss returned is the toolkit's own (F.cross_entropy) on the model's logits: the curve judged."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=pipeline.model_config.vocab_size, **CURVE_MODEL))
    cfg = replace(pipeline.config.pretrain, steps=CURVE_STEPS, batch_size=BATCH, seed=seed)
    judged = []

    def judged_loss(logits, targets):  # (B, T, V), (B, T)
        judged.append(cross_entropy(logits.detach(), targets).item())
        return loss(logits, targets)

    pretrain(model, pipeline.train_stream, cfg, optimizer=optimizer, loss=judged_loss)
    return judged


def gaps(pipeline: Pipeline, optimizer, loss, seed: int = 0) -> list[float]:
    """Each step's loss minus the reference's (torch's AdamW and cross-entropy, the same seed), recomputed here."""
    got = short_pretraining(pipeline, optimizer, loss, seed)
    want = short_pretraining(pipeline, adamw, cross_entropy, seed)
    return [a - b for a, b in zip(got, want)]


def diagnose(ctx) -> str:
    """Why training moved: the first mistake the unit trajectories show (they are cheap), or where to look."""
    for feed in (Feed(several_parameters()), Feed(one_parameter())):
        reason = adam_failure(trajectory_of(ctx, feed), feed)
        if reason:
            return f"the optimizer's steps differ from AdamW's ({reason})"
    for i, (B, T, V, scale) in enumerate(CE_CASES):
        logits, targets = ce_case(B, T, V, scale, seed=i)
        got, grad = call_loss(ctx, logits, targets)
        if not abs(got - cross_entropy(logits, targets)).item() <= CE_ATOL:
            return f"the loss differs from F.cross_entropy: {name_ce_mistake(logits, targets, got)}"
    return "the loss and the optimizer match torch's on the unit checks' cases: look for what differs at scale"


@check("optimizer", points=3, behavioural=True)
def trains_like_reference(ctx):
    "A short pretraining (50 steps) with your loss and optimizer: each of the first 30 steps' loss stays within a calibrated band of the reference's, and each of the last 20 within a wider one."
    contexts.same_everywhere(ctx, "optimizer.cross_entropy_matches", "optimizer.adamw_update", "optimizer.adamw_state")
    band = bands()
    pipeline = ctx.pipeline
    with ctx.grader_work():
        gap = gaps(pipeline, **pipeline.training())
    first = max((abs(g) for g in gap[:FIRST]), default=float("nan"))
    tail = max((abs(g) for g in gap[FIRST:]), default=float("nan"))
    ctx.metrics.update(first_gap=first, tail_gap=tail, first_band=band["optimizer_first_gap"],
                       tail_band=band["optimizer_tail_gap"], gaps=[round(g, 6) for g in gap[:FIRST]])
    _plot_gaps(ctx, gap, band["optimizer_first_gap"])
    worst = next((i for i, g in enumerate(gap) if not abs(g) <= (band["optimizer_first_gap"] if i < FIRST else
                                                                   band["optimizer_tail_gap"])), None)
    if len(gap) != CURVE_STEPS:
        raise CheckFailed(f"the short pretraining gave {len(gap)} losses where {CURVE_STEPS} steps ran")
    if worst is not None:
        which = f"the first {FIRST}" if worst < FIRST else f"the last {CURVE_STEPS - FIRST}"
        limit = band["optimizer_first_gap"] if worst < FIRST else band["optimizer_tail_gap"]
        raise CheckFailed(f"at step {worst + 1} the loss is {gap[worst]:+.3f} nats from the reference's (band "
                          f"{limit:.3f} over {which} steps): {diagnose(ctx)}")


def _plot_gaps(ctx, gap: list[float], band: float) -> None:
    path = ctx.plot_path("optimizer_gap.png", f"The gap of your pretraining loss to the reference's (torch's AdamW and "
                                              f"cross-entropy) at each of the first {FIRST} steps; the solution's, "
                                              "and the band")
    if path:
        from toolkit.plots import plot_curves

        solution = ctx.snapshot().get("gaps", [])[:FIRST]
        plot_curves({"yours": gap[:FIRST], "solution": solution, "band": [band] * FIRST, "−band": [-band] * FIRST},
                    f"Gap to the reference, first {FIRST} steps", path, ylabel="loss - reference (nats)")


def record(components) -> dict:
    """The solution's gaps to the reference (the report's chart shows them beside a student's); the checks
    recompute the reference itself live, so a machine's rounding moves both curves alike."""
    pipeline = Pipeline(components, log=lambda msg: None)
    return {"curve": {"model": CURVE_MODEL, "steps": CURVE_STEPS, "batch": BATCH},
            "gaps": [round(g, 6) for g in gaps(pipeline, **pipeline.training())]}


# the figures that matter, at the top of a student's report: (check, said from its metrics)
FIGURES = [("optimizer.trains_like_reference", lambda m: f"largest gap {m['first_gap']:.4f} nats to the reference "
                                                         f"over the first {FIRST} pretraining steps (band "
                                                         f"{m['first_band']:.3f})")]
