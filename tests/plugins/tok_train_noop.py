"""Wrong: ``train`` does nothing (a stub left in), so it is as fast as can be; encoding and decoding
are right for the merges it has, which are none.

Every text still round-trips (one token per byte), and before the check asked how many merges
training learned, this tokenizer earned the speed point by skipping the work it was timed on.
"""

import toolkit
from toolkit.tokenizer import Tokenizer, pretokenize, split_special


class StubBPE(Tokenizer):
    def train(self, text, vocab_size):
        pass  # TODO: count the pairs, merge the most frequent, repeat

    def encode(self, text):
        ids = []
        for part in split_special(text):
            if part in self.special_tokens:
                ids.append(self.special_tokens[part])
            else:
                ids += [b for chunk in pretokenize(part) for b in chunk.encode("utf-8")]
        return ids

    def decode(self, ids):
        names = {i: s for s, i in self.special_tokens.items()}
        out, pending = [], bytearray()
        for i in ids:
            if i in names:
                out.append(pending.decode("utf-8", errors="replace") + names[i])
                pending = bytearray()
            else:
                pending.append(i)
        return "".join(out) + pending.decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return StubBPE()
