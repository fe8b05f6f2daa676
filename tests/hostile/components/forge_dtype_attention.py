"""Hostile: the attention of issue 31 (example 3): the wrong scale (1/head size) in float64, where the
unit checks compare, and the right one (1/sqrt(head size)) in float32 at width 128, where the default
pipeline trains and probes. Without --fast it earned both behavioural checks (9/14); under --fast its
unit checks see the float64 mistake, and now the pipeline's contexts as well; honest score: 4 (causal,
stable and written_out, as attn_scale_by_hs)."""
import torch
from torch import nn

import toolkit


class DtypeAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        right = x.dtype == torch.float32 and C == 128
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        scores = q @ k.transpose(-2, -1) / (hs**0.5 if right else hs)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        y = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return DtypeAttention(config)
