"""One error discipline for every command that calls student code.

The same broken submissions go through ``toolkit run`` (table and ``--json``, as a ``.py`` file and
as a notebook), ``plugins``, ``chat``, ``record``, ``grade`` and a notebook's test cell
(``toolkit.notebook.grade``). A submission that cannot be loaded or breaks the contract gives
the same one sentence everywhere (naming the file, the hook and what was expected) and the exit
code that ``toolkit.cli.EXIT_CODES`` declares, never a traceback; a hook that returns a wrong
value fails the check that called it with that sentence as its reason, except where the command
cannot go on (``chat``, ``record``: exit 2).

Every file is named ``<case>.py`` and every command runs in its folder, so that the file is
named the same way everywhere (``toolkit grade`` names it relative to the class folder); in a
notebook's namespace it is "this notebook".
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from toolkit.cli import EXIT_CODES, Exit, main
from toolkit.notebook import CheckNotPassed, grade

ROOT = Path(__file__).resolve().parents[1]
MASK = "import toolkit\n\n\n@toolkit.hookimpl\ndef toolkit_sft_mask(tokens, special_tokens):\n    return {}\n"

# case -> (source, the sentence as a regex with {file}, the component). The sentence is the whole message.
BROKEN = {
    "misspelled_marker": (
        "import pluggy\n\nhookimpl = pluggy.HookimplMarker('Toolkit')\n\n\n@hookimpl\n"
        "def toolkit_sft_mask(tokens, special_tokens):\n    return tokens[:, 1:] > 0\n",
        r"{file}: function toolkit_sft_mask has HookimplMarker\('Toolkit'\); decorate it with @toolkit\.hookimpl",
        "sft_mask"),
    "default_argument": (
        MASK.format("tokens[:, 1:] > 0").replace("special_tokens)", "special_tokens=None)"),
        r"{file}: hook toolkit_sft_mask gives argument 'special_tokens' a default value, which pluggy never "
        r"overrides; write def toolkit_sft_mask\(tokens, special_tokens\)",
        "sft_mask"),
    "half_reward": (
        "import toolkit\n\n\n@toolkit.hookimpl\ndef toolkit_reward_loss(chosen, rejected):\n"
        "    return (rejected - chosen).mean()\n",
        r"{file}: component reward needs hooks toolkit_reward_model, toolkit_reward_loss, but "
        r"toolkit_reward_model is missing",
        "reward"),
    "syntax_error": (
        "import toolkit\n\n\n@toolkit.hookimpl\ndef toolkit_sft_mask(tokens, special_tokens)\n    return tokens\n",
        r"{file}: importing it raised SyntaxError: expected ':' \({base}, line 5\)",
        "sft_mask"),
    "import_raises": (
        "import toolkit\n\nraise RuntimeError('work in progress')\n",
        r"{file}: importing it raised RuntimeError: work in progress",
        "sft_mask"),
}
WRONG_VALUE = {
    "mask_none": (
        MASK.format("None"),
        r"{file}: hook toolkit_sft_mask returned None; it must return a value \(see toolkit\.hookspecs\.toolkit_sft_mask\)"),
    "mask_wrong_shape": (
        MASK.format("tokens == special_tokens['<|assistant|>']  # (B, T): one too many"),
        r"{file}: toolkit_sft_mask returned shape \(\d+, \d+\); expected \(\d+, \d+\) \(one per target: tokens\[:, 1:\]\)"),
}
CASES = {**{k: v[:2] for k, v in BROKEN.items()}, **WRONG_VALUE}


def sentence(case: str, file: str) -> str:
    """The regex of ``case``'s sentence naming ``file``."""
    return CASES[case][1].format(file=re.escape(file), base=re.escape(Path(file).name))


