"""The time limit of a block of calls into the submission (``Context.time_limit``): ``alarm(seconds)``
raises ``OutOfTime`` in the block, by a timer signal or from a watchdog thread."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading


class OutOfTime(BaseException):
    """A call ran past ``Context.time_limit``. Not an Exception: a student's ``except Exception``
    cannot swallow it."""


@contextlib.contextmanager
def alarm(seconds: float):
    """Raise OutOfTime in the block after ``seconds``, in the thread that runs it.

    Where the OS has ``SIGALRM`` and this is the main thread (Linux, macOS), a timer signal does it;
    elsewhere (Windows, or a thread a notebook's kernel runs checks in) a watchdog thread raises it
    into the block's thread (``PyThreadState_SetAsyncExc``). Both interrupt Python code at its next
    bytecode (a long C call, one torch op, finishes first). A worker process would work too, but it
    would have to copy the student's objects there and back."""
    use_signal = hasattr(signal, "SIGALRM") and hasattr(signal, "setitimer") and \
        threading.current_thread() is threading.main_thread()
    with (_signal_alarm if use_signal else _thread_alarm)(seconds):
        yield


@contextlib.contextmanager
def _signal_alarm(seconds: float):
    def interrupt(signum, frame):
        raise OutOfTime

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _thread_alarm(seconds: float):
    thread, lock, state = threading.get_ident(), threading.Lock(), {"armed": True, "fired": False}

    def interrupt():
        with lock:
            if state["armed"]:
                _raise_in(thread, OutOfTime)
                state["fired"] = True

    timer = threading.Timer(seconds, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:  # from here on the timer cannot fire
            timer.cancel()
            state["armed"] = False
        if state["fired"]:  # take back an OutOfTime not raised yet: none may come after the block
            _raise_in(thread, None)


def _raise_in(thread: int, exception: type[BaseException] | None) -> None:
    """Raise ``exception`` in thread ``thread`` at its next bytecode (None: cancel one not raised yet)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                                ctypes.py_object(exception) if exception else None)
