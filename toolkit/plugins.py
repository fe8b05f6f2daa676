"""Loading a submission and resolving every component to exactly one plugin.

``load_submission`` imports a student's code (a ``.py`` file, a package or plain directory,
a notebook, an installed entry point or a dotted module); ``build_manager`` makes a fresh
pluggy ``PluginManager`` for one run, with the baselines registered as ``baseline.<name>``
and blocked for every component the submission provides, and turns each known pluggy
pitfall into a ``SubmissionError`` that names the file, the hook and what was expected.
``Components`` is the typed object the pipeline calls; pluggy is never called inside a model.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import itertools
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

import pluggy

from toolkit import hookspecs
from toolkit.components import COMPONENTS, HOOKS, method

PROJECT = "toolkit"
ENTRY_POINT_GROUP = "toolkit"


class SubmissionError(Exception):
    """A submission that cannot be loaded or breaks the contract. The message is one sentence."""


class PluginError(Exception):
    """Student code raised or returned something wrong while the toolkit called a hook."""


class NotImplementedYet(PluginError):
    """The submission's code is a stub: it raised NotImplementedError itself."""


@dataclass
class Plugin:
    """One loaded module of a submission, and where it came from."""

    name: str  # e.g. "my_plugin.py" or "solutions/attention.py"
    module: types.ModuleType

    @property
    def source(self) -> str:
        """The code the module was made from ("" when unknown): a file's text, a notebook's code cells."""
        return getattr(self.module, "__toolkit_source__", "")


# -- loading -------------------------------------------------------------------------
_counter = itertools.count()


