"""Wrong: Bradley-Terry on sigmoid(reward) as the strengths, not exp(reward); not shift-invariant."""

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
    # P(chosen wins) = s_c / (s_c + s_r) with s = sigmoid(r): ln 2 when equal, right sign,
    # but adding a constant to every reward changes it.
    s_c, s_r = torch.sigmoid(chosen), torch.sigmoid(rejected)
    return -torch.log(s_c / (s_c + s_r)).mean()
