"""The grader's pipeline for one component of a submission that lives in a child (``ChildPipeline``).

**The grader does the work itself.** Every stage (``toolkit.pipeline.STAGES``) is built here by the
pipeline's own code, as under ``toolkit run``: the component's hooks are called in the child
(``toolkit.grading.remote.RemoteComponents``) and what they return is used here as a proxy: a
tokenizer (``RemoteObject``) encodes the corpus that the grader pretrains on; a module
(``RemoteModule``: an attention, a reward model) takes part in a model the grader trains, its
outputs and gradients computed in the child (``toolkit.grading.autograd``), its parameters,
data, seeds and curves the grader's, and its optimizer too unless the submission's is graded (it
then steps in the child on the grader's gradients: ``toolkit.grading.optimizer``). The child
trains nothing and sends no model, no curve and no figure.

What is only as strong as the child's word: a module's initial weights where the grader does not
give them itself (a reward model's head; its backbone must come back unchanged), and outputs and
gradients of the submission's code, checked for their types and shapes, and the gradients against
the outputs at calls the child cannot predict (``toolkit.grading.autograd.Audit``).
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import nn

from toolkit.text import one_line
from toolkit.grading.wire import ChildGone, Op
from toolkit.pipeline import STAGES, Pipeline
from toolkit.plugins import PluginError


class ChildPipeline(Pipeline):
    """The grader's pipeline of ``component``, whose hooks ``child`` (``toolkit.grading.remote.Child``) answers."""

    def __init__(self, child, component: str, config, cache_dir=None, log=print):
        super().__init__(child.components(component), config, cache_dir, log=log)
        self.child, self.component = child, component

    def seed(self, seed: int) -> None:
        """Seed this process and the child alike: a module built there draws what it draws under ``toolkit run``."""
        super().seed(seed)
        self.child.request(Op.SEED, seed)

    def own(self, module, backbone):
        """A module of the child's with its initial weights, fetched, and the ``backbone`` the hook was
        handed among them unchanged (else it could start from a model trained in the child)."""
        oid = self.child.oid(module)
        if oid is None:
            return module
        load_parameters(module, self.child.request(Op.STATE, oid))
        theirs = list(module.parameters())
        for name, p in backbone.named_parameters():
            if not any(q.shape == p.shape and q.dtype == p.dtype and torch.equal(q, p) for q in theirs):
                raise PluginError(f"the module toolkit_{self.component}_model built does not hold the backbone it was "
                                  f"handed unchanged (its {name} is not among its parameters)")
        return module

    def _train_or_load(self, model, stage: str, name, train, message: str) -> None:
        """Never cached when the model holds a module of the child's, or is trained by its optimizer: no
        key knows their code."""
        from toolkit.grading.optimizer import steps_in_child

        if steps_in_child(self.component) or any(self.child.oid(m) is not None for m in model.modules()):
            name = None
        super()._train_or_load(model, stage, name, train, message)


def _stage(name: str) -> cached_property:
    """A stage of ``ChildPipeline``: the pipeline's own code, run here; the child's time is only that
    of the calls it answers meanwhile (``Channel.paused``)."""
    build = getattr(Pipeline, name).func

    def stage(self):
        with self.child.paused():
            return build(self)

    stage.__name__ = stage.__qualname__ = name
    stage.__doc__ = getattr(Pipeline, name).__doc__
    prop = cached_property(stage)
    prop.__set_name__(ChildPipeline, name)
    return prop


for _name in STAGES:
    setattr(ChildPipeline, _name, _stage(_name))


def load_parameters(model: nn.Module, params) -> None:
    """``params`` (name -> tensor, from the child: a module's initial weights) into ``model``: exactly
    its parameters' names, shapes and dtypes (``checked_parameters``), or ChildGone."""
    model.load_state_dict(checked_parameters(model, params), strict=False)  # tied weights (lm_head) follow; mirrors are assigned


def checked_parameters(model: nn.Module, params) -> dict[str, torch.Tensor]:
    """``params`` (name -> tensor, from the child) if they are exactly ``model``'s parameters' names, shapes
    and dtypes; else ChildGone."""
    mine = dict(model.named_parameters())
    if not isinstance(params, dict) or set(params) != set(mine):
        raise ChildGone("the submission's process sent a model whose parameters are not the expected ones")
    for name, p in mine.items():
        v = params[name]
        if not isinstance(v, torch.Tensor) or v.shape != p.shape or v.dtype != p.dtype:
            raise ChildGone(f"the submission's process sent parameter {one_line(name, 200)} with the wrong shape or dtype")
    return params
