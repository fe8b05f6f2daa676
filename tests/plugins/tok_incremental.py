"""A correct tokenizer written differently from the solution: incremental BPE without a heap.

Training keeps the pair counts up to date after each merge, touching only the chunks that
contain the merged pair, and finds the best pair with ``max`` over the counts (no heap).
Encoding caches each distinct chunk and merges by rank, like GPT-2's ``bpe`` function.
"""

from collections import Counter, defaultdict

import toolkit
from toolkit.tokenizer import Tokenizer, pretokenize, split_special


def pairs(ids):
    return list(zip(ids, ids[1:]))


def merge_left_to_right(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if ids[i : i + 2] == list(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class IncrementalBPE(Tokenizer):
    def train(self, text, vocab_size):
        self.merges = {}
        chunks = Counter(c for part in split_special(text) if part not in self.special_tokens for c in pretokenize(part))
        words = {w: list(w.encode("utf-8")) for w in chunks}
        counts, holders = Counter(), defaultdict(set)
        for w, ids in words.items():
            for p in pairs(ids):
                counts[p] += chunks[w]
                holders[p].add(w)
        for new_id in range(256 + len(self.special_tokens), vocab_size):
            if not counts:
                break
            best = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
            self.merges[best] = new_id
            for w in holders.pop(best):
                for p in pairs(words[w]):
                    counts[p] -= chunks[w]
                    if counts[p] == 0:
                        del counts[p]
                words[w] = merge_left_to_right(words[w], best, new_id)
                for p in pairs(words[w]):
                    counts[p] += chunks[w]
                    holders[p].add(w)
        self._cache = {}

    def _encode_chunk(self, chunk):
        ids = list(chunk.encode("utf-8"))
        while True:
            ranked = [(self.merges[p], p) for p in pairs(ids) if p in self.merges]
            if not ranked:
                return ids
            rank, p = min(ranked)
            ids = merge_left_to_right(ids, p, rank)

    def encode(self, text):
        cache = self.__dict__.setdefault("_cache", {})
        out = []
        for part in split_special(text):
            if part in self.special_tokens:
                out.append(self.special_tokens[part])
                continue
            for chunk in pretokenize(part):
                if chunk not in cache:
                    cache[chunk] = self._encode_chunk(chunk)
                out += cache[chunk]
        return out

    def decode(self, ids):
        table = {i: bytes([i]) for i in range(256)}
        table.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        for (a, b), i in self.merges.items():
            table[i] = table[a] + table[b]
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return IncrementalBPE()
