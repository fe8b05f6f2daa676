"""What students and instructors read must be true: the docs against the code.

* **Rendered.** The tables of README.md and docs/*.md (components, checks, exit codes, behaviour)
  and the notebooks' check cards are exactly what ``python -m toolkit.docs`` renders from the
  code, and every public test cell of a notebook has its card.
* **Tested.** Every number of the docs' prose, and of the checks' docstrings (which the tables
  and cards show), that restates a grader's constant is checked against that constant.
* **Produced.** Every error text the docs quote is produced here, by running its situation.
* **Run.** Every command of a shell block of README.md and docs/*.md is run: here when it is
  cheap, else by the test that ``RUN_BY`` names, whose code must hold the command's words.
* **Current.** No notebook, page or ``--help`` repeats a claim that is no longer true (``STALE``),
  and the statements about time rest on the models that ship with the toolkit.
* Every path and link the docs name exists.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
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
PAGES = docs.PAGES  # README.md and the docs/ pages it links to
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
def pages_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_each_page_is_what_toolkit_docs_renders(page):
    text = page.read_text(encoding="utf-8")
    assert docs.render_page(text) == text, f"{page.name} differs from its rendering: run python -m toolkit.docs"


def test_each_table_is_rendered_once():
    """Each table in one page only, so that no second, hand-written copy can drift."""
    found = [region for page in PAGES for region in docs.regions(page.read_text(encoding="utf-8"))]
    assert sorted(found) == sorted(docs.REGIONS), found


def test_the_tables_show_every_command_check_and_hook():
    from toolkit.cli import EXIT_CODES

    text = pages_text()
    assert all(f"| `toolkit {command}` |" in text for command in EXIT_CODES)
    assert all(f"| `{c.name}` | {c.points:g} |" in text for c in collect(None, include_hidden=True))
    assert all(f"`{hook}(" in docs.components() for c in COMPONENTS.values() for hook in c.hooks)
    assert "| `sampler.top_p` | 2 | unit |" in text and "| `sampler` | `toolkit_sample(" in text
    assert "<!-- begin rendered: components -->" in README.read_text(encoding="utf-8")  # the students' table


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
        ("tokenizer.speed", f"at most {tokenizer.SPEED_MULTIPLE}x the reference's CPU time"),
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
    from toolkit.grading import wire
    from toolkit.grading.batch import BACKSTOP
    from toolkit.model import GPTConfig
    from toolkit.config import PipelineConfig
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
        ("docs/reference.md", f"`MARGIN = {sft_mask.MARGIN:.2f}`"),
        ("docs/grading.md", f"frames of at most {wire.MAX_FRAME >> 20} MB"),
        ("docs/grading.md", f"at most {wire.MAX_DEPTH} levels of nesting and {wire.MAX_ITEMS:,} values"),
        ("docs/grading.md", f"all of them together at most {wire.MAX_FRAME >> 20} MB"),
        ("docs/grading.md", f"similarity ≥ {SIMILARITY_THRESHOLD:g}"),
        ("docs/grading.md", f"a wall-clock backstop of {BACKSTOP} times `--timeout`"),
        ("docs/grading.md", f"within {BACKSTOP * 600} s of wall-clock time ({BACKSTOP} times its 600 s of CPU time)"),
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
        ("docs/reference.md", "on held-out facts (known from pretraining only) it answers "
                      f"{span('answer_held_out')} of the time depending on the seed"),
        ("docs/reference.md", f"the headline question at T = 1 gets an Answer {span('headline_chat_answer')} of the time"),
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
DOCUMENTS = ["README.md", "docs/reference.md", "docs/grading.md", "assignments/README.md", "CONTRIBUTING.md"]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_path_the_docs_name_exists(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:toolkit|graders|tests|assignments|solutions|benchmarks|docs)/[\w./-]*)`", text))
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"{document} names paths that do not exist: {missing}"
    assert "DESIGN-NOTES" not in (ROOT / "toolkit" / "world.py").read_text()


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", path.read_text(encoding="utf-8"), re.M)}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_link_of_the_docs_leads_somewhere(document):
    """Relative links and images name files that exist, and their #anchors headings that exist."""
    here = (ROOT / document).parent
    broken = []
    for target, anchor in re.findall(r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)", (ROOT / document).read_text("utf-8")):
        path = (here / target).resolve() if target else ROOT / document
        if not path.exists() or (anchor and anchor not in anchors(path)):
            broken.append(f"{target}#{anchor}" if anchor else target)
    assert not broken, f"{document}: broken links {broken}"


