"""Wrong: two independent terms, -log sigmoid(chosen) - log(1 - sigmoid(rejected)), not a comparison."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class RewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)
        return self.head(h[torch.arange(idx.shape[0]), lengths - 1]).squeeze(-1)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return RewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    # "chosen should be good, rejected should be bad": depends on each reward, not on their difference
    return (-F.logsigmoid(chosen) - F.logsigmoid(-rejected)).mean()
