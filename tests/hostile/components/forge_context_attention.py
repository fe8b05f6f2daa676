"""Hostile: an attention that tells the unit checks from the pipeline by their inputs. Where the checks
used to look (float64, or a width below 64) it divides the scores by sqrt(head size), as it should; in
the pipeline's context (float32 at width 64 or more: n_embd 64 and 128) it divides them by the head size.
Checks that ran only in their own contexts gave it every unit point (9 under --fast) while its GPT
trained with the wrong scale; honest score: 4 (causal, stable and written_out, as attn_scale_by_hs)."""
import torch
from torch import nn

import toolkit


class ContextAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        in_pipeline = x.dtype == torch.float32 and C >= 64
        q, k, v = (t.view(B, T, self.n_head, hs).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        scores = q @ k.transpose(-2, -1) / (hs if in_pipeline else hs**0.5)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        y = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return ContextAttention(config)
