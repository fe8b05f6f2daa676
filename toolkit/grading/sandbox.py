"""Start one untrusted submission's child process, isolated and limited, and stop it for sure.

**Two layers.**

- *bubblewrap* (``bwrap``), when it is installed and works here (probed once, cached): the
  child sees a minimal root: the system directories read-only, the Python installation
  read-only, ``toolkit/`` and ``graders/`` read-only with ``graders/hidden/`` (and, in an
  installed toolkit, whose Python installation holds them, ``solutions/`` and ``assignments/``)
  replaced by an empty tmpfs, the submission (a copy) read-only at ``/sandbox/submission``, the grader's cached
  base and chat models read-only, and two size-capped tmpfs, ``/tmp`` and ``/sandbox/work``
  (its working directory, ``HOME`` and model cache). Nothing else: not ``solutions/``, not the
  grader's working directory or home, not the other students, not arbitrary ``sys.path``
  entries, no network (``--unshare-net``); ``--unshare-pid --die-with-parent`` end every
  process it started with it. A root grader's child drops to a fresh unprivileged uid of its
  own once inside, before it imports the submission, so that ``RLIMIT_NPROC`` bounds a fork bomb.
- *resource limits*, always (also where bubblewrap cannot run, recorded as ``"rlimits
  only"``): ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE`` and no core files,
  set in ``preexec_fn``; stdout and stderr are read by ``drain`` and kept up to
  ``max_output`` bytes each, the rest read and dropped.

**A watchdog** (``Watchdog``) kills the child's whole session once its cgroup has used its CPU
seconds, or at the wall-clock deadline, whatever the grader's thread is doing, and without
bubblewrap also when the box grows past the scratch cap. The box is removed afterwards by
``toolkit.grading.intake.remove_tree`` (any depth).

The child runs no check and is believed in nothing: see ``toolkit.grading.remote`` and ``toolkit.grading.wire``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolkit.grading import cgroup, intake
from toolkit.paths import GRADERS, ROOT, TOOLKIT

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
INSIDE_SUBMISSION, INSIDE_WORK = Path("/sandbox/submission"), Path("/sandbox/work")
SECRETS = ("graders/hidden", "solutions", "assignments")  # what a child never sees: hidden checks, solution code
SHM = 64 << 20  # bytes of /dev/shm in the sandbox (the rest of /dev is read-only)
FIRST_UID = 200_000  # unprivileged uids for children of a root grader: FIRST_UID + 0..UID_RANGE-1
UID_RANGE = 50_000
_uids = itertools.count()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one grading process (and everything it starts)."""

    cpu_seconds: int = 1200  # RLIMIT_CPU: CPU time, summed over threads
    memory: int = 4 << 30  # RLIMIT_AS: address space; torch maps 0.64 GiB, training peaks under 1 GiB
    nproc: int = 256  # RLIMIT_NPROC: processes and threads of the child's uid
    file_size: int = 256 << 20  # RLIMIT_FSIZE: largest file it may write
    scratch: int = 256 << 20  # bytes of each scratch tmpfs (/tmp, /sandbox/work); the whole box without bwrap
    max_output: int = 1 << 20  # bytes of stdout and of stderr kept


def set_limits(limits: Limits) -> None:
    """Apply ``limits`` to this process (called in the child between fork and exec)."""
    for which, value in [(resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_AS, limits.memory),
                         (resource.RLIMIT_NPROC, limits.nproc), (resource.RLIMIT_FSIZE, limits.file_size),
                         (resource.RLIMIT_CORE, 0)]:
        resource.setrlimit(which, (value, value))


def _enter(limits: Limits, group: cgroup.Group | None) -> None:
    """What the child does between fork and exec: join its cgroup, then take its limits."""
    if group is not None:
        group.join()
    set_limits(limits)


