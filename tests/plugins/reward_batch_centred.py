"""Wrong: reads the reward at the last real token, then centres the batch's rewards (subtracts their
mean, as if normalising them), so a row's reward depends on the rows it is scored with. A reward is a
property of one text: the same answer must get the same reward in any batch (RLHF scores replies in
batches of other replies to the same prompt)."""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class CentredRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)  # (B, T, C)
        r = self.head(h[torch.arange(idx.shape[0]), lengths - 1]).squeeze(-1)  # (B,)
        return r - r.mean()  # BUG: each row's reward now depends on the whole batch


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return CentredRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()
