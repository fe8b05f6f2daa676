"""The pipeline's data stages: the world, its texts, the tokenizer trained on them, and the token
data the models train on (``toolkit.pipeline.Pipeline`` builds its models from them); and what a
model does on them (its held-out loss, its replies to the probe's prompts).

Each is built once per process (``toolkit.cache.memo``) under what it depends on, and each
pipeline gets its own copy. The tokenizer and the stream are shared only for the baseline's
tokenizer, whose training is known to depend on nothing else: a submission's tokenizer is trained
per pipeline. Those two also go to the cache folder (``Cache.stored``): building them takes about 4 s.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import cached_property

import torch

from toolkit import cache, probe, rlhf
from toolkit import template as template_module
from toolkit import tokenizer as tokenizer_module
from toolkit import world as world_module
from toolkit.baselines import WholeWordTokenizer
from toolkit.config import PipelineConfig
from toolkit.model import GPT, GPTConfig
from toolkit.plugins import Components, PluginError
from toolkit.template import encode_batch, render_chat, render_document
from toolkit.train import stream_loss
from toolkit.world import World

MAX_VOCAB = 1 << 16  # the largest vocabulary a tokenizer may report (the model allocates vocab x width)
DATA_CODE = (world_module, template_module, tokenizer_module, WholeWordTokenizer)
"""What the baseline's tokenizer and the stream are made by: its digest is part of their key in the cache."""
BASE_DATA = ("world", "corpus", "conversations", "tokenizer", "stream", "model_config")
"""The data stages the base model is built from (``Pipeline.sharing_base`` shares them)."""
PAIRS_PER_FACT = {"train": 4, "held_out": 8}
"""Preference pairs drawn per fact (a pair drawn twice is kept once): up to 8 per held-out fact, so that
the accuracy measured on them is not a coin's worth of noise."""


