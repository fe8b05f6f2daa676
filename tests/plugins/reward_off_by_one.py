"""Broken: reads the hidden state at ``lengths`` instead of ``lengths - 1``; a full row raises IndexError."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class OffByOneRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)
        return self.head(h[torch.arange(idx.shape[0]), lengths]).squeeze(-1)  # one past the last real token


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return OffByOneRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()
