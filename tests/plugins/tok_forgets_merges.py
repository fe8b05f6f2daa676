"""Wrong: training builds its merges in a local variable and never stores them on ``self``.

Everything still round-trips (the tokenizer is plain bytes), but no merge is ever
applied: one token per byte, four times as many tokens as the reference.
"""

from collections import Counter

import toolkit
from toolkit.tokenizer import Tokenizer, pretokenize, split_special


def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i : i + 2]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class ForgetfulBPE(Tokenizer):
    def train(self, text, vocab_size):
        chunks = Counter(c for part in split_special(text) if part not in self.special_tokens for c in pretokenize(part))
        words = {w: list(w.encode("utf-8")) for w in chunks}
        merges = {}  # BUG: should be self.merges
        for new_id in range(256 + len(self.special_tokens), min(vocab_size, 300)):  # (kept short: the merges are lost anyway)
            counts = Counter()
            for w, ids in words.items():
                for p in zip(ids, ids[1:]):
                    counts[p] += chunks[w]
            if not counts:
                break
            best = max(counts, key=lambda p: (counts[p], p))
            merges[best] = new_id
            words = {w: merge(ids, best, new_id) for w, ids in words.items()}

    def encode(self, text):
        out = []
        for part in split_special(text):
            if part in self.special_tokens:
                out.append(self.special_tokens[part])
                continue
            for chunk in pretokenize(part):
                ids = list(chunk.encode("utf-8"))
                for pair, new_id in self.merges.items():
                    ids = merge(ids, pair, new_id)
                out += ids
        return out

    def decode(self, ids):
        table = {i: bytes([i]) for i in range(256)}
        table.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        for (a, b), i in self.merges.items():
            table[i] = table[a] + table[b]
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return ForgetfulBPE()
