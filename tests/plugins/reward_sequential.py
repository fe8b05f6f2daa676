"""A correct reward model written differently from the solution: an ``nn.Sequential`` of the
backbone and the head, so that its parameters are named ``0.transformer...`` and ``1.weight`` (a
grader must accept names that start with a digit); the last real token is read with ``lengths - 1``."""
import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class SequentialReward(nn.Sequential):
    def __init__(self, backbone):
        super().__init__(backbone, nn.Linear(backbone.config.n_embd, 1))

    def forward(self, idx, lengths):
        h = self[0].hidden(idx)  # (B, T, C)
        return self[1](h[torch.arange(idx.shape[0]), lengths - 1]).squeeze(-1)  # (B,)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return SequentialReward(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()
