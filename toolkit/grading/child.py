"""The sandboxed child: the only process that runs a submission's code under ``toolkit grade``.

``python -m toolkit.grading.child SUBMISSION --fds R,W [--uid N]`` (started by
``toolkit.grading.sandbox.start``, in the submission's box):

1. drops to the unprivileged ``--uid`` if given, before any student code is imported;
2. loads the submission, and answers the grader's first request with which components it
   provides, or with the one-sentence reason it cannot be loaded;
3. then answers every request of the grader (``Server``) until the grader closes the pipe: a
   call to a hook, to an object or module it keeps (its output, or the gradients of its output:
   ``toolkit.grading.autograd``), a ``@child_side`` observation of a public grader to run.

It trains nothing: every model that runs the submission's code is trained by the grader, which
calls the submission's modules and hooks here for their outputs and gradients.

It judges nothing: it sends no score, no result, no document of its own. Whatever it sends is
plain data (``_is_plain``) read by the grader with ``torch.load(weights_only=True)`` and checked
there (``toolkit.grading.wire.plain``); a child that lies, stops or sends garbage
only fails its own checks.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import pickle
import sys
from pathlib import Path

MAX_TAPES = 256  # graphs kept for a backward (a training step needs one per remote call of its forward)


def _is_plain(x, depth: int = 0) -> bool:
    """Data the grader reads as a value (anything else is kept here and sent as a handle). A tensor
    the grader would refuse (a complex, sparse or meta one) goes as a handle too: the check that
    asked for it then fails with a sentence, and the conversation goes on."""
    import torch

    if depth > 10:
        return False
    if x is None or type(x) in (bool, int, float, str) or isinstance(x, torch.dtype):
        return True
    if isinstance(x, torch.Tensor):
        from toolkit.grading.wire import DTYPES

        return x.layout == torch.strided and x.device.type == "cpu" and x.dtype in DTYPES.values()
    if type(x) in (list, tuple):
        return all(_is_plain(v, depth + 1) for v in x)
    if type(x) is dict:
        return all((type(k) in (str, int) or type(k) is tuple and all(type(v) in (str, int) for v in k))
                   and _is_plain(v, depth + 1) for k, v in x.items())
    return False


def _detached(x):
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach()
        return (x if type(x) is torch.Tensor else x.as_subclass(torch.Tensor)).clone()
    if type(x) in (list, tuple):
        return type(x)(_detached(v) for v in x)
    if type(x) is dict:
        return {k: _detached(v) for k, v in x.items()}
    return x


class _Unpickler(pickle.Unpickler):
    """Reads a request: handles become this child's objects, generator states new generators."""

    def __init__(self, file, server: Server):
        super().__init__(file)
        self.server, self.generators = server, []

    def persistent_load(self, pid):
        import torch

        kind, *rest = pid
        if kind == "object":
            return self.server.objects[rest[0]]
        if kind == "module":
            oid, state, dtype = rest
            return self.server.set_state(oid, state, dtype)
        if kind == "generator":
            g = torch.Generator()
            g.set_state(rest[0])
            self.generators.append(g)
            return g
        raise pickle.UnpicklingError(f"unknown reference {kind!r}")


