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

**The gradients are audited** (``Audit``): a child could answer a vjp with the gradients of another
function than the one whose outputs it sends (the right loss's gradients behind a wrong loss's values,
so that a model trains well on a wrong hook). At calls drawn from the instructor's seed, after the
child has answered a call's backward, the grader asks the same target for its outputs and gradients
at two more points, the call's inputs and parameters moved a little either way along a direction
it draws, as two more calls of training (the same request, dtypes and shapes), and checks the
fundamental theorem of calculus along that segment: the change of the outputs (projected on the
upstream gradient) must equal the integral of the directional derivatives the gradients give
(Simpson's rule on the three points). Code whose gradients are those of its outputs agrees to
rounding; a gradient that is not fails the stage with a sentence that says what did not agree.
"""

from __future__ import annotations

import importlib
import random
from collections import Counter
from dataclasses import dataclass

import torch

from toolkit.grading.wire import Op
from toolkit.plugins import PluginError

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
        self.key = _key(target)
        self.audited = False  # an audit's own call is not audited again

    def tensors(self, args, params) -> list[torch.Tensor]:
        return [args[i] for i in self.slots] + [p for _, p in params]

    def forward(self) -> torch.Tensor:
        answer = self.child.request(Op.TAPE, self.target, self.args, self.kwargs, self.training, self.names)
        out, self.tape = (answer.get("out"), answer.get("tape")) if isinstance(answer, dict) else (answer, None)
        if type(self.tape) is not int or not isinstance(out, torch.Tensor) or out.dtype not in FLOAT:
            got = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginError(f"returned {got} where training needs a floating-point tensor")
        self.child.audit.open[self.key] += 1
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
        audit = self.child.audit
        audit.open[self.key] -= 1
        # a module's weights are moved in the child only when no other graph of it is open; a hook has none
        if not self.audited and audit.due(self.key) and (not self.names or audit.open[self.key] == 0):
            audit.check(self, upstream, expected, grads)
        return grads

    def what(self) -> str:
        """The call's target, for a sentence: the hook's name, or the type of the child's object."""
        if isinstance(self.target, tuple):
            return self.target[2]
        target = self.target.module if isinstance(self.target, AtState) else self.target
        return f"the {type(target).__name__} module" if isinstance(target, torch.nn.Module) else f"the {type(target).__name__}"

    def at(self, values: list[torch.Tensor], upstream: torch.Tensor) -> tuple[torch.Tensor, list]:
        """This call's output and gradients with its inputs and parameters set to ``values``: a call of
        its own, sent as any call of training is (an audit's)."""
        args = list(self.args)
        for i, v in zip(self.slots, values):
            args[i] = v
        params = list(zip(self.names, values[len(self.slots):]))
        target = AtState(self.target, dict(params)) if params else self.target
        call = Call(self.child, target, tuple(args), self.kwargs, params)
        call.training, call.key, call.audited = self.training, self.key, True
        out = call.forward()
        if out.shape != upstream.shape:
            raise self.child._gone("an output whose shape changed with its inputs' values")
        return out, call.vjp(upstream, values)


def _key(target) -> tuple:
    """Which object of the child's a call is of: a module's or an object's handle, or the hook."""
    if isinstance(target, tuple):
        return target
    if isinstance(target, AtState):
        return _key(target.module)
    if isinstance(target, torch.nn.Module):
        return ("module", getattr(target, HANDLE).oid)
    return ("object", object.__getattribute__(target, "_oid"))


HANDLE = "remote.handle"  # the attribute holding a RemoteModule's handle (``toolkit.grading.remote``)


@dataclass
class AtState:
    """A module of the child's called with other values of its parameters (an audit's): they are sent
    whole, and the module's own are sent again with its next call."""

    module: torch.nn.Module
    state: dict[str, torch.Tensor]


# -- the audit ---------------------------------------------------------------------------------
AUDIT_GAP = 24  # a target's calls between two audits: drawn from 1 to 2 * AUDIT_GAP - 1 (mean AUDIT_GAP)
AUDIT_STEP = 0.05  # how far an audit moves each tensor, relative to its root mean square
AUDIT_RTOL = 0.05  # the largest relative disagreement (correct code in float32: at most 1.5e-3, tests/test_audit.py)
ROUNDING = {torch.float64: 2.2e-16, torch.float32: 1.2e-7, torch.float16: 9.8e-4, torch.bfloat16: 7.8e-3}  # eps: the outputs' rounding
HIDDEN = "graders.hidden"  # where the instructor's AUDIT_SEED lives (absent from a student's copy: 0)


def audit_seed() -> int:
    """The instructor's seed of the audits (``graders.hidden.AUDIT_SEED``), else the public 0."""
    try:
        return int(getattr(importlib.import_module(HIDDEN), "AUDIT_SEED", 0))
    except ImportError:
        return 0


class AuditFailed(PluginError):
    """The gradients the child gave for a call are not those of the outputs it gave."""


class Audit:
    """Which calls' gradients the grader checks, drawn from ``seed``, and the check itself."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.calls: Counter = Counter()  # target -> calls whose backward came
        self.next: dict[tuple, int] = {}  # target -> the call its next audit is due at
        self.open: Counter = Counter()  # target -> forwards whose backward has not come yet
        self.done = 0  # audits made
        self.worst = 0.0  # the largest relative disagreement seen (what correct code reaches: tests/test_audit.py)

    def due(self, key: tuple) -> bool:
        """Count a call of ``key``; True if an audit is due (it stays due until one is made)."""
        self.calls[key] += 1
        if key not in self.next:
            self.next[key] = self.rng.randrange(1, 2 * AUDIT_GAP)
        return self.calls[key] >= self.next[key]

    def check(self, call: Call, upstream: torch.Tensor, values: list[torch.Tensor], grads: list) -> None:
        """The gradients ``grads`` of ``call`` at ``values`` against its outputs along a drawn direction."""
        self.next[call.key] = self.calls[call.key] + self.rng.randrange(1, 2 * AUDIT_GAP)
        self.done += 1
        claimed = [i for i, g in enumerate(grads) if g is not None]  # None: no gradient, nothing to train
        if not claimed:
            return
        gen = torch.Generator().manual_seed(self.rng.getrandbits(63))
        step = {i: AUDIT_STEP * (rms(values[i]) + 1e-3) * torch.randn(values[i].shape, generator=gen, dtype=torch.float64)
                for i in claimed}
        u = upstream.double()
        ends, slopes = [], [slope(grads, step)]
        for sign in (1.0, -1.0):
            moved = [(v.double() + sign * step[i]).to(v.dtype) if i in step else v for i, v in enumerate(values)]
            out, g = call.at(moved, upstream)
            ends.append(out.double())
            slopes.append(slope(g, step))
        change = (u * (ends[0] - ends[1])).sum().item()  # the outputs' change from -step to +step
        integral = (slopes[1] + 4 * slopes[0] + slopes[2]) / 3  # Simpson: the gradients' word for it
        rounding = ROUNDING.get(upstream.dtype, 1e-5) * (u.abs() * (ends[0].abs() + ends[1].abs())).sum().item()
        self.worst = max(self.worst, abs(change - integral) / max(abs(change), abs(integral), 1e-300))
        if not abs(change - integral) <= AUDIT_RTOL * max(abs(change), abs(integral)) + rounding:
            raise AuditFailed(f"the gradients of {call.what()} are not those of its outputs: moved a little along a "
                              f"direction the grader drew, its outputs changed by {change:.4g} where its gradients "
                              f"say {integral:.4g}")


def rms(t: torch.Tensor) -> float:
    return t.double().pow(2).mean().sqrt().item() if t.numel() else 0.0


def slope(grads: list, step: dict[int, torch.Tensor]) -> float:
    """The directional derivative the gradients give along ``step``."""
    return sum((grads[i].double() * s).sum().item() for i, s in step.items() if grads[i] is not None)


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
