"""Loading student plugins and turning every known pluggy pitfall into a clear error.

Each test writes a small plugin into ``tmp_path``, loads it with ``load_submission`` and
checks either what ``build_manager`` answers from, or that the error is a
``SubmissionError``/``PluginError`` whose message names the file, the hook and what was
expected.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from toolkit.model import GPTConfig
from toolkit.components import COMPONENTS, HOOKS
from toolkit.plugins import (
    Components,
    NotImplementedYet,
    Plugin,
    PluginError,
    SubmissionError,
    answering_plugins,
    build_manager,
    installed_plugins,
    load_submission,
    provided_components,
)

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, source: str) -> Path:
    """Write ``source`` (dedented) to ``tmp_path / name``, creating folders; return the path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


ATTENTION_PLUGIN = """
    import toolkit

    @toolkit.hookimpl
    def toolkit_attention(config):
        return ("student attention", config)
"""


def load_and_build(path):
    """What the grader does: load, then build a manager (where most checks happen)."""
    return build_manager(load_submission(path))


# -- 1. a correct plugin --------------------------------------------------------------
def test_correct_plugin_answers_its_hook_and_baselines_answer_the_rest(tmp_path):
    path = write(tmp_path, "my_attention.py", ATTENTION_PLUGIN)
    plugins = load_submission(path)
    assert [p.name for p in plugins] == [str(path)]
    assert provided_components(plugins) == {"attention": str(path)}

    pm = build_manager(plugins)
    answers = answering_plugins(pm)
    assert answers["toolkit_attention"] == str(path)
    for hook, comp in HOOKS.items():
        if comp.name != "attention":
            assert answers[hook] == f"baseline.{comp.name}", hook
    # exactly one implementation per hook: the baseline for attention is blocked, not shadowed
    assert pm.is_blocked("baseline.attention")
    assert pm.get_plugin("baseline.attention") is None
    assert [i.plugin_name for i in pm.hook.toolkit_attention.get_hookimpls()] == [str(path)]
    assert pm.hook.toolkit_attention(config="cfg") == ("student attention", "cfg")
    assert type(pm.hook.toolkit_tokenizer()).__name__ == "WholeWordTokenizer"


