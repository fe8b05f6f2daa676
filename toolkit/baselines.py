"""Baseline plugins: deliberately naive, but working, so the pipeline runs without solutions.

Each is registered under a fixed name (``baseline.tokenizer``, ...) and blocked when a
submission provides that component. ``toolkit run --baseline`` grades them: they pass
some checks and fail others, which shows what the assignments ask for.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torch.nn import functional as F

from toolkit import hookimpl
from toolkit.model import Block, SDPAttention  # the baseline's block and attention: they live with the model's cache
from toolkit.sample import sample_next
from toolkit.train import adamw, cross_entropy
from toolkit.tokenizer import Tokenizer, pretokenize, split_special


class WholeWordTokenizer(Tokenizer):
    """Not BPE: the most frequent whole chunks become tokens, anything else falls back to bytes.

    Lossless and fast to train, and on the pipeline's small world its tokens are words, so
    the reference models train quickly. It learns no merges, so the BPE checks fail.
    """

    def __init__(self):
        super().__init__()
        self.words: dict[str, int] = {}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens) + len(self.words)

    def train(self, text: str, vocab_size: int) -> None:
        counts = Counter(
            chunk for part in split_special(text) if part not in self.special_tokens
            for chunk in pretokenize(part) if len(chunk.encode("utf-8")) > 1
        )
        first = 256 + len(self.special_tokens)
        common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: vocab_size - first]
        # Frequency picks the words; their ids follow the alphabet, so a small change in the
        # training text (one answer more or less) does not renumber the whole vocabulary.
        self.words = {w: first + i for i, w in enumerate(sorted(w for w, _ in common))}

    def encode(self, text: str) -> list[int]:
        ids = []
        for part in split_special(text):
            if part in self.special_tokens:
                ids.append(self.special_tokens[part])
                continue
            for chunk in pretokenize(part):
                ids += [self.words[chunk]] if chunk in self.words else list(chunk.encode("utf-8"))
        return ids

    def decode(self, ids: list[int]) -> str:
        pieces = {i: s.encode("utf-8") for s, i in {**self.special_tokens, **self.words}.items()}
        return b"".join(pieces.get(i, bytes([i]) if i < 256 else b"") for i in ids).decode("utf-8", errors="replace")


class MeanPoolReward(nn.Module):
    """A scalar head on the mean of the hidden states of the real tokens."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)  # (B, T, C)
        real = (torch.arange(idx.shape[1]) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        pooled = (h * real).sum(1) / lengths[:, None]  # (B, C)
        return self.head(pooled).squeeze(-1)  # (B,)


class BaselineTokenizer:
    @hookimpl
    def toolkit_tokenizer(self):
        return WholeWordTokenizer()


class BaselineAttention:
    @hookimpl
    def toolkit_attention(self, config):
        return SDPAttention(config)


class BaselineBlock:
    @hookimpl
    def toolkit_block(self, config, attention):
        """The reference block (it reproduces the shipped models, and the KV cache knows it)."""
        return Block(config, attention)


class BaselineOptimizer:
    @hookimpl
    def toolkit_cross_entropy(self, logits, targets):
        """torch's own cross-entropy (the shipped models were trained with it)."""
        return cross_entropy(logits, targets)

    @hookimpl
    def toolkit_optimizer(self, params, lr, betas, eps, weight_decay):
        """torch's own AdamW."""
        return adamw(params, lr, betas, eps, weight_decay)


class BaselineSFTMask:
    @hookimpl
    def toolkit_sft_mask(self, tokens, special_tokens):
        """No mask: every target that is not padding counts, the user's turns included."""
        return tokens[:, 1:] != special_tokens["<|pad|>"]


class BaselineReward:
    @hookimpl
    def toolkit_reward_model(self, backbone):
        return MeanPoolReward(backbone)

    @hookimpl
    def toolkit_reward_loss(self, chosen, rejected):
        """Regression to fixed targets (+1 chosen, -1 rejected) instead of a comparison."""
        return 0.5 * (F.mse_loss(chosen, torch.ones_like(chosen)) + F.mse_loss(rejected, -torch.ones_like(rejected)))


class BaselineSampler:
    @hookimpl
    def toolkit_sample(self, logits, temperature, top_k, top_p, generator):
        """The toolkit's own sampler: correct, but not the student's (``sampler.written_out`` fails)."""
        return sample_next(logits, temperature, top_k, top_p, generator)