class Server:
    """The submission's components, the objects the grader holds handles to, and its pipelines."""

    def __init__(self, pm, provided: list[str], sources: dict[str, str] | None = None):
        self.pm, self.provided = pm, provided
        self.sources = sources or {}  # component -> the file that provides it, to name it in a sentence
        self.objects: dict[int, object] = {}
        self.components, self.pipelines = {}, {}
        self.tapes, self.last_tape = {}, 0  # graphs of calls whose gradients the grader may ask for

    # -- answering -------------------------------------------------------------------------
    def answer(self, frame: bytes) -> bytes:
        """The grader's request (a pickle) -> the answer (``torch.save`` of plain data)."""
        import torch

        from toolkit.alarm import OutOfTime, alarm
        from toolkit.checks import _is_stub, student_error
        from toolkit.grading.wire import MAX_MESSAGE
        from toolkit.plugins import NotImplementedYet, PluginError

        reader = _Unpickler(io.BytesIO(frame), self)
        try:
            op, *args, limit = reader.load()
            if limit is None:
                answer = self.handle(op, *args)
            else:
                with alarm(limit):
                    answer = self.handle(op, *args)
        except OutOfTime:
            answer = {"kind": "error", "type": "OutOfTime", "message": "time limit", "time_limit": True}
        except PluginError as e:
            answer = {"kind": "error", "type": "PluginError", "message": str(e)[:MAX_MESSAGE], "plugin_error": True,
                      "stub": isinstance(e, NotImplementedYet)}
        except BaseException as e:  # SystemExit and KeyboardInterrupt from student code too
            answer = {"kind": "error", "type": type(e).__name__[:100], "message": student_error(e)[:MAX_MESSAGE],
                      "sentence": True, "stub": _is_stub(e)}
        answer["generators"] = [g.get_state() for g in reader.generators]
        buf = io.BytesIO()
        try:
            torch.save(answer, buf)
        except Exception as e:
            buf = io.BytesIO()
            torch.save({"kind": "error", "type": type(e).__name__, "message": f"cannot send the result: {e}",
                        "generators": answer["generators"]}, buf)
        return buf.getvalue()

    def handle(self, op: str, *args) -> dict:
        from toolkit.grading.wire import Op
        from toolkit.plugins import Components

        if op == Op.HELLO:
            return {"kind": "hello", "provided": self.provided, "sources": self.sources}
        if op == Op.CALL:
            comp, hook, a, kw = args
            components = self.components.setdefault(comp, Components(self.pm, only=comp))
            return self.pack(components.call(hook, *a, **kw))
        if op == Op.GETATTR:
            return self.pack(getattr(self.objects[args[0]], args[1]))
        if op == Op.CALL_OBJECT:
            return self.pack(self.objects[args[0]](*args[1], **args[2]))
        if op == Op.LIST:
            return self.pack(list(self.objects[args[0]]))
        if op == Op.FORWARD:
            return self.pack(self.forward(*args))
        if op == Op.TAPE:
            return self.pack(self.tape(*args))
        if op == Op.VJP:
            return self.pack(self.tapes.pop(args[0]).vjp(args[1]))
        if op == Op.STATE:
            return self.pack({n: p.detach() for n, p in self.objects[args[0]].named_parameters()})
        if op == Op.SEED:
            import torch
            torch.manual_seed(args[0])
            return self.pack(None)
        if op == Op.RUN:
            comp, config, name, a = args
            return self.pack(_child_side(name)(self.pipeline(comp, config), *a))
        if op == Op.STEP:
            oid, grads, lrs = args
            return self.pack(step(self.objects[oid], grads, lrs))
        raise ValueError(f"unknown request {op!r}")

    def pack(self, value) -> dict:
        """A value as plain data, or kept here and sent as a handle."""
        from torch import nn

        if _is_plain(value):
            return {"kind": "value", "value": _detached(value)}
        oid = len(self.objects) + 1
        self.objects[oid] = value
        if isinstance(value, nn.Module):
            params = [[n, list(p.shape), str(p.dtype).removeprefix("torch.")] for n, p in value.named_parameters()]
            return {"kind": "module", "oid": oid, "params": params, "type": type(value).__name__}
        return {"kind": "object", "oid": oid, "type": type(value).__name__}  # the type: for the grader's sentences

    # -- modules ---------------------------------------------------------------------------
    def set_state(self, oid: int, state: dict | None, dtype):
        """Module ``oid`` with the parameters the grader set (None: those it sent last)."""
        module = self.objects[oid]
        if dtype is not None and any(p.is_floating_point() and p.dtype != dtype for p in module.parameters()):
            module.to(dtype)  # only then: it would bump the versions of parameters a kept graph (a tape) holds
        if state:
            module.load_state_dict(state, strict=False)
        return module

    def forward(self, oid: int, state, dtype, args, grad: bool, training: bool):
        import torch

        module = self.set_state(oid, state, dtype)
        module.train(training)
        with torch.set_grad_enabled(grad):
            return module(*args)

    def tape(self, target, args, kwargs, training: bool, names: list[str]) -> dict:
        """A call's output, and the handle of its graph kept for its backward (``vjp``: the gradients
        of the output with respect to its floating-point inputs and, for a module, the parameters
        ``names``; ``toolkit.grading.autograd``). At most MAX_TAPES graphs are kept."""
        from torch import nn

        from toolkit.grading.autograd import Tape
        from toolkit.plugins import Components

        params = []
        if isinstance(target, nn.Module):  # set to the grader's parameters by the unpickler
            target.train(training)
            params = [(n, p) for n, p in target.named_parameters() if n in set(names)]
            fn = target
        elif isinstance(target, tuple):  # ("hook", component, hook)
            _, comp, hook = target
            components = self.components.setdefault(comp, Components(self.pm, only=comp))
            fn = lambda *a, **kw: components.call(hook, *a, **kw)  # noqa: E731
        else:
            fn = target
        tape = Tape(fn, args, kwargs, params)
        self.last_tape += 1
        self.tapes[self.last_tape] = tape
        while len(self.tapes) > MAX_TAPES:  # a forward under gradients whose backward never came
            del self.tapes[next(iter(self.tapes))]
        return {"out": _detached(tape.out), "tape": self.last_tape}

    # -- pipelines -------------------------------------------------------------------------
    def pipeline(self, component: str, config):
        from toolkit.pipeline import Pipeline
        from toolkit.plugins import Components

        key = (component, config)
        if key not in self.pipelines:
            self.pipelines[key] = Pipeline(Components(self.pm, only=component), config,
                                           log=lambda msg: print(msg, file=sys.stderr))
        return self.pipelines[key]


