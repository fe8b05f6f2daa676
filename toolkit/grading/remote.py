"""The grader's side of one submission: the pipe to its sandboxed child, and proxies that make
the child's components look local to the checks.

**The child answers, the grader computes and judges.** Every check runs here, in the grader's
process, with the grader's own ``torch``; the submission's code runs only in the child
(``toolkit.grading.child``). A check calls the submission's hooks through ``RemoteComponents``,
exactly as ``toolkit run`` calls them through ``toolkit.plugins.Components``: each call is one
request over a private pipe, and what comes back is a plain value, or a handle to an object the
child keeps (a tokenizer, a module) that the grader then calls through (``RemoteObject``,
``RemoteModule``). Every pipeline stage is built here (``ChildPipeline``): a model that runs the
submission's code is trained by the grader, the submission's modules and hooks taking part in its
autograd graph (``toolkit.grading.autograd``). The child trains nothing.

**Nothing the child sends is believed beyond its type.** Frames are length-prefixed and at most
``MAX_FRAME`` bytes; each is a ``torch.save`` document read with ``torch.load(weights_only=True)``
(no code runs), then ``plain`` rebuilds it from scratch: at most ``MAX_DEPTH`` levels of nesting,
``MAX_ITEMS`` values, strings of at most ``MAX_STRING`` characters, tensors re-made as base
``torch.Tensor`` (never a subclass) on the CPU with a known dtype, each backed by as many bytes as
it holds (no stride-0 or overlapping view) and all of them together at most ``MAX_FRAME`` bytes:
what the grader allocates from an answer is bounded by what it received. Parameter shapes a child
reports are mirrored on the ``meta`` device (nothing is allocated from them). A frame that breaks
any of this ends the conversation (``ChildGone``): the check that was talking fails, and so does
every later one of this submission.

**Deadlines hold.** Reads wait with ``select`` until the run's deadline; writes are non-blocking
and bounded by it too, so a child that stops reading cannot block the grader (and the sandbox's
watchdog kills the child's session at the deadline whatever this thread is doing).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle
import re
import select
import struct
import time
import zipfile
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from toolkit.checks import OutOfTime, one_line
from toolkit.grading import autograd
from toolkit.components import COMPONENTS, HOOKS, is_public_grader
from toolkit.pipeline import Pipeline
from toolkit.plugins import NotImplementedYet, PluginError

HEADER = struct.Struct(">Q")
MAX_FRAME = 128 << 20  # bytes of one answer (a GPT's parameters are ~4 MB; a corpus's token ids a few MB)
MAX_DEPTH = 12  # levels of nesting in an answer
MAX_ITEMS = 1_000_000  # values in an answer (lists of token ids are the longest)
MAX_PICKLE = 4 << 20  # bytes of an answer's structure (its pickle): the rest of a frame is tensor data
MAX_STRING = 8_000_000  # characters of one string (a decoded text)
MAX_NUMEL = 1 << 26  # elements of one tensor (64 M)
MAX_MESSAGE = 2000  # characters of an error message kept
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
    torch.uint8, torch.bool)}
# a parameter's dotted name: whatever nn.Module accepts (any name without a dot: digits in
# nn.Sequential, "é", spaces), at most 16 parts of 200 characters; shown only through one_line
NAME = re.compile(r"[^.]{1,200}(\.[^.]{1,200}){0,15}", re.S)
SLACK = 5.0  # seconds the grader waits beyond a time limit it asked the child to enforce


class ChildGone(PluginError):
    """The submission's process ended, stopped answering, or broke the protocol."""


class RemoteError(PluginError):
    """An exception the submission's code raised in the child, as the child reported it."""


class RemoteNotImplemented(RemoteError, NotImplementedYet):
    """A stub in the child: its code raised NotImplementedError."""


# -- frames ------------------------------------------------------------------------------
LATE = "the submission did not answer within the time limit"  # the run's deadline
CALL_LATE = "a call ran past its time limit"  # one call's limit (``Child.time_limit``), the child not stopping it


def _wait(fd: int, deadline: float, write: bool) -> None:
    left = deadline - time.monotonic()
    ready = select.select([], [fd], [], max(0.0, left))[1] if write else select.select([fd], [], [], max(0.0, left))[0]
    if left <= 0 or not ready:
        raise ChildGone(LATE)


def write_frame(fd: int, data: bytes, deadline: float | None = None) -> None:
    """One frame to ``fd``; with a deadline, ``fd`` must be non-blocking and the write gives up at it."""
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        if deadline is not None:
            _wait(fd, deadline, write=True)
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue
        except OSError as e:
            raise ChildGone("the submission's process ended") from e


