"""The grader's side of one submission: its child, and proxies that make the child's components
look local to the checks.

**The child answers, the grader computes and judges.** Every check runs here, in the grader's
process, with the grader's own ``torch``; the submission's code runs only in the child
(``toolkit.grading.child``). A check calls the submission's hooks through ``RemoteComponents``,
exactly as ``toolkit run`` calls them through ``toolkit.plugins.Components``: each call is one
request over a private pipe (``Channel``, ``toolkit.grading.wire``), and what comes back is a plain
value, or a handle to an object the child keeps (a tokenizer, a module) that the grader then calls
through (``RemoteObject``, ``RemoteModule``). Every pipeline stage is built here
(``toolkit.grading.child_pipeline``): a model that runs the submission's code is trained by the
grader, the submission's modules and hooks taking part in its autograd graph
(``toolkit.grading.autograd``). The child trains nothing.

**Nothing the child sends is believed beyond its type**: every answer is rebuilt as plain data
within the wire's caps (``toolkit.grading.wire.plain``), and parameter shapes a child reports are
mirrored on the ``meta`` device (nothing is allocated from them). **Deadlines hold**: the channel
waits for an answer until the run's deadline, or a call's own limit (``Child.time_limit``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import pickle
import re
import time
from dataclasses import dataclass

import torch
from torch import nn

from toolkit.alarm import OutOfTime
from toolkit.text import one_line
from toolkit.components import COMPONENTS, HOOKS, is_public_grader
from toolkit.grading import autograd
from toolkit.grading.autograd import HANDLE
from toolkit.grading.child_pipeline import ChildPipeline, checked_parameters
from toolkit.grading.wire import DTYPES, MAX_MESSAGE, Channel, ChildGone, Op
from toolkit.grading.optimizer import RemoteOptimizer, makes_optimizer
from toolkit.plugins import NotImplementedYet, PluginError, hook_arguments, with_wrapped

# a parameter's dotted name: whatever nn.Module accepts (any name without a dot: digits in
# nn.Sequential, "é", spaces), at most 16 parts of 200 characters; shown only through one_line
NAME = re.compile(r"[^.]{1,200}(\.[^.]{1,200}){0,15}", re.S)


class RemoteError(PluginError):
    """An exception the submission's code raised in the child, as the child reported it."""


class RemoteNotImplemented(RemoteError, NotImplementedYet):
    """A stub in the child: its code raised NotImplementedError."""


# -- what the grader sends: handles and generators by reference ------------------------------
class _Pickler(pickle.Pickler):
    """Pickles a request; proxies travel as their handle, generators as their state."""

    def __init__(self, file):
        super().__init__(file, protocol=5)
        self.generators: list[torch.Generator] = []

    def persistent_id(self, obj):
        if isinstance(obj, RemoteModule):
            return ("module", getattr(obj, HANDLE).oid, _state_to_send(obj), _dtype(obj))
        if isinstance(obj, autograd.AtState):  # an audit's call: other values, then its own again
            handle = getattr(obj.module, HANDLE)
            handle.sent = None
            return ("module", handle.oid, obj.state, _dtype(obj.module))
        if isinstance(obj, RemoteObject):
            return ("object", object.__getattribute__(obj, "_oid"))
        if isinstance(obj, torch.Generator):
            self.generators.append(obj)
            return ("generator", obj.get_state())
        return None


def _dumps(message) -> tuple[bytes, list[torch.Generator]]:
    """The request as bytes, and the generators it carries (in order)."""
    buf = io.BytesIO()
    pickler = _Pickler(buf)
    pickler.dump(message)
    return buf.getvalue(), pickler.generators


