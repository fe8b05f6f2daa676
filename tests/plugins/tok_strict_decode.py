"""Wrong: decode uses strict UTF-8 and raises UnicodeDecodeError on ids that cut a character.

Built on the reference tokenizer, with only ``decode`` changed.
"""

import toolkit
from solutions.tokenizer import BPETokenizer


class StrictDecode(BPETokenizer):
    def decode(self, ids):
        self._refresh()
        return b"".join(self._vocab[i] for i in ids).decode("utf-8")  # no errors="replace"


@toolkit.hookimpl
def toolkit_tokenizer():
    return StrictDecode()
