"""Hostile: forward returns 240 MB at every call (a float64 tensor of 30 million zeros), which a
grader that reads answers whole holds several times over (the frame, its copy, the decoded
tensor); honest score: 0 (never the right shape)."""
import torch
from torch import nn

import toolkit


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        return torch.zeros(30_000_000, dtype=torch.float64)


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
