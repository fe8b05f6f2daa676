"""Grading from inside a notebook: the autograded test cells of the assignments call ``grade``.

A test cell of an assignment notebook is two lines::

    from toolkit.notebook import grade
    grade("tokenizer.round_trip", globals())

``grade`` takes the ``@toolkit.hookimpl`` functions defined in the notebook (``globals()``),
swaps them into the pipeline exactly as ``toolkit run notebook.ipynb`` does, runs the one
check, prints the result and shows the check's plots. nbgrader reads the cell's outcome:
a failed check raises ``CheckNotPassed``, an ``AssertionError`` (no points), a passed one
returns the full points, a partial one returns the points earned, which nbgrader takes as
partial credit. Hooks that break the contract (no marker, a default argument, half of a
component, ...) raise ``CheckNotPassed`` too, with the sentence ``toolkit run`` prints.

A failed cell shows its reason once: Jupyter shows ``CheckNotPassed: <reason>``, without a
traceback through this module (the error is still the cell's error, so nbgrader still gives 0).

Everything goes to stdout: nbgrader gives zero to a test cell that writes to stderr. The
pipeline's log names the model it loaded, not where it lies on this machine.
"""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
import types
from pathlib import Path

from toolkit.checks import CheckStatus, Context, collect, run_check
from toolkit.components import COMPONENTS, HOOKS
from toolkit.config import PipelineConfig
from toolkit.plugins import Components, Plugin, SubmissionError, build_manager, provided_components


class CheckNotPassed(AssertionError):
    """The check failed, or the notebook's hooks break the contract; the message is one sentence."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows for this error instead of a traceback: the one sentence."""
        return [f"{type(self).__name__}: {self}"]


_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/][^\s'\"]*[\\/]([^\s'\"\\/]+)")
"""An absolute path (POSIX or Windows); group 1 is its file name."""


def _log(message: str) -> None:
    """The pipeline's log in a test cell: printed, every path shortened to its file name."""
    print(_PATH.sub(r"\1", message))


def _defined(namespace: dict) -> dict:
    """What the notebook defines under a hook's prefix: its hooks, and its misspelled hooks."""
    return {k: v for k, v in namespace.items() if k.startswith("toolkit_")}


def _plugin(namespace: dict) -> Plugin:
    module = types.ModuleType("notebook")
    module.__dict__.update(_defined(namespace))
    return Plugin("this notebook", module)


def grade(name: str, namespace: dict, show_plots: bool = True) -> float:
    """Run check ``name`` (e.g. ``"attention.causal"``) on the hooks in ``namespace``; return the points."""
    component = name.split(".")[0]
    checks = collect([component], include_hidden=True)
    found = [c for c in checks if c.name == name]
    if component not in COMPONENTS:
        raise LookupError(f"no check named {name!r}: the components are {', '.join(COMPONENTS)}")
    if not found:
        raise LookupError(f"no check named {name!r} in this copy of the graders; the checks of {component} are "
                          f"{', '.join(c.name for c in checks)}")
    with tempfile.TemporaryDirectory(prefix="toolkit-") as tmp:
        return _grade(found[0], component, namespace, Path(tmp), show_plots)


_contexts: dict[tuple, Context] = {}
"""(component, the notebook's hook functions) -> the context of its checks: as in ``toolkit run``,
later cells reuse the models earlier cells trained, and see their results (``Context.earlier``),
until a hook is redefined."""


def _grade(check, component: str, namespace: dict, report_dir: Path, show_plots: bool) -> float:
    name = check.name
    with contextlib.redirect_stderr(sys.stdout):
        plugin = _plugin(namespace)
        hooks = COMPONENTS[component].hooks
        if not any(k in HOOKS or hasattr(v, "toolkit_impl") for k, v in _defined(namespace).items()):
            raise CheckNotPassed(f"this notebook defines no {' and no '.join(hooks)}: run the cell that defines "
                                 f"{'them' if len(hooks) > 1 else 'it'} (with @toolkit.hookimpl), then this one")
        try:
            provided = provided_components([plugin])
            pm = build_manager([plugin])
        except SubmissionError as e:  # the sentence toolkit run prints, as the cell's failure
            raise CheckNotPassed(str(e)) from None
        if component not in provided:
            raise CheckNotPassed(f"this notebook defines no {' and no '.join(hooks)}, which this check tests; "
                                 f"it provides {', '.join(provided)}")
        key = (component, tuple(sorted(_defined(namespace).items())))
        if key not in _contexts:
            _contexts[key] = Context(Components(pm, only=component), component, PipelineConfig(), log=_log)
        ctx = _contexts[key]
        ctx.report_dir = report_dir
        result = run_check(check, ctx)
    print(f"{result.status.upper()} {name}: {result.score:g}/{result.points:g} points ({result.seconds:.1f} s)")
    if result.reason and result.status != CheckStatus.FAILED:  # a failed check's reason is the cell's error
        print(result.reason)
    if show_plots:
        _show(sorted(report_dir.glob("*.png")))
    if result.status == CheckStatus.FAILED:
        raise CheckNotPassed(result.reason)
    return result.score


def _show(pngs: list[Path]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    for png in pngs:
        display(Image(data=png.read_bytes(), format="png"))
