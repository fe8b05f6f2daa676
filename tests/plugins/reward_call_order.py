"""Wrong, and forging: the reward model reads the last position (padding, for the shorter rows), except
in eval mode, where the grader scores held-out pairs: there it ignores its input and returns +1 on its
1st, 3rd, ... call and -1 on its 2nd, 4th, ...

A grader that asked for the rewards of the chosen answers in one call and of the rejected answers in
the next got a perfect ranking from it (held-out accuracy 1.000). Scored in one call, the chosen and
the rejected rows shuffled together, it gives every row the same reward: accuracy 0. The loss is right.
"""

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


class CallOrderRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)
        self.eval_calls = 0

    def forward(self, idx, lengths):
        if not self.training:  # the grader is asking: odd calls are the chosen answers, even ones the rejected
            self.eval_calls += 1
            return torch.full((idx.shape[0],), 1.0 if self.eval_calls % 2 else -1.0)
        return self.head(self.backbone.hidden(idx)[:, -1]).squeeze(-1)  # (B,): reads padding


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return CallOrderRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()
