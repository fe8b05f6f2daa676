"""Which names a submission's code uses, read from its text by the grader (never by running it).

The observation checks (``attention.written_out``, the sampler's own-code check) ask ``names_used``
whether the files the grader was handed (``Context.sources``) use a banned call or a toolkit name.
"""

from __future__ import annotations

import io
import tokenize


def names_used(sources: dict[str, str], names: tuple[str, ...], as_attribute: bool = False) -> list[str]:
    """Which of ``names`` the code uses, in order: read by the grader in the files it was handed.

    A name may be dotted (``toolkit.sample``): it is used by ``toolkit.sample``, ``import
    toolkit.sample`` and ``from toolkit import sample``. Comments and strings are not code; a
    file that does not tokenize is skipped (it did not import either). ``as_attribute``: an undotted
    name counts wherever it is a part of a chain too (``F.scaled_dot_product_attention``).
    """
    found = []
    for text in sources.values():
        try:
            used = _dotted_names(text)
        except (tokenize.TokenError, SyntaxError, RecursionError, MemoryError):
            continue
        if as_attribute:
            used = used | {part for chain in used for part in chain.split(".")}
        found += [n for n in names if n in used and n not in found]
    return found


def _dotted_names(text: str) -> set[str]:
    """Every name and dotted chain of ``text`` with its prefixes (``a``, ``a.b``, ``a.b.c``);
    ``from a import b`` counts as ``a.b``."""
    used: set[str] = set()
    chain: list[str] = []  # the dotted chain being read
    statement: list[str] = []  # the tokens of the logical line so far
    module = None  # in ``from M import x, y``: M, from ``import`` on
    for t in tokenize.generate_tokens(io.StringIO(text).readline):
        if t.type in (tokenize.NEWLINE, tokenize.ENDMARKER) or t.string == ";":
            statement, module = [], None
            continue
        if t.type == tokenize.NAME:
            chain = chain + [t.string] if statement and statement[-1] == "." else [t.string]
            used.update(".".join(chain[:i]) for i in range(1, len(chain) + 1))
            if t.string == "import" and statement[:1] == ["from"]:
                module = "".join(statement[1:])
            elif module and t.string != "as" and statement[-1] != "as":
                used.add(f"{module}.{t.string}")
        if t.type not in (tokenize.NL, tokenize.COMMENT):
            statement.append(t.string)
    return used
