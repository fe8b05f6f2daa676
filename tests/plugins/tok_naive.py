"""A correct tokenizer written differently from the solution: naive byte-level BPE.

Training recounts every pair after each merge (no heap, no incremental updates); encoding
applies the merges one after the other in the order they were learned. It follows the
rules of ``toolkit.tokenizer``: special tokens split off first and never trained on,
``pretokenize`` chunks, counts weighted by how often a chunk occurs, and on equal counts
the largest pair ``(a, b)`` wins (the reference's tie-break).
"""

from collections import Counter

import toolkit
from toolkit.tokenizer import Tokenizer, pretokenize, split_special


def replace_pair(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i : i + 2]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class NaiveBPE(Tokenizer):
    def train(self, text, vocab_size):
        self.merges = {}
        chunks = Counter(c for part in split_special(text) if part not in self.special_tokens for c in pretokenize(part))
        words = [(list(chunk.encode("utf-8")), n) for chunk, n in chunks.items()]
        new_id = 256 + len(self.special_tokens)
        while new_id < vocab_size:
            counts = Counter()
            for ids, n in words:
                for pair in zip(ids, ids[1:]):
                    counts[pair] += n
            if not counts:
                break
            best = max(counts, key=lambda pair: (counts[pair], pair))  # ties: the largest pair
            self.merges[best] = new_id
            words = [(replace_pair(ids, best, new_id), n) for ids, n in words]
            new_id += 1

    def _pieces(self):
        pieces = {i: bytes([i]) for i in range(256)}
        pieces.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        for (a, b), i in self.merges.items():
            pieces[i] = pieces[a] + pieces[b]
        return pieces

    def encode(self, text):
        out = []
        for part in split_special(text):
            if part in self.special_tokens:
                out.append(self.special_tokens[part])
                continue
            for chunk in pretokenize(part):
                ids = list(chunk.encode("utf-8"))
                for pair, new_id in self.merges.items():  # in the order learned
                    if len(ids) < 2:
                        break
                    ids = replace_pair(ids, pair, new_id)
                out.extend(ids)
        return out

    def decode(self, ids):
        pieces = self._pieces()
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return NaiveBPE()
