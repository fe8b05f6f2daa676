"""One harness for the tables every component's checks are tested with.

A component's test file holds its ``Table``: the correct plugins (each must pass every unit check of
the component) and the wrong ones (each must fail the checks it names, with a reason that says the
words given, and pass the others). This module runs them: a plugin's unit checks run once, in one
context, as ``toolkit.runner`` runs them, and their results are kept for every test that asks.
``tests/test_tables.py`` checks the tables together: every unit check is caught by some wrong
plugin, every plugin in ``tests/plugins`` is used, no expected reason is empty.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from toolkit.checks import Check, Context, Result, collect, run_check
from toolkit.config import PipelineConfig
from toolkit.plugins import Components, build_manager, load_submission

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so results are cached per table
class Table:
    component: str
    correct: dict[str, Path]  # name -> a plugin written differently from the solution: passes every unit check
    wrong: dict[str, dict[str, str]]  # plugin in tests/plugins -> {unit check it fails: words its reason says}
    behaviour: dict[str, dict[str, str]] = field(default_factory=dict)  # the same, for behavioural checks (slow)
    also_used: tuple[str, ...] = ()  # the other plugins of tests/plugins the component's tests use
    sources: bool = False  # hand the checks the plugin's code, as the runner does (else they only watch it run)

    @property
    def checks(self) -> list[str]:
        """The component's public unit checks (not behavioural), in the order the runner runs them."""
        return list(unit_checks(self.component))

    def plugins(self) -> set[str]:
        """The files of tests/plugins the table names."""
        used = {p.name for p in self.correct.values() if p.parent == PLUGINS}
        return used | set(self.wrong) | set(self.behaviour) | set(self.also_used)


@functools.cache
def all_checks(component: str) -> dict[str, Check]:
    """Every check of the component, hidden and behavioural ones too, by name ("attention.causal")."""
    return {c.name: c for c in collect([component], include_hidden=True)}


def unit_checks(component: str) -> dict[str, Check]:
    return {name: c for name, c in all_checks(component).items() if not c.hidden and not c.behavioural}


def run(check_names: list[str], path: Path | None, report_dir: Path | None = None,
        sources: bool = False) -> dict[str, Result]:
    """What the runner does for these checks of one component, in order, for the plugin at ``path``
    (None: the toolkit's baselines): one context, so one pipeline, shared by the checks."""
    component = check_names[0].split(".")[0]
    pm = build_manager(load_submission(str(path))) if path else build_manager()
    code = {path.name: path.read_text()} if path and sources else {}  # what the grader reads, as the runner hands it
    ctx = Context(Components(pm, only=component), component, PipelineConfig(), report_dir=report_dir,
                  log=lambda msg: None, sources=code)
    return {name: run_check(all_checks(component)[name], ctx) for name in check_names}


@functools.cache
def unit_results(table: Table, path: Path) -> dict[str, Result]:
    """The results of the component's unit checks on the plugin at ``path``: run once per plugin."""
    return run(table.checks, path, sources=table.sources)


def assert_fails(result: Result, says: str, partial: bool = False) -> None:
    """The check failed (earned nothing; with ``partial``, less than its points) and its reason says ``says``."""
    assert says.strip(), "a test must say which words the reason holds"
    if partial:
        assert result.status in ("failed", "partial") and result.score < result.points, result
    else:
        assert result.status == "failed" and result.score == 0, result
    assert says in result.reason, result.reason


def assert_passes(result: Result) -> None:
    assert result.status == "passed" and result.score == result.points, result.reason
    assert result.reason == "", result.reason


# -- the tests every component's file runs on its tables --------------------------------------------
def correct_cases(tables: list[Table]) -> list:
    """(table, check, plugin): every unit check on every correct plugin."""
    return [pytest.param(t, check, path, id=f"{check}-{variant}")
            for t in tables for check in t.checks for variant, path in t.correct.items()]


def wrong_cases(tables: list[Table]) -> list:
    """(table, check, plugin, says): every check a wrong plugin fails."""
    return [pytest.param(t, check, PLUGINS / plugin, says, id=f"{check}-{plugin.removesuffix('.py')}")
            for t in tables for plugin, fails in t.wrong.items() for check, says in fails.items()]


def other_cases(tables: list[Table]) -> list:
    """(table, check, plugin): every unit check a wrong plugin does not name, which it must pass."""
    return [pytest.param(t, check, PLUGINS / plugin, id=f"{check}-{plugin.removesuffix('.py')}")
            for t in tables for plugin, fails in t.wrong.items() for check in t.checks if check not in fails]


def behaviour_cases(tables: list[Table]) -> list:
    """(check, plugin, says): every behavioural check a wrong plugin fails."""
    return [pytest.param(check, PLUGINS / plugin, says, id=f"{check}-{plugin.removesuffix('.py')}")
            for t in tables for plugin, fails in t.behaviour.items() for check, says in fails.items()]