def read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    """``n`` bytes from ``fd``; ChildGone at end of file or past ``deadline`` (time.monotonic)."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            _wait(fd, deadline, write=False)
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise ChildGone("the submission's process ended")
        buf += chunk
    return bytes(buf)


def read_frame(fd: int, deadline: float | None = None, limit: int = MAX_FRAME) -> bytes:
    (n,) = HEADER.unpack(read_exact(fd, HEADER.size, deadline))
    if n > limit:
        raise ChildGone(f"the submission's process sent {n} bytes at once (at most {limit})")
    return read_exact(fd, n, deadline)


# -- what the child sends ------------------------------------------------------------------
class _Budget:
    """What one answer may hold: MAX_ITEMS values, and MAX_FRAME bytes of tensors (the most a frame
    carries, unless its tensors view the same bytes more than once: those are refused)."""

    def __init__(self):
        self.items = 0
        self.bytes = 0

    def take(self, n: int = 1) -> None:
        self.items += n
        if self.items > MAX_ITEMS:
            raise ChildGone(f"the submission's process sent more than {MAX_ITEMS} values at once")

    def take_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > MAX_FRAME:
            raise ChildGone(f"the submission's process sent tensors of more than {MAX_FRAME} bytes at once")


def plain(x, depth: int = 0, budget: _Budget | None = None):
    """``x`` rebuilt from plain types only, within the caps above; ChildGone otherwise."""
    budget = budget or _Budget()
    budget.take()
    if depth > MAX_DEPTH:
        raise ChildGone(f"the submission's process sent data nested more than {MAX_DEPTH} deep")
    if x is None or type(x) in (bool, float):
        return x
    if type(x) is int:
        if not -(1 << 63) <= x < 1 << 63:
            raise ChildGone("the submission's process sent an integer out of range")
        return x
    if type(x) is str:
        if len(x) > MAX_STRING:
            raise ChildGone(f"the submission's process sent a string of {len(x)} characters")
        return x
    if type(x) in (list, tuple, torch.Size):
        budget.take(len(x))
        out = [plain(v, depth + 1, budget) for v in x]
        return out if type(x) is list else tuple(out)
    if type(x) is dict:
        budget.take(len(x))
        return {plain(k, depth + 1, budget): plain(v, depth + 1, budget) for k, v in x.items()
                if _key(k) or _bad("a dictionary key of type " + type(k).__name__)}
    if type(x) in (torch.Tensor, nn.Parameter):
        return _tensor(x, budget)
    if isinstance(x, torch.dtype):
        return x
    return _bad(f"a value of type {type(x).__name__}")


def _key(k) -> bool:
    """A dictionary key: a string, an int, or a tuple of them (a BPE merge's pair)."""
    return type(k) in (str, int) or (type(k) is tuple and len(k) <= 8 and all(type(v) in (str, int) for v in k))


def _bad(what: str):
    raise ChildGone(f"the submission's process sent {what}")


def _tensor(t: torch.Tensor, budget: _Budget) -> torch.Tensor:
    """A base tensor holding ``t``'s values, or ChildGone."""
    if t.layout != torch.strided or t.device.type != "cpu" or t.dtype not in DTYPES.values():
        _bad(f"a tensor of layout {t.layout}, device {t.device.type}, dtype {t.dtype}")
    if t.numel() > MAX_NUMEL:
        _bad(f"a tensor of {t.numel()} elements (at most {MAX_NUMEL})")
    size = t.numel() * t.element_size()
    if t.untyped_storage().nbytes() < size:  # a stride-0 or overlapping view: cloned, it would grow
        _bad(f"a tensor of {t.numel()} elements backed by {t.untyped_storage().nbytes()} bytes")
    budget.take_bytes(size)
    data = t.data if type(t) is nn.Parameter else t
    return torch.Tensor._make_subclass(torch.Tensor, data.detach()).clone()


def _check_structure(frame: bytes) -> None:
    """Refuse, before decoding it, a ``torch.save`` frame whose pickle (its structure, not its tensor
    data) exceeds MAX_PICKLE: weights_only's unpickler is pure Python, and millions of tiny values
    would hold the grader's thread for minutes."""
    try:
        with zipfile.ZipFile(io.BytesIO(frame)) as z:
            size = sum(i.file_size for i in z.infolist() if i.filename.endswith("data.pkl"))
    except (zipfile.BadZipFile, ValueError) as e:
        raise ChildGone("the submission's process sent an unreadable answer (not a torch.save document)") from e
    if size > MAX_PICKLE:
        raise ChildGone(f"the submission's process sent an answer whose structure takes {size} bytes "
                        f"(at most {MAX_PICKLE})")


class Channel:
    """The grader's end of the two pipes to one child, with the run's deadline. While the grader
    works for the child on its own (``paused``: a chat model fine-tuned from its mask), the child's
    clock stops: that time is not charged to the child."""

    def __init__(self, to_child: int, from_child: int, deadline: float):
        self.to_child, self.from_child, self._deadline = to_child, from_child, deadline
        os.set_blocking(to_child, False)
        self.gone: str | None = None  # why the child can no longer answer
        self._paused_at: float | None = None

    @property
    def deadline(self) -> float:
        """When the child's time is up (time.monotonic); while paused, it moves on with the clock."""
        if self._paused_at is None:
            return self._deadline
        return self._deadline + (time.monotonic() - self._paused_at)

    @contextlib.contextmanager
    def paused(self):
        """The grader's own work: the deadline moves on by the time it takes, less the time of the
        calls to the child made meanwhile (``exchange`` charges those)."""
        if self._paused_at is not None:  # already paused by an outer block
            yield
            return
        self._paused_at = time.monotonic()
        try:
            yield
        finally:
            self._deadline += time.monotonic() - self._paused_at
            self._paused_at = None

    def exchange(self, message: bytes, limit: float | None = None):
        """Send ``message`` (a pickle: the child trusts the grader) and return the answer, checked by
        ``plain``. ``limit``: the seconds the child was asked to stop the call after; the grader waits
        ``SLACK`` more (within the run's deadline)."""
        if self.gone:
            raise ChildGone(self.gone)
        started = time.monotonic()
        call_ends = None if limit is None else started + limit + SLACK
        deadline = self.deadline if call_ends is None else min(self.deadline, call_ends)
        try:
            write_frame(self.to_child, message, deadline)
            frame = read_frame(self.from_child, deadline)
            _check_structure(frame)
            try:
                answer = torch.load(io.BytesIO(frame), weights_only=True)
            except Exception as e:  # not a document torch.load accepts as plain data
                raise ChildGone(f"the submission's process sent an unreadable answer ({type(e).__name__})") from e
            return plain(answer)
        except ChildGone as e:
            if str(e) == LATE and deadline == call_ends:  # the call's own limit, not the run's, ran out
                e = ChildGone(f"{CALL_LATE} ({limit:.0f} s left in its check) and did not stop")
            self.gone = str(e)
            raise e from None
        finally:
            if self._paused_at is not None:  # a call made while paused is the child's time
                self._paused_at += time.monotonic() - started

    def close(self) -> None:
        for fd in (self.to_child, self.from_child):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- what the grader sends: handles and generators by reference ------------------------------
class _Pickler(pickle.Pickler):
    """Pickles a request; proxies travel as their handle, generators as their state."""

    def __init__(self, file):
        super().__init__(file, protocol=5)
        self.generators: list[torch.Generator] = []

    def persistent_id(self, obj):
        if isinstance(obj, RemoteModule):
            return ("module", getattr(obj, HANDLE).oid, _state_to_send(obj), _dtype(obj))
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

    def __init__(self, channel: Channel):
        self.channel = channel
        self.ends: float | None = None  # when the current ``time_limit`` block ends (time.monotonic)
        self.sources: dict[str, str] = {}  # component -> the file the child says provides it (for sentences)

    def hello(self) -> dict:
        """The child's first message: ``{"provided": [components]}`` or ``{"error": sentence}``."""
        answer = self.exchange("hello")
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

    def run(self, component: str, config, fn, args: tuple):
        """``fn(pipeline, *args)`` in the child, on its pipeline of ``component`` and ``config``."""
        module = fn.__module__
        if not getattr(fn, "__child_side__", False) or not is_public_grader(module):
            raise ValueError(f"{module}.{fn.__qualname__} is not a public @child_side function")
        return self.request("run", component, config, f"{module}:{fn.__qualname__}", args)

    @contextlib.contextmanager
    def time_limit(self, seconds: float):
        """The calls in the block may take the child ``seconds`` together, as ``toolkit.checks.alarm``
        limits the block in one process: each call is sent with what is left (the child stops the
        call itself; if it does not, the grader stops waiting ``SLACK`` seconds later and the child
        is gone), and a call with nothing left raises OutOfTime here."""
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
        if HOOKS[hook].name != self.only:
            return self._baselines.call(hook, *args, **kwargs)
        return autograd.call(self._child, ("hook", self.only, hook), args, kwargs, [],
                             lambda: ("call", self.only, hook, args, kwargs))

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
        return self._child.request("getattr", self._oid, name)

    def __call__(self, *args, **kwargs):
        return autograd.call(self._child, self, args, kwargs, [], lambda: ("call_object", self._oid, args, kwargs))

    def __iter__(self):
        """Iterating the child's object iterates over ``list(obj)``, computed there as plain data."""
        items = self._child.request("list", self._oid)
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
                             lambda: ("forward", handle.oid, _state_to_send(self), _dtype(self), args, False, self.training))


