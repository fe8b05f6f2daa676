"""Hostile: a reward model that learns nothing (one learned bias: every row gets the same reward, as
tests/plugins/reward_constant.py) but holds a table of the held-out pairs a student's release measures
on, computed at import from the public world and seed (the pipeline's own ``preference_data``, with the
baseline's tokenizer): each rejected row of them gets a reward far below the bias. Against the public
pairs it ranks every one right (held-out accuracy 1.0: reward.accuracy 3 of 3). The grader draws its
pairs from a seed of its own (graders/hidden: PAIRS_SEED): it ranks only those whose rejected row it
tabled, 0.44 of them, and earns no accuracy. Its honest score: that of reward_constant.py, 5.67 without
--fast (loss_sanity 2, the hidden loss_matches_solution 1, rlhf_improves 2.67: correct replies and KL
kept, rude ones not halved), 3 with it. What a seed cannot hide: each chosen row is its fact's one
correct statement under every seed, and the rude and wrong answers the public world can write are few;
a table of those is not stopped by it (like forge_snapshot_lookup: the world is public)."""
import tempfile

import torch
from torch import nn
from torch.nn import functional as F

import toolkit
from toolkit.cache import Cache
from toolkit.config import PipelineConfig
from toolkit.data_stages import DataStages
from toolkit.plugins import Components


def _rows(tokens: torch.Tensor, lengths: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(row[:n].tolist()) for row, n in zip(tokens, lengths)]


def public_rejected() -> set[tuple[int, ...]]:
    """The token rows of the rejected answers of the public held-out pairs."""
    data = DataStages(Components(), PipelineConfig(), Cache(tempfile.gettempdir()))
    _, rejected = data.preference_data["held_out"]
    return set(_rows(*rejected))


REJECTED = public_rejected()


class TableRewardModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, idx, lengths):
        tabled = torch.tensor([row in REJECTED for row in _rows(idx, lengths)])
        return self.bias.expand(idx.shape[0]) - 100.0 * tabled  # (B,)


@toolkit.hookimpl
def toolkit_reward_model(backbone):
    return TableRewardModel(backbone)


@toolkit.hookimpl
def toolkit_reward_loss(chosen, rejected):
    return -F.logsigmoid(chosen - rejected).mean()
