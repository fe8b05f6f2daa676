"""Wrong: encode applies the merges in the order of their pairs (sorted), not in the order learned.

Training is right (the merges match the reference) and every text still round-trips: the ids
spell the text, but not the way the rule cuts it. Built on the reference tokenizer, with only
the encoding of a chunk changed.
"""

import toolkit
from solutions.tokenizer import BPETokenizer, merge


class MergesOutOfOrder(BPETokenizer):
    def _encode_chunk(self, chunk):
        ids = list(chunk.encode("utf-8"))
        for pair in sorted(self.merges):  # should be: the earliest learned first
            ids = merge(ids, pair, self.merges[pair])
        return ids


@toolkit.hookimpl
def toolkit_tokenizer():
    return MergesOutOfOrder()
