"""Wrong: the loss only pushes the chosen answer's reward up; the rejected answer is never used."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class LastTokenRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)  # (B, T, C)
        return self.head(h[torch.arange(len(idx)), lengths - 1]).squeeze(-1)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return LastTokenRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen).mean()  # should be -logsigmoid(chosen - rejected)
