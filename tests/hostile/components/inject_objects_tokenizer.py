"""Hostile: returns objects where plain data is expected: encode gives a generator (the grader gets
a handle, which it may pass back to decode), merges a generator, vocab_size True, special tokens
with odd keys; its sentences must name what it returned, never the grader's own objects;
honest score: 2 (round_trip: decode(encode(s)) is s)."""
import toolkit


class Tok:
    vocab_size = True
    special_tokens = {("a", 1): object, 3.5: None}

    def train(self, text, vocab_size):
        pass

    @property
    def merges(self):
        return ((a, b) for a, b in [(104, 101), (256, 108)])

    def encode(self, text):
        return (b for b in text.encode())

    def decode(self, ids):
        return bytes(ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return Tok()
