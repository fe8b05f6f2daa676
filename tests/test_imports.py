"""The modules of ``toolkit`` and ``graders`` import one another without circles, and the toolkit
never imports the checks: the kit is handed their package by name (``toolkit.components.CHECKS``,
``Component.grader``) and imports it with ``importlib.import_module``.

Every import statement counts, at the top of a module and inside its functions alike (a lazy
import only hides a circle until the function runs). The imports are read with ``ast``, nothing
is imported: relative imports are resolved, and ``from package import name`` counts as an import
of ``package.name`` where that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "graders")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the packages: dotted name -> file."""
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """The modules of ``known`` that module ``name`` imports, each with the line it does so on."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..a import b
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c where only a.b is ours: a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno))
    return found


def graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """One circle through each strongly connected group of modules (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(set(group))

    for v in edges:
        if v not in index:
            visit(v)
    return [circle(group, edges) for group in groups]


def circle(group: set[str], edges) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w, _ in edges[v]:
                if w == start:
                    return paths[v] + [start]
                if w in group and w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return [start]


def test_the_walk_sees_imports_at_the_top_inside_functions_and_relative(tmp_path):
    known = {"toolkit": Path(), "toolkit.a": Path(), "toolkit.b": Path(), "toolkit.c": Path(), "graders": Path(),
             "graders.reward": Path()}
    path = tmp_path / "a.py"
    path.write_text("import toolkit.a\nfrom . import b\nfrom torch import nn\n\ndef f():\n    from .c import thing\n"
                    "    import graders\n    from graders import reward, calibration\n", encoding="utf-8")
    found = imports("toolkit.a", path, known)
    # toolkit.a itself is no edge, torch is not ours, graders.calibration is not a known module: graders
    assert found == [("toolkit.b", 2), ("toolkit.c", 6), ("graders", 7), ("graders.reward", 8), ("graders", 8)]


def test_a_circle_is_found_and_shown():
    edges = {"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}
    assert cycles(edges) == [["a", "b", "c", "a"]]


def test_no_module_of_toolkit_and_graders_imports_in_a_circle():
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_toolkit_never_imports_the_checks():
    edges = graph()
    known = modules()
    upward = [f"{known[name].relative_to(ROOT)}:{line} imports {target}"
              for name, targets in edges.items() if name.split(".")[0] == "toolkit"
              for target, line in targets if target.split(".")[0] == "graders"]
    assert not upward, "toolkit imports graders (hand it the module's name instead):\n" + "\n".join(upward)


def test_every_module_is_walked():
    known = modules()
    assert {"toolkit", "toolkit.checks", "toolkit.grading.batch", "graders.calibration", "graders.hidden.checks"} <= set(known)
