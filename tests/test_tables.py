"""The tables of wrong and correct plugins, checked together (``tests/harness.py`` runs them).

Every unit check of every component is failed by at least one wrong plugin of its component's
table; each table names only checks of its own component; every expected reason says something;
every plugin in ``tests/plugins`` is used by some table, and every plugin a table names exists.
"""

from __future__ import annotations

import pytest

import test_block_checks
import test_checks
import test_optimizer_checks
import test_sampler_checks
import test_sft_checks
from tests import harness
from tests.harness import PLUGINS
from toolkit.components import COMPONENTS

TABLES = {t.component: t for module in (test_checks, test_block_checks, test_optimizer_checks, test_sampler_checks,
                                        test_sft_checks) for t in module.TABLES}


def test_every_component_has_a_table():
    assert sorted(TABLES) == sorted(COMPONENTS)


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_unit_check_fails_on_some_wrong_plugin(component):
    table = TABLES[component]
    caught = {check for fails in table.wrong.values() for check in fails}
    assert caught == set(table.checks), f"checks no wrong plugin fails: {sorted(set(table.checks) - caught)}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_table_names_only_checks_of_its_component(component):
    table = TABLES[component]
    checks = harness.all_checks(component)
    for plugin, fails in {**table.wrong, **table.behaviour}.items():
        assert set(fails) <= set(checks), plugin
    assert not {c for fails in table.behaviour.values() for c in fails} & set(table.checks), "unit checks in behaviour"


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_expected_reason_says_something(component):
    """An empty expectation is in every reason: the test could not fail."""
    table = TABLES[component]
    empty = [(plugin, check) for fails in (table.wrong, table.behaviour) for plugin, says in fails.items()
             for check, words in says.items() if not words.strip()]
    assert not empty, f"expected reasons with no words: {empty}"


def test_every_plugin_is_used_by_a_table_and_every_plugin_named_exists():
    files = {p.name for p in PLUGINS.glob("*.py")}
    used = set().union(*(t.plugins() for t in TABLES.values()))
    assert files - used == set(), "plugin files no table uses"
    assert used - files == set(), "plugins a table names that tests/plugins does not hold"