def _exec_module(name: str, path: Path, cells: list[tuple[str, bool]] | None = None,
                 package_dir: Path | None = None):
    """Import one file under a unique module name, so that two submissions never collide.

    ``cells``: a notebook's code, as (source, must_run) pairs run in order. A cell that
    raises stops the import if it must run (an nbgrader answer cell); any other is skipped
    with a warning on stderr, as it would fail on its own in Jupyter.
    """
    modname = f"toolkit_submission_{next(_counter)}_{path.stem}"
    if package_dir is not None:
        spec = importlib.util.spec_from_file_location(modname, path, submodule_search_locations=[str(package_dir)])
    else:
        spec = importlib.util.spec_from_loader(modname, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    sys.modules[modname] = module
    cells = cells if cells is not None or package_dir else [(path.read_text(encoding="utf-8"), True)]
    module.__toolkit_source__ = "".join(source for source, _ in cells or [])
    try:
        if package_dir is not None:
            spec.loader.exec_module(module)
        for n, (source, must_run) in enumerate(cells or [], 1):
            where = f" (code cell {n})" if len(cells) > 1 else ""
            try:
                exec(compile(source, str(path), "exec"), module.__dict__)
            except BaseException as e:  # SystemExit and KeyboardInterrupt from student code too
                if must_run:
                    raise SubmissionError(f"{name}{where}: importing it raised {type(e).__name__}: {e}".rstrip(": ")) from e
                raised = f"{type(e).__name__}: {e}".rstrip(": ")
                print(f"warning: {name}{where} raised {raised}; cell skipped", file=sys.stderr)
    except SubmissionError:
        sys.modules.pop(modname, None)
        raise
    except BaseException as e:
        sys.modules.pop(modname, None)
        raise SubmissionError(f"{name}: importing it raised {type(e).__name__}: {e}".rstrip(": ")) from e
    return module


def _notebook_cells(path: Path, name: str | None = None) -> list[tuple[str, bool]]:
    """A notebook's code cells as (source, must_run), without IPython magics or nbgrader test cells.

    must_run: the cell is an nbgrader answer cell, or the notebook has no nbgrader markup.
    """
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise SubmissionError(f"{name or path}: not a readable Jupyter notebook ({type(e).__name__}: {e})") from e
    return notebook_code_cells(nb)


def notebook_code_cells(nb) -> list[tuple[str, bool]]:
    """The code cells of a notebook read by nbformat: see ``_notebook_cells``."""
    marked = any("nbgrader" in cell.metadata for cell in nb.cells)
    cells = []
    for cell in nb.cells:
        grading = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or (grading.get("grade") and not grading.get("solution")):
            continue  # markdown, or an autograded test cell: it runs the checks, it is not the submission
        lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        cells.append(("\n".join(lines) + "\n", grading.get("solution", False) or not marked))
    return cells


def load_submission(spec: str | Path, relative_to: Path | None = None) -> list[Plugin]:
    """Import a submission: a file, a directory, a notebook, an entry point or a module name.

    ``relative_to``: plugins (and the messages about them) are named by their path relative to
    this folder, e.g. ``alice/attention.py``, instead of as given.
    """
    path = Path(spec)
    name = str(path.relative_to(relative_to)) if relative_to is not None else str(path)
    if path.is_file() and path.suffix == ".py":
        return [Plugin(name, _exec_module(name, path))]
    if path.is_file() and path.suffix == ".ipynb":
        return [Plugin(name, _exec_module(name, path, cells=_notebook_cells(path, name)))]
    if path.is_dir() and (path / "__init__.py").exists():
        return [Plugin(name, _exec_module(name, path / "__init__.py", package_dir=path))]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".py", ".ipynb") and not p.name.startswith("_"))
        if not files:
            raise SubmissionError(f"{name}: the directory holds no .py or .ipynb file")
        return [plugin for f in files for plugin in load_submission(f, relative_to)]
    if path.exists():
        raise SubmissionError(f"{name}: expected a .py file, a .ipynb notebook or a directory")
    if path.suffix in (".py", ".ipynb") or "/" in str(spec) or str(spec).startswith("."):
        raise SubmissionError(f"{spec}: no such file or directory")
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == str(spec):
            try:
                return [Plugin(f"entry point {ep.name}", ep.load())]
            except BaseException as e:
                raise SubmissionError(f"entry point {ep.name} ({ep.value}): loading it raised {type(e).__name__}: {e}") from e
    try:
        return [Plugin(str(spec), importlib.import_module(str(spec)))]
    except ModuleNotFoundError as e:
        if e.name and str(spec).startswith(e.name):
            raise SubmissionError(f"{spec}: no such file, directory, entry point ({ENTRY_POINT_GROUP!r} group) or module") from e
        raise SubmissionError(f"{spec}: importing it raised ModuleNotFoundError: {e}") from e
    except BaseException as e:
        raise SubmissionError(f"{spec}: importing it raised {type(e).__name__}: {e}") from e


def installed_plugins() -> list[tuple[str, str, str | None]]:
    """Entry points in the ``toolkit`` group: (name, target, error or None); each loaded alone."""
    out = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
            out.append((ep.name, ep.value, None))
        except BaseException as e:  # one broken plugin must not break the listing
            out.append((ep.name, ep.value, f"{type(e).__name__}: {e}"))
    return out


