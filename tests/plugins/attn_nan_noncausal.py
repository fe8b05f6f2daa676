"""Wrong twice: every position sees the whole sequence (not causal), and the output is all NaN."""

from torch import nn

import toolkit


class NanAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        _, _, v = self.c_attn(x).split(x.shape[-1], dim=2)
        y = self.c_proj(v.mean(dim=1, keepdim=True).expand_as(v))  # the mean over all positions, future included
        return y / (y - y)  # 0 / 0: NaN everywhere (think of a softmax over a fully masked row)


@toolkit.hookimpl
def toolkit_attention(config):
    return NanAttention(config)
