"""A correct reward component written differently from the solution: gather and softplus."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class GatherRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.score = nn.Linear(backbone.config.n_embd, 1, bias=False)

    def forward(self, idx, lengths):
        rewards = self.score(self.backbone.hidden(idx)).squeeze(-1)  # (B, T): a reward at every position
        return rewards.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)  # (B,): the last real one


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return GatherRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return F.softplus(rejected - chosen).mean()  # softplus(-z) = -log sigmoid(z)
