"""Remote autograd: the submission's modules and hooks inside the grader's own autograd graph.

Under ``toolkit grade`` the grader trains every model itself, with the toolkit's own training code
(``toolkit.train.fit``, ``toolkit.rlhf``): a model whose layers are the submission's modules
(``RemoteModule``: a GPT built with its attention, its reward model) and a loss that is the
submission's hook (``toolkit_reward_loss``). A call into the child under gradient mode goes through
``RemoteCall``, a ``torch.autograd.Function``: its forward asks the child for the output, as any call
does; its backward asks the child for a vector-Jacobian product (the ``vjp`` request): given the
same parameters and inputs and the upstream gradient, the child runs the forward again with
gradients on and returns the gradients with respect to the floating-point inputs and the module's
parameters. The optimizer, the loop, the data, the seeds and the curve are the grader's.

What the child still decides is only what the submission's code decides under ``toolkit run``: the
output of its module and the gradients of that output. The answers are checked like every answer
(``remote.plain``), and each gradient must have exactly the dtype and shape of what it is the gradient
of; anything else ends the conversation (``ChildGone``). The child's toolkit and grader modules play no
part: a child that replaces them in its own interpreter changes nothing the grader computes.
"""

from __future__ import annotations

import torch

FLOAT = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def float_positions(args) -> list[int]:
    """The positional arguments a vjp differentiates: the floating-point tensors (both sides use this rule)."""
    return [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dtype in FLOAT]


def needs_grad(args, params) -> bool:
    """Whether a call must take part in autograd: gradients on, and an input or a parameter requiring them."""
    return torch.is_grad_enabled() and any(
        t.requires_grad for t in [*(args[i] for i in float_positions(args)), *params])


class Call:
    """One call into the child that autograd may differentiate: ``target`` is a ``RemoteModule``, a
    ``RemoteObject`` or ``("hook", component, hook)``; ``params`` the module's (name, parameter) the
    grader has set (the others, on the meta device, are not differentiated)."""

    def __init__(self, child, target, args: tuple, kwargs: dict, params: list, forward_request: tuple):
        self.child, self.target, self.kwargs = child, target, kwargs
        self.args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        self.slots = float_positions(self.args)
        self.names = [n for n, _ in params]
        self.forward_request = forward_request  # the request of a plain call (no gradient)
        self.training = getattr(target, "training", False)

    def tensors(self, args, params) -> list[torch.Tensor]:
        return [args[i] for i in self.slots] + [p for _, p in params]

    def forward(self) -> torch.Tensor:
        out = self.child.request(*self.forward_request)
        self.sent = _sent(self.target)
        if not isinstance(out, torch.Tensor) or out.dtype not in FLOAT:
            got = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else type(out).__name__
            from toolkit.plugins import PluginError
            raise PluginError(f"returned {got} where training needs a floating-point tensor")
        return out

    def vjp(self, upstream: torch.Tensor, expected: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """The gradients of the inputs and parameters (``expected``, in order), from the child, checked."""
        if _sent(self.target) != self.sent:  # the child last ran the module with other parameters: send them
            _resend(self.target)
        answer = self.child.request("vjp", self.target, self.args, self.kwargs, upstream.contiguous(), self.training,
                                    self.names)
        if not (isinstance(answer, dict) and isinstance(answer.get("inputs"), list) and isinstance(answer.get("params"), dict)
                and len(answer["inputs"]) == len(self.slots) and set(answer["params"]) <= set(self.names)):
            raise self.child._gone("gradients that are not one per input and parameter")
        grads = [*answer["inputs"], *(answer["params"].get(n) for n in self.names)]
        for g, t in zip(grads, expected):
            if g is not None and not (isinstance(g, torch.Tensor) and g.dtype == t.dtype and g.shape == t.shape):
                raise self.child._gone("a gradient whose dtype or shape is not its input's")
        return grads


def _sent(target):
    from toolkit.grading.remote import HANDLE
    handle = getattr(target, HANDLE, None) if isinstance(target, torch.nn.Module) else None
    return handle and handle.sent


def _resend(target) -> None:
    from toolkit.grading.remote import HANDLE
    getattr(target, HANDLE).sent = None


class RemoteCall(torch.autograd.Function):
    """``Call.forward`` in the graph; its backward is the child's vjp of the same call."""

    @staticmethod
    def forward(ctx, call: Call, *tensors):
        ctx.call = call
        ctx.save_for_backward(*tensors)  # autograd refuses the backward if any of them changed meanwhile
        return call.forward()

    @staticmethod
    def backward(ctx, upstream):
        return (None, *ctx.call.vjp(upstream, list(ctx.saved_tensors)))


def call(child, target, args: tuple, kwargs: dict, params: list, forward_request: tuple):
    """The call, differentiable when autograd needs it (``needs_grad``), else the plain request."""
    tensors_params = [p for _, p in params]
    if not needs_grad(args, tensors_params):
        return child.request(*forward_request)
    c = Call(child, target, args, kwargs, params, forward_request)
    return RemoteCall.apply(c, *c.tensors(args, params))


def child_vjp(fn, args: tuple, kwargs: dict, upstream: torch.Tensor, params: list) -> dict:
    """The child's side of a ``vjp`` request: ``fn(*args, **kwargs)`` with gradients on, and the gradients
    of ``upstream · output`` with respect to the floating-point inputs and ``params`` (name, parameter)."""
    args = list(args)
    slots = float_positions(args)
    for i in slots:
        args[i] = args[i].detach().clone().requires_grad_(True)
    params = [(n, p) for n, p in params if p.requires_grad]
    with torch.enable_grad():
        out = fn(*args, **kwargs)
        leaves = [args[i] for i in slots] + [p for _, p in params]
        if isinstance(out, torch.Tensor) and out.requires_grad:
            grads = torch.autograd.grad(out, leaves, upstream.to(out.dtype), allow_unused=True)
        else:  # the output depends on none of them
            grads = [None] * len(leaves)
    grads = [None if g is None else g.detach().clone() for g in grads]
    return {"inputs": grads[:len(slots)], "params": {n: g for (n, _), g in zip(params, grads[len(slots):])}}
