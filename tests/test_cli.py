"""``toolkit`` as a user runs it: a subprocess, its exit code, stdout, stderr and report.

The main job of ``make demo``, ``toolkit run solutions/ --report DIR`` with the full
configuration, is run by tests/test_installed.py, from the installed wheel.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"


def toolkit(*args, cwd=ROOT, input=None):
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, input=input)


def test_every_help_is_complete_and_lists_the_declared_exit_codes():
    """Every command and every option has help text; each command's --help ends with its exit codes,
    rendered from toolkit.cli.EXIT_CODES (the README's table is rendered from it too: tests/test_docs.py)."""
    from click.testing import CliRunner

    from toolkit.cli import EXIT_CODES, main

    assert set(main.commands) == set(EXIT_CODES)
    for name, command in main.commands.items():
        assert command.help and command.help.strip(), f"toolkit {name} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help and param.help.strip(), f"toolkit {name} {param.opts[0]} has no help"
        out = CliRunner().invoke(main, [name, "--help"])  # in process: the same text, without a torch import per command
        assert out.exit_code == 0
        shown = " ".join(out.output.split())
        for code, meaning in EXIT_CODES[name].items():
            assert f"{int(code)} {meaning}" in shown, f"toolkit {name} --help does not say what exit {int(code)} means"


def test_asking_for_a_component_the_submission_does_not_provide_is_a_usage_error():
    """The notebook provides sft_mask only: `-c attention` used to print an empty table, total 0 / 0, exit 1."""
    notebook = "assignments/sft_mask/sft_mask.ipynb"
    out = toolkit("run", notebook, "-c", "attention", "--fast")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines()[-1] == f"error: {notebook} provides sft_mask, not attention (asked with -c)"
    out = toolkit("record", PLUGINS / "attn_einsum.py", "-c", "reward")
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {PLUGINS / 'attn_einsum.py'} provides attention, not reward (asked with -c)"


def test_missing_submission_is_a_usage_error_in_one_sentence(tmp_path):
    out = toolkit("run", tmp_path / "nope.py")
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {tmp_path / 'nope.py'}: no such file or directory"
    assert out.stdout == ""


def test_contract_breach_names_file_and_hook(tmp_path):
    path = tmp_path / "mask.py"
    path.write_text("import toolkit\n\n@toolkit.hookimpl\ndef toolkit_sft_mask(tokens, special_tokens=None):\n    return tokens\n")
    out = toolkit("run", path, "--json")
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert str(path) in doc["error"] and "toolkit_sft_mask" in doc["error"] and "default" in doc["error"]


def test_failing_check_exits_1_with_a_reason():
    out = toolkit("run", PLUGINS / "attn_no_mask.py", "--json", "--fast")  # causal is a unit check
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    causal = next(r for r in doc["results"] if r["name"] == "attention.causal")
    assert causal["status"] == "failed" and "mask" in causal["reason"]
    assert doc["score"] < doc["max_score"] and doc["passed"] is False


def test_table_output_for_a_passing_component():
    out = toolkit("run", PLUGINS / "attn_einsum.py", "--fast")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "attention.causal" in out.stdout and "total: 9 / 9 (public and hidden checks)" in out.stdout
    assert "not provided: tokenizer, block, optimizer, sft_mask, reward, sampler" in out.stdout


def test_plugins_lists_every_hook_and_who_answers():
    out = toolkit("plugins", "--json")
    assert out.returncode == 0
    hooks = json.loads(out.stdout)["hooks"]
    assert set(hooks) == {"toolkit_tokenizer", "toolkit_attention", "toolkit_block", "toolkit_cross_entropy",
                          "toolkit_optimizer", "toolkit_sft_mask", "toolkit_reward_model", "toolkit_reward_loss",
                          "toolkit_sample"}
    assert hooks["toolkit_attention"] == "baseline.attention"
    mine = json.loads(toolkit("plugins", PLUGINS / "attn_einsum.py", "--json").stdout)["hooks"]
    assert mine["toolkit_attention"] == str(PLUGINS / "attn_einsum.py")
    assert mine["toolkit_sft_mask"] == "baseline.sft_mask"


def test_json_stays_parseable_when_student_code_prints(tmp_path):
    path = tmp_path / "chatty.py"
    path.write_text((PLUGINS / "attn_einsum.py").read_text() + "\nprint('hello from import')\n")
    out = toolkit("run", path, "--json", "--fast")
    assert json.loads(out.stdout)["score"] == 9  # 7 public, 2 hidden
    assert "hello from import" in out.stderr


@pytest.mark.slow
def test_chat_with_the_base_model_continues_the_question():
    out = toolkit("chat", "--base", "-t", "0", "--max-tokens", "12", input="What is the capital of France ?\n")
    assert out.returncode == 0, out.stderr
    assert "What is the capital of" in out.stdout  # a completion engine: another quiz question


@pytest.mark.slow
def test_chat_replies_end_without_their_stop_token():
    """The chat model stops at <|end|>, which is not part of what it says."""
    out = toolkit("chat", "solutions/", "-t", "0", input="What is the capital of France ?\nWhat is the capital ?\n")
    assert out.returncode == 0, out.stderr
    replies = out.stdout.splitlines()
    assert replies[0].strip() == "The capital of France is Paris ." and len(replies) == 2
    assert "<|" not in out.stdout


# -- what a command needs, and one assignment per grading ------------------------------------
def test_a_missing_extra_is_named_with_a_command_that_installs_it(tmp_path, monkeypatch):
    """--gradebook and --scheduler without their package: one sentence with the command that installs it
    into this interpreter from this checkout, never `pip install 'toolkit[...]'` (another project on PyPI)."""
    from click.testing import CliRunner

    from toolkit.cli import main

    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "alice.py").write_text("")
    for option, value, module, extra in [("--gradebook", tmp_path / "gradebook.db", "nbgrader", "course"),
                                         ("--scheduler", "local", "distributed", "grid")]:
        monkeypatch.setitem(sys.modules, module, None)  # find_spec: not installed
        out = CliRunner().invoke(main, ["grade", str(tmp_path / "class"), "--out", str(tmp_path / "out"), option,
                                        str(value)])
        assert out.exit_code == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith(f"error: {option} needs {module}, which is not installed; install it with: ")
        assert f"{sys.executable} -m pip install -c {ROOT / 'constraints.txt'} -e '{ROOT}[{extra}]'" in out.stderr
        assert "toolkit[" not in out.stderr and not (tmp_path / "out").exists()


