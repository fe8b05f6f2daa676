"""A small GPT in the style of nanoGPT's model.py. Its blocks (and their attention) come from plugins.

Shapes: B batch, T time (sequence length), C channels (n_embd), V vocabulary size,
nh heads, hs head size (C // nh).

Generation can keep a ``KVCache``: the keys and values of the tokens read so far, so that
each new token is run through the model alone. A plugin's attention only promises
``forward(x)``, (B, T, C) -> (B, T, C), so the cache is used only when every layer is the
baseline's ``SDPAttention``, defined here beside the cache that repeats its maths
(``GPT.supports_cache``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 1024
    block_size: int = 64  # longest sequence the model reads
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class SDPAttention(nn.Module):
    """Causal self-attention through torch's fused kernel, as nanoGPT does."""

    def __init__(self, config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class KVCache:
    """The keys and values of every layer for the tokens a GPT has read so far.

    ``layers[i]`` is layer i's ``(k, v)``, each (B, nh, T, hs). A model called with a cache
    reads only the tokens that follow the cached ones, at the positions after them, and
    appends their keys and values.
    """

    def __init__(self):
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __len__(self) -> int:
        """How many tokens are cached."""
        return self.layers[0][0].shape[2] if self.layers else 0


def cached_attention(attn: SDPAttention, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
    """``SDPAttention.forward`` for new tokens x (B, T, C) that follow the tokens in ``cache``."""
    B, T, C = x.shape
    q, k, v = attn.c_attn(x).split(C, dim=2)  # each (B, T, C)
    q, k, v = (t.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    if layer < len(cache.layers):
        past_k, past_v = cache.layers[layer]
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # (B, nh, P + T, hs)
        cache.layers[layer] = (k, v)
    else:
        cache.layers.append((k, v))
    P = k.shape[2] - T  # tokens cached before these
    # new token t (at position P + t) sees keys 0 .. P + t; with nothing cached that is is_causal
    mask = None if P == 0 or T == 1 else torch.ones(T, P + T, dtype=torch.bool).tril(P)  # (T, P + T)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=P == 0)  # (B, nh, T, hs)
    return attn.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    """The baseline's pre-norm block (``toolkit_block``): ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig, attention: nn.Module):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = attention
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        """x (B, T, C) -> (B, T, C). With ``cache``, x are the tokens after the cached ones (``layer``: this block's)."""
        a = self.ln_1(x)
        x = x + (self.attn(a) if cache is None else cached_attention(self.attn, a, cache, layer))
        x = x + self.mlp(self.ln_2(x))
        return x


def reference_block(config: GPTConfig) -> Block:
    """The baseline's block around the baseline's attention: the reference GPT's."""
    return Block(config, SDPAttention(config))


class GPT(nn.Module):
    """Embeddings, ``n_layer`` blocks made by ``make_block(config)`` (the block component's, around the
    attention component's), the final LayerNorm and the head, tied to the token embedding."""

    def __init__(self, config: GPTConfig, make_block: Callable[[GPTConfig], nn.Module] = reference_block):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(make_block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def supports_cache(self) -> bool:
        """Whether ``forward(idx, cache=...)`` works: every block is exactly the baseline's ``Block`` and
        its attention the baseline's ``SDPAttention`` (not subclasses, which may compute something else)."""
        return all(type(block) is Block and type(block.attn) is SDPAttention for block in self.h)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states: idx (B, T) -> (B, T, C). With ``cache``: idx are the tokens after
        the cached ones, and their keys and values are added to it."""
        assert cache is None or self.supports_cache, "this model's attention does not support a KV cache"
        B, T = idx.shape
        start = 0 if cache is None else len(cache)  # position of idx's first token
        T_all = start + T
        assert T_all <= self.config.block_size, f"sequence of {T_all} tokens > block_size {self.config.block_size}"
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(x) if cache is None else block(x, cache, i)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Next-token logits: idx (B, T) -> (B, T, V); ``cache``: see ``hidden``."""
        return self.lm_head(self.hidden(idx, cache))
