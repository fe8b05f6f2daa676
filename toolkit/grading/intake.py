"""Reading a class folder and each submission in it, before any of its code runs.

The grader reads submissions as root, outside any sandbox, so nothing here follows a symbolic
link or trusts a size: ``inspect`` walks a submission iteratively (``os.scandir``, links not
followed) and refuses, with one sentence, a submission that holds a symbolic link or anything
but regular files and folders, more than ``MAX_FILES`` files, more than ``MAX_BYTES`` bytes, or
folders deeper than ``MAX_DEPTH``. What it accepts is a list of files that ``content_hash`` and
``copy`` then read with ``O_NOFOLLOW``. ``remove_tree`` deletes a folder of any depth without
recursion (a child may leave a folder 1,500 levels deep behind it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_FILES = 200
MAX_BYTES = 20 << 20  # 20 MB
MAX_DEPTH = 8
SUFFIXES = (".py", ".ipynb")


class IntakeError(Exception):
    """A submission the grader refuses to read; the message is one sentence."""


@dataclass(frozen=True)
class Submission:
    """One student's entry in the class folder, as accepted by ``inspect``."""

    student: str
    path: Path  # the entry: a .py or .ipynb file, or a folder
    files: tuple[str, ...] = ()  # its files, relative to ``path`` ("" for a single file), sorted
    refused: str = ""  # why ``inspect`` refused it (then ``files`` is empty)


def find_submissions(folder: Path) -> dict[str, Submission]:
    """Student id -> submission: each sub-folder, ``.py`` or ``.ipynb`` file of ``folder``, hidden
    ones skipped. Each is inspected; a refused one keeps its reason (graded as a load error).

    Raises ValueError (one sentence) when the folder is missing or holds no submission, or two
    entries give the same student id.
    """
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such directory")
    found: dict[str, Submission] = {}
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not (is_dir or entry.name.endswith(SUFFIXES) or entry.is_symlink()):
                continue
            student = entry.name if is_dir or not entry.name.endswith(SUFFIXES) else Path(entry.name).stem
            if student in found:
                raise ValueError(f"{found[student].path} and {entry.path}: two submissions for student {student!r}")
            found[student] = inspect(student, Path(entry.path))
    if not found:
        raise ValueError(f"{folder}: no submission in it (expected one sub-folder, .py or .ipynb file per student)")
    return found


def inspect(student: str, path: Path) -> Submission:
    """The submission at ``path``, or one that says why it is refused."""
    try:
        return Submission(student, path, tuple(_files(path)))
    except IntakeError as e:
        return Submission(student, path, refused=str(e))


def _files(path: Path) -> list[str]:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise IntakeError(f"{path.name} is a symbolic link; submit the files themselves")
    if stat.S_ISREG(st.st_mode):
        if st.st_size > MAX_BYTES:
            raise IntakeError(f"{path.name} holds {st.st_size} bytes, more than the {MAX_BYTES >> 20} MB a submission may")
        return [""]
    if not stat.S_ISDIR(st.st_mode):
        raise IntakeError(f"{path.name} is neither a file nor a folder")
    files, total, todo = [], 0, [("", 0)]
    while todo:
        rel, depth = todo.pop()
        with os.scandir(path / rel if rel else path) as entries:
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    raise IntakeError(f"{path.name}/{name} is a symbolic link; submit the files themselves")
                if stat.S_ISDIR(mode):
                    if depth + 1 > MAX_DEPTH:
                        raise IntakeError(f"{path.name} has folders more than {MAX_DEPTH} levels deep")
                    todo.append((name, depth + 1))
                elif stat.S_ISREG(mode):
                    files.append(name)
                    total += entry.stat(follow_symlinks=False).st_size
                    if len(files) > MAX_FILES:
                        raise IntakeError(f"{path.name} holds more than {MAX_FILES} files")
                    if total > MAX_BYTES:
                        raise IntakeError(f"{path.name} holds more than the {MAX_BYTES >> 20} MB a submission may")
                else:
                    raise IntakeError(f"{path.name}/{name} is neither a file nor a folder")
    return sorted(files)


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)


def _read(sub: Submission, rel: str) -> bytes:
    fd = _open(sub.path / rel if rel else sub.path)
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_BYTES + 1)


def content_hash(sub: Submission) -> str:
    """sha256 of a submission: every file's path (relative to it) and bytes; of its reason if refused."""
    h = hashlib.sha256(sub.refused.encode())
    for rel in sub.files:
        h.update((rel or sub.path.name).encode() + b"\0" + _read(sub, rel) + b"\0")
    return h.hexdigest()


def copy(sub: Submission, dest: Path) -> Path:
    """Copy the submission into the folder ``dest`` (files 0644, folders 0755); its copy's path."""
    target = dest / sub.path.name
    for rel in sub.files:
        out = target / rel if rel else target
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        out.write_bytes(_read(sub, rel))
        out.chmod(0o644)
    if not sub.files or sub.files != ("",):
        target.mkdir(exist_ok=True, mode=0o755)
    return target


def sources(sub: Submission) -> dict[str, str]:
    """The submission's ``.py`` and ``.ipynb`` files as text (relative path -> text)."""
    return {rel or sub.path.name: _read(sub, rel).decode("utf-8", errors="replace")
            for rel in sub.files if (rel or sub.path.name).endswith(SUFFIXES)}


def code(sub: Submission) -> dict[str, str]:
    """The submission's Python code, file -> text: a ``.py`` file's text, a notebook's code cells
    (an unreadable notebook has none)."""
    out = {}
    for name, text in sources(sub).items():
        if name.endswith(".ipynb"):
            import nbformat  # here, not above: a batch of .py submissions need not pay for its import

            from toolkit.plugins import notebook_code_cells

            try:
                text = "".join(cell for cell, _ in notebook_code_cells(nbformat.reads(text, as_version=4)))
            except Exception:  # not a notebook nbformat can read (deep nesting included)
                continue
        out[name] = text
    return out


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything under it, however deep, without recursion or following links.

    It holds one folder open at a time (descending by name, climbing back by ``..``), so neither
    the path length nor the open files grow with the depth, and it makes each folder writable
    before emptying it (a child may leave folders it made read-only)."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
    except FileNotFoundError:
        return
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    fd, names = os.open(path, flags), []  # names: the folders descended into, from ``path``
    try:
        while True:
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o700)
            sub = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if sub is not None:
                fd, old = os.open(sub, flags, dir_fd=fd), fd
                os.close(old)
                names.append(sub)
            elif names:
                fd, old = os.open("..", flags, dir_fd=fd), fd
                os.close(old)
                os.rmdir(names.pop(), dir_fd=fd)
            else:
                break
    finally:
        os.close(fd)
    os.rmdir(path)
