"""Solution: causal multi-head self-attention, written out step by step."""

import math

import torch
from torch import nn

import toolkit


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # queries, keys, values at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        # split the channels into heads: (B, T, nh, hs) -> (B, nh, T, hs)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T): query t against key s
        future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))  # position t may not look at s > t
        weights = torch.softmax(scores, dim=-1)  # over the keys; stable: softmax subtracts the max
        y = weights @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.c_proj(y)


@toolkit.hookimpl
def toolkit_attention(config):
    return CausalSelfAttention(config)
