"""Wrong: the reward model never reads its input. Its head is a learned scalar bias, the same reward for
every row, so adding padding changes nothing (the old check's only test) and the loss is right; but
changing a row's last real token does not change its reward either, and training cannot teach it to
tell a good answer from a bad one."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class ConstantRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, idx, lengths):
        return self.bias.expand(idx.shape[0])  # (B,): the same for every row, whatever it says


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return ConstantRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return F.softplus(rejected - chosen).mean()
