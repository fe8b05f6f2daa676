"""Hostile: the second time the grader (not a public check beside it) asks for a module, it
answers, then shrinks the pipe the grader writes its requests into to one page (F_SETPIPE_SZ),
keeps that pipe open and never reads it again (its own reads go to a pipe nobody writes), so that
the grader's next request, a forward call carrying the module's weights (over 4 KiB), blocks in
os.write for ever unless writes are bounded by the deadline; honest score: 9 (its attention is
correct)."""
import fcntl
import os
import stat
import sys

import torch
from torch import nn

import toolkit

F_SETPIPE_SZ = 1031
_kept: list[int] = []
_remote_calls: list[int] = []


def from_public_check() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if "graders" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def trap() -> None:
    for fd in range(3, 1024):
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode) or fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY:
                continue
        except OSError:
            continue
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)
        except OSError:
            pass
        _kept.append(os.dup(fd))  # the grader's writes still have a reader, so they block rather than fail
        r, w = os.pipe()
        _kept.append(w)
        os.dup2(r, fd)  # from now on this process reads requests from a pipe nobody writes


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        allowed = torch.arange(T)[:, None] >= torch.arange(T)[None, :]
        scores = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        weights = scores.softmax(dim=-1)
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    if not from_public_check():
        _remote_calls.append(1)
        if len(_remote_calls) == 2:
            trap()  # this answer still goes out; the next request is never read
    return Attention(config)
