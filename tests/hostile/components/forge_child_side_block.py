"""Hostile: a block whose LayerNorms start at γ = 0, which switches its branches off at the start, and
which hides that from whatever reads its initial weights in its own process: when imported it replaces
graders.block.initial_norms (the @child_side function that used to report them to the grader) with one
that reports γ = 1, β = 0. The grader now reads the block's own parameters (Context.initial_parameters);
honest score: 9 (every check but `parameters`, as block_gamma_zero)."""
import sys

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


def _defaults(pipeline, C, nh):
    return {f"ln_{i}.{w}": torch.full((C,), 1.0 if w == "weight" else 0.0) for i in (1, 2) for w in ("weight", "bias")}


_defaults.__child_side__ = True


try:
    import graders.block  # noqa: F401  (public: it ships to students)
except ImportError:
    pass
for _name, _module in list(sys.modules.items()):
    if _module is not None and _name.startswith("graders"):
        setattr(_module, "initial_norms", _defaults)


class Block(nn.Module):
    def __init__(self, config, attention):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = attention
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.mlp.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        nn.init.zeros_(self.ln_1.weight)
        nn.init.zeros_(self.ln_2.weight)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


@toolkit.hookimpl
def toolkit_block(config, attention):
    return Block(config, attention)
