"""Broken: encodes text as ASCII, so any accent or emoji raises UnicodeEncodeError in student code."""

import toolkit
from solutions.tokenizer import BPETokenizer


class AsciiOnly(BPETokenizer):
    def encode(self, text):
        text.encode("ascii")  # "just checking": raises on "Ça", "東京", "🙂", ...
        return super().encode(text)


@toolkit.hookimpl
def toolkit_tokenizer():
    return AsciiOnly()
