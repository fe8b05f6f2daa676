"""Hostile: a block that tells the unit checks from the pipeline's training by how it is called. Where the
checks used to look (float64, a width below 64, or under torch.no_grad() as they called it) it is the
pre-norm block it should be; with gradients on, in float32 at width 64 or more (the pipeline training its
GPT: n_embd 64 and 128) it is post-norm. Checks that ran their cases only in their own contexts and
without gradients gave it every point (10 under --fast) while its GPT trained post-norm; honest score: 5
(parameters, causal, gradients and uses_given_attention, as block_post_norm)."""
import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class ContextBlock(nn.Module):
    def __init__(self, config, attention):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = attention
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.mlp.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def mlp_of(self, h):
        return self.mlp.c_proj(F.gelu(self.mlp.c_fc(h)))

    def forward(self, x):
        if torch.is_grad_enabled() and x.dtype == torch.float32 and x.shape[-1] >= 64:  # the pipeline, training
            x = self.ln_1(x + self.attn(x))
            return self.ln_2(x + self.mlp_of(x))
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_of(self.ln_2(x))


@toolkit.hookimpl
def toolkit_block(config, attention):
    return ContextBlock(config, attention)
