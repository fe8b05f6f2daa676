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

The child keeps the graph of a forward until its backward (``Tape``), so nothing is computed or
sent twice. What the child still decides is only what the submission's code decides under ``toolkit run``: the
output of its module and the gradients of that output. The answers are checked like every answer
(``toolkit.grading.wire.plain``), and each gradient must have exactly the dtype and shape of what it is the gradient
of; anything else ends the conversation (``ChildGone``). The child's toolkit and grader modules play no
part: a child that replaces them in its own interpreter changes nothing the grader computes.
"""

from __future__ import annotations

import torch

from toolkit.grading.wire import Op

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
    grader has set (the others, on the meta device, are not differentiated). Its forward (the
    ``tape`` request) has the child keep the graph of the call, which its backward (``vjp``) then
    uses: each is computed once, and the inputs cross the pipe once."""

    def __init__(self, child, target, args: tuple, kwargs: dict, params: list):
        self.child, self.target, self.kwargs = child, target, kwargs
        self.args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        self.slots = float_positions(self.args)
        self.names = [n for n, _ in params]
        self.training = getattr(target, "training", False)
        self.tape = None

    def tensors(self, args, params) -> list[torch.Tensor]:
        return [args[i] for i in self.slots] + [p for _, p in params]

    def forward(self) -> torch.Tensor:
        answer = self.child.request(Op.TAPE, self.target, self.args, self.kwargs, self.training, self.names)
        out, self.tape = (answer.get("out"), answer.get("tape")) if isinstance(answer, dict) else (answer, None)
        if type(self.tape) is not int or not isinstance(out, torch.Tensor) or out.dtype not in FLOAT:
            got = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else type(out).__name__
            from toolkit.plugins import PluginError
            raise PluginError(f"returned {got} where training needs a floating-point tensor")
        return out

    def vjp(self, upstream: torch.Tensor, expected: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """The gradients of the inputs and parameters (``expected``, in order), from the child, checked."""
        answer = self.child.request(Op.VJP, self.tape, upstream.contiguous())
        if not (isinstance(answer, dict) and isinstance(answer.get("inputs"), list) and isinstance(answer.get("params"), dict)
                and len(answer["inputs"]) == len(self.slots) and set(answer["params"]) <= set(self.names)):
            raise self.child._gone("gradients that are not one per input and parameter")
        grads = [*answer["inputs"], *(answer["params"].get(n) for n in self.names)]
        for g, t in zip(grads, expected):
            if g is not None and not (isinstance(g, torch.Tensor) and g.dtype == t.dtype and g.shape == t.shape):
                raise self.child._gone("a gradient whose dtype or shape is not its input's")
        return grads


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


def call(child, target, args: tuple, kwargs: dict, params: list, plain_request):
    """The call, differentiable when autograd needs it (``needs_grad``), else the plain request
    (``plain_request()``: built only when sent, as it marks a module's parameters sent)."""
    if not needs_grad(args, [p for _, p in params]):
        return child.request(*plain_request())
    c = Call(child, target, args, kwargs, params)
    return RemoteCall.apply(c, *c.tensors(args, params))


class Tape:
    """The child's side: a call's graph kept from its forward (``tape``) to its backward (``vjp``)."""

    def __init__(self, fn, args: tuple, kwargs: dict, params: list):
        args = list(args)
        self.slots = float_positions(args)
        for i in self.slots:
            args[i] = args[i].detach().clone().requires_grad_(True)
        self.params = [(n, p) for n, p in params if p.requires_grad]
        self.leaves = [args[i] for i in self.slots] + [p for _, p in self.params]
        with torch.enable_grad():
            self.out = fn(*args, **kwargs)

    def vjp(self, upstream: torch.Tensor) -> dict:
        """The gradients of ``upstream · output`` with respect to the floating-point inputs and the parameters."""
        out = self.out
        if isinstance(out, torch.Tensor) and out.requires_grad:
            grads = torch.autograd.grad(out, self.leaves, upstream.to(out.dtype), allow_unused=True)
        else:  # the output depends on none of them
            grads = [None] * len(self.leaves)
        grads = [None if g is None else g.detach().clone() for g in grads]
        n = len(self.slots)
        return {"inputs": grads[:n], "params": {name: g for (name, _), g in zip(self.params, grads[n:])}}
