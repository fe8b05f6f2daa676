"""The components a student implements, declared once; everything else reads this table.

A component is what a student hands in and is graded on as a whole. Its entry says:

* ``hooks``: the hooks of ``toolkit.hookspecs`` it is made of (a submission provides all or none);
* ``baseline``: the naive but working plugin (``toolkit.baselines``) that stands in when a
  submission does not provide it;
* ``stages``: the stages of the reference pipeline whose building calls its hooks
  (``toolkit.pipeline.USES`` is read from it);
* ``starts_from``: the baselines' models its checks start from, which no submission changes (the
  class grader prepares them once; ``toolkit run`` checks the components that start from the chat
  model in a second process: ``toolkit.runner.SECOND_LANE``);
* ``data_only``: its hooks only return data (a mask): ``toolkit grade`` trains with it in the grader;
* ``wraps``: components whose module a hook of it takes, as the argument of that name, built for the
  same ``config`` (the block takes the attention): ``Components`` builds it when the call leaves it out.

Its files are found by name (``toolkit.paths``): the checks in the module ``graders.<name>``
(``CHECKS``, the package of checks the kit is handed, like pytest's ``-p``), the snapshot
``graders/snapshots/<name>.json``, the instructor's solution ``solutions/<name>.py`` and the nbgrader
source notebook ``assignments/<name>/<name>.ipynb``.

The plugin manager, ``Components`` and its remote twin, the pipeline, the runner's lanes, the CLI's
``-c`` choices, the class grader, the exports, the release and the gradebook all read
``COMPONENTS``; adding a component is one entry here (see CONTRIBUTING.md, "Adding a component").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit import baselines, paths

CHECKS = "graders"
"""The package of checks: one module per component (``Component.grader``), ``calibration`` (the
solution's seed sweep) and, in the instructor's copy, ``hidden``. The kit imports it by this name only."""
HIDDEN_CHECKS = f"{CHECKS}.hidden"
CALIBRATION = f"{CHECKS}.calibration"


@dataclass(frozen=True)
class Component:
    name: str
    hooks: tuple[str, ...]  # hook names of toolkit.hookspecs; a submission provides all of them or none
    baseline: type  # plugin class registered as ``baseline.<name>``
    summary: str  # one line, for listings
    stages: tuple[str, ...]  # the pipeline's stages whose building calls its hooks (later ones included)
    starts_from: tuple[str, ...] = ()  # the baselines' models (pipeline stages) its checks start from
    data_only: bool = False  # its hooks only return data (a mask): ``toolkit grade`` trains with it in the grader
    wraps: tuple[str, ...] = ()  # components whose module its hook takes (argument of that name, same config)

    @property
    def grader(self) -> str:
        """The module of its checks, imported by this name."""
        return f"{CHECKS}.{self.name}"

    @property
    def solution(self) -> Path:
        return paths.solution(self.name)

    @property
    def notebook(self) -> Path:
        return paths.notebook(self.name)

    @property
    def snapshot(self) -> Path:
        return paths.snapshot(self.name)


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("tokenizer", ("toolkit_tokenizer",), baselines.BaselineTokenizer,
              "byte-level BPE: train, encode, decode",
              stages=("tokenizer", "base_model", "chat_model", "reward_model", "rlhf_model")),
    Component("attention", ("toolkit_attention",), baselines.BaselineAttention,
              "causal multi-head self-attention",
              stages=("base_model", "chat_model", "reward_model", "rlhf_model"), starts_from=("base_model",)),
    Component("block", ("toolkit_block",), baselines.BaselineBlock,
              "pre-norm transformer block: LayerNorm, attention, MLP, residuals",
              stages=("base_model", "chat_model", "reward_model", "rlhf_model"), starts_from=("base_model",),
              wraps=("attention",)),
    Component("optimizer", ("toolkit_cross_entropy", "toolkit_optimizer"), baselines.BaselineOptimizer,
              "the training step: next-token cross-entropy and AdamW",
              stages=("base_model", "chat_model", "reward_model", "rlhf_model")),
    Component("sft_mask", ("toolkit_sft_mask",), baselines.BaselineSFTMask,
              "which targets count in the SFT loss",
              stages=("chat_model", "rlhf_model"), starts_from=("base_model",), data_only=True),
    Component("reward", ("toolkit_reward_model", "toolkit_reward_loss"), baselines.BaselineReward,
              "reward model head and pairwise preference loss",
              stages=("reward_model", "rlhf_model"), starts_from=("base_model", "chat_model")),
    Component("sampler", ("toolkit_sample",), baselines.BaselineSampler,
              "next-token sampling: greedy, temperature, top-k, top-p",
              stages=("rlhf_model",), starts_from=("chat_model",)),
)}

HOOKS: dict[str, Component] = {hook: c for c in COMPONENTS.values() for hook in c.hooks}
"""Hook name -> the component it belongs to."""


def method(hook: str) -> str:
    """The name ``Components`` calls a hook by: ``toolkit_sft_mask`` -> ``sft_mask``."""
    return hook.removeprefix("toolkit_")


def is_public_grader(module: str) -> bool:
    """Is ``module`` a module of the public checks (one a child may import: not a hidden one)?"""
    return module.startswith(f"{CHECKS}.") and not module.startswith(HIDDEN_CHECKS)
