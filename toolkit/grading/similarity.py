"""Similar submissions: pairs of students whose code for one component is near-identical.

``similar_pairs`` compares each component's code (``submission_code``) once names, comments,
docstrings and formatting are normalised away (``normalised_tokens``). A submission whose code
cannot be read or parsed (a syntax error, nesting too deep for the parser, an unreadable
notebook) simply has no code to compare: it never stops the batch.
"""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
from collections import Counter
from pathlib import Path

from toolkit.components import COMPONENTS

SIMILARITY_THRESHOLD = 0.9
SHINGLE = 4  # tokens per run compared
MAX_SOURCE = 200_000  # characters of one file compared; longer files are not compared


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


def _tokens(source: str) -> list[str]:
    try:
        return normalised_tokens(source)
    except (RecursionError, MemoryError, ValueError):
        return []


def similarity(a: str, b: str) -> float:
    """How alike two pieces of code are, 0 to 1, after ``normalised_tokens``."""
    return _ratio(normalised_tokens(a), normalised_tokens(b))


def _ratio(a: list[str], b: list[str], at_least: float = 0.0) -> float:
    """Dice coefficient of the two streams' multisets of ``SHINGLE``-token runs: 1 for the same code,
    0 for nothing in common. Linear in the streams' length (a quadratic diff of two long streams
    could hold a batch for minutes); ``at_least`` lets a cheap length bound skip hopeless pairs."""
    if not a or not b:
        return 0.0
    if 2 * min(len(a), len(b)) / (len(a) + len(b)) < at_least:  # the best Dice two such lengths allow
        return 0.0
    x, y = _shingles(a), _shingles(b)
    return 2 * sum((x & y).values()) / (sum(x.values()) + sum(y.values()))


def _shingles(tokens: list[str]) -> Counter:
    return Counter(tuple(tokens[i:i + SHINGLE]) for i in range(max(1, len(tokens) - SHINGLE + 1)))


def component_code(source: str) -> dict[str, str]:
    """Component -> the source of its hooks and of the top-level functions and classes they use."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
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


def submission_code(sub) -> dict[str, str]:
    """Component -> its code in a submission (``toolkit.grading.intake.Submission``), over all its files."""
    from toolkit.grading.intake import code as files

    result: dict[str, str] = {}
    try:
        texts = files(sub) if not sub.refused else {}
    except OSError:
        return {}
    for name, text in sorted(texts.items()):
        if len(text) > MAX_SOURCE or any(part.startswith((".", "__pycache__")) for part in Path(name).parts[1:]):
            continue
        try:
            found = component_code(text)
        except Exception:  # unparsable (RecursionError included): nothing to compare
            continue
        for comp, part in found.items():
            result[comp] = result.get(comp, "") + part + "\n"
    return result


def similar_pairs(code: dict[str, dict[str, str]], threshold: float = SIMILARITY_THRESHOLD) -> list[dict]:
    """Pairs of students whose code for one component is near-identical: component, a, b, similarity."""
    pairs = []
    for comp in COMPONENTS:
        tokens = {s: _tokens(c[comp]) for s, c in sorted(code.items()) if comp in c}
        students = list(tokens)
        for i, a in enumerate(students):
            for b in students[i + 1:]:
                ratio = _ratio(tokens[a], tokens[b], at_least=threshold)
                if ratio >= threshold:
                    pairs.append({"component": comp, "a": a, "b": b, "similarity": round(ratio, 3)})
    return sorted(pairs, key=lambda p: (-p["similarity"], p["component"], p["a"], p["b"]))
