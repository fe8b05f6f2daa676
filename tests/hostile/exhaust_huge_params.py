"""Hostile: a module whose parameters claim to be 16384 x 16384 float64 (2 GiB each) but live on
torch's "meta" device, so they cost the child nothing; a grader that mirrors the parameters it is
told about allocates 4 GiB for c_attn.weight and c_proj.weight; honest score: 0 (the shapes are
wrong, so no check can load its weights)."""
import torch
from torch import nn

import toolkit

N = 16384


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(N, N, device="meta", dtype=torch.float64)
        self.c_proj = nn.Linear(N, N, device="meta", dtype=torch.float64)

    def forward(self, x):
        return x


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
