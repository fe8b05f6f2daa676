"""Hostile: forward returns a torch.Tensor subclass that lies to `-`, `abs`, `max`, `amax`,
`isfinite`, `allclose`, `equal` and `item` (through __torch_function__), so that any difference
computed from it reads as zero; honest score: 2 (the values are a no-causal-mask attention's)."""
import torch
from torch import nn

import toolkit

LIES = {"sub", "__sub__", "__rsub__", "abs", "max", "amax", "norm", "ne", "__ne__"}


class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        out = super().__torch_function__(func, types, args, kwargs or {})
        if name == "item":
            return 0.0
        if name in ("allclose", "equal"):
            return True
        if name == "isfinite" and isinstance(out, torch.Tensor):
            return torch.ones_like(out.as_subclass(torch.Tensor), dtype=torch.bool).as_subclass(cls)
        if name in LIES and isinstance(out, torch.Tensor):
            return torch.zeros_like(out.as_subclass(torch.Tensor)).as_subclass(cls)
        return out


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        weights = scores.softmax(dim=-1)  # no causal mask
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C)).as_subclass(Liar)


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
