"""The tokenizer interface every tokenizer plugin implements, and the rules it follows.

A tokenizer turns text into a list of integer ids and back. The course's tokenizer is
byte-level BPE (as in GPT-2 and minbpe):

* ids 0..255 are the 256 single bytes, so any text can be encoded;
* the special tokens come next, in the order of ``SPECIAL_TOKENS`` (ids 256, 257, ...);
  they are atomic: never split, never merged, always encoded as one id;
* every merge learned in training gets the next free id, starting after the specials.

Training, exactly (so that every correct implementation learns the same merges): count
the adjacent pairs of ids inside every chunk of the training text (special tokens are
never part of a pair); merge the most frequent pair; **on equal counts, take the greatest
pair** as Python compares tuples, i.e. ``max(counts, key=lambda p: (counts[p], p))``;
stop when the vocabulary reaches ``vocab_size`` or no pair is left. Encoding applies
the learned merges to each chunk, the earliest learned first.

Text is first cut into chunks by ``pretokenize`` (merges never cross a chunk boundary),
then merges are applied inside each chunk.
"""

from __future__ import annotations

import re

SPECIAL_TOKENS = ["<|bos|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"]
"""Special tokens of the chat template, in id order (ids 256, 257, ...)."""

# A chunk is: an optional space then letters, an optional space then digits, an optional
# space then other symbols, or a run of whitespace. The standard library's `re` cannot
# say "letter" directly: `[^\W\d_]` is "a word character that is not a digit or `_`".
CHUNK_PATTERN = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+| ?_+|\s+(?!\S)|\s+")
_SPECIAL_PATTERN = re.compile("(" + "|".join(re.escape(s) for s in SPECIAL_TOKENS) + ")")


def split_special(text: str) -> list[str]:
    """Cut ``text`` around special tokens: ``"a<|end|>b"`` -> ``["a", "<|end|>", "b"]``."""
    return [part for part in _SPECIAL_PATTERN.split(text) if part]


def pretokenize(text: str) -> list[str]:
    """Cut ordinary text (no special tokens) into the chunks that BPE merges within.

    >>> pretokenize("The capital of France is Paris.")
    ['The', ' capital', ' of', ' France', ' is', ' Paris', '.']
    """
    return CHUNK_PATTERN.findall(text)


class Tokenizer:
    """Base class: what the pipeline and the checks call on any tokenizer.

    Attributes a trained tokenizer must have:
        merges:  ``dict[tuple[int, int], int]``, pair of ids -> new id, in the order learned.
        special_tokens: ``dict[str, int]``, e.g. ``{"<|bos|>": 256, ...}``.
        vocab_size: ``int``, 256 + number of special tokens + number of merges.
    """

    def __init__(self) -> None:
        self.merges: dict[tuple[int, int], int] = {}
        self.special_tokens: dict[str, int] = {s: 256 + i for i, s in enumerate(SPECIAL_TOKENS)}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens) + len(self.merges)

    def train(self, text: str, vocab_size: int) -> None:
        """Learn merges on ``text`` until the vocabulary has ``vocab_size`` tokens.

        Most frequent pair first; on equal counts the greatest pair, ``max(counts, key=lambda
        p: (counts[p], p))``; stop early when no pair is left.
        """
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Text (which may contain special tokens) -> ids."""
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        """Ids -> text. Invalid UTF-8 becomes U+FFFD (``errors="replace"``), never an error."""
        raise NotImplementedError
