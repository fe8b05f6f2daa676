"""``toolkit`` as a user runs it: a subprocess, its exit code, stdout, stderr and report.

``test_run_solutions_end_to_end`` is the main job of ``make demo`` with the full
configuration: the first run of the suite pretrains the base model (cached afterwards).
"""

import json
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
    assert "not provided: tokenizer, sft_mask, reward, sampler" in out.stdout


def test_plugins_lists_every_hook_and_who_answers():
    out = toolkit("plugins", "--json")
    assert out.returncode == 0
    hooks = json.loads(out.stdout)["hooks"]
    assert set(hooks) == {"toolkit_tokenizer", "toolkit_attention", "toolkit_sft_mask",
                          "toolkit_reward_model", "toolkit_reward_loss", "toolkit_sample"}
    assert hooks["toolkit_attention"] == "baseline.attention"
    mine = json.loads(toolkit("plugins", PLUGINS / "attn_einsum.py", "--json").stdout)["hooks"]
    assert mine["toolkit_attention"] == str(PLUGINS / "attn_einsum.py")
    assert mine["toolkit_sft_mask"] == "baseline.sft_mask"


@pytest.mark.slow
def test_run_solutions_end_to_end(tmp_path):
    """`toolkit run solutions/ --report DIR --json`: every check passes, the report has the chart.
    In two processes (the default on 4 cores): the lanes' training meets the calibrated figures."""
    out = toolkit("run", "solutions/", "--report", tmp_path / "report", "--json", "--processes", "2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["passed"] and doc["score"] == doc["max_score"] > 0
    assert {r["component"] for r in doc["results"]} == {"tokenizer", "attention", "sft_mask", "reward", "sampler"}
    assert doc["environment"]["threads"] == 2 and doc["environment"]["torch"].startswith("2.13.0")
    behaviour = next(r for r in doc["results"] if r["name"] == "sft_mask.behaviour")["metrics"]
    assert behaviour["answer_seen"] >= 0.9 and behaviour["clarification"] >= 0.7
    assert behaviour["base_answer"] <= 0.3 and behaviour["base_top"] == "Continuation"
    report = tmp_path / "report"
    html = (report / "index.html").read_text()
    plots = ["tokenizer_lengths", "attention_heads", "attention_curve", "sft_headline", "sft_all", "sft_signatures", "sft_loss",
             "reward_histogram", "rlhf_curves", "rlhf_headline", "sampler_dial"]
    assert html.count("data:image/png;base64,") == len(plots)
    assert all(f'data-plot="{name}"' in html for name in plots)  # every check's plot is embedded
    assert json.loads((report / "results.json").read_text())["score"] == doc["score"]
    assert (report / "sft_headline.png").stat().st_size > 10_000


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
