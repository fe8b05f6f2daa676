"""A correct block written differently: its own LayerNorm (the biased variance, by hand) and the erf
GELU written out."""

import math

import torch
from torch import nn

import toolkit


class LayerNorm(nn.Module):
    def __init__(self, C, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))  # gamma
        self.bias = nn.Parameter(torch.zeros(C))  # beta
        self.eps = eps

    def forward(self, x):  # (B, T, C)
        mean = x.mean(-1, keepdim=True)  # over the channels
        var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased: divided by C
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias


def gelu(h):
    return 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # the exact GELU


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)

    def forward(self, h):
        return self.c_proj(gelu(self.c_fc(h)))


class Block(nn.Module):
    def __init__(self, config, attention):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd)
        self.attn = attention
        self.ln_2 = LayerNorm(config.n_embd)
        self.mlp = MLP(config.n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@toolkit.hookimpl
def toolkit_block(config, attention):
    return Block(config, attention)