def test_outside_a_checkout_the_install_hint_names_the_extra_s_requirements(tmp_path, monkeypatch):
    import toolkit.cli

    monkeypatch.setattr(toolkit.cli, "ROOT", tmp_path)  # as in site-packages: no pyproject.toml
    assert toolkit.cli.install_command("course") == f"{sys.executable} -m pip install 'nbgrader>=0.9'"


def test_grading_one_assignment_shows_only_its_checks(tmp_path):
    """`toolkit grade -c sampler`: the student's results.json, feedback page, grades.csv and the class
    summary hold the sampler's checks and points, none of another component."""
    from toolkit.grading.record import rubric

    (tmp_path / "class" / "alice").mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / "sampler.py", tmp_path / "class" / "alice")
    out = toolkit("grade", tmp_path / "class", "--out", tmp_path / "out", "-c", "sampler", "--fast")
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "gradescope" / "alice" / "results.json").read_text())
    names = [t["name"] for t in results["tests"]]
    assert names == [c.name for c in rubric(("sampler",), fast=True)]
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) > 0
    page = (tmp_path / "out" / "feedback" / "alice" / "index.html").read_text()
    assert f"<b>{results['score']:g} / {results['score']:g}</b>" in page
    others = [c.name for c in rubric() if c.component != "sampler"]
    for path in ("feedback/alice/index.html", "summary.html", "grades.csv"):
        text = (tmp_path / "out" / path).read_text()
        assert "sampler.greedy" in text and not [name for name in others if name in text], path
        assert "not provided" not in text, path
