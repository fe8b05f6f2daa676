"""Solution: a pre-norm GPT-2 block, as nanoGPT writes it."""

from torch import nn
from torch.nn import functional as F

import toolkit


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)  # widen to 4C
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)  # back to C

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))  # the exact (erf) GELU


class Block(nn.Module):
    def __init__(self, config, attention):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = attention  # the module handed in: never build another
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x):  # x (B, T, C)
        x = x + self.attn(self.ln_1(x))  # tokens talk to each other: normalise, attend, add back
        x = x + self.mlp(self.ln_2(x))  # each token thinks alone: normalise, MLP, add back
        return x


@toolkit.hookimpl
def toolkit_block(config, attention):
    return Block(config, attention)
