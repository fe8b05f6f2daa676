"""Hostile: a tokenizer that learns nothing (train() is a no-op); its fixed merges spell each of the
300 held-out documents a student's release measures bits per byte on (``validation_text`` at the
public seed) as one token, and they outnumber the merges speed asks for. Against the public text it
scored 0.15 bits per byte (the solution's 0.34): behaviour 4/4, and speed 1/1; 8/15 in all.
Everything else is plain bytes, so round trips and special tokens are right;
honest score: 3 (round_trip 2, special_tokens 1: the bytes-only tokenizer it really is)."""
import toolkit
from graders import tokenizer as grader
from toolkit.tokenizer import Tokenizer, split_special


def public_documents() -> list[str]:
    """The held-out documents as a student's release has them, without their <|bos|>."""
    text = grader.validation_text(seed=grader.PUBLIC_HELD_OUT_SEED)
    return [part for part in split_special(text) if part not in {"<|bos|>"}]


class FixedMerges(Tokenizer):
    def __init__(self):
        super().__init__()
        self.doc_ids = {}  # document -> the one id that spells it
        for doc in public_documents():  # a trie of merges: (prefix id, next byte) -> id of the longer prefix
            data = doc.encode()
            prefix = data[0]
            for byte in data[1:]:
                pair = (prefix, byte)
                if pair not in self.merges:
                    self.merges[pair] = 256 + len(self.special_tokens) + len(self.merges)
                prefix = self.merges[pair]
            self.doc_ids[doc] = prefix
        self.spelled = {i: bytes([i]) for i in range(256)}
        self.spelled.update({i: s.encode() for s, i in self.special_tokens.items()})
        for (a, b), new in self.merges.items():
            self.spelled[new] = self.spelled[a] + self.spelled[b]

    def train(self, text, vocab_size):
        pass  # learns nothing: the merges were fixed before it saw any text

    def encode(self, text):
        ids = []
        for part in split_special(text):
            if part in self.special_tokens:
                ids.append(self.special_tokens[part])
            elif part in self.doc_ids:
                ids.append(self.doc_ids[part])
            else:
                ids.extend(part.encode())
        return ids

    def decode(self, ids):
        return b"".join(self.spelled[i] for i in ids).decode("utf-8", errors="replace")


@toolkit.hookimpl
def toolkit_tokenizer():
    return FixedMerges()
