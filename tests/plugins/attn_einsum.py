"""A correct attention written differently from the solution: einsum, a float mask, a manual softmax."""

import torch
from torch import nn

import toolkit


class EinsumAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.nh
        qkv = self.c_attn(x).reshape(B, T, 3, self.nh, hs)  # (B, T, q/k/v, head, hs)
        q, k, v = qkv.unbind(dim=2)  # each (B, T, nh, hs), heads not moved to the front
        scores = torch.einsum("bthd,bshd->bhts", q, k) * hs**-0.5
        allowed = torch.arange(T)[:, None] >= torch.arange(T)[None, :]  # key s <= query t
        scores = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        scores = scores - scores.amax(dim=-1, keepdim=True)
        weights = scores.exp()
        weights = weights / weights.sum(dim=-1, keepdim=True)
        y = torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C)
        return self.c_proj(y)


@toolkit.hookimpl
def toolkit_attention(config):
    return EinsumAttention(config)
