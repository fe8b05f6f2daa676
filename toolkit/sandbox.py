"""Build the command and the limits that run one untrusted submission.

One job: given a submission and where its scratch space is, return what ``run_one``
(``toolkit.grade``) starts, and the ``preexec_fn`` that applies the resource limits.

**Two layers.**

- *bubblewrap* (``bwrap``), when it is installed and works here (probed once, cached): the
  child sees a minimal root: the system directories read-only, the Python installation and
  the venv read-only, ``toolkit/`` and ``graders/`` read-only with ``graders/hidden/``
  replaced by an empty tmpfs, the submission (a copy) read-only at ``/sandbox/submission``, a private
  ``/tmp``, and one writable directory, ``/work`` (its working directory, ``HOME`` and the
  report). ``solutions/``, the grader's home, the other students' submissions and the
  network (``--unshare-net``) are not there at all; ``--unshare-pid --die-with-parent``
  end every process it started with it. When the grader runs as root the child drops to a
  fresh unprivileged uid of its own once inside, before it imports the submission, so that
  ``RLIMIT_NPROC`` (which never applies to root) bounds a fork bomb.
- *resource limits*, always (also where bubblewrap cannot run, recorded as ``"rlimits
  only"``): ``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE`` and no core
  files, set in ``preexec_fn``; the wall-clock timeout is ``run_one``'s; stdout and stderr
  are read by ``drain`` and kept up to ``max_output`` bytes each, the rest read and dropped.

**Hidden checks and solutions, and student code.** They cannot share a process: whatever a
process holds, code running in it can read. So the sandboxed child runs the *public* checks
only (they and their snapshots ship to students anyway) and never sees ``solutions/`` or
``graders/hidden/``. The hidden checks run in the grader's own process (``toolkit.isolated``),
which never imports student code: each call they make to the submission's hooks is sent over
a private pipe to the sandboxed child, which runs the hook and sends back plain data (tensors,
numbers, strings, lists, dicts, read with ``torch.load(weights_only=True)``, so nothing the
child sends can run code in the grader) or a handle to an object (a module, a tokenizer) that
the grader then calls through. The hidden checks compare in the grader, with the grader's
``torch.allclose`` and the solution loaded there: the child cannot read them, patch them or
fake their results. Grades are the same as an unsandboxed run's for a correct submission.
"""

from __future__ import annotations

import functools
import itertools
import os
import resource
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # holds toolkit/ and graders/
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
INSIDE_SUBMISSION, INSIDE_WORK = Path("/sandbox/submission"), Path("/sandbox/work")
FIRST_UID = 200_000  # unprivileged uids for children of a root grader: FIRST_UID + 0..UID_RANGE-1
UID_RANGE = 50_000
_uids = itertools.count()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one grading process (and everything it starts)."""

    cpu_seconds: int = 1200  # RLIMIT_CPU: CPU time, summed over threads
    memory: int = 4 << 30  # RLIMIT_AS: address space; torch + graders map 0.64 GiB, --fast runs fit 1.5 GiB
    nproc: int = 256  # RLIMIT_NPROC: processes and threads of the child's uid
    file_size: int = 256 << 20  # RLIMIT_FSIZE: largest file it may write
    max_output: int = 1 << 20  # bytes of stdout and of stderr kept


def set_limits(limits: Limits) -> None:
    """Apply ``limits`` to this process (called in the child between fork and exec)."""
    for which, value in [(resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_AS, limits.memory),
                         (resource.RLIMIT_NPROC, limits.nproc), (resource.RLIMIT_FSIZE, limits.file_size),
                         (resource.RLIMIT_CORE, 0)]:
        resource.setrlimit(which, (value, value))


def _bwrap_base() -> list[str]:
    """The bwrap options every sandbox has: namespaces, a minimal read-only root, a private /tmp."""
    args = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent",
            "--new-session", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for d in SYSTEM_DIRS:
        if os.path.exists(d):
            args += ["--ro-bind", d, d] if not os.path.islink(d) else ["--symlink", os.readlink(d), d]
    for d in dict.fromkeys([sys.base_prefix, sys.prefix, *_extra_paths()]):
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


def _extra_paths() -> list[str]:
    """Directories outside the prefixes that this interpreter imports from (e.g. a user site)."""
    prefixes = (sys.base_prefix, sys.prefix, str(ROOT), *SYSTEM_DIRS)
    return [p for p in sys.path if p and os.path.isdir(p) and not p.startswith(prefixes)]


@functools.cache
def bwrap_works() -> bool:
    """Can bubblewrap build a sandbox here? (installed, and user/mount namespaces allowed). Cached."""
    if os.environ.get("TOOLKIT_SANDBOX") == "rlimits" or shutil.which("bwrap") is None:
        return False
    probe = _bwrap_base() + ["--", sys.executable, "-c", "pass"]
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


def submission_inside(box: Path, submission: Path) -> Path:
    """Where the copy of ``submission`` in ``box`` is as the child sees it."""
    return (INSIDE_SUBMISSION if bwrap_works() else box / "submission") / submission.name


def command(argv: list[str], box: Path) -> tuple[list[str], dict]:
    """The command and environment that run ``argv`` (a Python command line) in ``box``.

    ``box`` holds ``submission/`` (read-only inside) and ``work/`` (writable: the working
    directory, ``HOME``, the report and ``work/cache``, a copy of the base models' cache).
    """
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    if not bwrap_works():
        env.update(HOME=str(box / "work"), TMPDIR=str(box / "work"), TOOLKIT_CACHE=str(box / "work" / "cache"))
        return argv, env
    args = _bwrap_base()
    for source, dest, how in [(ROOT / "toolkit", ROOT / "toolkit", "--ro-bind"),
                              (ROOT / "graders", ROOT / "graders", "--ro-bind"),
                              (box / "submission", INSIDE_SUBMISSION, "--ro-bind"),
                              (box / "work", INSIDE_WORK, "--bind")]:
        args += bind(str(source), str(dest), args, how)
    args += ["--tmpfs", str(ROOT / "graders" / "hidden"), "--chdir", str(INSIDE_WORK)]
    env.update(HOME=str(INSIDE_WORK), TMPDIR="/tmp", TOOLKIT_CACHE=str(INSIDE_WORK / "cache"))
    return args + ["--", *argv], env


def inside(box: Path, path: Path) -> Path:
    """Where ``path`` (under ``box/work``) is as the child sees it."""
    return INSIDE_WORK / path.relative_to(box / "work") if bwrap_works() else path


def prepare_box(box: Path, submission: Path, uid: int | None, cache: Path | None = None) -> None:
    """Copy the submission into ``box/submission``, make ``box/work`` with a copy of the base and chat
    models of ``cache`` (so a child never writes into the shared cache); owned by ``uid`` if given.
    Both are keyed by what they were trained from (a chat model by its mask's values, not by code),
    so a child loads one only if it would train the very same model."""
    (box / "submission").mkdir()
    (box / "work" / "cache").mkdir(parents=True)
    for model in (sorted(cache.glob("base-*.pt")) + sorted(cache.glob("sft-*.pt")) if cache and cache.is_dir() else []):
        shutil.copy2(model, box / "work" / "cache" / model.name)
    target = box / "submission" / submission.name
    if submission.is_dir():
        shutil.copytree(submission, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(submission, target)
    if uid is not None:
        for p in [box, *box.rglob("*")]:
            os.lchown(p, uid, uid)


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
