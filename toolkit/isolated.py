"""The two sides of grading one submission: the sandboxed child and the grader that talks to it.

``python -m toolkit.isolated SUBMISSION --fds R,W [--fast] [-c COMP] [--report DIR] [--uid N]``
is the child (started by ``toolkit.grade.run_one`` through ``toolkit.sandbox``):

1. it reads the run's nonce from its private request pipe (fd R) and, if ``--uid``, drops to
   that uid, before any student code is imported;
2. it imports every grader and records which functions ``torch``, ``toolkit`` and ``graders``
   hold (``integrity_snapshot``), then loads the submission and runs the *public* checks;
3. it sends one JSON document with the nonce, the run and any function the submission replaced
   on its private result pipe (fd W; stdout is the student's and is ignored), then
4. serves the grader's calls to the submission's hooks (``serve``) until the grader closes the
   pipe.

The grader side (``Channel``, ``RemoteComponents``, ``run_hidden``) runs the hidden checks in
the grader's process with the submission's components replaced by proxies to the child. The
grader reads only length-prefixed frames from the child, JSON first and then
``torch.load(weights_only=True)`` documents: plain data, never code. A child that exits, hangs
or sends garbage fails the check that was talking to it, nothing more.

The public checks run beside the student's code, so their result is tamper-*evident* (a
replaced ``torch.allclose``, check or grader function zeroes the run; the document must carry
the nonce; the child must reach the end: an early ``sys.exit``/``os._exit`` sends nothing),
while the hidden checks are tamper-*proof*: they are judged where student code never runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import select
import struct
import sys
import time
from pathlib import Path

HEADER = struct.Struct(">Q")
MAX_FRAME = 256 << 20  # the grader never reads more than this in one answer


# -- frames over a pipe ------------------------------------------------------------------
class ChildGone(Exception):
    """The submission's process ended, stopped answering, or broke the protocol."""


def write_frame(fd: int, data: bytes) -> None:
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    """``n`` bytes from ``fd``; ChildGone at end of file or past ``deadline`` (time.monotonic)."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ChildGone("the submission did not answer within the time limit")
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


# -- the grader's side -------------------------------------------------------------------
class Channel:
    """The grader's end of the two pipes to one child, with the run's deadline."""

    def __init__(self, to_child: int, from_child: int, deadline: float):
        self.to_child, self.from_child, self.deadline = to_child, from_child, deadline
        self.gone: str | None = None  # why the child can no longer answer

    def send(self, message) -> None:
        try:
            write_frame(self.to_child, pickle.dumps(message))
        except OSError as e:
            raise ChildGone("the submission's process ended") from e

    def first_document(self) -> dict:
        """The child's JSON document (the public run)."""
        return json.loads(read_frame(self.from_child, self.deadline, limit=64 << 20))

    def request(self, message):
        """Send a request to the child; its answer decoded as plain data (see ``_answer``)."""
        if self.gone:
            raise ChildGone(self.gone)
        try:
            self.send(message)
            import torch
            return torch.load(io.BytesIO(read_frame(self.from_child, self.deadline)), weights_only=True)
        except ChildGone as e:
            self.gone = str(e)
            raise
        except Exception as e:  # not a frame torch.load accepts with weights_only: garbage
            self.gone = f"the submission's process sent an unreadable answer ({type(e).__name__})"
            raise ChildGone(self.gone) from e

    def close(self) -> None:
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass


def _unwrap(channel: Channel, answer: dict):
    """A value from the child's answer: plain data, a proxy, or the exception it reports raised."""
    from toolkit.plugins import PluginError

    kind = answer.get("kind") if isinstance(answer, dict) else None
    if kind == "value":
        return answer["value"]
    if kind == "module":
        return RemoteModule(channel, answer["oid"], answer["params"])
    if kind == "object":
        return RemoteObject(channel, answer["oid"])
    if kind == "error" and answer.get("plugin_error"):
        raise PluginError(str(answer["message"]))
    if kind == "error":
        name = str(answer["type"]) if str(answer["type"]).isidentifier() else "Error"
        raise type(name, (Exception,), {})(str(answer["message"]))
    raise ChildGone("the submission's process sent an answer of no known kind")


class RemoteObject:
    """An object that lives in the child: attributes and calls go over the channel."""

    def __init__(self, channel: Channel, oid: int):
        object.__setattr__(self, "_channel", channel)
        object.__setattr__(self, "_oid", oid)

    def __getattr__(self, name: str):
        return _unwrap(self._channel, self._channel.request(("getattr", self._oid, name)))

    def __call__(self, *args, **kwargs):
        return _unwrap(self._channel, self._channel.request(("call", self._oid, args, kwargs)))


