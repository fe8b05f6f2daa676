"""Hostile: forward returns data that breaks recursive readers: a list nested 100,000 deep, a
list that contains itself, a dict nested 5,000 deep, and a flat list of 3,000,000 ints, in turn;
honest score: 1 (it never returns a tensor of the right shape, but it calls nothing banned, and
`written_out` looks only at what forward calls)."""
import itertools

from torch import nn

import toolkit


def deep_list(depth: int) -> list:
    out = []
    for _ in range(depth):
        out = [out]
    return out


def deep_dict(depth: int) -> dict:
    out = {}
    for _ in range(depth):
        out = {"x": out}
    return out


def cyclic() -> list:
    out = [1.0]
    out.append(out)
    return out


_calls = itertools.count()


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        makers = [lambda: deep_list(100_000), cyclic, lambda: deep_dict(5_000), lambda: list(range(3_000_000))]
        return makers[next(_calls) % len(makers)]()


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