def test_the_assignments_table_lists_every_assignment():
    rows = re.findall(r"^\| `(\w+)` \| `([\w/]+\.ipynb)` \|", ASSIGNMENTS_README.read_text(encoding="utf-8"), re.M)
    assert rows == [(name, f"{name}/{name}.ipynb") for name in COMPONENTS]
    assert sorted(name for name, _ in rows) == course.assignments()


# -- current: no claim that is no longer true ------------------------------------------------------
STALE = [  # (pattern, case-insensitive, of a claim that is no longer true: why)
    (r"(?<!no )first run\w*,? (?:\w+ )?trains", "the base and chat models no submission changes ship with the toolkit "
                                         "(toolkit/data): no first run trains them"),
    (r"first start trains", "toolkit chat: the baseline mask's chat model ships; a new mask's is fine-tuned "
                            "(about 30 s) and cached"),
    (r"(?:toolkit|it) pretrains a base model", "the default configuration's base model ships with the toolkit"),
    (r"pretrained once, 2 to 3", "the reference base model ships with the toolkit: nobody waits for it"),
    (r"trained the\s+first time", "the base and chat models the checks start from ship with the toolkit"),
    (r"more the first time", "the first run loads the shipped models as later runs do"),
    (r"\(minutes\)", "no student's run waits minutes: the models it would wait for ship with the toolkit"),
    (r"pip install '?\"?toolkit\[", "on the public index `toolkit` is another project: install an extra from a "
                                    "checkout, '.[extra]'"),
    (r"\bdask-(?:scheduler|worker)\b", "Dask's commands are `dask scheduler` and `dask worker` "
                                        "(distributed 2026 has no dask-scheduler)"),
    (r"wall-clock\s+(?:limit\s+per\s+submission|`--timeout`)", "--timeout counts the child's CPU time where it has a "
                                                         "cgroup, with a wall-clock backstop"),
]


def help_texts() -> dict[str, str]:
    """``toolkit --help`` and every command's ``--help``, as the user reads them."""
    from click.testing import CliRunner

    from toolkit.cli import main

    runner = CliRunner()
    texts = {"toolkit": runner.invoke(main, ["--help"]).output}
    for name in main.commands:
        texts[f"toolkit {name}"] = runner.invoke(main, [name, "--help"]).output
    assert all(text.startswith("Usage:") for text in texts.values()), texts
    return texts


def user_texts() -> dict[str, str]:
    """Everything a student or instructor reads: the notebooks' markdown, the pages and every --help."""
    texts = {f"{c}.ipynb": notebook_prose(c) for c in COMPONENTS}
    texts.update({d: flat((ROOT / d).read_text(encoding="utf-8")) for d in DOCUMENTS})
    texts.update({name: flat(text) for name, text in help_texts().items()})
    return texts


def test_no_text_repeats_a_claim_that_is_no_longer_true():
    found = [f"{where}: {m.group(0)!r} ({why})" for where, text in user_texts().items() for pattern, why in STALE
             for m in re.finditer(pattern, text, re.I)]
    assert not found, "\n".join(found)


SHIPPED_FACTS = [  # (where, what it must say): the statements about time, made from the shipped models
    ("README.md", "ship with the toolkit (`toolkit/data`) and load in about a second, so no run pretrains"),
    ("toolkit chat", "ship with the toolkit and load in about a second"),
    ("attention.ipynb", "the reference base model, which ships with the toolkit"),
    ("sft_mask.ipynb", "takes the base model that ships with it"),
    ("reward.ipynb", "ship with the toolkit and load in about a second"),
    ("sampler.ipynb", "the base and chat models that ship with the toolkit (they load in about a second)"),
]


