"""Checks of the tokenizer component (byte-level BPE)."""

from toolkit.checks import CheckFailed, check
from toolkit.tokenizer import SPECIAL_TOKENS
from toolkit.world import World

ROUND_TRIP = [
    "", "The capital of France is Paris .", "Ça, c'est déjà l'été à Málaga", "東京は日本の首都です",
    "Здравствуй, мир", "emoji 🙂🚀👩‍👩‍👧", "  lots   of\n\n\twhitespace  ", "trailing space ",
    "<|bos|><|user|> What is 2 plus 3 ?<|assistant|> 2 plus 3 is 5 .<|end|>", "a<|end|>b<|pad|>",
]


def small_corpus() -> str:
    """The text the exact-merge checks train on: 300 documents of the world, ~40 kB."""
    return " ".join(World(seed=0).pretraining_documents(300, seed=7)) + " Ça déjà 東京 🙂🙂"


def _trained(ctx, vocab_size=400):
    tok = ctx.components.tokenizer()
    tok.train(small_corpus(), vocab_size)
    return tok


@check("tokenizer", points=2)
def round_trip(ctx):
    "decode(encode(s)) == s on ASCII, accents, CJK, emoji, whitespace and special tokens."
    tok = _trained(ctx)
    for s in ROUND_TRIP:
        back = tok.decode(tok.encode(s))
        if back != s:
            raise CheckFailed(f"decode(encode({s!r})) gave {back!r}")
    try:
        text = tok.decode([0xE2, 0x82])  # the first two bytes of "€": invalid UTF-8 on their own
    except Exception as e:
        raise CheckFailed(f"decode([0xE2, 0x82]) raised {type(e).__name__}; use errors='replace'") from e
    if "\ufffd" not in text:
        raise CheckFailed(f"decode([0xE2, 0x82]) gave {text!r}; expected the replacement character U+FFFD")


@check("tokenizer", points=1)
def special_tokens(ctx):
    "Special tokens are single ids (256, 257, ...), never split or merged."
    tok = _trained(ctx)
    for i, s in enumerate(SPECIAL_TOKENS):
        if tok.encode(s) != [256 + i]:
            raise CheckFailed(f"encode({s!r}) gave {tok.encode(s)}; expected [{256 + i}]")
    ids = tok.encode("<|user|> hi<|end|>")
    if ids[0] != 257 or ids[-1] != 259:
        raise CheckFailed(f"encode('<|user|> hi<|end|>') gave {ids}: a special token was merged with its neighbours")
    special = set(range(256, 256 + len(SPECIAL_TOKENS)))
    bad = [pair for pair in tok.merges if special & set(pair)]
    if bad:
        raise CheckFailed(f"merge {bad[0]} involves a special token; special tokens never take part in merges")


@check("tokenizer", points=3)
def merges_match(ctx):
    "Training on a fixed corpus learns exactly the reference merge list (tie-break included)."
    expected = [tuple(p) for p in ctx.snapshot()["merges"]]
    tok = _trained(ctx, vocab_size=256 + len(SPECIAL_TOKENS) + len(expected))
    got = list(tok.merges)
    for i, (g, e) in enumerate(zip(got, expected)):
        if tuple(g) != e:
            raise CheckFailed(f"merge #{i} is {tuple(g)}, expected {e} (check the pair counts and the tie-break)")
    if len(got) != len(expected):
        raise CheckFailed(f"learned {len(got)} merges, expected {len(expected)}")


def record(components) -> dict:
    tok = components.tokenizer()
    tok.train(small_corpus(), 400)
    return {"vocab_size": 400, "merges": [list(p) for p in tok.merges]}