HANDLE = "remote.handle"  # the attribute holding a RemoteModule's _Handle


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


# -- a pipeline whose every stage the grader builds ---------------------------------------------
def load_parameters(model: nn.Module, params) -> None:
    """``params`` (name -> tensor, from the child: a module's initial weights) into ``model``: exactly
    its parameters' names, shapes and dtypes, or ChildGone."""
    mine = dict(model.named_parameters())
    if not isinstance(params, dict) or set(params) != set(mine):
        raise ChildGone("the submission's process sent a model whose parameters are not the expected ones")
    for name, p in mine.items():
        v = params[name]
        if not isinstance(v, torch.Tensor) or v.shape != p.shape or v.dtype != p.dtype:
            raise ChildGone(f"the submission's process sent parameter {one_line(name, 200)} with the wrong shape or dtype")
    model.load_state_dict(params, strict=False)  # tied weights (lm_head) follow; mirrors are assigned


def _stage(name: str) -> cached_property:
    """A stage of ``ChildPipeline``: the pipeline's own code, run here; the child's time is only that
    of the calls it answers meanwhile (``Channel.paused``)."""
    build = getattr(Pipeline, name).func

    def stage(self):
        with self.child.paused():
            return build(self)

    stage.__name__ = stage.__qualname__ = name
    stage.__doc__ = getattr(Pipeline, name).__doc__
    return cached_property(stage)


