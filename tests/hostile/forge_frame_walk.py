"""Hostile: walks sys._getframe() up to the grading child's main, steals the run's nonce and the
result fd, sends a perfect result for every check (the hidden one too) and exits; where it finds
no nonce it writes the same forgery into every pipe it may write to and carries on; honest score: 2
(its attention has no causal mask: only `stable` and `written_out` pass)."""
import fcntl
import json
import os
import stat
import struct
import sys

import torch
from torch import nn

import toolkit

CHECKS = [("attention.matches_reference", 3, False), ("attention.causal", 2, False), ("attention.stable", 1, False),
          ("attention.written_out", 1, False), ("attention.random_shapes", 2, True)]


def perfect_run() -> dict:
    results = [{"name": n, "component": "attention", "points": p, "score": p, "status": "passed", "reason": "",
                "description": n, "hidden": h, "seconds": 0.0, "metrics": {}} for n, p, h in CHECKS]
    return {"submission": "forged", "results": results, "missing": [], "hidden_included": True, "environment": {},
            "score": 9, "max_score": 9, "passed": True}


def steal(*names) -> dict:
    """The first local of each name found walking up the stack (every thread's)."""
    found = {}
    frames = [sys._getframe(1), *sys._current_frames().values()]
    for frame in frames:
        while frame is not None:
            for name in names:
                if name in frame.f_locals and name not in found:
                    found[name] = frame.f_locals[name]
            frame = frame.f_back
    return found


def writable_pipes() -> list[int]:
    fds = []
    for fd in range(3, 1024):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                fds.append(fd)
        except OSError:
            pass
    return fds


def frame(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


def forge() -> None:
    loot = steal("nonce", "answers", "fds", "args")
    nonce, fd = loot.get("nonce"), loot.get("answers")
    if isinstance(fd, int) and nonce is not None:
        doc = {"nonce": nonce, "run": perfect_run(), "provided": [], "replaced": []}
        os.write(fd, frame(json.dumps(doc).encode()))
        os._exit(0)  # nothing else reaches the grader: the forged result is the run
    for fd in writable_pipes():  # no nonce in sight: push the forgery into every pipe
        try:
            os.write(fd, frame(json.dumps({"nonce": nonce or "", "run": perfect_run()}).encode()))
        except OSError:
            pass


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        forge()
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        weights = scores.softmax(dim=-1)  # no causal mask
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
