"""Generating text from a GPT: greedy, or sampling with temperature and top-k (and top-p with a sampler plugin).

Two parts, kept apart so that either can be swapped:

* ``sample_next(logits, temperature, top_k, top_p, generator)`` picks the next token of
  every row of a batch; it has the signature of the ``toolkit_sample`` hook, and
  ``generate(..., sampler=...)`` takes any function with that signature instead.
* ``generate`` runs the model one token at a time. When every attention layer of the model
  supports a KV cache (``GPT.supports_cache``), the prompt is read once and each step
  then feeds the model only the token just drawn; otherwise (a student's attention, which
  only promises ``forward(x)``) each step reads the whole context again. Both give the
  same tokens (see ``generate``).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.nn import functional as F

from toolkit.model import KVCache

Sampler = Callable[..., torch.Tensor]  # (logits (B, V), temperature, top_k, top_p, generator) -> LongTensor (B,)


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """The next token of each row: logits (B, V) -> LongTensor (B,). The toolkit's own sampler,
    and the ``sampler`` component's baseline; it has the signature of ``toolkit_sample``.

    * ``temperature == 0``: greedy, the argmax of each row (on ties the lowest id, as
      ``torch.argmax``); ``top_k`` changes nothing then. Otherwise the logits are divided by
      ``temperature`` first.
    * ``top_k`` (None: off): keep the tokens whose logit is ``>=`` the k-th largest of the
      row; tokens tied with the k-th value are **all** kept (so more than k may survive).
    * ``top_p``: **ignored**. Nucleus sampling is the sampler assignment's to write (its exact
      rule is in ``toolkit.hookspecs.toolkit_sample``); give the pipeline a sampler plugin to use it.
    * Draw from the softmax of what is kept with ``torch.multinomial(..., generator=generator)``:
      all the randomness comes from ``generator``, one draw per row.
    """
    if temperature == 0:
        return logits.argmax(-1)  # (B,)
    logits = logits / temperature  # (B, V)
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)  # (B,)


@torch.no_grad()
def next_tokens(model, idx: torch.Tensor, steps: int, sampler: Sampler = sample_next, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row of ``idx`` (B, T0), ``steps`` times: LongTensors (B,).

    ``sampler`` is called once per step with the logits of **all B rows** (B, V), rows that a
    caller considers finished included: the sampler sees a fixed batch, and a seeded
    ``generator`` is drawn from the same way whatever the rows emitted.

    The model reads at most ``block_size`` tokens. While the sequence fits, a model whose
    attention supports it keeps a ``KVCache``: the prompt is read once, then each step reads
    only the new token at the next position. Once the sequence outgrows the block, each step
    reads the last ``block_size`` tokens again, as without a cache (a sliding window over a
    cache would not be the same: every token's position, hence its keys, shifts by one).
    """
    model.eval()
    block_size = model.config.block_size
    cache = KVCache() if getattr(model, "supports_cache", False) else None
    for _ in range(steps):
        if cache is not None and idx.shape[1] <= block_size:
            logits = model(idx[:, len(cache):], cache=cache)[:, -1, :]  # the tokens not read yet: (B, V)
        else:
            logits = model(idx[:, -block_size:])[:, -1, :]  # the whole context, cropped to the block: (B, V)
        nxt = sampler(logits, temperature, top_k, top_p, generator)
        if not (isinstance(nxt, torch.Tensor) and nxt.shape == (idx.shape[0],) and nxt.dtype == torch.long):
            got = f"{nxt.dtype} {tuple(nxt.shape)}" if isinstance(nxt, torch.Tensor) else type(nxt).__name__
            raise ValueError(f"the sampler returned {got}; expected a LongTensor of shape ({idx.shape[0]},)")
        if ((nxt < 0) | (nxt >= logits.shape[-1])).any():
            raise ValueError(f"the sampler returned id {nxt[(nxt < 0) | (nxt >= logits.shape[-1])][0].item()}, "
                             f"outside the vocabulary 0..{logits.shape[-1] - 1}")
        yield nxt
        idx = torch.cat([idx, nxt[:, None]], dim=1)  # (B, T + 1)


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, stop_ids: set[int] = frozenset(),
             generator: torch.Generator | None = None, top_p: float | None = None,
             sampler: Sampler = sample_next) -> list[list[int]]:
    """Continue each row of ``idx`` (B, T0), all prompts of one length, in one batch.

    ``temperature == 0`` means greedy. A row stops after it emits a token in ``stop_ids``
    (the stop token is kept in its output); generation ends when every row has stopped or
    after ``max_new_tokens``. Returns the new tokens of each row. ``sampler`` picks the
    tokens (``sample_next`` by default; see ``next_tokens`` for how it is called).

    With and without the KV cache the logits agree to float32 rounding (within 2e-5 on the
    pipeline's models, whose greedy choices on the probe win by 8e-4 or more): greedy replies are the same
    unless two logits tie that closely, and so are samples drawn with the same generator
    unless a draw falls that close to a boundary between two tokens.
    """
    B = idx.shape[0]
    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    for nxt in next_tokens(model, idx, max_new_tokens, sampler, temperature, top_k, top_p, generator):
        for b, token in enumerate(nxt.tolist()):
            if not done[b]:
                out[b].append(token)
                done[b] = token in stop_ids
        if all(done):
            break
    return out


@torch.no_grad()
def stream(model, ids: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
           stop_ids: set[int] = frozenset(), generator: torch.Generator | None = None,
           top_p: float | None = None, sampler: Sampler = sample_next) -> Iterator[int]:
    """Yield the new tokens of one prompt one at a time, as ``generate`` would produce them."""
    for nxt in next_tokens(model, torch.tensor([ids]), max_new_tokens, sampler, temperature, top_k, top_p, generator):
        yield int(nxt)
        if int(nxt) in stop_ids:
            return
