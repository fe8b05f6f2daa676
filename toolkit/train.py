"""Training loops: pretraining on a token stream, and supervised fine-tuning on chats.

Both are plain loops (AdamW, linear warm-up, cosine decay) in the nanoGPT style; every
random choice comes from a seeded ``torch.Generator``. The optimizer and the training loss are the
optimizer component's (``toolkit_optimizer``, ``toolkit_cross_entropy``): a loop takes them as
arguments, and ``adamw`` and ``cross_entropy`` below are the baseline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.1
    seed: int = 0
    replay_batch_size: int = 0  # SFT only: pretraining windows mixed into every batch


BETAS = (0.9, 0.95)
EPS = 1e-8

Optimizer = Callable[..., torch.optim.Optimizer]  # (params, lr, betas, eps, weight_decay), as toolkit_optimizer
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B, T, V), targets (B, T)) -> (), as toolkit_cross_entropy


def adamw(params, lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's AdamW: the baseline's ``toolkit_optimizer``."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T): the baseline's ``toolkit_cross_entropy``."""
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(model, cfg: TrainConfig, loss_of_batch: Callable[[torch.Generator], torch.Tensor],
        on_step: Callable[[int, float], None] | None = None, optimizer: Optimizer = adamw) -> list[float]:
    """The loop every training stage shares: ``cfg.steps`` steps of ``optimizer`` (AdamW) on
    ``loss_of_batch(gen)``, the learning rate set before each (``lr_at``); the losses."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = optimizer(list(model.parameters()), cfg.lr, BETAS, EPS, cfg.weight_decay)
    model.train()
    losses = []
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = loss_of_batch(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
    model.eval()
    return losses


def stream_batch(stream: torch.Tensor, block_size: int, batch_size: int, gen: torch.Generator):
    """Random windows of a 1-D token stream: inputs and targets (B, T), shifted by one."""
    ix = torch.randint(len(stream) - block_size - 1, (batch_size,), generator=gen)
    x = torch.stack([stream[i : i + block_size] for i in ix])
    y = torch.stack([stream[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


def next_token_loss(model, x: torch.Tensor, y: torch.Tensor, loss: Loss = cross_entropy) -> torch.Tensor:
    """Mean cross-entropy (``loss``) of the model's predictions for inputs ``x`` against targets ``y`` (B, T)."""
    return loss(model(x), y)  # logits (B, T, V)


def pretrain(model, stream: torch.Tensor, cfg: TrainConfig, on_step=None, optimizer: Optimizer = adamw,
             loss: Loss = cross_entropy) -> list[float]:
    """Next-token prediction on random windows of ``stream``, with ``loss`` and ``optimizer``. Returns the loss per step."""
    T = model.config.block_size

    def loss_of_batch(gen):
        return next_token_loss(model, *stream_batch(stream, T, cfg.batch_size, gen), loss)

    return fit(model, cfg, loss_of_batch, on_step, optimizer)


def masked_loss_sum(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over the targets where ``mask`` is True. Shapes (B, T, V), (B, T), (B, T)."""
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)
    return (per_token * mask.to(per_token.dtype)).sum()


def reach(mask: torch.Tensor) -> torch.Tensor:
    """(N,): how many positions of each row the loss needs: up to its last True target (at least 1).
    Attention is causal, so the positions after it change nothing the loss sees."""
    positions = torch.arange(1, mask.size(1) + 1)  # (T,)
    return (mask * positions).amax(dim=1).clamp(min=1)


def by_length(ix: torch.Tensor, needed: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """Batch rows ``ix`` in two halves, the shorter and the longer by ``needed`` (``reach``), each with
    the positions it needs: the chats are 15 to 37 tokens long, so one batch cut to its longest row is
    mostly padding."""
    order = ix[torch.argsort(needed[ix], stable=True)]
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    return [(rows, int(needed[rows].max())) for rows in halves if len(rows)]


def sft(model, tokens: torch.Tensor, mask: torch.Tensor, cfg: TrainConfig,
        replay: torch.Tensor | None = None, on_step=None, optimizer: Optimizer = adamw,
        loss: Loss = cross_entropy) -> list[float]:
    """Supervised fine-tuning: ``tokens`` (N, T) chats, ``mask`` (N, T-1) which targets count.

    With ``cfg.replay_batch_size`` > 0, each step also takes the plain next-token loss on
    that many windows of the pretraining stream ``replay``. This "replay" keeps what
    pretraining taught, above all copying the subject of a question into the answer, which
    a few hundred steps on a few hundred chats would otherwise overwrite: the chat model
    then answers facts it never saw in SFT. The mask alone decides what the chat turns teach.
    ``loss`` is the replay's; the masked loss is a sum over chosen targets, the toolkit's own.
    """

    needed = reach(mask)  # (N,)

    def loss_of_batch(gen):
        ix = torch.randint(len(tokens), (cfg.batch_size,), generator=gen)
        # the masked mean over the batch, computed in two halves cut to their length: the same loss, less padding
        total = sum(masked_loss_sum(model(tokens[rows, :T]), tokens[rows, 1:T + 1], mask[rows, :T])
                    for rows, T in by_length(ix, needed))
        mean = total / mask[ix].sum().clamp(min=1)
        if cfg.replay_batch_size and replay is not None:
            mean = mean + next_token_loss(model, *stream_batch(replay, model.config.block_size,
                                                               cfg.replay_batch_size, gen), loss)
        return mean

    return fit(model, cfg, loss_of_batch, on_step, optimizer)


@torch.no_grad()
def stream_loss(model, stream: torch.Tensor, n_batches: int = 8, batch_size: int = 32, seed: int = 1234) -> float:
    """Mean next-token loss on fixed random windows of ``stream`` (a validation loss)."""
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(n_batches):
        losses.append(next_token_loss(model, *stream_batch(stream, model.config.block_size, batch_size, gen)).item())
    return sum(losses) / len(losses)


@torch.no_grad()
def bits_per_byte(model, ids: torch.Tensor, n_bytes: int) -> float:
    """Total next-token loss over ``ids`` (consecutive windows), in bits per byte of the text.

    Loss per token depends on how much text a token holds; bits per byte does not, so it
    compares models trained with different tokenizers.
    """
    T = model.config.block_size
    total = 0.0
    for i in range(0, len(ids) - 1, T):
        x, y = ids[i : i + T], ids[i + 1 : i + 1 + T]
        logits = model(x[: len(y)].unsqueeze(0))  # (1, t, V)
        total += F.cross_entropy(logits[0], y, reduction="sum").item()
    return total / n_bytes / math.log(2)