# -- validating ----------------------------------------------------------------------
def _hook_functions(plugin: Plugin) -> dict[str, object]:
    """The functions the module marks as toolkit hooks, after checking the classic mistakes."""
    known = sorted(HOOKS)  # the table's hooks (toolkit.hookspecs declares their signatures)
    found = {}
    for attr, fn in vars(plugin.module).items():
        if not inspect.isfunction(fn):
            continue
        markers = [a for a in vars(fn) if a.endswith("_impl")]
        if f"{PROJECT}_impl" not in markers:
            wrong = [m for m in markers if m.lower() == f"{PROJECT}_impl"]
            if wrong or attr in known:
                marker = f"HookimplMarker({wrong[0][:-5]!r})" if wrong else "no marker"
                raise SubmissionError(
                    f"{plugin.name}: function {attr} has {marker}; decorate it with @toolkit.hookimpl")
            continue
        if attr not in known:
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; the hooks are {', '.join(known)}"
            raise SubmissionError(f"{plugin.name}: {attr} is marked @toolkit.hookimpl but is not a toolkit hook{hint}")
        spec_args = list(inspect.signature(getattr(hookspecs, attr)).parameters)
        params = inspect.signature(fn).parameters
        for p in params.values():
            if p.default is not inspect.Parameter.empty:
                raise SubmissionError(
                    f"{plugin.name}: hook {attr} gives argument {p.name!r} a default value, "
                    f"which pluggy never overrides; write def {attr}({', '.join(spec_args)})")
            if p.name not in spec_args:
                raise SubmissionError(
                    f"{plugin.name}: hook {attr} takes argument {p.name!r}, but the hook passes only "
                    f"({', '.join(spec_args)})")
        found[attr] = fn
    return found


def provided_components(plugins: list[Plugin]) -> dict[str, str]:
    """Component -> name of the plugin that provides it. Raises on gaps and duplicates."""
    by_hook: dict[str, str] = {}
    for plugin in plugins:
        for hook in _hook_functions(plugin):
            if hook in by_hook:
                where = by_hook[hook] if by_hook[hook] == plugin.name else f"{by_hook[hook]} and {plugin.name}"
                raise SubmissionError(f"{where}: hook {hook} is implemented twice; keep exactly one")
            by_hook[hook] = plugin.name
    if not by_hook:
        names = ", ".join(p.name for p in plugins)
        raise SubmissionError(f"{names}: no toolkit hooks found; expected functions named like the hooks "
                              f"({', '.join(HOOKS)}) and decorated with @toolkit.hookimpl")
    out = {}
    for comp, component in COMPONENTS.items():
        hooks = component.hooks
        present = [h for h in hooks if h in by_hook]
        if present and len(present) < len(hooks):
            missing = [h for h in hooks if h not in by_hook]
            raise SubmissionError(
                f"{by_hook[present[0]]}: component {comp} needs hooks {', '.join(hooks)}, but {', '.join(missing)} is missing")
        if present:
            out[comp] = by_hook[present[0]]
    return out


def build_manager(plugins: list[Plugin] = ()) -> pluggy.PluginManager:
    """A fresh manager: specs, the submission's plugins, and baselines for everything else."""
    provided = provided_components(list(plugins)) if plugins else {}
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for comp, component in COMPONENTS.items():
        if comp in provided:
            pm.set_blocked(f"baseline.{comp}")
        else:
            pm.register(component.baseline(), name=f"baseline.{comp}")
    for plugin in plugins:
        try:
            if pm.register(plugin.module, name=plugin.name) is None:
                raise SubmissionError(f"{plugin.name}: the plugin name is blocked; rename the file")
        except pluggy.PluginValidationError as e:
            raise SubmissionError(f"{plugin.name}: {e}") from e
    pm.check_pending()
    for hook, component in HOOKS.items():
        impls = getattr(pm.hook, hook).get_hookimpls()
        expected = provided.get(component.name, f"baseline.{component.name}")
        if [i.plugin_name for i in impls] != [expected]:
            raise SubmissionError(f"{hook}: expected exactly one implementation, from {expected}; "
                                  f"found {[i.plugin_name for i in impls]}")
    return pm


def answering_plugins(pm: pluggy.PluginManager) -> dict[str, str]:
    """Hook -> name of the plugin that answers it."""
    return {hook: getattr(pm.hook, hook).get_hookimpls()[0].plugin_name for hook in HOOKS}