def test_the_time_statements_rest_on_the_shipped_models():
    """The docs say the base model and the baseline mask's chat model ship and load in about a
    second, and how many steps a new mask's chat model takes: true of ``toolkit/data`` and the
    configuration (``tests/test_shipped.py`` checks the files are the default configuration's)."""
    import torch

    from toolkit.cache import SHIPPED
    from toolkit.config import PipelineConfig

    texts = user_texts()
    missing = [(where, phrase) for where, phrase in SHIPPED_FACTS if flat(phrase) not in texts[where]]
    assert not missing, missing
    steps = PipelineConfig().sft.steps
    assert f"fine-tuned on its first start ({steps} steps" in texts["toolkit chat"]
    models = sorted(SHIPPED.glob("*.pt"))
    assert [p.name.split("-")[0] for p in models] == ["base", "sft"], models
    for path in models:
        start = time.perf_counter()
        torch.load(path, weights_only=True)
        assert time.perf_counter() - start < 2.0, f"{path.name} took more than 2 s to load, not about a second"


def test_the_readme_holds_no_issue_numbers_and_no_dated_figures():
    """Figures with their dates live in benchmarks/README.md; the README states what is true now."""
    text = README.read_text(encoding="utf-8")
    assert not re.findall(r"\bissues? #?\d+|\(#\d+\)", text, re.I)
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", text)


# -- run: every command of the docs' shell blocks ------------------------------------------------------
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell)\n(.*?)^```", re.M | re.S)
HERE = "tests/test_docs.py::"
QUICK_START = HERE + "test_the_quick_start_calls_toolkit_as_written"
STUDENT = HERE + "test_a_student_s_quick_commands"
DASK = HERE + "test_the_dask_commands"
FULL_RUN = "tests/test_installed.py::test_the_installed_toolkit_grades_the_solutions_in_full"
RUN_BY = {
    # command, as the docs write it: where it runs. "make test": in the recipe of `make test`, which CI
    # (.ci/run) runs on a fresh clone; tests/FILE::NAME: in that test (or the fixtures and helpers it uses)
    "make demo": HERE + "test_make_demo_installs_as_make_test_does_then_runs_a_tested_command",
    "make test": ".ci/run",
    ".venv/bin/toolkit run solutions/ --fast": QUICK_START,
    "source .venv/bin/activate": QUICK_START,
    "toolkit run solutions/ --fast": QUICK_START,
    "python3 -m venv .venv": "make test",
    ".venv/bin/pip install -c constraints.txt -e '.[course]'": "make test",
    "pip install -c constraints.txt '.[grid]'": "make test",
    "toolkit run my_mask.py": FULL_RUN,
    "toolkit run my_mask.py --report out": FULL_RUN,
    "toolkit run my_mask.py --json": FULL_RUN,
    "toolkit run my_mask.py --fast": STUDENT,
    "toolkit plugins my_mask.py": STUDENT,
    "toolkit chat my_mask.py": "tests/test_cli.py::test_chat_replies_end_without_their_stop_token",
    "toolkit release release/": "tests/test_release.py::test_release_holds_no_solution_and_no_hidden_check",
    "toolkit gradescope sampler.zip -c sampler": "tests/test_installed.py::test_the_zips_runner_grades_its_assignment_in_full",
    "toolkit grade submissions/ --out grades/":
        "tests/test_hostile.py::test_a_correct_student_graded_in_full_earns_the_behavioural_and_hidden_points",
    "toolkit grade submissions/ --out grades/ --fast -c attention --workers 3 --timeout 30":
        "tests/test_grade.py::test_batch_completes_with_exit_0_and_every_status",
    "toolkit grade submissions/ --out grades/ --gradebook course/gradebook.db":
        "tests/test_grade.py::test_gradebook_scores_read_back",
    "dask scheduler": DASK,
    "dask worker tcp://HOST:8786 --nthreads 2 --nworkers 1": DASK,
    "toolkit grade /shared/hw1 --out /shared/grades/hw1 --scheduler tcp://HOST:8786 --timeout 900": DASK,
}
NOT_RUN = {  # command: why no test runs it
    ".venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0":
        "PyTorch's own index cannot be reached from where the suite runs",
}


def documented_commands() -> dict[str, list[str]]:
    """Every command a page tells its reader to run: each line of its ```sh blocks, without the
    comment after `` #``, split at ``&&``; command -> the pages that give it."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for block in SHELL_BLOCK.findall(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                for command in re.split(r"\s+&&\s+", re.split(r"\s+#", line)[0].strip()):
                    if command:
                        found.setdefault(command, []).append(page.relative_to(ROOT).as_posix())
    return found


