"""What students and instructors read must be true: the docs against the code.

* **Rendered.** README.md's tables (components, checks, exit codes) and the notebooks' check
  cards are exactly what ``python -m toolkit.docs`` renders from the code, and every public test
  cell of a notebook has its card.
* **Tested.** Every number of the docs' prose, and of the checks' docstrings (which the tables
  and cards show), that restates a grader's constant is checked against that constant.
* **Produced.** Every error text the docs quote is produced here, by running its situation.
* Every path the READMEs name exists.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import graders.attention as attention
import graders.reward as reward
import graders.sampler as sampler
import graders.sft_mask as sft_mask
import graders.tokenizer as tokenizer
from toolkit import course, docs
from toolkit.checks import collect
from toolkit.components import COMPONENTS
from toolkit.notebook import CheckNotPassed, grade

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ASSIGNMENTS_README = ROOT / "assignments" / "README.md"
WORDS = {0.5: "half", 5: "five"}  # numbers the prose writes as words


def flat(text: str) -> str:
    """``text`` with every run of whitespace one space: prose wraps its lines anywhere."""
    return " ".join(text.split())


def notebook_prose(component: str) -> str:
    return flat("\n".join(c.source for c in nbformat.read(COMPONENTS[component].notebook, as_version=4).cells
                          if c.cell_type == "markdown"))


def sci(x: float) -> str:
    """1e-09 as the docs write it: 1e-9."""
    return re.sub(r"e-0*", "e-", f"{x:.0e}")


# -- rendered ------------------------------------------------------------------------------------
def test_readme_is_what_toolkit_docs_renders():
    text = README.read_text(encoding="utf-8")
    assert docs.render_readme(text) == text, "README.md differs from its rendering: run python -m toolkit.docs"
    for region in docs.REGIONS:  # each table once, so that no second, hand-written copy can drift
        assert text.count(f"<!-- begin rendered: {region} -->") == 1


def test_the_readme_tables_show_every_command_check_and_hook():
    from toolkit.cli import EXIT_CODES

    text = README.read_text(encoding="utf-8")
    assert all(f"| `toolkit {command}` |" in text for command in EXIT_CODES)
    assert all(f"| `{c.name}` | {c.points:g} |" in text for c in collect(None, include_hidden=True))
    assert all(f"`{hook}(" in docs.components() for c in COMPONENTS.values() for hook in c.hooks)
    assert "| `sampler.top_p` | 2 | unit |" in text and "| `sampler` | `toolkit_sample(" in text


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_public_test_cell_has_its_rendered_card(component):
    path = COMPONENTS[component].notebook
    nb = nbformat.read(path, as_version=4)
    assert nbformat.writes(docs.render_notebook(nbformat.read(path, as_version=4))) == nbformat.writes(nb), (
        f"{path.name}: a card differs from its rendering: run python -m toolkit.docs")
    public = {c.name: c for c in collect([component], include_hidden=False)}
    for before, cell in zip(nb.cells, nb.cells[1:]):
        if docs.checked_by(cell) in public:
            assert before.source == docs.card(public.pop(docs.checked_by(cell))), before.source
    assert not public, f"public checks without a test cell: {sorted(public)}"


def test_a_card_says_what_the_check_is_worth_and_tests():
    check = next(c for c in collect(["attention"]) if c.name == "attention.causal")
    assert docs.card(check) == f"**`attention.causal`** (2 points): {check.fn.__doc__}"
    stable = next(c for c in collect(["attention"]) if c.name == "attention.stable")
    assert docs.card(stable).startswith("**`attention.stable`** (1 point): ")


# -- tested: numbers against the graders' constants ------------------------------------------------
def _docstrings() -> list[tuple[str, str]]:
    """(check, a phrase of its docstring that states a constant), the phrase made from the constant."""
    from graders.hidden import checks as hidden

    return [
        ("tokenizer.speed", f"at most {tokenizer.SPEED_MULTIPLE}x the reference's time"),
        ("tokenizer.behaviour", f"bits per byte (worst seed +{tokenizer.BPB_MARGIN:.0%})"),
        ("tokenizer.behaviour", f"tokens of at most {tokenizer.MAX_TOKEN_BYTES} bytes"),
        ("attention.matches_reference", f"atol {sci(attention.ATOL)}"),
        ("attention.causal", f"atol {sci(attention.ATOL)}"),
        ("attention.trains_like_reference", f"for {attention.CURVE_STEPS} steps"),
        ("attention.trains_like_reference", f"over the last {attention.CURVE_TAIL} stays within "
                                            f"{attention.CURVE_BAND:g} nats"),
        ("sft_mask.matches_reference", f"on {len(sft_mask.mask_cases())} chats"),
        ("reward.accuracy", f"its worst seed - {reward.ACC_MARGIN:g}"),
        ("reward.rlhf_judged_by_solution", f">= {WORDS[hidden.GAIN_SHARE]} its own gain"),
        ("sampler.temperature", f"{sampler.DRAWS:,} draws"),
    ]


@pytest.mark.parametrize("check, phrase", _docstrings())
def test_docstrings_state_the_graders_constants(check, phrase):
    """The docstrings are what the README's checks table and the notebooks' cards show."""
    found = {c.name: c.description for c in collect(None, include_hidden=True)}
    assert phrase in found[check], f"{check}: {found[check]!r} does not say {phrase!r}"


def _prose() -> list[tuple[str, str]]:
    """(document, a phrase it must hold), the phrase made from the code's own numbers."""
    from nbgrader.preprocessors import Execute

    from graders.hidden import checks as hidden
    from graders import calibration
    from toolkit.grading.similarity import SIMILARITY_THRESHOLD
    from toolkit.grading import remote
    from toolkit.model import GPTConfig
    from toolkit.pipeline import PipelineConfig
    from toolkit.probe import prompt_set
    from toolkit.world import World

    config, gpt, small = PipelineConfig(), GPTConfig(), tokenizer.BEHAVIOUR
    seeds = calibration.seeds_of("reward_accuracy")
    span = lambda figure: f"{min(calibration.seeds_of(figure)):.2f} to {max(calibration.seeds_of(figure)):.2f}"
    world = World(seed=config.seed)
    replies = [world.parse(a) for chat in world.sft_conversations(seed=config.seed) for role, a in chat
               if role == "assistant"]
    factual = [r for r in replies if r and r[0] != "clarification"]
    rude = sum(r[0] == "rude" for r in factual) / len(factual)
    return [
        ("README.md", f"`MARGIN = {sft_mask.MARGIN:.2f}`"),
        ("README.md", f"frames of at most {remote.MAX_FRAME >> 20} MB"),
        ("README.md", f"at most {remote.MAX_DEPTH} levels of nesting and {remote.MAX_ITEMS:,} values"),
        ("README.md", f"all of them together at most {remote.MAX_FRAME >> 20} MB"),
        ("README.md", f"similarity ≥ {SIMILARITY_THRESHOLD:g}"),
        ("assignments/README.md", f"`ExecutePreprocessor.timeout = {course.TIMEOUT}`"),
        ("assignments/README.md", f"nbgrader's default of {Execute().timeout} s per cell"),
        ("tokenizer", f"a small GPT ({small.model.n_layer} layers, {small.pretrain.steps} steps)"),
        ("attention", f"course's GPT ({gpt.n_layer} layers, {gpt.n_head} heads, {gpt.n_embd} channels)"),
        ("attention", f"the validation loss and {attention.N_PROMPTS} greedy replies"),
        ("attention", f"{attention.CURVE_STEPS} steps of pretraining with your module"),
        ("sft_mask", f"asks both models {len(prompt_set(world))} questions"),
        ("sft_mask", f"for all {len(prompt_set(world))} prompts (greedy)"),
        ("sft_mask", f"sampled {config.headline_samples} times from each model"),
        ("reward", f"so does ours: {rude:.0%} of the factual answers"),
        ("reward", f"repeats, {config.rlhf.steps} times"),
        ("reward", f"take {config.rlhf.prompts_per_step} questions and **sample** `k = {config.rlhf.samples_per_prompt}`"),
        ("reward", f"(`β = {config.rlhf.kl_coef:g}`)"),
        ("reward", f"trains it for {config.reward.steps} steps"),
        ("reward", f"the solution's {min(seeds):.2f} to {max(seeds):.2f} over {WORDS[len(seeds)]} seeds"),
        ("reward", f"the solution's: {min(seeds):.2f} to {max(seeds):.2f} over {WORDS[len(seeds)]} seeds"),
        ("reward", f"solution's worst seed minus {reward.ACC_MARGIN:g} (none at 0.5"),
        ("reward", f"RLHF must at least {'halve' if reward.RUDE_KEPT == 0.5 else reward.RUDE_KEPT} its rude replies"),
        ("reward", f"as correct as the solution's RLHF on its worst seed (within {reward.RLHF_MARGIN:g})"),
        ("reward", f"by at least {WORDS[hidden.GAIN_SHARE]} of what the solution's RLHF gains on its worst seed"),
        ("sampler", f"draw {sampler.DRAWS:,} tokens per row"),
        ("README.md", "on held-out facts (known from pretraining only) it answers "
                      f"{span('answer_held_out')} of the time depending on the seed"),
        ("README.md", f"the headline question at T = 1 gets an Answer {span('headline_chat_answer')} of the time"),
    ]


