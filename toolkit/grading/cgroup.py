"""A control group per grading child: its share of the CPU, its processes and its memory, together.

Resource limits (``RLIMIT_*``) bound each process of a child, not the child as a whole: a child
that starts 240 processes, each in a session of its own, gets 240 shares of the CPU where the
kernel schedules per session (``kernel.sched_autogroup_enabled``), and starves the student graded
beside it. In a cgroup of its own, every process the child starts shares one weight (the same
for every child), at most ``Share.cpus`` CPUs, ``Share.pids`` processes and ``Share.memory``
bytes; and the grader can end every one of them, wherever they went.

Either hierarchy, whichever this machine lets the grader write, probed once:

- cgroup v2 (most machines with systemd): one folder with ``cpu.max``, ``pids.max``,
  ``memory.max``, where the grader's own cgroup delegates those controllers;
- cgroup v1: a folder under each of the ``cpu``, ``cpuacct``, ``pids`` and ``memory`` hierarchies
  (``cpu.cfs_quota_us``, ``pids.max``, ``memory.limit_in_bytes``).

Neither (not root, not Linux, no delegation, or ``TOOLKIT_CGROUP=off``): ``make()`` returns None and the grader keeps to its
resource limits, with a low process limit (``toolkit.grading.sandbox.nproc_limit``).

The child joins its group itself, first thing after the fork (``Group.join`` in ``preexec_fn``),
so that it never runs a line outside of it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PERIOD_US = 100_000  # the CFS period the quota is a fraction of
_names = itertools.count()


@dataclass(frozen=True)
class Share:
    """What one child may use at once, all its processes together."""

    cpus: float  # CPU seconds per second
    pids: int  # processes and threads
    memory: int  # bytes


class Group:
    """One child's cgroup: a folder per hierarchy (one on v2)."""

    def __init__(self, folders: list[Path], v2: bool):
        self.folders, self.v2 = folders, v2
        find = lambda name: next((f / name for f in folders if (f / name).exists()), None)  # noqa: E731
        self.procs = find("cgroup.procs")
        self.usage = find("cpu.stat" if v2 else "cpuacct.usage")
        self.delay = find("cpu.pressure") if v2 else None
        self.threads = None if v2 else find("tasks")

    def join(self) -> None:
        """Move this process into the group (called in the child before it runs anything)."""
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError, AttributeError):
            return [int(p) for p in self.procs.read_text().split()]
        return []

    def cpu_seconds(self) -> float:
        """CPU time used by every process of the group so far."""
        with contextlib.suppress(OSError, ValueError, StopIteration, AttributeError):
            if self.v2:
                line = next(ln for ln in self.usage.read_text().splitlines() if ln.startswith("usage_usec"))
                return int(line.split()[1]) / 1e6
            return int(self.usage.read_text()) / 1e9
        return 0.0

    def waited(self) -> float | None:
        """Seconds the group was ready to run but not given a CPU (the others' load): on v2 the time some
        of its tasks waited (``cpu.pressure``), on v1 the longest wait of one of its threads
        (``/proc/<tid>/schedstat``); None where the kernel does not say."""
        with contextlib.suppress(OSError, ValueError, IndexError, StopIteration):
            if self.delay is not None:
                some = next(ln for ln in self.delay.read_text().splitlines() if ln.startswith("some"))
                return int(some.rsplit("total=", 1)[1]) / 1e6
            if self.threads is not None:
                waits = []
                for tid in self.threads.read_text().split():
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        waits.append(int(Path(f"/proc/{tid}/schedstat").read_text().split()[1]) / 1e9)
                return max(waits, default=0.0)
        return None

    def kill(self) -> None:
        """SIGKILL every process of the group, until none is left (a fork races the first pass)."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left and remove the folders (a folder goes once its processes have exited)."""
        self.kill()
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(type, mount point, options) of every cgroup file system."""
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                out.append((parts[2], Path(parts[1]), set(parts[3].split(","))))
    return out


def _own() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 path."""
    own = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                own[c] = path
    return own