def _remote_module_class():
    """``RemoteModule``: built lazily, so that importing this module does not import torch."""
    from torch import nn

    class RemoteModule(nn.Module):
        """An ``nn.Module`` that lives in the child, mirrored by placeholder parameters here.

        Its parameters' names, shapes and dtypes are the child module's; what the grader does
        to them (``.double()``, ``load_state_dict``) is sent with every forward call, which
        the child runs on its module with exactly these parameters.
        """

        def __init__(self, channel: Channel, oid: int, params: list):
            import torch
            super().__init__()
            self._channel, self._oid = channel, oid
            for name, shape, dtype in params:
                *path, leaf = str(name).split(".")
                owner = self
                for part in path:
                    if not hasattr(owner, part):
                        owner.add_module(part, nn.Module())
                    owner = getattr(owner, part)
                owner.register_parameter(leaf, nn.Parameter(torch.zeros(shape, dtype=getattr(torch, dtype))))

        def forward(self, *args):
            import torch
            state = {name: p.detach() for name, p in self.named_parameters()}
            answer = self._channel.request(("forward", self._oid, state, args, torch.is_grad_enabled()))
            return _unwrap(self._channel, answer)

    return RemoteModule


def RemoteModule(channel: Channel, oid: int, params: list):
    return _remote_module_class()(channel, oid, params)


class RemoteComponents:
    """``toolkit.plugins.Components`` of one component of the submission, in the child: every hook
    of ``toolkit.components.COMPONENTS`` by the same method name, forwarded over the channel."""

    def __init__(self, channel: Channel, component: str):
        self._channel, self.only = channel, component

    def _call(self, method: str, *args, **kwargs):
        return _unwrap(self._channel, self._channel.request(("components", self.only, method, args, kwargs)))

    def source(self, component):
        return self._call("source", component)

    def call(self, hook, *args, **kwargs):
        return self._call("call", hook, *args, **kwargs)

    def __getattr__(self, name: str):
        from toolkit.components import HOOKS

        if f"toolkit_{name}" not in HOOKS:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return lambda *args, **kwargs: self.call(f"toolkit_{name}", *args, **kwargs)


def run_hidden(channel: Channel, components: list[str], public: list[dict], behavioural: bool) -> list[dict]:
    """The hidden checks of ``components``, judged here, calling the submission in the child.

    A hidden behavioural check trains nothing of the student's: it judges what the public
    checks measured in the child (``public``, their results), e.g. the replies of the RLHF model.
    Those are tamper-evident like every public result, not tamper-proof: what the instructor's
    reward model scores was produced next to the student's code.
    """
    from toolkit.checks import Context, collect, run_check
    from toolkit.pipeline import PipelineConfig

    results = []
    for comp in components:
        ctx = Context(RemoteComponents(channel, comp), comp, PipelineConfig(), log=lambda msg: None,
                      earlier={r["name"]: r["metrics"] for r in public if r["component"] == comp})
        for c in collect([comp], include_hidden=True):
            if c.hidden and (behavioural or not c.behavioural):
                results.append(run_check(c, ctx).to_dict())
    return results


# -- the child's side ----------------------------------------------------------------------
_GUARDED_MODULES = ("torch", "torch.nn", "torch.nn.functional", "torch.testing", "builtins", "json", "math")


def integrity_snapshot() -> dict:
    """(module or class, name) -> the function or class it holds, for torch and the grader's code."""
    import torch

    owners = {name: m for name, m in list(sys.modules.items()) if m is not None and (
        name in _GUARDED_MODULES or name == "__main__" or name.split(".")[0] in ("toolkit", "graders"))}
    owners.update({"torch.Tensor": torch.Tensor, "torch._C.TensorBase": torch._C.TensorBase})
    snap = {}
    for owner_name, owner in owners.items():
        for attr, value in list(vars(owner).items()):
            if callable(value) and not attr.startswith("__"):
                snap[(owner_name, attr)] = (owner, value)
    return snap


def replaced(snapshot: dict) -> list[str]:
    """What the snapshot's owners no longer hold: the functions student code replaced."""
    return [f"{o}.{a}" for (o, a), (owner, value) in snapshot.items() if vars(owner).get(a) is not value]


def _is_plain(x, depth: int = 0) -> bool:
    """Data the grader can read with ``torch.load(weights_only=True)``."""
    import torch

    if depth > 20:
        return False
    if x is None or isinstance(x, (bool, int, float, str, torch.Tensor, torch.dtype)):
        return True
    if isinstance(x, (list, tuple)):
        return type(x) in (list, tuple) and all(_is_plain(v, depth + 1) for v in x)
    if isinstance(x, dict):
        return type(x) is dict and all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in x.items())
    return False


def _detached(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (list, tuple)):
        return type(x)(_detached(v) for v in x)
    if isinstance(x, dict):
        return {_detached(k): _detached(v) for k, v in x.items()}
    return x