@pytest.mark.parametrize("document, phrase", _prose())
def test_prose_states_the_code_s_numbers(document, phrase):
    text = flat((ROOT / document).read_text(encoding="utf-8")) if document.endswith(".md") else notebook_prose(document)
    assert flat(phrase) in text, f"{document} does not say {phrase!r}"


# -- produced: every error text the docs quote -----------------------------------------------------
def toolkit(*args, cwd):
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True)


def test_the_readme_s_example_error_is_the_real_one(tmp_path):
    (tmp_path / "my_mask.py").write_text("import toolkit\n\n\n@toolkit.hookimpl\n"
                                         "def toolkit_sft_mask(tokens, special_tokens=None):\n    return tokens\n")
    out = toolkit("run", "my_mask.py", cwd=tmp_path)
    assert out.returncode == 2
    assert f"```\n{out.stderr.strip()}\n```" in README.read_text(encoding="utf-8")


def _notebook(cells: list[tuple[str, bool]]) -> nbformat.NotebookNode:
    """A notebook with nbgrader markup: (source, is an answer cell) per code cell."""
    nb = nbformat.v4.new_notebook()
    for i, (source, answer) in enumerate(cells):
        meta = {"grade": False, "grade_id": f"cell-{i}", "locked": not answer, "schema_version": 3, "solution": answer}
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta}))
    return nb


