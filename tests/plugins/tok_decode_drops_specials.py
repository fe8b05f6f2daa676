"""Wrong: decode knows bytes and merges but not the special tokens, so it silently drops them.

Built on the reference tokenizer, with only ``decode`` changed.
"""

import toolkit
from solutions.tokenizer import BPETokenizer


class DropsSpecials(BPETokenizer):
    def decode(self, ids):
        pieces = {i: bytes([i]) for i in range(256)}
        for (a, b), i in self.merges.items():
            pieces[i] = pieces[a] + pieces[b]
        return b"".join(pieces.get(i, b"") for i in ids).decode("utf-8", errors="replace")  # specials -> b""


@toolkit.hookimpl
def toolkit_tokenizer():
    return DropsSpecials()