class DataStages:
    """The data of one run of the pipeline, built when first asked for."""

    def __init__(self, components: Components, config: PipelineConfig, store: cache.Cache):
        self.components, self.config, self.store = components, config, store
        self.timings: dict[str, float] = {}

    def _stored(self, key: tuple, build):
        """``cache.memo``, and kept in the cache folder as ``data-<hash>.pt`` (tensors and plain containers)
        for the next process, under ``key`` and the code the data is made by (``DATA_CODE``)."""
        name = lambda: cache.key(repr(key), cache.code_digest(*DATA_CODE))  # noqa: E731
        return cache.memo(key, lambda: self.store.stored(f"data-{name()}.pt", build))

    @cached_property
    def world(self) -> World:
        return World(seed=self.config.seed)

    @cached_property
    def _world_key(self) -> tuple:
        return repr(self.world), self.config.seed  # every field of the world; the seed of its data sets

    @cached_property
    def corpus(self) -> str:
        def build():
            docs = self.world.pretraining_documents(self.config.n_docs, seed=self.config.seed)
            return "".join(render_document(d) for d in docs)
        return cache.memo(("corpus", *self._world_key, self.config.n_docs), build)

    @cached_property
    def conversations(self) -> list[str]:
        """The SFT conversations, rendered in the chat template."""
        return cache.memo(("conversations", *self._world_key),
                          lambda: [render_chat(c) for c in self.world.sft_conversations(seed=self.config.seed)])

    @cached_property
    def _tokenizer_key(self) -> tuple | None:
        """The key of the trained tokenizer and the stream, or None: not shared (not the baseline's)."""
        baseline = (self.components.source("tokenizer") == "baseline.tokenizer"
                    and type(self.components.tokenizer()) is WholeWordTokenizer)
        return (*self._world_key, self.config.n_docs, self.config.vocab_size) if baseline else None

    @cached_property
    def tokenizer(self):
        """Trained on all the text the pipeline uses: the corpus and the conversations."""
        def build():
            tok = self.components.tokenizer()
            t0 = time.perf_counter()
            tok.train(self.corpus + "".join(self.conversations), self.config.vocab_size)
            self.timings["tokenizer"] = time.perf_counter() - t0
            return tok
        key = self._tokenizer_key
        if key is None:
            return build()
        tok = WholeWordTokenizer()
        tok.words = self._stored(("tokenizer", *key), lambda: build().words)
        return tok

    @cached_property
    def stream(self) -> torch.Tensor:
        """The corpus as one stream of token ids; the last 5% is held out for validation."""
        build = lambda: torch.tensor(self.tokenizer.encode(self.corpus), dtype=torch.long)  # noqa: E731
        key = self._tokenizer_key
        return build() if key is None else self._stored(("stream", *key), build)

    @property
    def train_stream(self) -> torch.Tensor:
        return self.stream[: int(0.95 * len(self.stream))]

    @property
    def val_stream(self) -> torch.Tensor:
        return self.stream[int(0.95 * len(self.stream)) :]

    @cached_property
    def model_config(self) -> GPTConfig:
        vocab = self.tokenizer.vocab_size
        if type(vocab) is not int or not 256 < vocab <= MAX_VOCAB:
            raise PluginError(f"{self.components.source('tokenizer')}: the tokenizer's vocab_size is {vocab!r}; "
                              f"expected an int from 257 to {MAX_VOCAB}")
        return replace(self.config.model, vocab_size=vocab)

    @cached_property
    def sft_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The SFT conversations as tokens (N, T) and the plugin's mask (N, T-1)."""
        tokens, _ = encode_batch(self.tokenizer, self.conversations, self.model_config.block_size + 1)
        mask = self.components.sft_mask(tokens, dict(self.tokenizer.special_tokens))
        return tokens, check_mask(mask, tokens, self.components.source("sft_mask"))

    @cached_property
    def preference_data(self) -> dict[str, tuple]:
        """Preference pairs as ((tokens, lengths) chosen, (tokens, lengths) rejected), split by fact:
        ``train`` on the facts of SFT, ``held_out`` on the facts held out of it, drawn from the seed."""
        return {split: self.preference_pairs(self.config.seed, split) for split in PAIRS_PER_FACT}

    def preference_pairs(self, seed: int, split: str) -> tuple:
        """The pairs of ``split`` drawn from ``seed`` (``World.preference_pairs``, ``PAIRS_PER_FACT[split]``
        draws per fact), encoded as the reward model reads them: ((tokens, lengths) chosen, (tokens, lengths)
        rejected). The grader draws the held-out ones it measures on from a seed of its own."""
        held = {self.world.question(f) for f in self.world.held_out}
        pairs = [p for p in self.world.preference_pairs(seed, PAIRS_PER_FACT[split])
                 if (p[0] in held) == (split == "held_out")]
        qs, chosen, rejected = zip(*pairs)
        T = self.model_config.block_size
        return rlhf.encode_replies(self.tokenizer, qs, chosen, T), rlhf.encode_replies(self.tokenizer, qs, rejected, T)

    # -- what a model does on this data, with the sampler component ---------------------------
    def val_loss(self, model: GPT) -> float:
        return stream_loss(model, self.val_stream)

    def probe(self, model: GPT, chat: bool, prompts: list[probe.Prompt], temperature: float | None = None,
              top_k: int | None = None, top_p: float | None = None) -> list[probe.Generation]:
        """Generate a reply to each prompt with the sampler component and classify it
        (``probe_temperature`` by default)."""
        t = self.config.probe_temperature if temperature is None else temperature
        return probe.run_probe(model, self.tokenizer, self.world, prompts, chat=chat, temperature=t, top_k=top_k,
                               top_p=top_p, seed=self.config.seed, sampler=self.components.sample)

    def user_turn(self, model: GPT, n: int = 30) -> int:
        """``probe.run_user_turn`` with the sampler component: how many of ``n`` bare user tags get a question."""
        return probe.run_user_turn(model, self.tokenizer, self.world, n=n, seed=self.config.seed,
                                   sampler=self.components.sample)


def check_mask(mask, tokens: torch.Tensor, plugin: str) -> torch.Tensor:
    """The mask as a BoolTensor (N, T-1), or a PluginError that says what was wrong."""
    expected = (tokens.shape[0], tokens.shape[1] - 1)
    if not isinstance(mask, torch.Tensor):
        raise PluginError(f"{plugin}: toolkit_sft_mask returned {type(mask).__name__}; expected a BoolTensor of shape {expected}")
    if tuple(mask.shape) != expected:
        hint = " (one per target: tokens[:, 1:])" if tuple(mask.shape) == tuple(tokens.shape) else ""
        raise PluginError(f"{plugin}: toolkit_sft_mask returned shape {tuple(mask.shape)}; expected {expected}{hint}")
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise PluginError(f"{plugin}: toolkit_sft_mask returned values other than 0/1 (dtype {mask.dtype})")
        mask = mask.bool()
    return mask
