"""Similar submissions: pairs of students whose code for one component is near-identical.

``similar_pairs`` compares each component's code (``submission_code``) once names, comments,
docstrings and formatting are normalised away (``normalised_tokens``).
"""

from __future__ import annotations

import ast
import difflib
import io
import keyword
import tokenize
from pathlib import Path

from toolkit.components import COMPONENTS

SIMILARITY_THRESHOLD = 0.9


def normalised_tokens(source: str) -> list[str]:
    """Python tokens without comments, docstrings or layout; names and strings as placeholders.

    Renaming variables, rewording comments or reformatting leaves the stream unchanged.
    Returns [] for code that cannot be tokenised.
    """
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER)
    toks = [t for t in toks if t.type not in skip]
    out, start, docstring = [], True, False  # start: at the start of a statement
    for i, t in enumerate(toks):
        nxt = toks[i + 1].type if i + 1 < len(toks) else tokenize.NEWLINE
        if docstring or (start and t.type == tokenize.STRING and nxt == tokenize.NEWLINE):
            docstring = not docstring  # a docstring (or another bare string statement), then its NEWLINE
            continue
        if t.type == tokenize.NAME:
            out.append(t.string if keyword.iskeyword(t.string) else "ID")
        elif t.type == tokenize.STRING:
            out.append("STR")
        else:
            out.append(tokenize.tok_name[t.type] if t.type in (tokenize.INDENT, tokenize.DEDENT) else t.string)
        start = t.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    return out


def similarity(a: str, b: str) -> float:
    """How alike two pieces of code are, 0 to 1, after ``normalised_tokens``."""
    return _ratio(normalised_tokens(a), normalised_tokens(b))


def _ratio(a: list[str], b: list[str], at_least: float = 0.0) -> float:
    """SequenceMatcher ratio of two token streams (0 when a cheap upper bound is below ``at_least``)."""
    if not a or not b:
        return 0.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < at_least or matcher.quick_ratio() < at_least:
        return 0.0
    return matcher.ratio()


def component_code(source: str) -> dict[str, str]:
    """Component -> the source of its hooks and of the top-level functions and classes they use."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    code = {}
    for comp, component in COMPONENTS.items():
        todo, used = [h for h in component.hooks if h in defs], set()
        while todo:
            name = todo.pop()
            if name not in used:
                used.add(name)
                todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
        in_order = sorted(used, key=lambda n: defs[n].lineno)
        if in_order:
            code[comp] = "\n\n".join(ast.get_source_segment(source, defs[n]) for n in in_order)
    return code


def submission_code(path: Path) -> dict[str, str]:
    """Component -> its code in a submission (a file, a folder or a notebook), over all its files."""
    from toolkit.plugins import SubmissionError, _notebook_cells

    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.suffix in (".py", ".ipynb") and p.is_file()
        and not any(part.startswith((".", "__pycache__")) for part in p.relative_to(path).parts))
    code: dict[str, str] = {}
    for f in files:
        try:
            source = ("".join(cell for cell, _ in _notebook_cells(f)) if f.suffix == ".ipynb"
                      else f.read_text(encoding="utf-8", errors="replace"))
        except SubmissionError:
            continue
        for comp, text in component_code(source).items():
            code[comp] = code.get(comp, "") + text + "\n"
    return code


def similar_pairs(code: dict[str, dict[str, str]], threshold: float = SIMILARITY_THRESHOLD) -> list[dict]:
    """Pairs of students whose code for one component is near-identical: component, a, b, similarity."""
    pairs = []
    for comp in COMPONENTS:
        tokens = {s: normalised_tokens(c[comp]) for s, c in sorted(code.items()) if comp in c}
        students = list(tokens)
        for i, a in enumerate(students):
            for b in students[i + 1:]:
                ratio = _ratio(tokens[a], tokens[b], at_least=threshold)
                if ratio >= threshold:
                    pairs.append({"component": comp, "a": a, "b": b, "similarity": round(ratio, 3)})
    return sorted(pairs, key=lambda p: (-p["similarity"], p["component"], p["a"], p["b"]))