def test_the_assignments_readme_s_loading_messages_are_the_real_ones(tmp_path):
    """A try-it cell that raises is skipped with a warning; an answer cell that raises stops the import."""
    text = flat(ASSIGNMENTS_README.read_text(encoding="utf-8"))
    answer = "import toolkit\n\n\n@toolkit.hookimpl\ndef toolkit_attention(config):\n    raise NotImplementedError()\n"
    nbformat.write(_notebook([(answer, True), ("toolkit_attention(None)", False)]), tmp_path / "mine.ipynb")
    out = toolkit("run", "mine.ipynb", "--fast", "--public-only", cwd=tmp_path)
    assert out.returncode == 1  # loaded: the checks then fail on the hook's NotImplementedError
    warning = next(line for line in out.stderr.splitlines() if line.startswith("warning:"))
    assert f"`{warning}`" in text
    nbformat.write(_notebook([("toolkit_attention = torch.nn.Identity", True), ("x = 1", False)]), tmp_path / "mine.ipynb")
    out = toolkit("run", "mine.ipynb", cwd=tmp_path)
    assert out.returncode == 2 and f"`{out.stderr.strip()}`" in text


def test_the_assignments_readme_s_test_cell_message_is_the_real_one():
    """A test cell run before the cell that defines its hook."""
    with pytest.raises(CheckNotPassed) as raised:
        grade("attention.causal", {"torch": __import__("torch")}, show_plots=False)
    assert f"`{raised.value}`" in flat(ASSIGNMENTS_README.read_text(encoding="utf-8"))


# -- what the docs name exists -----------------------------------------------------------------------
@pytest.mark.parametrize("document", ["README.md", "assignments/README.md", "CONTRIBUTING.md"])
def test_every_path_the_docs_name_exists(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:toolkit|graders|tests|assignments|solutions|benchmarks|docs)/[\w./-]*)`", text))
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"{document} names paths that do not exist: {missing}"
    assert "DESIGN-NOTES" not in (ROOT / "toolkit" / "world.py").read_text()


def test_the_assignments_table_lists_every_assignment():
    rows = re.findall(r"^\| `(\w+)` \| `([\w/]+\.ipynb)` \|", ASSIGNMENTS_README.read_text(encoding="utf-8"), re.M)
    assert rows == [(name, f"{name}/{name}.ipynb") for name in COMPONENTS]
    assert sorted(name for name, _ in rows) == course.assignments()
