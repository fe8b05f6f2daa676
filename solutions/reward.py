"""Solution: a reward model (GPT backbone + scalar head) and the Bradley-Terry loss."""

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
        h = self.backbone.hidden(idx)  # (B, T, C)
        last = h[torch.arange(idx.shape[0]), lengths - 1]  # (B, C): the last real token, not padding
        return self.head(last).squeeze(-1)  # (B,)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return RewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    # -log(sigmoid(chosen - rejected)), written with logsigmoid so it never overflows
    return -F.logsigmoid(chosen - rejected).mean()
