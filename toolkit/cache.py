"""The cache: what takes long to build is kept, under a key that hashes everything it depends on.

Three places, looked up in this order:

* ``memo``: this process's memory, for data every pipeline rebuilds (the corpus, the baseline's
  tokenizer): each caller gets its own copy;
* ``SHIPPED``: the models that come with the toolkit (``toolkit/data``), found by the same names;
* the cache folder (``default_cache_dir``, ``$TOOLKIT_CACHE``): files named ``<kind>-<key>``, written
  whole or not at all (``save``). Processes and threads that need the same model at once take
  turns (``Cache.model``, under a file lock): one trains it, the others wait and load it.

A key (``key``) is the first 20 hex digits of the SHA-256 of its parts, in order: settings as
text, data as bytes, code as ``code_digest`` (its syntax trees, so editing a comment keeps the
models cached). The pipeline's models and data are found by these keys (``toolkit.pipeline``); a
check that draws a reference once per machine can keep it the same way (``Cache.stored`` with a
``.json`` name).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import inspect
import json
import os
import textwrap
import threading
from functools import cache
from pathlib import Path

import torch
from filelock import FileLock

SHIPPED = Path(__file__).parent / "data"
"""Models that come with the toolkit, found like the cache's: the default configuration's base model and
its chat model fine-tuned with the baseline's mask (the reward and sampler checks start from it), which
no submission changes, so that no first run trains them (``python -m toolkit.pipeline`` makes them again)."""
_MEMO: dict = {}  # what ``memo`` built in this process, by key


def default_cache_dir() -> Path:
    return Path(os.environ.get("TOOLKIT_CACHE", Path.home() / ".cache" / "toolkit"))


@cache  # once per process for the same objects
def code_digest(*objects) -> bytes:
    """A digest of what the objects' code does: their syntax trees, without comments and docstrings,
    so that editing a comment keeps the models cached (and the shipped ones valid). An object whose
    source cannot be read or parsed (defined in a notebook's cell) counts by its name."""
    h = hashlib.sha256()
    for obj in objects:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
        except (OSError, TypeError, ValueError, SyntaxError, RecursionError):
            h.update(f"{obj.__module__}.{getattr(obj, '__qualname__', '')}".encode())
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
                node.body = node.body[1:] or [ast.Pass()]
        h.update(ast.dump(tree).encode())
    return h.digest()


def key(*parts: str | bytes | torch.Tensor) -> str:
    """The key of ``parts``, hashed in order: text as UTF-8, bytes as they are, a tensor by its values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.numpy().tobytes()
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()[:20]


def memo(name, build):
    """``build()``, once per process for ``name`` (any hashable); each call gets its own copy."""
    if name not in _MEMO:
        _MEMO[name] = build()
    return copy.deepcopy(_MEMO[name])


def save(value, path: Path) -> None:
    """``torch.save`` (or, for a ``.json`` path, ``json.dump``) under a temporary name, then renamed: a
    killed run never leaves half a file, and another process reads the whole file or none."""
    tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    if path.suffix == ".json":
        tmp.write_text(json.dumps(value))
    else:
        torch.save(value, tmp)
    os.replace(tmp, path)


def load(path: Path):
    """What ``save`` wrote: plain data (tensors and containers only for a ``.pt`` file)."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    return torch.load(path, weights_only=True)


class Cache:
    """A cache folder, and the models shipped with the toolkit unless ``shipped`` is False."""

    def __init__(self, folder: Path, shipped: bool = True):
        self.folder, self.shipped = Path(folder), shipped

    def stored(self, name: str, build):
        """The file ``name`` of the folder, or ``build()`` saved there. Nothing waits for another
        process building the same: for data that takes seconds. A folder that cannot be written
        only costs time."""
        path = self.folder / name
        try:
            return load(path)
        except Exception:  # not there, or unreadable: built again
            value = build()
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            save(value, path)
        return value

    def model(self, name: str | None, make) -> tuple[Path, str, dict] | None:
        """The model file ``name``: (its path, where it was found, what it holds); or None once ``make()``
        has built it and it is saved there (``name`` None: built, and kept nowhere). Processes and
        threads that need the same model at once take turns: one builds it, the others wait and load it."""
        if name is None:
            make()
            return None
        if self.shipped and (SHIPPED / name).is_file():
            return SHIPPED / name, "shipped with the toolkit", load(SHIPPED / name)
        path = self.folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_suffix(".lock")):  # one lock file per model, on every OS
            if path.exists():
                return path, "from cache", load(path)
            save(make(), path)
        return None