class ChildPipeline(Pipeline):
    """The grader's pipeline for one component of a submission that lives in a child.

    **The grader does the work itself.** Every stage is built here by the pipeline's own code, as
    under ``toolkit run``: the component's hooks are called in the child (``RemoteComponents``) and
    what they return is used here as a proxy: a tokenizer (``RemoteObject``) encodes the corpus that
    the grader pretrains on; a module (``RemoteModule``: an attention, a reward model) takes part in
    a model the grader trains, its outputs and gradients computed in the child
    (``toolkit.grading.autograd``), its parameters, optimizer, data, seeds and curves the grader's.
    The child trains nothing and sends no model, no curve and no figure.

    What is only as strong as the child's word: a module's initial weights where the grader does not
    give them itself (a reward model's head; its backbone must come back unchanged), and outputs and
    gradients of the submission's code, which are checked for their types and shapes only."""

    def __init__(self, child: Child, component: str, config, cache_dir=None, log=print):
        super().__init__(child.components(component), config, cache_dir, log=log)
        self.child, self.component = child, component

    def seed(self, seed: int) -> None:
        """Seed this process and the child alike: a module built there draws what it draws under ``toolkit run``."""
        super().seed(seed)
        self.child.request("seed", seed)

    def own(self, module, backbone):
        """A module of the child's with its initial weights, fetched, and the ``backbone`` the hook was
        handed among them unchanged (else it could start from a model trained in the child)."""
        if not isinstance(module, RemoteModule):
            return module
        state = self.child.request("state", getattr(module, HANDLE).oid)
        load_parameters(module, state)
        theirs = list(module.parameters())
        for name, p in backbone.named_parameters():
            if not any(q.shape == p.shape and q.dtype == p.dtype and torch.equal(q, p) for q in theirs):
                raise PluginError(f"the module toolkit_{self.component}_model built does not hold the backbone it was "
                                  f"handed unchanged (its {name} is not among its parameters)")
        return module

    def _train_or_load(self, model, stage: str, name, train, message: str) -> None:
        """Never cached when the model holds a module of the child's: no key knows its code."""
        if any(isinstance(m, RemoteModule) for m in model.modules()):
            name = None
        super()._train_or_load(model, stage, name, train, message)

    tokenizer = _stage("tokenizer")
    stream = _stage("stream")
    base_model = _stage("base_model")
    chat_model = _stage("chat_model")
    reward_model = _stage("reward_model")
    rlhf_model = _stage("rlhf_model")
