"""Instructor's solution: a byte-level BPE tokenizer (in the spirit of Karpathy's minbpe).

Training works on the *distinct* chunks of the text with their counts, and is
incremental: after each merge only the chunks that contain the merged pair are updated,
and a heap finds the most frequent pair without rescanning all pair counts.
"""

from __future__ import annotations

import heapq
from collections import Counter

import toolkit
from toolkit.tokenizer import Tokenizer, pretokenize, split_special


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``, left to right, no overlaps.

    >>> merge([97, 97, 97], (97, 97), 300)
    [300, 97]
    """
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer(Tokenizer):
    """Byte-level BPE: ids 0..255 are bytes, then the special tokens, then the merges."""

    def __init__(self) -> None:
        super().__init__()
        self._cache_key = None  # which merges the two caches below were built for
        self._chunk_cache: dict[str, list[int]] = {}  # chunk -> its ids
        self._vocab: dict[int, bytes] = {}  # id -> the bytes it stands for

    # ---------------------------------------------------------------- training
    def train(self, text: str, vocab_size: int) -> None:
        """Learn merges on ``text`` until the vocabulary has ``vocab_size`` tokens."""
        self.merges = {}
        chunks = Counter(
            chunk for part in split_special(text) if part not in self.special_tokens
            for chunk in pretokenize(part)
        )
        words = [list(chunk.encode("utf-8")) for chunk in chunks]  # distinct chunks as ids
        freqs = list(chunks.values())  # how often each chunk occurs

        # Bookkeeping: how often each pair occurs (weighted by chunk counts), and in
        # which chunks it occurs, so that a merge only touches those chunks.
        counts: Counter = Counter()
        where: dict[tuple[int, int], set[int]] = {}
        for w, (ids, freq) in enumerate(zip(words, freqs)):
            for pair in zip(ids, ids[1:]):
                counts[pair] += freq
                where.setdefault(pair, set()).add(w)

        # A max-heap of pairs, as a min-heap of (-count, -a, -b): the most frequent pair
        # comes first and, on ties, the largest pair. Entries are never updated in place;
        # a pair whose count changed gets a new entry, and stale ones are skipped on pop.
        heap = [(-c, -a, -b) for (a, b), c in counts.items()]
        heapq.heapify(heap)

        new_id = 256 + len(self.special_tokens)
        while new_id < vocab_size and heap:
            neg_count, a, b = heapq.heappop(heap)
            pair = (-a, -b)
            if counts.get(pair) != -neg_count:
                continue  # stale entry: the pair's count has changed since it was pushed
            self.merges[pair] = new_id
            changed = self._merge_everywhere(pair, new_id, words, freqs, counts, where)
            for p in changed:
                if p in counts:  # pairs whose count fell to 0 were deleted
                    heapq.heappush(heap, (-counts[p], -p[0], -p[1]))
            new_id += 1

    @staticmethod
    def _merge_everywhere(pair, new_id, words, freqs, counts, where) -> set:
        """Apply one merge to every chunk containing ``pair``; update counts and where.

        Returns the set of pairs whose count changed.
        """
        changed = set()
        for w in where.pop(pair):
            old, freq = words[w], freqs[w]
            new = words[w] = merge(old, pair, new_id)
            # Take the chunk's old pairs out of the counts and put its new pairs in.
            for p in zip(old, old[1:]):
                counts[p] -= freq
                changed.add(p)
            for p in zip(new, new[1:]):
                counts[p] += freq
                changed.add(p)
                where.setdefault(p, set()).add(w)
            for p in set(zip(old, old[1:])) - set(zip(new, new[1:])) - {pair}:
                where[p].discard(w)  # this chunk no longer contains p
        for p in changed:
            if counts[p] == 0:
                del counts[p]  # a pair that no longer occurs is never a candidate
        return changed

    # ------------------------------------------------------- encoding/decoding
    def _refresh(self) -> None:
        """Rebuild the vocabulary and empty the chunk cache if ``merges`` changed."""
        key = (id(self.merges), len(self.merges))
        if key == self._cache_key:
            return
        self._cache_key = key
        self._chunk_cache = {}
        self._vocab = {i: bytes([i]) for i in range(256)}
        self._vocab.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        for (a, b), i in self.merges.items():  # in the order learned: a and b exist already
            self._vocab[i] = self._vocab[a] + self._vocab[b]

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Bytes of ``chunk``, then repeatedly the merge with the lowest id present."""
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break  # no pair left that can be merged
            ids = merge(ids, pair, self.merges[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        """Text (which may contain special tokens) -> ids."""
        self._refresh()
        ids = []
        for part in split_special(text):
            if part in self.special_tokens:
                ids.append(self.special_tokens[part])
                continue
            for chunk in pretokenize(part):
                if chunk not in self._chunk_cache:
                    self._chunk_cache[chunk] = self._encode_chunk(chunk)
                ids.extend(self._chunk_cache[chunk])
        return ids

    def decode(self, ids: list[int]) -> str:
        """Ids -> text; invalid UTF-8 becomes U+FFFD, an unknown id raises ValueError."""
        self._refresh()
        for i in ids:
            if i not in self._vocab:
                raise ValueError(f"unknown token id {i}")
        return b"".join(self._vocab[i] for i in ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return BPETokenizer()
