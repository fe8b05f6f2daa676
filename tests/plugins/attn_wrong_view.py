"""Wrong: heads split with view(B, nh, T, hs) straight away, which mixes positions and heads."""

import math

import torch
from torch import nn

import toolkit


class WrongViewAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        # should be view(B, T, nh, hs).transpose(1, 2)
        q, k, v = (t.contiguous().view(B, self.n_head, T, hs) for t in self.c_attn(x).split(C, dim=2))
        scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        y = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        return self.c_proj(y.contiguous().view(B, T, C))  # the same mistake undone the same wrong way


@toolkit.hookimpl
def toolkit_attention(config):
    return WrongViewAttention(config)
