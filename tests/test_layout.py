"""A component's name is written in the table (``toolkit/components.py``) and in its own files only.

Elsewhere the toolkit reads ``COMPONENTS`` (or a ``Component``'s fields): adding or renaming a
component is then one entry in the table. The scan reads ``toolkit/**/*.py`` with ``ast`` and
finds every string constant equal to a component's name (``"sft_mask"``, ``source("tokenizer")``,
``{"reward": ...}``); prose that mentions one ("the attention module") is not such a constant.
The constants found today outside those files are listed below one by one, with why each is
there: a new one fails the test, and so does an entry that is no longer found (take it out).
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from toolkit.components import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]
OWN_FILES = {  # the table, and the files of the toolkit that belong to one component
    "toolkit/components.py",  # the table
    "toolkit/hookspecs.py",  # the hooks each component is made of
    "toolkit/baselines.py",  # each component's baseline plugin
    "toolkit/tokenizer.py",  # tokenizer
    "toolkit/sample.py",  # sampler
    "toolkit/rlhf.py",  # reward
}

KNOWN = Counter({  # (name, the line it is on) -> how many times: the constants found outside OWN_FILES today
    # -- not component keys: a pipeline stage, a cached model, a label that shares the name
    ("tokenizer", 'STAGES = ("tokenizer", "stream", "base_model", "chat_model", "reward_model", "rlhf_model")'): 1,
    # pipeline.py: the stages, declared once
    ("tokenizer", 'BASE_DATA = ("world", "corpus", "conversations", "tokenizer", "stream", "model_config")'): 1,
    # data_stages.py: what the base model is built from (sharing_base shares it)
    ("tokenizer", 'self.timings["tokenizer"] = time.perf_counter() - t0'): 1,  # pipeline.py: the stage's time
    ("tokenizer", 'tok.words = self._stored(("tokenizer", *key), lambda: build().words)'): 1,  # pipeline.py: cache key
    ("reward", 'self._train_or_load(model, "reward", key and f"reward-{key}",'): 1,  # pipeline.py: the model trained
    ("reward", 'ax.set_xlabel("reward")'): 1,  # plots.py: an axis label
    # -- call sites that run the component's code (the issue allows them: "the call sites that really run their
    # code"): the stage that builds with a plugin names it in the sentence of a broken contract, and `toolkit chat`
    # runs the submission's mask and sampler (and no other component's: it trains no base model)
    ("tokenizer", 'baseline = (self.components.source("tokenizer") == "baseline.tokenizer"'): 1,  # data_stages.py
    ("tokenizer", "raise PluginError(f\"{self.components.source('tokenizer')}: the tokenizer's vocab_size is "
                  "{vocab!r}; \""): 1,  # data_stages.py
    ("sft_mask", 'return tokens, check_mask(mask, tokens, self.components.source("sft_mask"))'): 1,  # data_stages.py
    ("sampler", 'if top_p is not None and "sampler" not in provided:'): 1,  # chat.py
    ("sft_mask", 'pipeline = Pipeline(Components(build_manager(plugins), only={"sft_mask", "sampler"}), log=_log)'): 1,
    ("sampler", 'pipeline = Pipeline(Components(build_manager(plugins), only={"sft_mask", "sampler"}), log=_log)'): 1,
    ("sft_mask", 'if not base and "sft_mask" in provided and (SHIPPED / f"sft-{pipeline.chat_key()}.pt").is_file():'): 1,
})


def component_names(text: str) -> list[tuple[int, str, str]]:
    """(line, name, the line's code) of every string constant of ``text`` equal to a component's name."""
    lines = text.splitlines()
    return [(node.lineno, node.value, lines[node.lineno - 1].strip()) for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in COMPONENTS]


def found_outside_own_files() -> dict[tuple[str, str], list[str]]:
    """(name, line) -> where ("toolkit/chat.py:20"), for every file of the toolkit but OWN_FILES."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted((ROOT / "toolkit").rglob("*.py")):
        file = path.relative_to(ROOT).as_posix()
        if file not in OWN_FILES:
            for lineno, name, line in component_names(path.read_text(encoding="utf-8")):
                found.setdefault((name, line), []).append(f"{file}:{lineno}")
    return found


def test_the_scan_finds_names_used_as_keys_and_not_in_prose():
    text = '"""The attention module."""\nx = {"sampler"}\ny = f"{source(\'reward\')}: the reward model"\n'
    assert component_names(text) == [(2, "sampler", 'x = {"sampler"}'),
                                      (3, "reward", 'y = f"{source(\'reward\')}: the reward model"')]


def test_every_own_file_exists():
    assert all((ROOT / file).is_file() for file in OWN_FILES), sorted(f for f in OWN_FILES if not (ROOT / f).is_file())


def test_component_names_are_written_only_in_the_table_and_the_components_own_files():
    found = found_outside_own_files()
    new = {key: where for key, where in found.items() if len(where) > KNOWN[key]}
    listed = "\n".join(f"{', '.join(where)}: {name!r} in {line}" for (name, line), where in new.items())
    assert not new, ("a component's name outside its files: read it from toolkit.components.COMPONENTS (or, where "
                     f"it names no component, add it to KNOWN saying why):\n{listed}")
    gone = [key for key, n in KNOWN.items() if len(found.get(key, [])) < n]
    assert not gone, f"no longer found (take them out of KNOWN): {gone}"


MAX_MODULE, MAX_CLASS = 400, 150  # lines: a module has one job, a class one concern (issue 33)


def test_no_module_of_the_toolkit_over_400_lines_and_no_class_over_150():
    big = []
    for path in sorted((ROOT / "toolkit").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        file = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > MAX_MODULE:
            big.append(f"{file}: {len(text.splitlines())} lines")
        big += [f"{file}: class {node.name}, {node.end_lineno - node.lineno + 1} lines"
                for node in ast.walk(ast.parse(text))
                if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS]
    assert not big, big
