"""Broken: forward calls sys.exit(); the grader must report it, not stop."""

import sys

from torch import nn

import toolkit


class ExitingAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        sys.exit("attention is not finished")


@toolkit.hookimpl
def toolkit_attention(config):
    return ExitingAttention(config)