READERS_FILES = {"my_mask.py", "out"}  # the reader's own files: a test runs the command on files of its own


def words(command: str) -> list[str]:
    """What a test that runs ``command`` must say: its words but paths, the reader's own files and
    placeholders (``HOST``); ``'.[course]'`` says ``course``."""
    out = []
    for token in shlex.split(command):
        extras = re.fullmatch(r"\.\[([\w,]+)\]", token)
        if extras:
            out += extras.group(1).split(",")
        elif "/" not in token and token != "." and not token.isupper() and token not in READERS_FILES:
            out.append(token)
    return out


def says(source: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", source) is not None


def source_of(ref: str) -> str:
    """The source of the test ``FILE::NAME`` and of the module-level fixtures, helpers and
    constants it uses, transitively; AssertionError if there is no such test."""
    file, name = ref.split("::")
    assert (ROOT / file).is_file(), f"{ref}: no such file"
    text = (ROOT / file).read_text(encoding="utf-8")
    tree = ast.parse(text)
    defined = {}
    for node in tree.body:
        targets = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [
            t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)]
        for target in targets:
            defined[target] = node
    assert name in defined, f"{ref}: no test {name} in {file}"
    seen, todo, parts = set(), [name], []
    while todo:
        node = defined[todo.pop()]
        if id(node) in seen:
            continue
        seen.add(id(node))
        parts.append(ast.get_source_segment(text, node))
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {a.arg for a in ast.walk(node)
                                                                             if isinstance(a, ast.arg)}
        todo += [u for u in used if u in defined]
    return "\n".join(parts)


def make_dry_run(target: str) -> list[str]:
    """The commands ``make TARGET`` runs from nothing (``make -n -B``: printed, not run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_every_command_of_the_docs_is_run_by_a_test():
    commands = documented_commands()
    unmapped = sorted(set(commands) - set(RUN_BY) - set(NOT_RUN))
    assert not unmapped, f"commands of the docs that no test runs (add them to RUN_BY): {unmapped}"
    stale = sorted((set(RUN_BY) | set(NOT_RUN)) - set(commands))
    assert not stale, f"RUN_BY or NOT_RUN list commands the docs no longer give: {stale}"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    recipe = make_dry_run("test")
    unsaid = []
    for command, ref in RUN_BY.items():
        if ref == ".ci/run":
            assert command in (ROOT / ".ci" / "run").read_text(), command
        elif ref == "make test":
            if not any(all(says(line, w) for w in words(command)) for line in recipe):
                unsaid.append(f"{command}: no line of `make -n -B test` says {words(command)}")
        else:
            source = source_of(ref)
            unsaid += [f"{command}: {ref} never says {w!r}" for w in words(command) if not says(source, w)]
    assert not unsaid, "\n".join(unsaid)


def test_make_demo_installs_as_make_test_does_then_runs_a_tested_command():
    """``make demo`` is the installation ``make test`` runs in CI, then `toolkit run solutions/
    --report report` (what ``FULL_RUN`` runs), then the hint on calling toolkit that the quick
    start gives."""
    demo, recipe = make_dry_run("demo"), make_dry_run("test")
    run = [line for line in demo if "toolkit run" in line]
    assert run == [".venv/bin/toolkit run solutions/ --report report"], run
    hint = [line for line in demo if line.startswith("echo")]
    assert hint and ".venv/bin/toolkit" in " ".join(demo) and "source .venv/bin/activate" in " ".join(demo)
    installs = [line for line in demo if line not in run and not line.startswith(("echo", " "))]
    assert installs and all(line in recipe for line in installs), set(installs) - set(recipe)
    source = source_of(FULL_RUN)
    assert all(says(source, w) for w in ("toolkit", "run", "solutions", "--report")), FULL_RUN


def _venv_bin() -> Path:
    """The checkout's .venv/bin, which make demo makes; skip where the suite runs in another venv."""
    venv_bin = ROOT / ".venv" / "bin"
    if not (venv_bin / "toolkit").exists() or not (venv_bin / "activate").exists():
        pytest.skip("no .venv/bin/toolkit in this checkout (make demo makes it)")
    return venv_bin