def step(opt, grads: list, lrs: list) -> list:
    """Optimizer ``opt``'s step: its parameters (its param groups', in order) given ``grads`` and each
    group's learning rate ``lrs``, as the grader's loop sets them; their new values."""
    groups = opt.param_groups
    params = [p for group in groups for p in group["params"]]
    if len(grads) != len(params) or len(lrs) != len(groups):
        raise ValueError(f"the optimizer holds {len(params)} parameters in {len(groups)} groups; "
                         f"the pipeline gave it {len(grads)} in {len(lrs)}")
    for p, g in zip(params, grads):
        p.grad = g
    for group, lr in zip(groups, lrs):
        group["lr"] = lr
    opt.step()
    return [p.detach() for p in params]


def _child_side(name: str):
    """The ``@child_side`` function ``module:qualname`` of a public grader."""
    from toolkit.components import is_public_grader

    module, _, attr = name.partition(":")
    if not is_public_grader(module):
        raise ValueError(f"{name} is not a public grader function")
    fn = getattr(importlib.import_module(module), attr)
    if not getattr(fn, "__child_side__", False):
        raise ValueError(f"{name} is not marked @child_side")
    return fn


def serve(server: Server, requests: int, answers: int) -> None:
    """Answer the grader's requests until it closes the pipe."""
    from toolkit.grading.wire import ChildGone, read_frame, write_frame

    while True:
        try:
            frame = read_frame(requests)
        except ChildGone:
            return
        write_frame(answers, server.answer(frame))


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (and gid ``uid``, no supplementary groups), for good."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m toolkit.grading.child")
    p.add_argument("submission", type=Path)
    p.add_argument("--fds", required=True)
    p.add_argument("--uid", type=int)
    args = p.parse_args(argv)
    requests, answers = (int(x) for x in args.fds.split(","))
    if args.uid is not None:
        drop_privileges(args.uid)
    sys.stdout = sys.stderr  # whatever student code prints goes to the captured stderr
    import torch

    from toolkit.config import PipelineConfig
    torch.set_num_threads(PipelineConfig().threads)  # float sums depend on it: the same outputs as ``toolkit run``

    from toolkit.plugins import SubmissionError, build_manager, load_submission, provided_components

    try:
        plugins = load_submission(args.submission, relative_to=args.submission.parent)
        pm, sources = build_manager(plugins), provided_components(plugins)
    except SubmissionError as e:
        pm, sources, error = None, {}, str(e)
    else:
        error = None
    server = Server(pm, list(sources), sources)
    if error is not None:
        server.handle = lambda op, *args: {"kind": "hello", "error": error}
    serve(server, requests, answers)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # without waiting for threads the submission may have started