# -- the child, as the checks see it ---------------------------------------------------------
class Child:
    """The grader's handle on one submission's child process: its components, the grader's pipelines
    of them, and the ``@child_side`` observations it runs. ``toolkit.checks.Context.remote`` is one of these."""

    def __init__(self, channel: Channel, cpu_clock=None):
        self.channel = channel
        self.cpu_clock = cpu_clock  # the CPU seconds of the child's cgroup (None: no cgroup): ``Context.submission_clock``
        self.ends: float | None = None  # when the current ``time_limit`` block ends (time.monotonic)
        self.sources: dict[str, str] = {}  # component -> the file the child says provides it (for sentences)
        self.audit = autograd.Audit(autograd.audit_seed())  # which of its gradients the grader checks

    def hello(self) -> dict:
        """The child's first message: ``{"provided": [components]}`` or ``{"error": sentence}``."""
        answer = self.exchange(Op.HELLO)
        if not isinstance(answer, dict) or answer.get("kind") != "hello":
            raise ChildGone("the submission's process did not start the conversation")
        if isinstance(answer.get("error"), str):
            return {"error": _message(answer["error"])}
        provided = answer.get("provided")
        if not isinstance(provided, list) or not set(provided) <= set(COMPONENTS) or len(set(provided)) != len(provided):
            raise ChildGone("the submission's process reported components that do not exist")
        sources = answer.get("sources")
        if isinstance(sources, dict):
            self.sources = {c: _message(n)[:200] for c, n in sources.items()  # never a baseline's name
                            if c in provided and isinstance(n, str) and not n.startswith("baseline.")}
        return {"provided": provided}

    def paused(self):
        """A block of the grader's own work for this child, not charged to its deadline."""
        return self.channel.paused()

    def request(self, *message):
        """Send a request; its answer as a value, a proxy, or the exception the child reports."""
        return self.unwrap(self.exchange(*message))

    def exchange(self, *message) -> dict:
        """Send a request (with the current time limit); the child's answer, a checked dictionary.
        Generators the request carried are set to the states they reached in the child."""
        limit = self._left()
        data, generators = _dumps((*message, limit))
        answer = self.channel.exchange(data, limit)
        if not isinstance(answer, dict):
            raise self._gone("an answer of no known kind")
        self._update_generators(generators, answer.get("generators", []))
        return answer

    def _gone(self, what: str) -> ChildGone:
        self.channel.gone = f"the submission's process sent {what}"
        return ChildGone(self.channel.gone)

    def _update_generators(self, mine: list[torch.Generator], states) -> None:
        """The generators a call used, set to the states they reached in the child."""
        if not isinstance(states, list) or len(states) != len(mine):
            raise self._gone("generator states that do not match the call")
        for g, state in zip(mine, states):
            old = g.get_state()
            if not isinstance(state, torch.Tensor) or state.dtype != old.dtype or state.shape != old.shape:
                raise self._gone("a generator state of the wrong size")
            g.set_state(state)

    def unwrap(self, answer: dict):
        kind = answer.get("kind")
        if kind == "value":
            return answer.get("value")
        if kind == "object" and type(answer.get("oid")) is int:
            return _named(RemoteObject, answer.get("type"))(self, answer["oid"])
        if kind == "module" and type(answer.get("oid")) is int:
            return _named(RemoteModule, answer.get("type"))(self, answer["oid"], _param_specs(answer.get("params"), self))
        if kind == "error":
            message = _message(answer.get("message"))
            if answer.get("time_limit") is True and self.ends is not None:  # else the student raised it
                raise OutOfTime(message)
            if answer.get("plugin_error") is True:
                raise (NotImplementedYet if answer.get("stub") is True else PluginError)(message)
            if answer.get("sentence") is True:  # the child's sentence (``checks.student_error``)
                raise (RemoteNotImplemented if answer.get("stub") is True else RemoteError)(message)
            name = answer.get("type")
            raise RemoteError(f"{name}: {message}" if isinstance(name, str) and name.isidentifier() else message)
        raise self._gone("an answer of no known kind")

    # what the checks use (``toolkit.checks.Context``)
    def components(self, component: str) -> RemoteComponents:
        return RemoteComponents(self, component)

    def pipeline(self, component: str, config, cache_dir, log) -> ChildPipeline:
        return ChildPipeline(self, component, config, cache_dir, log)

    def oid(self, module) -> int | None:
        """The handle of a module of the child's (a ``RemoteModule``); None for any other object."""
        return getattr(module, HANDLE).oid if isinstance(module, RemoteModule) else None

    def parameters(self, module: RemoteModule) -> dict[str, torch.Tensor]:
        """The parameters ``module`` holds in the child (``Op.STATE``): exactly the names, shapes and dtypes it
        reported (``checked_parameters``), else ChildGone."""
        return checked_parameters(module, self.request(Op.STATE, self.oid(module)))

    def run(self, component: str, config, fn, args: tuple):
        """``fn(pipeline, *args)`` in the child, on its pipeline of ``component`` and ``config``."""
        module = fn.__module__
        if not getattr(fn, "__child_side__", False) or not is_public_grader(module):
            raise ValueError(f"{module}.{fn.__qualname__} is not a public @child_side function")
        return self.request(Op.RUN, component, config, f"{module}:{fn.__qualname__}", args)

    @contextlib.contextmanager
    def time_limit(self, seconds: float):
        """The calls in the block may take the child ``seconds`` together, as ``toolkit.checks.alarm``
        limits the block in one process: each call is sent with what is left (the child stops the
        call itself; if it does not, the grader stops waiting ``SLACK`` seconds later and the child
        is gone), and a call with nothing left raises OutOfTime here.

        Wall-clock seconds, unlike the run's CPU budget (``toolkit.grading.batch.deadlines``): a call
        that sleeps or blocks must fail its check, not hold the run until the backstop; the child's
        timer signal counts time in its own process only, not its group's; and the limits are generous
        multiples of what a correct call takes (a speed is judged on ``Context.submission_clock``)."""
        previous = self.ends
        ends = time.monotonic() + seconds
        self.ends = ends if previous is None else min(previous, ends)
        try:
            yield
        finally:
            self.ends = previous

    def _left(self) -> float | None:
        """Seconds left in the current ``time_limit`` block (None: no limit); OutOfTime if none."""
        if self.ends is None:
            return None
        left = self.ends - time.monotonic()
        if left <= 0:
            raise OutOfTime
        return left


