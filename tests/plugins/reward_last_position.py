"""Wrong: the reward is read at the last position (T - 1), which is padding for the shorter rows."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class LastPositionRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)
        return self.head(h[:, -1]).squeeze(-1)  # should be h[torch.arange(B), lengths - 1]


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return LastPositionRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()
