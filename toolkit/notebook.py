"""Grading from inside a notebook: the autograded test cells of the assignments call ``grade``.

A test cell of an assignment notebook is one line::

    from toolkit.notebook import grade
    grade("tokenizer.round_trip", globals())

``grade`` takes the ``@toolkit.hookimpl`` functions defined in the notebook (``globals()``),
swaps them into the pipeline exactly as ``toolkit run notebook.ipynb`` does, runs the one
check, prints the result and shows the check's plots. nbgrader reads the cell's outcome:
a failed check raises ``AssertionError`` (no points), a passed one returns the full points,
a partial one returns the points earned, which nbgrader takes as partial credit.

Everything goes to stdout: nbgrader gives zero to a test cell that writes to stderr.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import types
from pathlib import Path

from toolkit.checks import Context, collect, run_check
from toolkit.pipeline import PipelineConfig
from toolkit.plugins import Components, Plugin, build_manager, provided_components


class CheckNotPassed(AssertionError):
    """The check failed; its message is the check's one-line reason."""


def _plugin(namespace: dict) -> Plugin:
    module = types.ModuleType("notebook")
    module.__dict__.update({k: v for k, v in namespace.items() if k.startswith("toolkit_")})
    return Plugin("this notebook", module)


def grade(name: str, namespace: dict, show_plots: bool = True) -> float:
    """Run check ``name`` (e.g. ``"attention.causal"``) on the hooks in ``namespace``; return the points."""
    component = name.split(".")[0]
    found = [c for c in collect([component], include_hidden=True) if c.name == name]
    if not found:
        raise LookupError(f"no check named {name!r}; `toolkit run --help` lists how to see them")
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
        if component not in provided_components([plugin]):
            raise CheckNotPassed(f"this notebook defines no hook of the {component} component")
        key = (component, tuple(sorted((k, v) for k, v in namespace.items() if k.startswith("toolkit_"))))
        if key not in _contexts:
            pm = build_manager([plugin])
            _contexts[key] = Context(Components(pm, only=component), component, PipelineConfig(), log=print)
        ctx = _contexts[key]
        ctx.report_dir = report_dir
        result = run_check(check, ctx)
    mark = {"passed": "PASSED", "partial": "PARTIAL", "failed": "FAILED"}[result.status]
    print(f"{mark} {name}: {result.score:g}/{result.points:g} points ({result.seconds:.1f} s)")
    if result.reason:
        print(result.reason)
    if show_plots:
        _show(sorted(report_dir.glob("*.png")))
    if result.status == "failed":
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
