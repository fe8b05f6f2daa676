"""Checks of the attention component (causal multi-head self-attention)."""

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from toolkit.checks import CheckFailed, check
from toolkit.model import GPTConfig

# (B, T, C, n_head): batch 1 and more, T = 1, one head and many, head sizes 4, 10, 3, 2.
SHAPES = [(1, 1, 8, 2), (2, 5, 12, 3), (3, 7, 10, 1), (2, 6, 24, 8), (1, 9, 16, 8)]
ATOL = 1e-9  # float64 throughout


def seeded_module(ctx, B, T, C, nh, seed=0):
    """The student's module in float64 with weights drawn from ``seed``, and an input (B, T, C)."""
    gen = torch.Generator().manual_seed(seed)
    module = ctx.components.attention(GPTConfig(n_embd=C, n_head=nh))
    if not isinstance(module, nn.Module):
        raise CheckFailed(f"toolkit_attention returned {type(module).__name__}; expected an nn.Module")
    state = {
        "c_attn.weight": torch.randn(3 * C, C, generator=gen, dtype=torch.float64) / C**0.5,
        "c_attn.bias": torch.randn(3 * C, generator=gen, dtype=torch.float64) * 0.1,
        "c_proj.weight": torch.randn(C, C, generator=gen, dtype=torch.float64) / C**0.5,
        "c_proj.bias": torch.randn(C, generator=gen, dtype=torch.float64) * 0.1,
    }
    mine = sorted(name for name, _ in module.named_parameters())
    if mine != sorted(state):
        raise CheckFailed(f"the module's parameters are {mine}; expected exactly c_attn (Linear C->3C) and c_proj (Linear C->C)")
    module = module.double()
    module.load_state_dict(state, strict=False)  # buffers (e.g. a causal mask) keep their values
    return module, torch.randn(B, T, C, generator=gen, dtype=torch.float64)


def _forward(module, x):
    y = module(x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise CheckFailed(f"forward of an input {tuple(x.shape)} returned {got}; expected the same shape (B, T, C)")
    return y


@check("attention", points=3)
def matches_reference(ctx):
    "Same output as the reference on seeded weights and inputs, for several shapes (float64, atol 1e-9)."
    expected = ctx.snapshot()["outputs"]
    for (B, T, C, nh), want in zip(SHAPES, expected):
        module, x = seeded_module(ctx, B, T, C, nh)
        with torch.no_grad():
            got = _forward(module, x)
        err = (got - torch.tensor(want, dtype=torch.float64)).abs().max().item()
        if not err <= ATOL:
            raise CheckFailed(f"output differs from the reference by {err:.2e} (> {ATOL:g}) for B={B} T={T} C={C} "
                              f"n_head={nh}: check the 1/sqrt(head size) scale, the head split and the softmax axis")


@check("attention", points=2)
def causal(ctx):
    "Output at position t does not change, and gets no gradient, from tokens after t."
    B, T, C, nh = 2, 8, 16, 4
    module, x = seeded_module(ctx, B, T, C, nh, seed=1)
    with torch.no_grad():
        y = _forward(module, x)
        for t in range(T - 1):
            x2 = x.clone()
            x2[:, t + 1 :] += torch.randn(B, T - t - 1, C, dtype=torch.float64, generator=torch.Generator().manual_seed(t))
            diff = (_forward(module, x2)[:, : t + 1] - y[:, : t + 1]).abs().max().item()
            if not diff <= ATOL:  # "not <=" so that NaN fails too
                raise CheckFailed(f"output at position {t} changed by {diff:.2e} when only tokens after {t} changed: "
                                  "mask the scores of future positions before the softmax")
    x = x.clone().requires_grad_(True)
    _forward(module, x)[:, 0].sum().backward()
    if not x.grad[:, 1:].abs().max().item() == 0:
        raise CheckFailed("output at position 0 has a gradient from later positions: the causal mask leaks")


@check("attention", points=1)
def stable(ctx):
    "Inputs whose attention scores exceed 100 give finite outputs (float32, where exp(89) is inf)."
    B, T, C, nh = 2, 6, 16, 4
    module, x = seeded_module(ctx, B, T, C, nh, seed=2)
    module, x = module.float(), 20 * x.float()
    with torch.no_grad():
        q, k, _ = module.c_attn(x).split(C, dim=2)  # the scores the module will see, head 0
        largest = (q[..., : C // nh] @ k[..., : C // nh].transpose(1, 2)).abs().max().item() / (C // nh) ** 0.5
        y = _forward(module, x)
    assert largest > 100, largest  # the check tests what it says
    if not torch.isfinite(y).all():
        raise CheckFailed(f"the output has inf or NaN when attention scores reach {largest:.0f}: subtract each row's "
                          "maximum score before exp (or use torch.softmax)")


class _Spy(TorchFunctionMode):
    BANNED = {"scaled_dot_product_attention", "multi_head_attention_forward"}

    def __init__(self):
        super().__init__()
        self.called = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.BANNED:
            self.called.add(name)
        return func(*args, **(kwargs or {}))


@check("attention", points=1)
def written_out(ctx):
    "The module computes attention itself: no scaled_dot_product_attention, no nn.MultiheadAttention."
    module, x = seeded_module(ctx, 2, 5, 12, 3)
    if any(isinstance(m, nn.MultiheadAttention) for m in module.modules()):
        raise CheckFailed("the module uses nn.MultiheadAttention; the assignment is to write attention out")
    with _Spy() as spy, torch.no_grad():
        _forward(module, x)
    if spy.called:
        raise CheckFailed(f"forward calls {', '.join(sorted(spy.called))}; write the scores, mask and softmax yourself")


def record(components) -> dict:
    class Ctx:  # the same seeded modules the checks build, from the given components
        pass
    ctx = Ctx()
    ctx.components = components
    outputs = []
    for B, T, C, nh in SHAPES:
        module, x = seeded_module(ctx, B, T, C, nh)
        with torch.no_grad():
            outputs.append(module(x).tolist())
    return {"shapes": SHAPES, "atol": ATOL, "outputs": outputs}
