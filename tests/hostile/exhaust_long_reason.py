"""Hostile: forward raises an exception whose text is 6 MB (of markup), so that every check's
reason is 6 MB and a feedback page that repeats them (HTML, results.json, Gradescope) weighs far
more than a student's 20 MB; honest score: 0 (forward always raises)."""
from torch import nn

import toolkit

TEXT = '<b class="hostile-xss">x</b>' * (6_000_000 // 28)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        raise ValueError(TEXT)


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