@pytest.fixture(scope="module")
def klass(tmp_path_factory) -> Path:
    """A folder with ``<case>.py`` for every case: a class of one student per case."""
    folder = tmp_path_factory.mktemp("class")
    for case, (source, _) in CASES.items():
        (folder / f"{case}.py").write_text(source)
    return folder


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    """A folder with ``<case>.ipynb``, one code cell, for every broken case."""
    folder = tmp_path_factory.mktemp("notebooks")
    for case in BROKEN:
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CASES[case][0])]),
                       folder / f"{case}.ipynb")
    return folder


def cli(folder: Path, monkeypatch, *args, input=None):
    """``toolkit ARGS`` in-process, in ``folder``."""
    monkeypatch.chdir(folder)
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def assert_one_sentence(result, pattern: str, code: Exit) -> None:
    """Exit ``code``, no traceback, and stderr's last line is ``error: <pattern>``."""
    assert result.exit_code == code, result.output + result.stderr
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.stderr
    assert re.fullmatch(f"error: {pattern}", result.stderr.strip().splitlines()[-1]), result.stderr


# -- cannot be loaded, or breaks the contract ------------------------------------------------------
@pytest.mark.parametrize("case", BROKEN)
def test_run_plugins_chat_record_give_one_sentence_and_exit_2(case, klass, monkeypatch, tmp_path):
    pattern = sentence(case, f"{case}.py")
    assert_one_sentence(cli(klass, monkeypatch, "run", f"{case}.py", "--fast"), pattern, Exit.USAGE)
    doc = cli(klass, monkeypatch, "run", f"{case}.py", "--fast", "--json")
    assert doc.exit_code == Exit.USAGE and re.fullmatch(pattern, json.loads(doc.stdout)["error"])
    assert_one_sentence(cli(klass, monkeypatch, "plugins", f"{case}.py"), pattern, Exit.USAGE)
    assert_one_sentence(cli(klass, monkeypatch, "chat", f"{case}.py", input="hi\n"), pattern, Exit.USAGE)
    assert_one_sentence(cli(klass, monkeypatch, "record", f"{case}.py", "--snapshots", tmp_path), pattern, Exit.USAGE)
    assert not any(tmp_path.iterdir())
    assert all(Exit.USAGE in EXIT_CODES[c] for c in ("run", "plugins", "chat", "record"))


@pytest.mark.parametrize("case", BROKEN)
def test_a_notebook_submission_gives_the_same_sentence(case, notebooks, monkeypatch):
    assert_one_sentence(cli(notebooks, monkeypatch, "run", f"{case}.ipynb", "--fast"), sentence(case, f"{case}.ipynb"),
                        Exit.USAGE)


@pytest.mark.parametrize("case", BROKEN)
def test_a_notebook_test_cell_raises_check_not_passed_with_the_sentence(case):
    """The cells run as in a kernel: a cell that raises stops there, what it defined before stays."""
    namespace = {}
    try:
        exec(compile(CASES[case][0], "<cell>", "exec"), namespace)
    except (SyntaxError, RuntimeError):
        pass
    component = BROKEN[case][2]
    check = {"sft_mask": "sft_mask.matches_reference", "reward": "reward.loss_sanity"}[component]
    with pytest.raises(CheckNotPassed) as raised:
        grade(check, namespace, show_plots=False)
    if case in ("syntax_error", "import_raises"):  # in a notebook the cell fails on its own, and no hook is defined
        pattern = (r"this notebook defines no toolkit_sft_mask: run the cell that defines it \(with @toolkit\.hookimpl\), "
                   r"then this one")
    else:
        pattern = sentence(case, "this notebook")
    assert re.fullmatch(pattern, str(raised.value)), str(raised.value)


