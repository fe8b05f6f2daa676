"""Wrong: special tokens are not split off before encoding; "<|end|>" becomes bytes and merges.

Round trips still work (the bytes decode back to the same text), so only the special-token
check catches it. Built on the reference tokenizer, with only ``encode`` changed.
"""

import toolkit
from solutions.tokenizer import BPETokenizer
from toolkit.tokenizer import pretokenize


class SpecialAsBytes(BPETokenizer):
    def encode(self, text):
        self._refresh()
        return [i for chunk in pretokenize(text) for i in self._encode_chunk(chunk)]  # no split_special


@toolkit.hookimpl
def toolkit_tokenizer():
    return SpecialAsBytes()