def _message(x) -> str:
    return one_line(x, MAX_MESSAGE) if isinstance(x, str) else "(no message)"


def _param_specs(params, child: Child) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """A module's parameters as the child reports them: (name, shape, dtype), checked."""
    if not isinstance(params, list) or len(params) > 4096:
        raise child._gone("a module description that is not a list of at most 4096 parameters")
    out = []
    for p in params:
        if not (isinstance(p, (list, tuple)) and len(p) == 3 and isinstance(p[0], str) and NAME.fullmatch(p[0])
                and isinstance(p[1], (list, tuple)) and len(p[1]) <= 8
                and all(type(n) is int and 0 <= n < 1 << 31 for n in p[1]) and p[2] in DTYPES):
            raise child._gone("a module parameter that is not (name, shape, dtype)")
        out.append((p[0], tuple(p[1]), DTYPES[p[2]]))
    return out


class RemoteComponents:
    """``toolkit.plugins.Components`` of one component of the submission, in the child: every hook
    of ``toolkit.components.COMPONENTS`` by the same method name (``attention(config)``), the
    baselines' here for the other components."""

    def __init__(self, child: Child, component: str):
        from toolkit.plugins import Components

        self._child, self.only = child, component
        self._baselines = Components()

    def source(self, component: str) -> str:
        if component == self.only:
            return self._child.sources.get(component, "the submission")
        return self._baselines.source(component)

    def call(self, hook: str, *args, **kwargs):
        """The baselines' hook here, with the modules it wraps built by this object (the submission's
        attention in a baseline block); the submission's in the child, which builds what it wraps
        itself. An optimizer it returns steps the tensors given as ``params`` (``RemoteOptimizer``)."""
        if HOOKS[hook].name != self.only:
            return self._baselines.call(hook, **with_wrapped(self, hook, args, kwargs))
        result = autograd.call(self._child, ("hook", self.only, hook), args, kwargs, [],
                               lambda: (Op.CALL, self.only, hook, args, kwargs))
        if isinstance(result, RemoteObject) and makes_optimizer(hook):
            named = {**kwargs, **dict(zip(hook_arguments(hook), args))}
            return RemoteOptimizer(self._child, object.__getattribute__(result, "_oid"), list(named["params"]),
                                   {k: v for k, v in named.items() if k != "params"})
        return result

    def function(self, hook: str):
        """The baselines' function for ``hook``; None for the submission's (its code is in the child)."""
        return None if HOOKS[hook].name == self.only else self._baselines.function(hook)

    def __getattr__(self, name: str):
        if f"toolkit_{name}" not in HOOKS:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return lambda *args, **kwargs: self.call(f"toolkit_{name}", *args, **kwargs)