def _bwrap_base(scratch: int) -> list[str]:
    """The bwrap options every sandbox has: namespaces, a minimal read-only root, a capped /tmp."""
    args = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
            "--new-session", "--dev", "/dev", "--remount-ro", "/dev", "--perms", "1777", "--size", str(SHM),
            "--tmpfs", "/dev/shm", "--proc", "/proc", "--perms", "1777", "--size", str(scratch), "--tmpfs", "/tmp"]
    for d in SYSTEM_DIRS:
        if os.path.exists(d):
            args += ["--ro-bind", d, d] if not os.path.islink(d) else ["--symlink", os.readlink(d), d]
    for d in dict.fromkeys([sys.base_prefix, sys.prefix]):  # the Python installation and the venv, nothing else
        args += bind(d, d, args)
    return args


def bind(source: str, dest: str, args: list[str], how: str = "--ro-bind") -> list[str]:
    """Options binding ``source`` at ``dest``, creating the missing directories on the way with
    mode 0755 (bwrap would make them 0700, closed to a child that drops to another uid)."""
    bound = {args[i + 2] for i, a in enumerate(args) if a in ("--ro-bind", "--bind", "--symlink")}
    made = bound | {args[i + 1] for i, a in enumerate(args) if a in ("--tmpfs", "--dir", "--proc", "--dev")}
    out = []
    for parent in map(str, reversed(Path(dest).parents)):
        if parent != "/" and parent not in made and not any(parent.startswith(b + "/") for b in bound):
            out += ["--perms", "0755", "--dir", parent]
    return out + [how, source, dest]


