"""Broken: the module builds fine, but its forward raises (student code failing mid-check)."""

from torch import nn

import toolkit


class RaisingAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        raise ValueError("heads do not divide the embedding")


@toolkit.hookimpl
def toolkit_attention(config):
    return RaisingAttention(config)