class Server:
    """The child's objects the grader holds handles to, and how it answers each request."""

    def __init__(self, pm):
        self.pm, self.objects, self.components = pm, {}, {}

    def answer(self, request) -> dict:
        from torch import nn

        from toolkit.plugins import PluginError
        try:
            value = self.handle(request)
        except PluginError as e:
            return {"kind": "error", "type": "PluginError", "message": str(e), "plugin_error": True}
        except BaseException as e:  # SystemExit and KeyboardInterrupt from student code too
            return {"kind": "error", "type": type(e).__name__, "message": str(e)}
        if _is_plain(value):
            return {"kind": "value", "value": _detached(value)}
        oid = len(self.objects) + 1
        self.objects[oid] = value
        if isinstance(value, nn.Module):
            params = [(n, list(p.shape), str(p.dtype).removeprefix("torch.")) for n, p in value.named_parameters()]
            return {"kind": "module", "oid": oid, "params": params}
        return {"kind": "object", "oid": oid}

    def handle(self, request):
        import torch

        from toolkit.plugins import Components

        op, *args = request
        if op == "components":
            comp, method, a, kw = args
            components = self.components.setdefault(comp, Components(self.pm, only=comp))
            return getattr(components, method)(*a, **kw)
        if op == "getattr":
            return getattr(self.objects[args[0]], args[1])
        if op == "call":
            return self.objects[args[0]](*args[1], **args[2])
        if op == "forward":
            oid, state, a, grad = args
            module = self.objects[oid]
            if state:
                module.to(next(iter(state.values())).dtype)
                module.load_state_dict(state, strict=False)
            with torch.set_grad_enabled(grad):
                return module(*a)
        raise ValueError(f"unknown request {op!r}")


def serve(server: Server, requests: int, answers: int) -> None:
    """Answer the grader's requests until it closes the pipe."""
    import torch

    while True:
        try:
            request = pickle.loads(read_frame(requests))  # from the grader: trusted
        except ChildGone:
            return
        buf = io.BytesIO()
        answer = server.answer(request)
        try:
            torch.save(answer, buf)
        except Exception as e:
            buf = io.BytesIO()
            torch.save({"kind": "error", "type": type(e).__name__, "message": f"cannot send the result: {e}"}, buf)
        write_frame(answers, buf.getvalue())


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (and gid ``uid``, no supplementary groups), for good."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def child_main(argv: list[str] | None = None) -> None:
    """The sandboxed child: the public checks, one JSON document on fd W, then ``serve``."""
    p = argparse.ArgumentParser(prog="python -m toolkit.isolated")
    p.add_argument("submission")
    p.add_argument("--fds", required=True)
    p.add_argument("--fast", action="store_true")
    p.add_argument("-c", dest="components", action="append", default=[])
    p.add_argument("--report", type=Path)
    p.add_argument("--uid", type=int)
    args = p.parse_args(argv)
    requests, answers = (int(x) for x in args.fds.split(","))
    nonce = pickle.loads(read_frame(requests))
    if args.uid is not None:
        drop_privileges(args.uid)
    sys.stdout = sys.stderr  # whatever student code prints is not the result

    from toolkit.checks import Context, collect, run_check
    from toolkit.pipeline import PipelineConfig
    from toolkit.components import COMPONENTS
    from toolkit.plugins import SubmissionError, build_manager, load_submission, provided_components
    from toolkit.runner import Run, environment

    collect(None, include_hidden=False)  # import every public grader before the submission can touch it
    if not args.fast:
        # An optimizer's first step imports torch._dynamo, which re-wraps torch.manual_seed: import it
        # first, so that only the submission can be caught replacing it (2.5 s; --fast trains nothing).
        import torch._dynamo  # noqa: F401
    snapshot = integrity_snapshot()
    config = PipelineConfig()
    try:
        plugins = load_submission(args.submission)
        pm = build_manager(plugins)
    except SubmissionError as e:
        write_frame(answers, json.dumps({"nonce": nonce, "error": str(e)}).encode())
        return
    provided = list(provided_components(plugins))
    wanted = args.components or list(COMPONENTS)
    results = []
    for comp in [c for c in COMPONENTS if c in wanted and c in provided]:
        ctx = Context(Components_for(pm, comp), comp, config, args.report, None, lambda m: None)
        for c in collect([comp], include_hidden=False):
            if not (c.behavioural and args.fast):
                results.append(run_check(c, ctx))
    run = Run(args.submission, results, [c for c in wanted if c not in provided], False, environment(config))
    if args.report:
        from toolkit.report import write_report
        write_report(run, args.report)
    doc = {"nonce": nonce, "run": run.to_dict(), "provided": [c for c in provided if c in wanted],
           "replaced": replaced(snapshot)}
    write_frame(answers, json.dumps(doc, default=str).encode())
    serve(Server(pm), requests, answers)


def Components_for(pm, component: str):
    from toolkit.plugins import Components
    return Components(pm, only=component)


if __name__ == "__main__":
    child_main()
    sys.stdout.flush()
    os._exit(0)  # without waiting for threads the submission may have started
