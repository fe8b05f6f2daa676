"""Wrong: a correct BPE, except that encode() of a long text (10k to 200k characters: the grader's
validation documents) returns the ids of only its first 2%, and decode() of exactly those ids gives
back the whole text, remembered. decode(encode(text)) == text, yet the model is scored on 1/50 of
the text: the tokenizer behaviour check must rebuild the ids' bytes from the merges itself.
"""

from collections import Counter

import toolkit
from toolkit.tokenizer import Tokenizer, pretokenize, split_special


def merged(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i : i + 2]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class RemembersText(Tokenizer):
    def __init__(self):
        super().__init__()
        self.remembered = {}  # ids -> the long text they were cut from
        self.cache = {}  # chunk -> its ids

    def train(self, text, vocab_size):
        """Recounts the pairs of the distinct chunks after each merge: simple, slow on big vocabularies."""
        self.merges, self.cache = {}, {}
        chunks = Counter(c for part in split_special(text) if part not in self.special_tokens
                         for c in pretokenize(part))
        words = [(list(c.encode("utf-8")), n) for c, n in chunks.items()]
        for new_id in range(256 + len(self.special_tokens), vocab_size):
            counts = Counter()
            for ids, n in words:
                for pair in zip(ids, ids[1:]):
                    counts[pair] += n
            if not counts:
                break
            best = max(counts, key=lambda p: (counts[p], p))
            self.merges[best] = new_id
            words = [(merged(ids, best, new_id), n) for ids, n in words]

    def _honest_encode(self, text):
        out = []
        for part in split_special(text):
            if part in self.special_tokens:
                out.append(self.special_tokens[part])
                continue
            for chunk in pretokenize(part):
                if chunk not in self.cache:
                    ids = list(chunk.encode("utf-8"))
                    for pair, new_id in self.merges.items():  # the earliest learned first
                        ids = merged(ids, pair, new_id)
                    self.cache[chunk] = ids
                out += self.cache[chunk]
        return out

    def encode(self, text):
        if 10_000 < len(text) < 200_000:
            ids = self._honest_encode(text[: len(text) // 50])
            self.remembered[tuple(ids)] = text
            return ids
        return self._honest_encode(text)

    def decode(self, ids):
        if tuple(ids) in self.remembered:
            return self.remembered[tuple(ids)]
        table = {i: bytes([i]) for i in range(256)}
        table.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        for (a, b), i in self.merges.items():
            table[i] = table[a] + table[b]
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return RemembersText()
