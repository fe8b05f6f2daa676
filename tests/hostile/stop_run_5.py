"""Hostile: sends well-formed frames with ill-formed contents: with the nonce stolen from the child's
main (frame walk) a result document {"nonce": ..., "run": 5}; and, as answers to the grader's calls,
a torch.save that encodes {"kind": "module", "params": 5}, {"kind": "value"} without a value,
{"kind": "error", "type": 5}, ... instead of what the child meant to send; honest score: 2 (no
causal mask)."""
import itertools
import json
import os
import struct
import sys

import torch
from torch import nn

import toolkit

MALFORMED = [{"kind": "module", "oid": "1", "params": 5}, {"kind": "value"}, {"kind": "error", "type": 5, "message": None},
             {"kind": "module", "oid": 1, "params": [["c_attn.weight", [-1, 3], "float64"]]},
             {"kind": "module", "oid": 1, "params": [["c_attn.weight", [3, 3], "load"]]},
             {"kind": "object", "oid": [1]}, 5, None, "graded", {"status": "graded", "score": 9, "run": 5}]
_next = itertools.count()
_save = torch.save


def malformed_save(obj, f, *args, **kwargs):
    return _save(MALFORMED[next(_next) % len(MALFORMED)], f, *args, **kwargs)


def strike() -> None:
    frame, loot = sys._getframe(1), {}
    while frame is not None:
        for name in ("nonce", "answers"):
            if loot.get(name) is None:
                loot[name] = frame.f_locals.get(name)
        frame = frame.f_back
    if loot.get("nonce") is not None and isinstance(loot.get("answers"), int):
        data = json.dumps({"nonce": loot["nonce"], "run": 5, "provided": ["attention"]}).encode()
        os.write(loot["answers"], struct.pack(">Q", len(data)) + data)
        os._exit(0)
    torch.save = malformed_save  # whatever the child encodes its answers with from now on


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
    strike()
    return Attention(config)
