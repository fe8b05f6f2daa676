"""Checks of the reward component (reward model head and preference loss)."""

import math

import torch

from toolkit.baselines import SDPAttention
from toolkit.checks import CheckFailed, check
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
    c, j = c.clone().requires_grad_(True), j.clone().requires_grad_(True)
    _loss(ctx, c, j).backward()
    if not ((c.grad < 0).all() and (j.grad > 0).all()):
        raise CheckFailed("gradient descent on the loss must raise every chosen reward and lower every rejected one; "
                          "check the sign of chosen - rejected")


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