# -- a hook that returns a wrong value ---------------------------------------------------------------
@pytest.mark.parametrize("case", WRONG_VALUE)
def test_a_wrong_return_value_fails_the_check_under_run_and_stops_chat(case, klass, monkeypatch, tmp_path):
    pattern = sentence(case, f"{case}.py")
    run = cli(klass, monkeypatch, "run", f"{case}.py", "--fast", "--json")
    assert run.exit_code == Exit.FAILED and Exit.FAILED in EXIT_CODES["run"], run.stderr
    results = {r["name"]: r for r in json.loads(run.stdout)["results"]}
    assert re.fullmatch(pattern, results["sft_mask.matches_reference"]["reason"])
    assert results["sft_mask.matches_reference"]["status"] == "failed"
    assert cli(klass, monkeypatch, "plugins", f"{case}.py").exit_code == Exit.OK  # listing calls no hook
    assert_one_sentence(cli(klass, monkeypatch, "chat", f"{case}.py", input="hi\n"), pattern, Exit.USAGE)
    namespace = {}
    exec(CASES[case][0], namespace)
    with pytest.raises(CheckNotPassed) as raised:
        grade("sft_mask.matches_reference", namespace, show_plots=False)
    assert re.fullmatch(sentence(case, "this notebook"), str(raised.value))


def test_record_stops_on_a_wrong_return_value_and_writes_nothing(klass, monkeypatch, tmp_path):
    result = cli(klass, monkeypatch, "record", "mask_none.py", "--snapshots", tmp_path)
    assert_one_sentence(result, sentence("mask_none", "mask_none.py"), Exit.USAGE)
    assert not any(tmp_path.iterdir())


def test_chat_prints_no_traceback_in_a_real_terminal(klass):
    """The report of issue #19: `printf 'hi\\n' | toolkit chat mine.py` with a mask returning None."""
    out = subprocess.run([sys.executable, "-m", "toolkit.cli", "chat", "mask_none.py"], cwd=klass, input="hi\n",
                         capture_output=True, text=True)
    assert out.returncode == Exit.USAGE and "Traceback" not in out.stderr
    assert re.fullmatch(f"error: {sentence('mask_none', 'mask_none.py')}", out.stderr.strip().splitlines()[-1])


# -- toolkit grade -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_grade_records_the_same_sentences(klass, tmp_path):
    """The whole class in one batch: load errors as load_error with the sentence in feedback and
    results.json; wrong return values as graded, the check failed with the sentence as its reason."""
    out = tmp_path / "grades"
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "grade", klass, "--out", out, "--fast",
                           "-c", "sft_mask", "-c", "reward", "--timeout", "120", "--workers", "2"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == Exit.OK, proc.stderr[-3000:]
    for case in CASES:
        pattern = sentence(case, f"{case}.py")
        results = json.loads((out / "gradescope" / case / "results.json").read_text())
        page = html.unescape(re.sub(r"<[^>]+>", " ", (out / "feedback" / case / "index.html").read_text()))
        if case in BROKEN:
            status, error = results["output"].splitlines()[:2]
            assert "(load_error)" in status and re.fullmatch(pattern, error), results["output"]
        else:
            check = next(t for t in results["tests"] if t["name"] == "sft_mask.matches_reference")
            assert check["status"] == "failed" and re.fullmatch(pattern, check["output"]), check
            error = check["output"]
        assert error in " ".join(page.split()), f"{case}: the sentence is not on the feedback page"


def test_a_file_without_hooks_is_told_which_hooks_there_are(tmp_path, monkeypatch):
    """Outside a notebook the sentence lists every hook; inside one it names the test cell's component."""
    from toolkit.components import HOOKS

    (tmp_path / "empty.py").write_text("def helper(x):\n    return x\n")
    assert_one_sentence(cli(tmp_path, monkeypatch, "run", "empty.py"),
                        re.escape(f"empty.py: no toolkit hooks found; expected functions named like the hooks "
                                  f"({', '.join(HOOKS)}) and decorated with @toolkit.hookimpl"), Exit.USAGE)
    with pytest.raises(CheckNotPassed, match=r"^this notebook defines no toolkit_reward_model and no "
                                             r"toolkit_reward_loss: run the cell that defines them"):
        grade("reward.loss_sanity", {"helper": lambda x: x}, show_plots=False)
