"""The components a student implements, declared once; everything else reads this table.

A component is what a student hands in and is graded on as a whole: one or more hooks of
``toolkit.hookspecs``, a naive but working baseline (``toolkit.baselines``) that stands in
when a submission does not provide it, the checks in ``graders/<name>.py`` (snapshot in
``graders/snapshots/<name>.json``), the instructor's solution ``solutions/<name>.py`` and the
nbgrader source notebook ``assignments/<name>/<name>.ipynb``.

The plugin manager, ``Components`` and its remote twin, the CLI's ``-c`` choices, the class
grader, the exports, the release and the gradebook all read ``COMPONENTS``; adding a
component is one entry here (see CONTRIBUTING.md, "Adding a component").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit import baselines

ROOT = Path(__file__).resolve().parent.parent  # the checkout or site-packages: holds graders/, solutions/, assignments/


@dataclass(frozen=True)
class Component:
    name: str
    hooks: tuple[str, ...]  # hook names of toolkit.hookspecs; a submission provides all of them or none
    baseline: type  # plugin class registered as ``baseline.<name>``
    summary: str  # one line, for listings
    data_only: bool = False  # its hooks only return data (a mask): ``toolkit grade`` trains with it in the grader

    @property
    def grader(self) -> str:
        """The module of its checks."""
        return f"graders.{self.name}"

    @property
    def solution(self) -> Path:
        return ROOT / "solutions" / f"{self.name}.py"

    @property
    def notebook(self) -> Path:
        return ROOT / "assignments" / self.name / f"{self.name}.ipynb"

    @property
    def snapshot(self) -> Path:
        return ROOT / "graders" / "snapshots" / f"{self.name}.json"


COMPONENTS: dict[str, Component] = {c.name: c for c in (
    Component("tokenizer", ("toolkit_tokenizer",), baselines.BaselineTokenizer,
              "byte-level BPE: train, encode, decode"),
    Component("attention", ("toolkit_attention",), baselines.BaselineAttention,
              "causal multi-head self-attention"),
    Component("sft_mask", ("toolkit_sft_mask",), baselines.BaselineSFTMask,
              "which targets count in the SFT loss", data_only=True),
    Component("reward", ("toolkit_reward_model", "toolkit_reward_loss"), baselines.BaselineReward,
              "reward model head and pairwise preference loss"),
    Component("sampler", ("toolkit_sample",), baselines.BaselineSampler,
              "next-token sampling: greedy, temperature, top-k, top-p"),
)}

HOOKS: dict[str, Component] = {hook: c for c in COMPONENTS.values() for hook in c.hooks}
"""Hook name -> the component it belongs to."""


def method(hook: str) -> str:
    """The name ``Components`` calls a hook by: ``toolkit_sft_mask`` -> ``sft_mask``."""
    return hook.removeprefix("toolkit_")
