"""Text a submission can write into (an exception's text, a name it chose), made safe to show on a
page or in a terminal: printable, and on one line."""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """``text`` without control and format characters (ANSI escapes, NUL, right-to-left overrides):
    it prints as it reads. What a submission writes and a page or a terminal shows goes through it."""
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))


def one_line(text: str, limit: int) -> str:
    """``text`` as one printable line of at most ``limit`` characters: whitespace runs become one
    space. Every sentence a submission can write into (an exception's text) goes through it."""
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"
