"""An optimizer of a submission's, under ``toolkit grade``: it lives in the child and steps the grader's tensors.

The grader trains every model itself (``toolkit.grading.remote``): its loop computes the loss and the
gradients, and the submission's optimizer, which lives in the child, only turns gradients into new
parameter values (``RemoteOptimizer``, the ``step`` request of ``toolkit.grading.wire.Op``).
"""

from __future__ import annotations

import torch

from toolkit.components import COMPONENTS
from toolkit.grading.wire import Op
from toolkit.plugins import PluginError, hook_arguments


def makes_optimizer(hook: str) -> bool:
    """Whether ``hook`` returns an optimizer of the tensors it is given: it takes ``params``, as torch.optim does."""
    return "params" in hook_arguments(hook)


def steps_in_child(component: str) -> bool:
    """Whether ``component`` makes an optimizer: under ``toolkit grade`` it steps in the child
    (``RemoteOptimizer``), so a model trained with it has no key."""
    return any(makes_optimizer(hook) for hook in COMPONENTS[component].hooks)


class RemoteOptimizer:
    """An optimizer that lives in the child, stepping tensors of the grader's: ``step()`` sends their
    gradients and each group's learning rate (the loop sets ``param_groups[i]["lr"]`` here, as on any
    optimizer), and copies back the values the child's optimizer gave them, checked to be one tensor of
    the same shape and dtype per parameter. The loss, the gradients and the model stay the grader's."""

    def __init__(self, child, oid: int, params: list[torch.Tensor], defaults: dict):
        self._child, self._oid, self.params = child, oid, params
        self.param_groups = [{"params": params, **defaults}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        grads = [None if p.grad is None else p.grad.detach() for p in self.params]
        new = self._child.request(Op.STEP, self._oid, grads, [g["lr"] for g in self.param_groups])
        if not (isinstance(new, list) and len(new) == len(self.params) and all(
                isinstance(n, torch.Tensor) and n.shape == p.shape and n.dtype == p.dtype for n, p in zip(new, self.params))):
            raise PluginError("the optimizer's step did not give each parameter a value of its shape and dtype")
        with torch.no_grad():
            for p, n in zip(self.params, new):
                p.copy_(n)
