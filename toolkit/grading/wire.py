"""The wire between the grader and a submission's child: frames, the requests (``Op``), and what an
answer may hold.

**Frames.** Each message is a length-prefixed frame (``HEADER``). A request is a pickle (the child
trusts the grader): a tuple ``(Op, *arguments, time limit)``, objects the child keeps travelling as
their handles (``toolkit.grading.remote``). An answer is a ``torch.save`` document of plain data
(``DTYPES``; the child keeps anything else and sends a handle), at most ``MAX_FRAME`` bytes.

**Nothing the child sends is believed beyond its type.** An answer is read with
``torch.load(weights_only=True)`` (no code runs) once its structure is known to be small
(``check_structure``), then ``plain`` rebuilds it from scratch: at most ``MAX_DEPTH`` levels of
nesting, ``MAX_ITEMS`` values, strings of at most ``MAX_STRING`` characters, tensors re-made as base
``torch.Tensor`` (never a subclass) on the CPU with a known dtype, each backed by as many bytes as
it holds (no stride-0 or overlapping view) and all of them together at most ``MAX_FRAME`` bytes:
what the grader allocates from an answer is bounded by what it received. A frame that breaks any
of this ends the conversation (``ChildGone``): the check that was talking fails, and so does every
later one of this submission.

**Deadlines hold.** The grader's end of the pipe (``Channel``) reads with ``select`` until the run's
deadline (or a call's own limit, and ``SLACK`` seconds); writes are non-blocking and bounded by it
too, so a child that stops reading cannot block the grader (and the sandbox's watchdog kills the
child's session at the deadline whatever this thread is doing).
"""

from __future__ import annotations

import contextlib
import enum
import io
import os
import select
import struct
import time
import zipfile

import torch
from torch import nn

from toolkit.plugins import PluginError

HEADER = struct.Struct(">Q")
MAX_FRAME = 128 << 20  # bytes of one answer (a GPT's parameters are ~4 MB; a corpus's token ids a few MB)
MAX_DEPTH = 12  # levels of nesting in an answer
MAX_ITEMS = 1_000_000  # values in an answer (lists of token ids are the longest)
MAX_PICKLE = 4 << 20  # bytes of an answer's structure (its pickle): the rest of a frame is tensor data
MAX_STRING = 8_000_000  # characters of one string (a decoded text)
MAX_NUMEL = 1 << 26  # elements of one tensor (64 M)
MAX_MESSAGE = 2000  # characters of an error message kept
SLACK = 5.0  # seconds the grader waits beyond a time limit it asked the child to enforce
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
    torch.uint8, torch.bool)}


class Op(str, enum.Enum):
    """What the grader asks of the child (the first item of a request); the child answers each (``Server.handle``)."""

    HELLO = "hello"  # which components the submission provides, or why it cannot be loaded
    CALL = "call"  # call a hook of a component
    GETATTR = "getattr"  # an attribute of an object the child keeps
    CALL_OBJECT = "call_object"  # call an object the child keeps
    LIST = "list"  # list(object), as plain data
    FORWARD = "forward"  # a module's output, with the parameters the grader set
    TAPE = "tape"  # a call's output, its graph kept for a backward (``toolkit.grading.autograd``)
    VJP = "vjp"  # the gradients of a kept graph
    STATE = "state"  # a module's parameters
    SEED = "seed"  # seed the child's generator
    RUN = "run"  # a ``@child_side`` function of a public grader on the child's pipeline
    STEP = "step"  # an optimizer's step on the gradients the grader computed: the parameters it gives


class ChildGone(PluginError):
    """The submission's process ended, stopped answering, or broke the protocol."""


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


# -- what the grader reads: plain data within the caps -------------------------------------------
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


def check_structure(frame: bytes) -> None:
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



def read_answer(frame: bytes):
    """An answer frame as plain data (``check_structure``, ``torch.load(weights_only=True)``, ``plain``),
    or ChildGone."""
    check_structure(frame)
    try:
        answer = torch.load(io.BytesIO(frame), weights_only=True)
    except Exception as e:  # not a document torch.load accepts as plain data
        raise ChildGone(f"the submission's process sent an unreadable answer ({type(e).__name__})") from e
    return plain(answer)


# -- the grader's end of the pipe -----------------------------------------------------------
class Channel:
    """The grader's end of the two pipes to one child, with the run's wall-clock deadline (the
    backstop, where the child's time is counted on its cgroup's CPU clock: ``toolkit.grading.batch.deadlines``).
    While the grader works for the child on its own (``paused``: a chat model fine-tuned from its
    mask), that deadline moves on: that time is not charged to the child."""

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
            return read_answer(read_frame(self.from_child, deadline))
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
