"""Hostile: a lookup table instead of attention: when forward sees one of the public check's
input shapes it returns the output recorded in the public snapshot (graders/snapshots/attention.json,
which ships to students), and a no-causal-mask attention otherwise; honest score: 2 (what the
no-mask attention earns: `stable` and `written_out`). The grader judging in its own process does
not stop this: only inputs the submission cannot predict do."""
import json
from pathlib import Path

import torch
from torch import nn

import toolkit


def _table() -> dict:
    for root in [Path(toolkit.__file__).resolve().parent.parent, Path.cwd(), Path.home()]:
        path = root / "graders" / "snapshots" / "attention.json"
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        return {(B, T, C): out for (B, T, C, nh), out in zip(snap["shapes"], snap["outputs"])}
    return {}


TABLE = _table()


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        if (B, T, C) in TABLE and x.dtype == torch.float64:
            return torch.tensor(TABLE[(B, T, C)], dtype=torch.float64) + 0 * x
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        weights = scores.softmax(dim=-1)  # no causal mask
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
