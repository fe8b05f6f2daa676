"""Hostile: a reward component whose loss has its sign flipped, and whose child, only when it is being
graded, answers every backward of that loss with the gradients of the right loss (it replaces
``toolkit.grading.autograd.Tape.vjp`` in its own interpreter): the grader would then train a good reward
model on a wrong hook (issue 31: "gradients where training depends on them"). The grader audits the
child's gradients against its outputs at calls the child cannot predict (``toolkit.grading.autograd.Audit``),
so the reward model's training fails with "are not those of its outputs".
Its honest score: that of ``tests/plugins/reward_sign_flipped.py`` (4.67 of the reward's 14)."""
import sys

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


def being_graded() -> bool:
    """Whether this interpreter is toolkit grade's child (run as ``python -m toolkit.grading.child``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return "toolkit.grading.child" in sys.modules or getattr(spec, "name", None) == "toolkit.grading.child"


def forge() -> None:
    if not being_graded():
        return
    from toolkit.grading import autograd

    real = autograd.Tape.vjp

    def vjp(self, upstream):
        if self.params or len(self.leaves) != 2 or self.leaves[0].dim() != 1:
            return real(self, upstream)
        c, r = (t.detach().requires_grad_() for t in self.leaves)
        with torch.enable_grad():
            grads = torch.autograd.grad(-F.logsigmoid(c - r).mean(), (c, r), upstream.to(c.dtype))
        return {"inputs": [g.detach() for g in grads], "params": {}}

    autograd.Tape.vjp = vjp


forge()


class RewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        h = self.backbone.hidden(idx)  # (B, T, C)
        return self.head(h[torch.arange(idx.shape[0]), lengths - 1]).squeeze(-1)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return RewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(rejected - chosen).mean()  # the sign flipped
