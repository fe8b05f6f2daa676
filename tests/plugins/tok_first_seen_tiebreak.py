"""Wrong: a BPE whose tie-break differs; on equal counts the pair seen first wins (minbpe's max).

Everything else is right (it encodes, decodes and handles special tokens correctly); only
the merge list differs from the reference once two pairs are equally frequent.
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


class FirstSeenBPE(Tokenizer):
    def train(self, text, vocab_size):
        self.merges = {}
        chunks = Counter(c for part in split_special(text) if part not in self.special_tokens for c in pretokenize(part))
        words = [(list(chunk.encode("utf-8")), n) for chunk, n in chunks.items()]
        new_id = 256 + len(self.special_tokens)
        while new_id < vocab_size:
            counts = {}
            for ids, n in words:
                for pair in zip(ids, ids[1:]):
                    counts[pair] = counts.get(pair, 0) + n
            if not counts:
                break
            best = max(counts, key=counts.get)  # ties: whichever pair was counted first
            self.merges[best] = new_id
            words = [(replace_pair(ids, best, new_id), n) for ids, n in words]
            new_id += 1

    def encode(self, text):
        out = []
        for part in split_special(text):
            if part in self.special_tokens:
                out.append(self.special_tokens[part])
                continue
            for chunk in pretokenize(part):
                ids = list(chunk.encode("utf-8"))
                for pair, new_id in self.merges.items():
                    ids = replace_pair(ids, pair, new_id)
                out.extend(ids)
        return out

    def decode(self, ids):
        pieces = {i: bytes([i]) for i in range(256)}
        pieces.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        for (a, b), i in self.merges.items():
            pieces[i] = pieces[a] + pieces[b]
        return b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return FirstSeenBPE()