# -- 2-6, 8-9. the classic hook-definition mistakes, a half component, no hooks at all ------------
REFUSED = {  # file -> (its source, the words the SubmissionError says besides the file's path)
    "marker.py": ("""
        import pluggy

        hookimpl = pluggy.HookimplMarker("Toolkit")

        @hookimpl
        def toolkit_attention(config):
            return config
    """, ["toolkit_attention", "HookimplMarker('Toolkit')", "@toolkit.hookimpl"]),
    "nomarker.py": ("""
        def toolkit_attention(config):
            return config
    """, ["toolkit_attention", "no marker", "@toolkit.hookimpl"]),
    "typo.py": ("""
        import toolkit

        @toolkit.hookimpl
        def toolkit_atention(config):
            return config
    """, ["toolkit_atention", "not a toolkit hook", "did you mean toolkit_attention?"]),
    "default.py": ("""
        import toolkit

        @toolkit.hookimpl
        def toolkit_attention(config=None):
            return config
    """, ["toolkit_attention", "'config' a default value",
          "def toolkit_attention(config)"]),  # what to write instead
    "argname.py": ("""
        import toolkit

        @toolkit.hookimpl
        def toolkit_attention(cfg):
            return cfg
    """, ["toolkit_attention", "'cfg'", "(config)"]),  # the arguments the hook does pass
    "reward_half.py": ("""
        import toolkit

        @toolkit.hookimpl
        def toolkit_reward_loss(chosen, rejected):
            return (chosen - rejected).mean()
    """, ["component reward", "toolkit_reward_model is missing"]),
    "empty_plugin.py": ("""
        def helper(x):
            return x
    """, ["no toolkit hooks found", "@toolkit.hookimpl"]),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_plugin_written_wrong_is_refused_naming_the_file_and_what_to_write(tmp_path, name):
    source, says = REFUSED[name]
    path = write(tmp_path, name, source)
    with pytest.raises(SubmissionError) as err:
        load_and_build(path)
    msg = str(err.value)
    assert str(path) in msg
    for words in says:
        assert words in msg, msg


# -- 7. a hook implemented twice ---------------------------------------------------------
def test_hook_implemented_twice_across_files_names_both(tmp_path):
    a = write(tmp_path / "sub", "a.py", ATTENTION_PLUGIN)
    b = write(tmp_path / "sub", "b.py", ATTENTION_PLUGIN)
    plugins = load_submission(tmp_path / "sub")
    assert [p.name for p in plugins] == [str(a), str(b)]
    with pytest.raises(SubmissionError) as err:
        build_manager(plugins)
    msg = str(err.value)
    assert str(a) in msg and str(b) in msg
    assert "toolkit_attention" in msg
    assert "implemented twice" in msg and "exactly one" in msg


# -- 10. exceptions at import time ---------------------------------------------------
@pytest.mark.parametrize("stem, source, exc_name", [
    ("raises_value", 'raise ValueError("boom")', "ValueError: boom"),
    ("calls_exit", "import sys\nsys.exit(0)", "SystemExit"),
    ("raises_kbint", "raise KeyboardInterrupt", "KeyboardInterrupt"),
])
def test_exception_at_import_is_a_submission_error(tmp_path, stem, source, exc_name):
    path = write(tmp_path, f"{stem}.py", source + "\n")
    with pytest.raises(SubmissionError) as err:  # SystemExit/KeyboardInterrupt must not escape
        load_submission(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "importing it raised" in msg
    assert exc_name in msg
    # the half-imported module does not linger
    assert not [m for m in sys.modules if m.startswith("toolkit_submission_") and m.endswith(f"_{stem}")]


# -- 11. wrong behaviour while the toolkit calls a hook -------------------------------
def test_hook_returning_none_is_a_plugin_error(tmp_path):
    path = write(tmp_path, "returns_none.py", """
        import toolkit

        @toolkit.hookimpl
        def toolkit_attention(config):
            pass
    """)
    comps = Components(load_and_build(path), only="attention")
    assert comps.source("attention") == str(path)
    with pytest.raises(PluginError) as err:  # no silent fall-through to the baseline
        comps.attention(GPTConfig())
    msg = str(err.value)
    assert str(path) in msg
    assert "toolkit_attention" in msg
    assert "returned None" in msg


def test_hook_raising_is_a_plugin_error(tmp_path):
    path = write(tmp_path, "raises_in_hook.py", """
        import toolkit

        @toolkit.hookimpl
        def toolkit_attention(config):
            raise ZeroDivisionError("no heads")
    """)
    comps = Components(load_and_build(path), only="attention")
    with pytest.raises(PluginError) as err:
        comps.attention(GPTConfig())
    msg = str(err.value)
    assert str(path) in msg
    assert "toolkit_attention" in msg
    assert "ZeroDivisionError" in msg and "no heads" in msg
    assert isinstance(err.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize("body, says, stub", [
    ("raise NotImplementedError", "toolkit_attention is not implemented yet: it raised NotImplementedError", True),
    ("raise NotImplementedError()", "toolkit_attention is not implemented yet: it raised NotImplementedError", True),
    ("raise NotImplementedError('heads')", "toolkit_attention is not implemented yet: it raised "
                                          "NotImplementedError: heads", True),
    ("raise ValueError()", "hook toolkit_attention raised ValueError", False),  # no dangling colon
    ("raise ValueError('   ')", "hook toolkit_attention raised ValueError", False),
    ("Tokenizer().encode('')", "hook toolkit_attention raised NotImplementedError", False),  # not its own raise
])
def test_a_hook_that_raises_is_named_in_one_sentence_a_stub_as_not_implemented(tmp_path, body, says, stub):
    path = write(tmp_path, "stub.py", f"""
        import toolkit
        from toolkit.tokenizer import Tokenizer

        @toolkit.hookimpl
        def toolkit_attention(config):
            {body}
    """)
    with pytest.raises(PluginError) as err:
        Components(load_and_build(path), only="attention").attention(GPTConfig())
    assert str(err.value) == f"{path}: {says}"
    assert isinstance(err.value, NotImplementedYet) == stub


def test_components_only_takes_other_components_from_baselines(tmp_path):
    path = write(tmp_path, "attn_only.py", ATTENTION_PLUGIN)
    comps = Components(load_and_build(path), only="attention")
    assert comps.source("attention") == str(path)
    assert comps.source("tokenizer") == "baseline.tokenizer"
    assert comps.attention("cfg") == ("student attention", "cfg")


# -- 12. notebooks ------------------------------------------------------------------
def test_notebook_submission_with_magics_and_markdown(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# My SFT mask\nIt supervises the assistant only."),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport toolkit"),
        nbformat.v4.new_code_cell(textwrap.dedent("""
            @toolkit.hookimpl
            def toolkit_sft_mask(tokens, special_tokens):
                return "notebook mask"
        """)),
    ]
    path = tmp_path / "sft.ipynb"
    nbformat.write(nb, str(path))

    plugins = load_submission(path)
    assert provided_components(plugins) == {"sft_mask": str(path)}
    pm = build_manager(plugins)
    assert answering_plugins(pm)["toolkit_sft_mask"] == str(path)
    assert pm.hook.toolkit_sft_mask(tokens=None, special_tokens={}) == "notebook mask"


def test_malformed_notebook(tmp_path):
    path = write(tmp_path, "broken.ipynb", "this is not JSON {")
    with pytest.raises(SubmissionError) as err:
        load_submission(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "not a readable Jupyter notebook" in msg


# -- 13. packages -------------------------------------------------------------------
def test_package_directory_with_relative_import(tmp_path):
    pkg = tmp_path / "mypkg"
    write(pkg, "attn.py", ATTENTION_PLUGIN)
    write(pkg, "__init__.py", "from .attn import toolkit_attention\n")
    plugins = load_submission(pkg)
    assert [p.name for p in plugins] == [str(pkg)]
    pm = build_manager(plugins)
    assert answering_plugins(pm)["toolkit_attention"] == str(pkg)
    assert pm.hook.toolkit_attention(config=1) == ("student attention", 1)


# -- 14. nothing there --------------------------------------------------------------
@pytest.mark.parametrize("spec", [
    "no_such_module_xyz",  # a module or entry point name
    "{tmp}/missing.py",  # an absolute path
    "missing_plugin.py",  # a relative path
    "./missing_plugin.py",  # a relative path as a shell user types it
])
def test_nonexistent_submission(tmp_path, spec):
    spec = spec.format(tmp=tmp_path)
    with pytest.raises(SubmissionError) as err:
        load_submission(spec)
    msg = str(err.value)
    assert msg.startswith(f"{spec}:")
    assert "no such file" in msg


def test_directory_without_python_files(tmp_path):
    write(tmp_path / "d", "notes.txt", "nothing here")
    with pytest.raises(SubmissionError) as err:
        load_submission(tmp_path / "d")
    assert str(tmp_path / "d") in str(err.value)
    assert "no .py or .ipynb file" in str(err.value)


def test_blocked_plugin_name_is_an_error(tmp_path):
    """Pitfall 7: registering under a blocked name returns None instead of raising."""
    (plugin,) = load_submission(write(tmp_path, "x.py", ATTENTION_PLUGIN))
    with pytest.raises(SubmissionError) as err:
        build_manager([Plugin("baseline.attention", plugin.module)])
    assert "baseline.attention" in str(err.value)
    assert "blocked" in str(err.value)


# -- 15. installed entry points -----------------------------------------------------
@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """An installed distribution ``fakeplug`` with a working and a broken ``toolkit`` entry point."""
    dist = tmp_path / "site" / "fakeplug-0.1.dist-info"
    write(dist, "METADATA", "Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    write(dist, "entry_points.txt", "[toolkit]\nfakeplug = fakeplug_mod\nbroken = does_not_exist_mod\n")
    write(tmp_path / "site", "fakeplug_mod.py", ATTENTION_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield tmp_path / "site"
    for name in ("fakeplug_mod", "does_not_exist_mod"):
        sys.modules.pop(name, None)


def test_entry_point_submission(fake_distribution):
    plugins = load_submission("fakeplug")
    assert [p.name for p in plugins] == ["entry point fakeplug"]
    assert plugins[0].module.__name__ == "fakeplug_mod"
    assert provided_components(plugins) == {"attention": "entry point fakeplug"}
    pm = build_manager(plugins)
    assert answering_plugins(pm)["toolkit_attention"] == "entry point fakeplug"


def test_broken_entry_point_is_a_submission_error(fake_distribution):
    with pytest.raises(SubmissionError) as err:
        load_submission("broken")
    msg = str(err.value)
    assert "entry point broken" in msg and "does_not_exist_mod" in msg
    assert "ModuleNotFoundError" in msg


def test_installed_plugins_survives_a_broken_entry_point(fake_distribution):
    listed = {name: (target, error) for name, target, error in installed_plugins()}
    assert listed["fakeplug"] == ("fakeplug_mod", None)
    target, error = listed["broken"]
    assert target == "does_not_exist_mod"
    assert error is not None and error.startswith("ModuleNotFoundError") and "does_not_exist_mod" in error


# -- 16. isolation between submissions and runs -----------------------------------------
def test_same_file_name_in_two_submissions_does_not_collide(tmp_path):
    a = write(tmp_path / "alice", "attention.py", ATTENTION_PLUGIN.replace("student attention", "alice"))
    b = write(tmp_path / "bob", "attention.py", ATTENTION_PLUGIN.replace("student attention", "bob"))
    plugins_a, plugins_b = load_submission(a), load_submission(b)
    assert plugins_a[0].module is not plugins_b[0].module
    assert plugins_a[0].module.__name__ != plugins_b[0].module.__name__
    pm_a, pm_b = build_manager(plugins_a), build_manager(plugins_b)
    assert pm_a.hook.toolkit_attention(config=0) == ("alice", 0)
    assert pm_b.hook.toolkit_attention(config=0) == ("bob", 0)
    assert answering_plugins(pm_a)["toolkit_attention"] == str(a)
    assert answering_plugins(pm_b)["toolkit_attention"] == str(b)


def test_fresh_manager_per_run(tmp_path):
    path = write(tmp_path, "attention.py", ATTENTION_PLUGIN)
    (plugin,) = load_submission(path)
    pm_a = build_manager([plugin])
    pm_base = build_manager()
    assert pm_base is not pm_a
    assert pm_base.get_plugin(str(path)) is None
    assert not pm_base.is_registered(plugin.module)
    assert not pm_base.is_blocked("baseline.attention")
    assert answering_plugins(pm_base) == {hook: f"baseline.{comp.name}" for hook, comp in HOOKS.items()}
    # and the first manager is unchanged by building the second
    assert answering_plugins(pm_a)["toolkit_attention"] == str(path)


# -- 17. the instructor's solutions -------------------------------------------------------
def test_solutions_directory_provides_every_component():
    plugins = load_submission(ROOT / "solutions")
    provided = provided_components(plugins)
    assert set(provided) == set(COMPONENTS)
    for comp, name in provided.items():
        assert Path(name).parent == ROOT / "solutions", comp
    pm = build_manager(plugins)
    assert not any(name.startswith("baseline.") for name in answering_plugins(pm).values())
    assert all(pm.is_blocked(f"baseline.{comp}") for comp in COMPONENTS)


def nbgrader_cell(source: str, answer: bool):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"schema_version": 3, "solution": answer, "grade": False, "locked": not answer,
                                 "grade_id": f"cell-{abs(hash(source))}"}
    return cell


def test_notebook_cell_that_fails_outside_the_answers_is_skipped(tmp_path, capsys):
    """A try-it cell that calls unfinished code fails in Jupyter on its own; it must not sink the submission."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbgrader_cell("import toolkit\n\ndef helper():\n    raise NotImplementedError()", answer=False),
        nbgrader_cell("@toolkit.hookimpl\ndef toolkit_sft_mask(tokens, special_tokens):\n    return 'mask'", answer=True),
        nbgrader_cell("helper()  # try it", answer=False),
    ]
    path = tmp_path / "sft.ipynb"
    nbformat.write(nb, str(path))
    plugins = load_submission(path)
    assert provided_components(plugins) == {"sft_mask": str(path)}
    assert f"warning: {path} (code cell 3) raised NotImplementedError" in capsys.readouterr().err


def test_notebook_answer_cell_that_fails_names_the_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbgrader_cell("import toolkit", answer=False), nbgrader_cell("1 / 0", answer=True)]
    path = tmp_path / "sft.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(SubmissionError, match=r"\(code cell 2\): importing it raised ZeroDivisionError"):
        load_submission(path)