class RemoteObject:
    """An object that lives in the child: attributes and calls go over the channel. Its class is
    named as the child says the object's is (``_named``), so that a sentence built from
    ``type(x).__name__`` says what the submission returned ("ndarray"), as under ``toolkit run``."""

    def __init__(self, child: Child, oid: int):
        object.__setattr__(self, "_child", child)
        object.__setattr__(self, "_oid", oid)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object of the submission's>"

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._child.request(Op.GETATTR, self._oid, name)

    def __call__(self, *args, **kwargs):
        return autograd.call(self._child, self, args, kwargs, [], lambda: (Op.CALL_OBJECT, self._oid, args, kwargs))

    def __iter__(self):
        """Iterating the child's object iterates over ``list(obj)``, computed there as plain data."""
        items = self._child.request(Op.LIST, self._oid)
        if not isinstance(items, list):
            raise TypeError("the object is not iterable")
        return iter(items)


@functools.lru_cache(maxsize=256)
def _named(proxy: type, name) -> type:
    """The subclass of ``proxy`` (``RemoteObject``, ``RemoteModule``) for the child's objects of type
    ``name``: named so when that is an identifier of at most 100 characters, else "object"."""
    if not (isinstance(name, str) and name.isidentifier() and len(name) <= 100):
        name = "object"
    return type(name, (proxy,), {"__doc__": proxy.__doc__, "__module__": "submission"})


class _Mirror(nn.Module):
    """Part of a ``RemoteModule``: holds the child module's parameters, on the meta device until the
    grader gives them values; loading a state dict assigns them (a copy into meta would be lost)."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):
        super()._load_from_state_dict(state_dict, prefix, {**local_metadata, "assign_to_params_buffers": True}, *args)


class RemoteModule(_Mirror):
    """An ``nn.Module`` that lives in the child, mirrored here by its parameters' names, shapes and
    dtypes (its class named as the child's module's, like ``RemoteObject``'s). The parameters the grader sets (``load_state_dict``, ``.double()`` of set values) are
    sent with the next forward; the child runs its module with them and returns the output.

    It has no attribute or method of its own that a parameter could be named (``_child``,
    ``_dtype``): its handle sits under a dotted name, which ``nn.Module`` refuses for parameters."""

    def __init__(self, child: Child, oid: int, params: list):
        super().__init__()
        object.__setattr__(self, HANDLE, _Handle(child, oid))
        for name, shape, dtype in params:
            *path, leaf = name.split(".")
            owner = self
            for part in path:
                if part not in owner._modules:
                    _register(child, owner.add_module, part, _Mirror())
                owner = owner._modules[part]
                if not isinstance(owner, _Mirror):
                    raise child._gone("a module parameter whose name clashes with another's")
            if leaf in owner._parameters or leaf in owner._modules:
                raise child._gone("a module parameter twice")
            _register(child, owner.register_parameter, leaf, nn.Parameter(torch.empty(shape, dtype=dtype, device="meta")))

    def forward(self, *args):
        """The child's module on ``args`` with the parameters the grader holds; under gradient mode
        a node of the grader's autograd graph (``toolkit.grading.autograd``)."""
        handle = getattr(self, HANDLE)
        params = [(n, p) for n, p in self.named_parameters() if not p.is_meta and p.is_floating_point()]
        return autograd.call(handle.child, self, args, {}, params,
                             lambda: (Op.FORWARD, handle.oid, _state_to_send(self), _dtype(self), args, False, self.training))


@dataclass
class _Handle:
    child: Child
    oid: int
    sent: list | None = None  # the (name, id, version) of the parameters last sent
    kept: list | None = None  # those parameters

    def __deepcopy__(self, memo):
        """A copy of a RemoteModule is another set of parameters for the same module of the child's
        (``_state_to_send`` sends a copy's parameters when it is the one called)."""
        return self


def _register(child: Child, register, name: str, value) -> None:
    """``register(name, value)``, or ChildGone for a name no ``nn.Module`` of the child's could have had
    (one of every module's attributes, such as ``training``)."""
    try:
        register(name, value)
    except (KeyError, TypeError):
        raise child._gone("a module parameter named as an attribute of every module") from None


def _dtype(module: RemoteModule):
    return next((p.dtype for p in module.parameters()), None)


def _state_to_send(module: RemoteModule) -> dict | None:
    """The parameters the grader has set, or None if the child already holds exactly these."""
    params = [(n, p) for n, p in module.named_parameters() if not p.is_meta]
    version = [(n, id(p), p._version) for n, p in params]  # of the parameters themselves (not of fresh detached views)
    state = {n: p.detach() for n, p in params}
    handle = getattr(module, HANDLE)
    if version == handle.sent:
        return None
    handle.sent, handle.kept = version, [p for _, p in params]  # kept alive: no other tensor can take their ids
    return state
