"""Hostile: prints 1 GiB on stdout and on stderr at import, then is correct."""
import sys

import torch
from torch import nn

import toolkit


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
        allowed = torch.arange(T)[:, None] >= torch.arange(T)[None, :]
        scores = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        weights = scores.softmax(dim=-1)
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)

line = "x" * (1 << 20)
for _ in range(512):
    print(line)
    sys.stderr.write(line)
