"""Hostile: an attention without the causal mask that replaces, in its own interpreter, the grader
function that used to compute its 60-step training curve beside it
(``graders.attention.short_training_curve``, by name and by ``__code__``) with one that returns the
shipped reference curve, and the toolkit's training loop (``toolkit.train.pretrain``) with one that
trains a correct model instead; issue 31's example 1 (it earned ``trains_like_reference`` 2/2 when
the child computed the curve). The grader now trains the GPT itself, calling this module only for
its outputs and gradients; honest score: 2 (``stable`` and ``written_out``; graded with the reward
component too, which it does not provide)."""
import json
import math
import sys
from pathlib import Path

import torch
from torch import nn

import toolkit


def _reference_curve(*args, **kwargs):
    import graders
    return json.loads((Path(graders.__file__).parent / "snapshots" / "attention.json").read_text())["curve"]


def forge() -> None:
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("graders", "toolkit")):
            continue
        for attr in ("short_training_curve", "pretrain"):
            fn = vars(module).get(attr)
            if callable(fn) and getattr(fn, "__module__", "") != __name__:
                setattr(module, attr, _reference_curve)


try:
    import graders.attention  # noqa: F401  (public: it ships to students)
    import toolkit.train  # noqa: F401
except ImportError:
    pass
forge()


class NoMaskAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        forge()
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        y = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hs), dim=-1) @ v  # no mask: sees the future
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    forge()
    return NoMaskAttention(config)
