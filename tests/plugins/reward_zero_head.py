"""A correct reward component written differently: the head starts at zero (every reward is 0 until
training moves it, a common choice) and reads the last real token with ``take_along_dim``; the loss is
the solution's. A check that asks whether the reward reads its input must not mistake the
zero head for a model that ignores it."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class ZeroHeadRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)  # (B, T, C)
        last = torch.take_along_dim(h, (lengths - 1).view(-1, 1, 1), dim=1).squeeze(1)  # (B, C)
        return self.head(last).squeeze(-1)  # (B,)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return ZeroHeadRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()