def _writable(folder: Path) -> bool:
    probe = folder / f"toolkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        return True
    except OSError:
        return False


@functools.cache
def _parents() -> tuple[str, tuple[Path, ...]] | None:
    """Where children's groups go: ("v2", (folder,)) or ("v1", (cpu, cpuacct, pids, memory)), or None."""
    if os.environ.get("TOOLKIT_CGROUP") == "off":
        return None
    mounts, own = _mounts(), _own()
    for kind, point, _ in mounts:
        if kind == "cgroup2" and "" in own:
            parent = point / own[""].lstrip("/")
            enabled = set((parent / "cgroup.subtree_control").read_text().split()) if (
                parent / "cgroup.subtree_control").exists() else set()
            if not {"cpu", "pids", "memory"} <= enabled:
                with contextlib.suppress(OSError):
                    (parent / "cgroup.subtree_control").write_text("+cpu +pids +memory")
                    enabled = set((parent / "cgroup.subtree_control").read_text().split())
            if {"cpu", "pids", "memory"} <= enabled and _writable(parent):
                return "v2", (parent,)
    folders = []
    for controller in ("cpu", "cpuacct", "pids", "memory"):
        point = next((p for kind, p, opts in mounts if kind == "cgroup" and controller in opts), None)
        if point is None or controller not in own:
            return None
        folders.append(point / own[controller].lstrip("/"))
    if all(_writable(f) for f in folders):
        return "v1", tuple(dict.fromkeys(folders))  # cpu and cpuacct may be one hierarchy
    return None


def sweep() -> None:
    """Remove the groups that graders no longer alive left (a grader killed with ``kill -9``), ending
    whatever still runs in them; called once per grader, with its first group."""
    parents = _parents()
    for folder in parents[1] if parents else ():
        for path in folder.glob("toolkit-grade-*-*"):
            with contextlib.suppress(ValueError):
                if not alive(int(path.name.split("-")[2])):
                    Group([path], v2=parents[0] == "v2").remove()


def alive(pid: int) -> bool:
    """Is process ``pid`` running (whoever's it is)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mode() -> str:
    """"cgroup v2", "cgroup v1" or "" (none): what ``make`` uses here."""
    parents = _parents()
    return f"cgroup {parents[0]}" if parents else ""


def make(share: Share) -> Group | None:
    """A new group with ``share`` written, or None where this machine has no writable cgroups."""
    parents = _parents()
    if parents is None:
        return None
    kind, folders = parents
    n = next(_names)
    if n == 0:
        sweep()
    name = f"toolkit-grade-{os.getpid()}-{n}"
    made = [folder / name for folder in folders]
    try:
        for folder in made:
            folder.mkdir()
        quota = max(1000, int(share.cpus * PERIOD_US))
        if kind == "v2":
            (made[0] / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            (made[0] / "pids.max").write_text(str(share.pids))
            (made[0] / "memory.max").write_text(str(share.memory))
            with contextlib.suppress(OSError):
                (made[0] / "memory.swap.max").write_text("0")
            return Group(made, v2=True)
        by = {c: next(f for f in made if (f / probe).exists()) for c, probe in (
            ("cpu", "cpu.cfs_quota_us"), ("cpuacct", "cpuacct.usage"), ("pids", "pids.max"),
            ("memory", "memory.limit_in_bytes"))}
        (by["cpu"] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (by["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
        (by["pids"] / "pids.max").write_text(str(share.pids))
        (by["memory"] / "memory.limit_in_bytes").write_text(str(share.memory))
        with contextlib.suppress(OSError):
            (by["memory"] / "memory.memsw.limit_in_bytes").write_text(str(share.memory))
        return Group([by["pids"], *(f for f in made if f != by["pids"])], v2=False)
    except (OSError, StopIteration):
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        return None


@contextlib.contextmanager
def group(share: Share):
    """A new group for one child (None where there are no writable cgroups), removed afterwards."""
    made = make(share)
    try:
        yield made
    finally:
        if made is not None:
            made.remove()
