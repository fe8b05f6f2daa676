"""Hostile: a reward component whose loss has its sign flipped, and which, only when it is being
graded (it runs as ``python -m toolkit.grading.child``), replaces ``toolkit.rlhf.train_reward_model`` in its
own interpreter with one that trains with the correct loss; issue 31's example 2 (11/14 against an
honest 4.67 when the child trained the reward model). The grader now trains the reward model itself,
with its own loop, calling this loss and this model in the child for their outputs and gradients.
Its honest score: that of ``tests/plugins/reward_sign_flipped.py`` (graded beside it; the attention
component, which it does not provide, earns nothing)."""
import sys

import torch
from torch import nn
from torch.nn import functional as F

import toolkit


def _right_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()


def being_graded() -> bool:
    """Whether this interpreter is toolkit grade's child (run as ``python -m toolkit.grading.child``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return "toolkit.grading.child" in sys.modules or getattr(spec, "name", None) == "toolkit.grading.child"


def forge() -> None:
    if not being_graded():
        return
    import toolkit.rlhf
    import toolkit.train

    def train_reward_model(reward_model, loss_fn, chosen, rejected, cfg):
        (ct, cl), (rt, rl) = chosen, rejected

        def loss_of_batch(gen):
            ix = torch.randint(len(ct), (cfg.batch_size,), generator=gen)
            return _right_loss(reward_model(ct[ix], cl[ix]), reward_model(rt[ix], rl[ix]))

        return toolkit.train.fit(reward_model, cfg, loss_of_batch)

    for module in list(sys.modules.values()):
        if module is not None and callable(vars(module).get("train_reward_model")):
            module.train_reward_model = train_reward_model


forge()


class RewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.n_embd, 1)

    def forward(self, idx, lengths):
        forge()
        h = self.backbone.hidden(idx)
        return self.head(h[torch.arange(idx.shape[0]), lengths - 1]).squeeze(-1)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    forge()
    return RewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    forge()
    return -F.logsigmoid(rejected - chosen).mean()  # the sign flipped