@functools.cache
def bwrap_works() -> bool:
    """Can bubblewrap build a sandbox here? (installed, and user/mount namespaces allowed). Cached."""
    if os.environ.get("TOOLKIT_SANDBOX") == "rlimits" or shutil.which("bwrap") is None:
        return False
    probe = _bwrap_base(Limits.scratch) + ["--", sys.executable, "-c", "pass"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def mode() -> str:
    """What isolates the children on this machine: ``"bwrap"`` or ``"rlimits only"``."""
    return "bwrap" if bwrap_works() else "rlimits only"


@functools.cache
def warn_once() -> None:
    """One line on stderr when the children run with resource limits only."""
    if not bwrap_works():
        print("warning: bubblewrap (bwrap) is not available or cannot run here: submissions run with resource "
              "limits only (no file-system or network isolation); see README, 'Grading untrusted code'",
              file=sys.stderr)
        if os.geteuid() == 0 and not fallback_can_drop_uid():
            print("warning: grading as root without bubblewrap: RLIMIT_NPROC does not bound root's processes",
                  file=sys.stderr)


def child_uid() -> int | None:
    """A fresh unprivileged uid for the next child if the grader is root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    return FIRST_UID + (os.getpid() * 97 + next(_uids)) % UID_RANGE


def _traversable(path: str) -> bool:
    """Can any user reach ``path`` (every directory on the way world-executable)?"""
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & 0o001 for d in [p, *p.parents] if d.is_dir())


def fallback_can_drop_uid() -> bool:
    """Without bubblewrap, can a child running as another uid still reach Python and the toolkit?"""
    return all(_traversable(p) for p in (sys.base_prefix, sys.prefix, str(ROOT)))


def nproc_limit(limits: Limits, uid: int | None) -> int:
    """RLIMIT_NPROC for a child: ``limits.nproc`` for a fresh uid; on top of what the grader's uid
    already runs otherwise (the limit counts every process and thread of the uid)."""
    if uid is not None:
        return limits.nproc
    mine = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            uid_line = next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid:"))
            if int(uid_line.split()[1]) == os.getuid():
                mine += len(os.listdir(status.parent / "task"))
        except (OSError, StopIteration, ValueError):
            continue
    return limits.nproc + mine


def drain(stream, limit: int, keep: list) -> threading.Thread:
    """A thread reading ``stream`` to its end, keeping its first ``limit`` bytes in ``keep[0]``."""
    def read():
        data = bytearray()
        while chunk := stream.read(65536):
            if len(data) < limit:
                data += chunk[: limit - len(data)]
        keep.append(bytes(data))
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


# -- one child ---------------------------------------------------------------------------
def cached_models(cache: Path | None) -> list[Path]:
    """The files of the grader's cache a child may read: the base and chat models and the baseline's
    data (tokenizer and stream), which are keyed by what they were made from (a chat model by its
    mask's values), so a child loads one only if it would make the very same one."""
    if cache is None or not cache.is_dir():
        return []

    def model(p: Path) -> bool:
        return p.name.startswith(("base-", "sft-", "data-")) and p.suffix == ".pt"

    # a link (the instructor's cache may link models kept elsewhere) counts if it leads to such a model
    return sorted(p for p in cache.iterdir() if model(p) and p.is_file() and model(p.resolve()))


def command(argv: list[str], box: Path, models: list[Path], limits: Limits) -> tuple[list[str], dict]:
    """The command and environment that run ``argv`` (a Python command line) in ``box``.

    ``box`` holds ``submission/`` (read-only inside); without bubblewrap also ``work/`` (the
    working directory, ``HOME`` and ``work/cache`` with copies of ``models``).
    """
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
           "OMP_WAIT_POLICY": "PASSIVE"}  # idle torch threads sleep: the grader and other children run beside
                                          # (two spinning pools on 2 cores train 3.7x slower; results are the same)
    if not bwrap_works():
        env.update(HOME=str(box / "work"), TMPDIR=str(box / "work"), TOOLKIT_CACHE=str(box / "work" / "cache"))
        return argv, env
    args = _bwrap_base(limits.scratch)
    for source, dest, how in [(TOOLKIT, TOOLKIT, "--ro-bind"),
                              (GRADERS, GRADERS, "--ro-bind"),
                              (box / "submission", INSIDE_SUBMISSION, "--ro-bind")]:
        args += bind(str(source), str(dest), args, how)
    readable = [TOOLKIT, GRADERS, Path(sys.prefix), Path(sys.base_prefix)]
    for secret in (ROOT / s for s in SECRETS):  # an empty folder over each one a bind reaches (installed: all)
        if any(secret.is_relative_to(folder) for folder in readable):
            args += ["--tmpfs", str(secret)]
    args += ["--perms", "1777", "--size", str(limits.scratch), "--tmpfs", str(INSIDE_WORK),
             "--perms", "1777", "--dir", str(INSIDE_WORK / "cache")]
    for model in models:
        args += ["--ro-bind", str(model.resolve()), str(INSIDE_WORK / "cache" / model.name)]
    args += ["--chdir", str(INSIDE_WORK)]
    env.update(HOME=str(INSIDE_WORK), TMPDIR="/tmp", TOOLKIT_CACHE=str(INSIDE_WORK / "cache"))
    return args + ["--", *argv], env


@contextlib.contextmanager
def box(submission: intake.Submission, uid: int | None, models: list[Path]):
    """A fresh folder holding a copy of the submission (and, without bubblewrap, a work folder with
    copies of ``models``); removed afterwards, however deep the child's leftovers."""
    sweep_boxes()
    path = Path(tempfile.mkdtemp(prefix=f"{BOX_PREFIX}{os.getpid()}-"))
    try:
        path.chmod(0o755)
        (path / "submission").mkdir(mode=0o755)
        intake.copy(submission, path / "submission")
        if not bwrap_works():
            (path / "work" / "cache").mkdir(parents=True)
            for model in models:
                shutil.copyfile(model, path / "work" / "cache" / model.name)
            if uid is not None:
                for p in [path / "work", path / "work" / "cache", *(path / "work" / "cache").iterdir()]:
                    os.lchown(p, uid, uid)
        yield path
    finally:
        intake.remove_tree(path)


BOX_PREFIX = "toolkit-grade-"  # a box is TMPDIR/toolkit-grade-<grader's pid>-<random>


@functools.cache
def sweep_boxes() -> list[Path]:
    """Remove, once per grader, the boxes that graders no longer alive left in TMPDIR (a grader
    killed with ``kill -9`` cannot remove its own); returns them. Only this user's boxes, never
    one whose grader still runs."""
    swept = [path for path in Path(tempfile.gettempdir()).glob(f"{BOX_PREFIX}*-*") if stale(path)]
    for path in swept:
        intake.remove_tree(path)
    return swept


def stale(path: Path) -> bool:
    """Is ``path`` a box of this user's whose grader (the pid in its name) is no longer alive?"""
    try:
        pid = int(path.name.removeprefix(BOX_PREFIX).split("-")[0])
        return path.lstat().st_uid == os.getuid() and path.is_dir() and not cgroup.alive(pid)
    except (OSError, ValueError):  # not a box
        return False


def submission_inside(box_path: Path, submission: intake.Submission) -> Path:
    """Where the copy of ``submission`` in the box is as the child sees it."""
    return (INSIDE_SUBMISSION if bwrap_works() else box_path / "submission") / submission.path.name


class Watchdog(threading.Thread):
    """Kills the child (``kill``) once its ``group`` has used ``cpu_seconds`` of CPU time (if given),
    once ``deadline()`` (time.monotonic) has passed, or without bubblewrap when the box grows past
    ``scratch`` bytes; ``why`` says which ("cpu", "timeout", "scratch") if it did. ``deadline`` is
    asked again each time: the grader's own work for the child moves it on."""

    def __init__(self, proc: subprocess.Popen, deadline: Callable[[], float], box_path: Path | None, scratch: int,
                 uid: int | None = None, group: cgroup.Group | None = None, cpu_seconds: float | None = None):
        super().__init__(daemon=True)
        self.proc, self.deadline, self.box_path, self.scratch = proc, deadline, box_path, scratch
        self.uid, self.group, self.cpu_seconds = uid, group, cpu_seconds
        self.why: str | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2) and self.proc.poll() is None:
            if self.cpu_seconds is not None and self.group.cpu_seconds() >= self.cpu_seconds:
                self.why = "cpu"
            elif time.monotonic() >= self.deadline():
                self.why = "timeout"
            elif self.box_path is not None and _size(self.box_path, self.scratch) > self.scratch:
                self.why = "scratch"
            if self.why:
                kill(self.proc, self.uid, self.group)
                return

    def stop(self) -> None:
        self.stopped.set()


