"""Wrong: the loss with its sign flipped; training would push the rejected answers up."""

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
    return -F.logsigmoid(rejected - chosen).mean()  # should be chosen - rejected
