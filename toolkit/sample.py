"""Generating text from a GPT: greedy, or sampling with temperature and top-k."""

from __future__ import annotations

import torch
from torch.nn import functional as F


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, stop_ids: set[int] = frozenset(),
             generator: torch.Generator | None = None) -> list[list[int]]:
    """Continue each row of ``idx`` (B, T0), all prompts of one length.

    ``temperature == 0`` means greedy. A row stops after it emits a token in ``stop_ids``
    (the stop token is kept in its output). Returns the new tokens of each row.
    """
    model.eval()
    B = idx.shape[0]
    out: list[list[int]] = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    for _ in range(max_new_tokens):
        context = idx[:, -model.config.block_size :]
        logits = model(context)[:, -1, :]  # (B, V)
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)
        for b in range(B):
            if not done[b]:
                out[b].append(int(nxt[b]))
                done[b] = int(nxt[b]) in stop_ids
        if done.all():
            break
        idx = torch.cat([idx, nxt[:, None]], dim=1)
    return out


@torch.no_grad()
def stream(model, ids: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           stop_ids: set[int] = frozenset(), generator: torch.Generator | None = None):
    """Yield the new tokens of one prompt one at a time, as ``generate`` would produce them."""
    idx = torch.tensor([ids])
    for _ in range(max_new_tokens):
        (nxt,) = generate(model, idx, 1, temperature, top_k, generator=generator)[0]
        yield nxt
        if nxt in stop_ids:
            return
        idx = torch.cat([idx, torch.tensor([[nxt]])], dim=1)