def _size(path: Path, cap: int) -> int:
    """Bytes under ``path`` (iterative, links not followed), counting stops past ``cap``."""
    total, todo = 0, [path]
    while todo and total <= cap:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


def kill(proc: subprocess.Popen, uid: int | None = None, group: cgroup.Group | None = None) -> None:
    """SIGKILL the child's whole session (it started a new one), every process of its cgroup, and every
    process of ``uid`` (a fresh uid of its own, if given): a grandchild may have left the session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if group is not None:
        group.kill()
    if uid is None:
        return
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, StopIteration, ValueError):
            uid_line = next(ln for ln in status.read_text().splitlines() if ln.startswith("Uid:"))
            if int(uid_line.split()[1]) == uid:
                os.kill(int(status.parent.name), signal.SIGKILL)


def start(argv: list[str], box_path: Path, models: list[Path], limits: Limits, fds: tuple[int, int],
          group: cgroup.Group | None = None):
    """Start ``argv`` in the sandbox of ``box_path``, with ``fds`` passed on, in ``group`` if given:
    the process, and the threads draining its stdout and stderr (the latter's first ``max_output``
    bytes in the list)."""
    cmd, env = command(argv, box_path, models, limits)
    proc = subprocess.Popen(cmd, cwd=box_path / ("submission" if bwrap_works() else "work"), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=fds, start_new_session=True, preexec_fn=functools.partial(_enter, limits, group))
    stderr: list[bytes] = []
    readers = [drain(proc.stdout, limits.max_output, []), drain(proc.stderr, limits.max_output, stderr)]
    return proc, readers, stderr
