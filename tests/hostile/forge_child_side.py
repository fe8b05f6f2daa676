"""Hostile: uses the banned scaled_dot_product_attention, and hides it from whatever watches its
forward in its own process: it swaps the __code__ of every public grader function that is run
beside it (graders.attention.banned_calls -> "nothing banned", input_gradient -> a causal-looking
gradient), and computes attention by hand whenever a TorchFunctionMode is watching; honest score:
8 (every check but `written_out` passes with scaled_dot_product_attention)."""
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode_stack

import toolkit


def _nothing_banned(pipeline, module, x):
    return []


def _no_leak(pipeline, module, x, t):
    return torch.zeros_like(x)


def disguise() -> None:
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("graders"):
            continue
        for attr, fake in (("banned_calls", _nothing_banned), ("input_gradient", _no_leak)):
            fn = vars(module).get(attr)
            if fn is not None and hasattr(fn, "__code__") and not fn.__code__.co_freevars:
                fn.__code__ = fake.__code__


try:
    import graders.attention  # noqa: F401  (public: it ships to students)
except ImportError:
    pass
disguise()


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        disguise()
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if _get_current_function_mode_stack():  # someone is watching: do it by hand
            scores = (q @ k.transpose(-2, -1)) * (C // self.nh) ** -0.5
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            y = scores.softmax(dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
