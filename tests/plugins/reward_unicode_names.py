"""A correct reward model whose names are not ASCII identifiers: its head is the submodule
``"tête de lecture"`` and its bias the parameter ``"é"``. ``nn.Module`` accepts any name without a dot,
so a grader must carry such names across its protocol (escaped where it shows them), never refuse them."""
import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class UnicodeReward(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.add_module("tête de lecture", nn.Linear(backbone.config.n_embd, 1, bias=False))
        self.register_parameter("é", nn.Parameter(torch.zeros(1)))

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)  # (B, T, C)
        last = h[torch.arange(idx.shape[0]), lengths - 1]  # (B, C): the last real token of each row
        return getattr(self, "tête de lecture")(last).squeeze(-1) + getattr(self, "é")  # (B,)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return UnicodeReward(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return F.softplus(rejected - chosen).mean()
