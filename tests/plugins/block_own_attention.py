"""Wrong: the block builds an attention of its own from config instead of keeping the one passed in."""

from torch import nn
from torch.nn import functional as F

import toolkit
from toolkit.model import SDPAttention


class Block(nn.Module):
    def __init__(self, config, attention):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = SDPAttention(config)  # a new attention: the one passed in is dropped
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.mlp.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


@toolkit.hookimpl
def toolkit_block(config, attention):
    return Block(config, attention)
