"""Hostile: forward returns, call after call, values that a careless comparison lets through:
NaN (fails `err > atol`), +inf, a float16 or complex copy, a broadcastable (1, 1, C) or
(B, T, C, 1) tensor, a 0-dim tensor, an integer or boolean tensor, a meta tensor, a sparse
tensor, a quantized tensor, a non-contiguous view, a plain list, None; honest score: 2 (the
values, where there are any, are a no-causal-mask attention's)."""
import itertools

import torch
from torch import nn

import toolkit


def variants(y: torch.Tensor):
    B, T, C = y.shape
    yield torch.full_like(y, float("nan"))
    yield torch.full_like(y, float("inf"))
    yield y.half()
    yield y.to(torch.complex128)
    yield y[:1, :1].clone()
    yield y.unsqueeze(-1)
    yield y.sum()
    yield y.long()
    yield y > 0
    yield torch.empty(B, T, C, device="meta", dtype=y.dtype)
    yield y.to_sparse()
    yield torch.quantize_per_tensor(y.float(), 0.1, 0, torch.qint8)
    yield y.transpose(0, 1).contiguous().transpose(0, 1)
    yield y.tolist()
    yield None


_calls = itertools.count()


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
        y = self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))
        options = list(variants(y.detach()))
        return options[next(_calls) % len(options)]


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
