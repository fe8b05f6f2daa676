"""Hostile: at import, starts a double-forked daemon in a session of its own (setsid) that ignores
SIGTERM and SIGHUP, holds the child's stdout and stderr open and sleeps for an hour, so that
killing the child's session leaves it running and the grader's readers of those pipes wait on it;
honest score: 2 (no causal mask)."""
import subprocess
import sys

import torch
from torch import nn

import toolkit

DAEMON = """
import os, signal, sys, time
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, signal.SIG_IGN)
time.sleep(3600)
"""
subprocess.Popen([sys.executable, "-c", DAEMON, "HOSTILE-" + "ORPHAN"], stdin=subprocess.DEVNULL)


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