# -- calling ---------------------------------------------------------------------------
class Components:
    """The components a pipeline is built from; each call names the plugin if it goes wrong.

    Every hook of ``toolkit.components.COMPONENTS`` is a method named without its prefix
    (``components.attention(config)`` calls ``toolkit_attention``), with the hookspec's
    arguments by position or name. ``Components(pm)`` uses whatever ``pm`` answers;
    ``Components(pm, only="attention")`` takes that component from ``pm`` and every other one
    from the baselines, which is how a submission's components are swapped into the pipeline
    one at a time (``only`` may also be a set of components).
    """

    def __init__(self, pm: pluggy.PluginManager | None = None, only: str | set[str] | None = None):
        pm = pm or build_manager()
        self._pm = pm
        self._baseline = build_manager() if only else pm
        self.only = only
        self._from_pm = None if only is None else {only} if isinstance(only, str) else set(only)

    def _relay(self, hook: str) -> pluggy.PluginManager:
        use_pm = self._from_pm is None or HOOKS[hook].name in self._from_pm
        return self._pm if use_pm else self._baseline

    def source(self, component: str) -> str:
        """The name of the plugin that answers ``component``."""
        hook = COMPONENTS[component].hooks[0]
        return answering_plugins(self._relay(hook))[hook]

    def function(self, hook: str):
        """The function that answers ``hook`` (for a key that hashes its code)."""
        return getattr(self._relay(hook).hook, hook).get_hookimpls()[0].function

    def call(self, hook: str, *args, **kwargs):
        """Call ``hook`` (arguments by position in the hookspec's order, or by name). A module it wraps
        (``Component.wraps``) that the call leaves out is built here, by that component's hook."""
        kwargs = with_wrapped(self, hook, args, kwargs)
        pm = self._relay(hook)
        plugin = answering_plugins(pm)[hook]
        caller = getattr(pm.hook, hook)
        try:
            result = caller(**kwargs)
        except (Exception, SystemExit) as e:  # a student's sys.exit() must not end the grader
            if is_stub(e, caller.get_hookimpls()[0].function.__code__.co_filename):
                raise NotImplementedYet(f"{plugin}: {not_implemented(hook, e)}") from e
            raise PluginError(f"{plugin}: hook {hook} raised {raised(e)}") from e
        if result is None:
            raise PluginError(f"{plugin}: hook {hook} returned None; it must return a value (see toolkit.hookspecs.{hook})")
        return result

    def __getattr__(self, name: str):
        hook = f"toolkit_{name}"
        if hook not in HOOKS or method(hook) != name:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return lambda *args, **kwargs: self.call(hook, *args, **kwargs)


def with_wrapped(components, hook: str, args: tuple, kwargs: dict) -> dict:
    """``hook``'s arguments by name, with the modules of the components it wraps (``Component.wraps``)
    that the call left out built by ``components`` for the call's ``config``: ``block(config)`` is
    ``block(config, attention=components.attention(config))``."""
    kwargs = {**kwargs, **dict(zip(hook_arguments(hook), args))}
    for part in HOOKS[hook].wraps:
        if part not in kwargs and part in hook_arguments(hook):
            kwargs[part] = components.call(COMPONENTS[part].hooks[0], kwargs["config"])
    return kwargs


def raised(e: BaseException) -> str:
    """An exception as a sentence shows it: ``ValueError: its text``, or the type alone when the
    text is empty (``raise NotImplementedError()``), without a dangling colon."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def is_stub(e: BaseException, student_file: str) -> bool:
    """Is ``e`` a NotImplementedError the submission's own code raised in ``student_file`` (a stub,
    like the ``raise NotImplementedError()`` of a student notebook), not one of a library it called?"""
    if not isinstance(e, NotImplementedError):
        return False
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and frames[-1].filename == student_file


def not_implemented(what: str, e: BaseException) -> str:
    """The sentence of a stub: ``toolkit_sample is not implemented yet: it raised NotImplementedError``."""
    return f"{what} is not implemented yet: it raised {raised(e)}"


def hook_arguments(hook: str) -> list[str]:
    """The argument names of ``hook``, in the hookspec's order."""
    return list(inspect.signature(getattr(hookspecs, hook)).parameters)
