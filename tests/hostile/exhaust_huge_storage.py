"""Hostile: forward returns the right values, as a small view into a 64 MB storage, so that
anything that serialises the tensor as it is (torch.save keeps the whole storage) ships 64 MB per
answer; honest score: 9 (the values are a correct attention's)."""
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
        y = self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))
        if torch.is_grad_enabled() and y.requires_grad:
            return y  # the causal check's backward needs the graph
        big = torch.zeros(8_000_000, dtype=y.dtype)
        big[: y.numel()] = y.reshape(-1)
        return big[: y.numel()].view(B, T, C)


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
