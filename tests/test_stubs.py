"""A stub earns nothing (issue 32): a component not implemented yet scores 0 on every check, each
with one sentence that says so.

Two kinds of stub: a plugin whose every hook raises ``NotImplementedError`` (written here from the
hookspecs), and the student version of each assignment notebook, as nbgrader releases it (its
solution regions replaced by ``raise NotImplementedError()``: in a forward, a train, a hook),
graded as ``toolkit run NOTEBOOK.ipynb`` grades it, and as ``toolkit grade`` does (its child's
exceptions cross to the grader as sentences).

Cost, measured on 2 busy cores (a warm model cache): about 20 s for the whole file. The hook stubs
run every check, the behavioural ones too: a stub fails them before any model is trained (2.5 s for
the five components); the notebooks run with ``--fast`` under ``toolkit run`` (2.5 s, most of it the
tokenizer notebook's first load) and with every check through the child (11 s).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from toolkit.checks import collect
from toolkit.components import COMPONENTS
from toolkit.plugins import hook_arguments
from toolkit.runner import run_submission

NOT_YET = "is not implemented yet: it raised NotImplementedError"

def stub_source(component: str) -> str:
    """A plugin whose every hook of ``component`` raises NotImplementedError."""
    hooks = [f"@toolkit.hookimpl\ndef {hook}({', '.join(hook_arguments(hook))}):\n    raise NotImplementedError\n"
             for hook in COMPONENTS[component].hooks]
    return "import toolkit\n\n\n" + "\n\n".join(hooks)


def assert_earns_nothing(results, component: str, behavioural: bool, says: str = NOT_YET) -> None:
    """Every check of ``component`` (the behavioural ones if they ran) scored 0, its reason the stub's sentence."""
    expected = {c.name for c in collect([component]) if behavioural or not c.behavioural}
    assert {r.name for r in results} == expected
    for r in results:
        assert r.score == 0 and r.status == "failed", r
        assert says in r.reason, f"{r.name}: {r.reason}"
        assert "\n" not in r.reason and not r.reason.rstrip().endswith(":") and ": ," not in r.reason, r.reason


@pytest.mark.parametrize("component", [
    *COMPONENTS])
def test_a_plugin_whose_every_hook_raises_not_implemented_earns_nothing(component, tmp_path):
    path = tmp_path / f"{component}_stub.py"
    path.write_text(stub_source(component))
    run = run_submission(str(path), [component], include_hidden=True, behavioural=True, log=lambda msg: None,
                         lanes=False)
    assert_earns_nothing(run.results, component, behavioural=True)
    public = [r for r in run.results if not r.hidden]
    for hook in COMPONENTS[component].hooks:  # the hook named, and nothing more than the sentence
        assert any(r.reason.startswith(f"{path}: {hook} {NOT_YET}") for r in public), [r.reason for r in public]
    for r in run.results:
        if r.hidden:  # a hidden check says only that it met a stub
            assert r.reason == ("the submission's code is not implemented yet: it raised NotImplementedError on this "
                                "hidden check's inputs")


def student_version(source: Path, out: Path) -> Path:
    """The notebook students get: nbgrader's ClearSolutions, as ``nbgrader generate_assignment`` runs it."""
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    nb, _ = preprocessors.ClearSolutions().preprocess(nbformat.read(source, as_version=4), {"language": "python"})
    assert "raise NotImplementedError()" in "".join(cell.source for cell in nb.cells)
    nbformat.write(nb, out / source.name)
    return out / source.name


@pytest.mark.parametrize("component", [
    *COMPONENTS])
def test_the_untouched_student_notebook_earns_nothing(component, tmp_path):
    """Its code cells load (the stubs raise only when called); every unit and hidden check then meets a
    stub: a forward, a train, a hook. (``--fast``: the behavioural checks meet the same stubs.)"""
    notebook = student_version(COMPONENTS[component].notebook, tmp_path)
    run = run_submission(str(notebook), [component], include_hidden=True, behavioural=False, log=lambda msg: None,
                         lanes=False)
    assert_earns_nothing(run.results, component, behavioural=False)
    assert all(f"(at {notebook.name}:" in r.reason or f"{notebook}: toolkit_" in r.reason
               for r in run.results if not r.hidden), [r.reason for r in run.results]


class InProcess:
    """A channel to a child's ``Server`` in this process: the same requests and answers, pickled and
    ``torch.save``d, as over the pipe of ``toolkit grade`` (without its sandbox)."""

    gone = None

    def __init__(self, server):
        self.server = server

    def exchange(self, data, limit=None):
        import io

        import torch

        from toolkit.grading.wire import plain

        return plain(torch.load(io.BytesIO(self.server.answer(data)), weights_only=True))

    def paused(self):
        import contextlib

        return contextlib.nullcontext()


@pytest.mark.parametrize("component", ["tokenizer", "attention", "block", "sft_mask", "reward"])
def test_under_grade_a_stub_crosses_from_the_child_in_the_same_sentence(component, tmp_path):
    """``toolkit grade`` runs the submission in a child, whose exceptions reach the grader as sentences
    (``toolkit.grading.child``): the notebook's stubs (a forward, a train, a hook) read as under ``toolkit
    run``, hidden and behavioural checks included (the grader trains nothing before it meets the stub)."""
    from toolkit.checks import Context, run_components
    from toolkit.grading.child import Server
    from toolkit.grading.remote import Child
    from toolkit.config import PipelineConfig
    from toolkit.plugins import build_manager, load_submission, provided_components

    plugins = load_submission(str(student_version(COMPONENTS[component].notebook, tmp_path)))
    child = Child(InProcess(Server(build_manager(plugins), list(provided_components(plugins)))))
    results = run_components([component], lambda comp: Context(child.components(comp), comp, PipelineConfig(),
                                                                log=lambda msg: None, remote=child),
                             include_hidden=True, behavioural=True)
    assert_earns_nothing(results, component, behavioural=True)