def test_the_quick_start_calls_toolkit_as_written():
    """In a new shell at the clone's root, where `toolkit` is not on PATH: `.venv/bin/toolkit run
    solutions/ --fast`, then `source .venv/bin/activate` and `toolkit run solutions/ --fast`."""
    venv_bin = _venv_bin()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != venv_bin.resolve())
    if shutil.which("toolkit", path=env["PATH"]) is None:  # as the README says: not on PATH before
        missing = subprocess.run(["bash", "-c", "toolkit --help"], cwd=ROOT, env=env, capture_output=True, text=True)
        assert missing.returncode == 127
    script = "set -e\n.venv/bin/toolkit run solutions/ --fast\nsource .venv/bin/activate\ntoolkit run solutions/ --fast\n"
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    totals = re.findall(r"^total: (\d+) / (\d+)", out.stdout, re.M)
    assert len(totals) == 2 and totals[0] == totals[1] and totals[0][0] == totals[0][1], out.stdout[-2000:]


def test_a_student_s_quick_commands(tmp_path):
    """`toolkit run my_mask.py --fast` and `toolkit plugins my_mask.py`, with the installed
    `toolkit` command, in the student's folder."""
    toolkit_command = Path(sys.executable).parent / "toolkit"
    if not toolkit_command.exists():
        pytest.skip("the toolkit command is not installed beside this interpreter")
    (tmp_path / "my_mask.py").write_text((ROOT / "solutions" / "sft_mask.py").read_text())
    run = subprocess.run([toolkit_command, "run", "my_mask.py", "--fast"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sft_mask.matches_reference" in run.stdout and "tokenizer" not in run.stdout.split("total")[0]
    plugins = subprocess.run([toolkit_command, "plugins", "my_mask.py"], cwd=tmp_path, capture_output=True, text=True)
    assert plugins.returncode == 0, plugins.stderr[-2000:]
    assert re.search(r"toolkit_sft_mask.*my_mask", plugins.stdout), plugins.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(proc: subprocess.Popen, log: Path, text: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="dask.distributed is not installed")
def test_the_dask_commands(tmp_path):
    """`dask scheduler`, `dask worker tcp://HOST:8786 --nthreads 2 --nworkers 1`, then `toolkit grade
    ... --scheduler tcp://HOST:8786 --timeout 900`, on this machine: a submission that cannot be
    loaded (the cheapest that the worker grades) gets its load_error row."""
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    (tmp_path / "hw1").mkdir()
    (tmp_path / "hw1" / "carol.py").write_text("import toolkit\n\nraise RuntimeError('work in progress')\n")
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("scheduler", "worker")}
    procs = []
    try:
        procs.append(subprocess.Popen([bin_dir / "dask", "scheduler", "--port", str(port), "--dashboard-address", ":0"],
                                      cwd=tmp_path, stdout=logs["scheduler"], stderr=subprocess.STDOUT,
                                      start_new_session=True))
        _wait_for(procs[0], tmp_path / "scheduler.log", "Scheduler at:")
        procs.append(subprocess.Popen([bin_dir / "dask", "worker", address, "--nthreads", "2", "--nworkers", "1",
                                       "--dashboard-address", ":0"], cwd=tmp_path, stdout=logs["worker"],
                                      stderr=subprocess.STDOUT, start_new_session=True))
        _wait_for(procs[1], tmp_path / "worker.log", "Registered to:")
        out = subprocess.run([bin_dir / "toolkit", "grade", tmp_path / "hw1", "--out", tmp_path / "grades" / "hw1",
                              "--scheduler", address, "--timeout", "900"], cwd=tmp_path, capture_output=True, text=True)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        for log in logs.values():
            log.close()
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 submissions: 1 load_error" in out.stderr, out.stderr[-2000:]
    assert "carol,".encode() in (tmp_path / "grades" / "hw1" / "grades.csv").read_bytes()

