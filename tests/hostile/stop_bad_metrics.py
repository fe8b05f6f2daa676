"""Hostile: gives the grader's feedback writer malformed metrics: through the check's context (frame
walk) it sets "_examples" to objects that unpack into three strings in its own process but become
one string in JSON, "_plots" to an object that iterates as nothing here but as characters there,
metrics nested 200 deep, NaN and infinities; honest score: 2 (no causal mask)."""
import sys

import torch
from torch import nn

import toolkit


class Triple:
    """Three strings here; "abcd" once serialised with default=str."""

    def __iter__(self):
        return iter(("a", "b", "c"))

    def __str__(self):
        return "abcd"


class Nothing:
    def __iter__(self):
        return iter(())

    def __str__(self):
        return "../../../canary.txt"


def nested(depth: int) -> dict:
    out: dict = {}
    for _ in range(depth):
        out = {"x": out}
    return out


def poison() -> None:
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(getattr(value, "metrics", None), dict):
                value.metrics.update({"_examples": [Triple(), Triple()], "_plots": Nothing(), "deep": nested(200),
                                      "nan": float("nan"), "inf": float("-inf"), "_dists": Triple()})
        frame = frame.f_back


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        poison()
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        weights = scores.softmax(dim=-1)  # no causal mask
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
