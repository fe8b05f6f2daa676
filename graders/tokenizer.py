"""Checks of the tokenizer component (byte-level BPE)."""

import random
import time
from collections import Counter

import torch

from graders import calibration, instructor_seed
from toolkit.baselines import WholeWordTokenizer
from toolkit.checks import CheckFailed, Partial, check, on_case
from toolkit.model import GPTConfig
from toolkit.config import PipelineConfig
from toolkit.pipeline import Pipeline
from toolkit.template import render_document
from toolkit.tokenizer import SPECIAL_TOKENS, pretokenize, split_special
from toolkit.train import TrainConfig, bits_per_byte
from toolkit.world import World

ROUND_TRIP = [
    "", "The capital of France is Paris .", "Ça, c'est déjà l'été à Málaga", "東京は日本の首都です",
    "Здравствуй, мир", "emoji 🙂🚀👩‍👩‍👧", "  lots   of\n\n\twhitespace  ", "trailing space ",
    "<|bos|><|user|> What is 2 plus 3 ?<|assistant|> 2 plus 3 is 5 .<|end|>", "a<|end|>b<|pad|>",
    "<|user|><|user|>", "<|en", "d|>", "tab\tand\r\nnewline", "  ", "\u00a0non-breaking", "ﬁ ligature ǅ", "x" * 300,
]
ENCODINGS = ROUND_TRIP + [
    "What is the capital of Kenya ?", "The capital of Peru is Lima .", "Q : What is 17 plus 25 ? A : 17 plus 25 is 42 .",
    "capitalcapitalcapital", "   leading spaces", "What's the colour of the sky?", "1234567890",
]
WITH_SPECIALS = [s for s in ROUND_TRIP if any(t in s for t in SPECIAL_TOKENS)]
"""The strings of ``ROUND_TRIP`` that hold special tokens: ``special_tokens`` checks how they are encoded."""


PUBLIC_HELD_OUT_SEED = 12345  # a student's copy: the held-out text its `toolkit run` measures on


def held_out_seed() -> int:
    """The seed of the text the behaviour check measures on and of the fresh text speed trains on:
    the instructor's own (``graders.hidden``), which a student's copy of the graders lacks, so that
    no submission can know the text before it is graded (fixed merges spelling the public documents
    earned full bits per byte); the same on every run, as grading is. Without it (a student's
    ``toolkit run``): ``PUBLIC_HELD_OUT_SEED``, and ``held_out_is_public()`` says so."""
    return instructor_seed("HELD_OUT_SEED", PUBLIC_HELD_OUT_SEED)


def held_out_is_public() -> bool:
    """True in a student's copy: the held-out text is drawn from the public seed."""
    return held_out_seed() == PUBLIC_HELD_OUT_SEED


def held_out_note() -> str:
    """What the checks that measure on held-out text say about it (a metric)."""
    return ("public: this copy has no instructor's seed; grading draws held-out text from a seed of its own"
            if held_out_is_public() else "drawn from the instructor's seed")


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
        with on_case(f"decode(encode({s[:40]!r}))"):
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
        with on_case(f"encode({s!r})"):
            got = tok.encode(s)
        if got != [256 + i]:
            raise CheckFailed(f"encode({s!r}) gave {got}; expected [{256 + i}]: a special token is one id, "
                              "never its bytes")
    for s in ["<|user|> hi<|end|>", *WITH_SPECIALS]:  # each special one id, the text between encoded on its own
        with on_case(f"encode({s[:40]!r})"):
            got = tok.encode(s)
            want = [i for part in split_special(s) for i in
                    ([SPECIAL_TOKENS.index(part) + 256] if part in SPECIAL_TOKENS else tok.encode(part))]
        if got != want:
            raise CheckFailed(f"encode({s[:40]!r}) gave {got[:12]}, expected {want[:12]}: cut the text at the special "
                              "tokens first (split_special), encode each special as its one id and the text between "
                              "on its own; a special token is never merged with its neighbours")
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
            raise CheckFailed(f"merge #{i} is {tuple(g)}, expected {e}: {wrong_merge(tuple(g), e, expected[:i])}")
    if len(got) != len(expected):
        raise CheckFailed(f"learned {len(got)} merges, expected {len(expected)}")


def pair_counts(merges: list[tuple], weighted: bool = True) -> Counter:
    """The pair counts of ``small_corpus`` once ``merges`` (learned in this order, ids from 261 on) are
    applied: each chunk counted as often as it occurs (or once per distinct chunk: ``weighted=False``)."""
    chunks = Counter(c for part in split_special(small_corpus()) if part not in SPECIAL_TOKENS for c in pretokenize(part))
    ranks = {pair: 256 + len(SPECIAL_TOKENS) + i for i, pair in enumerate(merges)}
    counts = Counter()
    for chunk, n in chunks.items():
        ids = encode_chunk(list(chunk.encode()), ranks)
        for pair in zip(ids, ids[1:]):
            counts[pair] += n if weighted else 1
    return counts


def wrong_merge(got: tuple, want: tuple, before: list[tuple]) -> str:
    """Why training picked ``got`` where the rule picks ``want``, the merges ``before`` being right."""
    counts = pair_counts(before)
    if counts[got] == counts[want]:
        return (f"both pairs occur {counts[want]} times, and on equal counts the greatest pair wins (the tie-break: "
                "max(counts, key=lambda p: (counts[p], p)))")
    if got == max((unweighted := pair_counts(before, weighted=False)), key=lambda p: (unweighted[p], p)):
        return (f"{got} occurs {counts[got]} times in the text, {want} {counts[want]} times: count each pair as often "
                "as its chunk occurs in the text, not once per distinct chunk")
    return (f"{got} occurs {counts[got]} times in the text, {want} {counts[want]} times: merge the most frequent "
            "pair, counting the pairs again where the last merge changed them")


def encode_chunk(ids: list[int], merges: dict[tuple, int]) -> list[int]:
    """One chunk's ids with ``merges`` (pair -> new id, in the order learned) applied, the earliest first."""
    rank = {pair: r for r, pair in enumerate(merges)}
    while len(ids) > 1:
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, len(rank)))
        if pair not in rank:
            return ids
        out, i = [], 0
        while i < len(ids):
            if ids[i:i + 2] == list(pair):
                out.append(merges[pair])
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


def rule_encoding(text: str, merges: dict[tuple, int]) -> list[int]:
    """``text`` (without special tokens) encoded by the rule with ``merges``: each chunk on its own."""
    return [i for chunk in pretokenize(text) for i in encode_chunk(list(chunk.encode()), merges)]


@check("tokenizer", points=2)
def encodings_match(ctx):
    "Encodes a fixed set of strings as the rule does with the merges its own training learned: in each chunk, the earliest learned merge first."
    tok = _trained(ctx)
    try:
        merges = {(int(a), int(b)): int(new) for (a, b), new in dict(tok.merges).items()}
    except (TypeError, ValueError) as e:
        raise CheckFailed(f"the tokenizer's merges are not {{(a, b): new id, ...}} ({type(e).__name__})") from None
    asked = 400 - 256 - len(SPECIAL_TOKENS)
    if not asked <= len(merges) <= 2 * asked:
        raise CheckFailed(f"training learned {len(merges)} merges where a 400-token vocabulary asks for {asked}: "
                          "encode is checked with the merges train learns")
    for s in ENCODINGS:
        if s in WITH_SPECIALS:
            continue  # special_tokens' cases
        with on_case(f"encode({s[:40]!r})"):
            got = tok.encode(s)
        want = rule_encoding(s, merges)
        if got != want:
            i = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
            raise CheckFailed(f"encode({s[:40]!r}) differs from the rule at token {i}: got {got[i:i + 3]}, expected "
                              f"{want[i:i + 3]}; {wrong_encoding(s, got, merges)}")


def wrong_encoding(text: str, got: list[int], merges: dict[tuple, int]) -> str:
    """What an encoding that breaks the rule does instead, when it is a classic mistake."""
    if got == encode_chunk(list(text.encode()), merges):
        return "merges cross chunk boundaries: cut the text with pretokenize and encode each chunk on its own"
    spelled = {i: bytes([i]) for i in range(256)}
    for (a, b), new in merges.items():
        spelled[new] = spelled.get(a, b"?") + spelled.get(b, b"?")
    if b"".join(spelled.get(i, b"?") for i in got) == text.encode():
        return ("the ids spell the text, but the merges are not applied in the order learned: in each chunk, apply "
                "the earliest learned merge first, then the next")
    return "apply the learned merges inside each chunk, the earliest learned first"


# -- speed ------------------------------------------------------------------------------
SPEED_VOCAB = 600
SPEED_MULTIPLE = 5  # allowed: 5x the reference's time
TIME_LIMIT = 60.0  # seconds: past this, training is stopped and the check fails


def speed_corpus(n_words: int = 20000, seed: int = 0) -> str:
    """~120 kB of made-up words (2,300 distinct chunks, some non-ASCII): many pairs to count. The
    speed check draws it from ``held_out_seed()``: a text no submission can know, so its merges
    must be learned from it. Its 16 consonants and 5 vowels are drawn too: with fixed syllables,
    the merges learned on one seed's text all occur in another's."""
    rng = random.Random(seed)
    letters = rng.sample("bcdfghjklmnpqrstvwxyzaeiou", 21)
    syllables = [a + b for a in letters[:16] for b in letters[16:]] + ["é", "ß", "東", "🙂"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    return " ".join(rng.choice(words) for _ in range(n_words))


def _best_time(train, text: str, repeats: int, clock=time.thread_time) -> float:
    """The shortest of ``repeats`` trainings, in seconds of CPU time (``clock``): other processes' load does
    not lengthen them, as it would wall-clock seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        train(text, SPEED_VOCAB)
        best = min(best, clock() - t0)
    return best


def yardstick_seconds(text: str) -> float:
    """Counting the text's chunks (the baseline's training, in this thread): how fast this machine is."""
    return _best_time(lambda t, v: WholeWordTokenizer().train(t, v), text, repeats=5)


def substrings(text: str) -> set[bytes]:
    """Every run of bytes inside one chunk of ``text``: the spellings BPE can learn from it."""
    chunks = {c.encode() for part in split_special(text) if part not in SPECIAL_TOKENS for c in pretokenize(part)}
    return {c[i:j] for c in chunks for i in range(len(c)) for j in range(i + 2, len(c) + 1)}


def unlearned_merge(table: dict[int, bytes], text: str) -> str | None:
    """Why the merges spelled in ``table`` (``token_bytes``) were not learned from ``text``, or None. A
    merge that BPE learns on a text joins two adjacent tokens inside one of its chunks, so it spells
    bytes found in a chunk; merges fixed in advance (or learned on another text) spell bytes that a
    fresh random text does not hold."""
    learnable = substrings(text)
    first = 256 + len(SPECIAL_TOKENS)  # merges take the ids after the bytes and the special tokens
    for new, spelled in sorted(table.items()):
        if new >= first and spelled not in learnable:
            return (f"the merge that makes token {new} spells {spelled[:30]!r}, which occurs in no chunk of the "
                    "text train() was given: the merges must be learned by train() from that text, not fixed in "
                    "advance or kept from another text")
    return None


@check("tokenizer", points=1)
def speed(ctx):
    "Training learns every merge asked for from a fresh text, incrementally: at most 5x the reference's CPU time (relative to a yardstick timed in the same run)."
    text = speed_corpus(seed=held_out_seed())
    ratio_ref = ctx.snapshot()["speed_ratio"]  # reference seconds / yardstick seconds, as recorded
    yardstick = yardstick_seconds(text)
    allowed = SPEED_MULTIPLE * ratio_ref * yardstick
    tok = ctx.components.tokenizer()
    with ctx.time_limit(TIME_LIMIT, f"training a {SPEED_VOCAB}-token vocabulary on {len(text) // 1000} kB"):
        clock = ctx.submission_clock()  # CPU time: in this thread, or the child's cgroup under toolkit grade
        seconds = _best_time(tok.train, text, repeats=1, clock=clock)
        if allowed < seconds < 2 * allowed:  # near the line, two more tries (a wall clock, without a cgroup, is noisy)
            seconds = min(seconds, _best_time(tok.train, text, repeats=2, clock=clock))
        learned, asked = len(list(tok.merges)), SPEED_VOCAB - 256 - len(SPECIAL_TOKENS)
        table = token_bytes(tok)
    unlearned = unlearned_merge(table, text)
    ctx.metrics.update(train_seconds=seconds, allowed_seconds=allowed, times_reference=seconds / yardstick / ratio_ref,
                       merges=learned, text=held_out_note())
    if learned < asked:  # a training that skips the work is fast, and earns nothing
        raise CheckFailed(f"training learned {learned} merges where a {SPEED_VOCAB}-token vocabulary asks for {asked}: "
                          "only a training that learns every merge asked for is timed")
    if unlearned:  # so is one that returns merges it did not learn from the text
        raise CheckFailed(unlearned)
    if seconds > allowed:
        raise CheckFailed(f"training took {seconds:.2f} s, {seconds / yardstick / ratio_ref:.0f}x the reference's time "
                          f"(allowed {SPEED_MULTIPLE}x): after a merge, update the counts of the pairs that changed "
                          "instead of recounting every pair")


# -- behaviour: a small GPT pretrained with the tokenizer ------------------------------------
BEHAVIOUR = PipelineConfig(n_docs=6000, model=GPTConfig(block_size=64, n_layer=2, n_head=2, n_embd=64),
                           pretrain=TrainConfig(steps=300, lr=3e-3))
BPB_MARGIN = 0.15  # full credit up to 15% more bits per byte than the solution's worst seed
BPB_ZERO = 2.0  # no credit from twice the solution's worst seed


def validation_text(shuffle: bool = False, seed: int | None = None) -> str:
    """300 documents the model never saw in training, drawn from ``seed`` (None: ``held_out_seed()``,
    the instructor's); words shuffled if asked."""
    seed = held_out_seed() if seed is None else seed
    docs = World(seed=0).pretraining_documents(300, seed=seed)
    if shuffle:
        rng = random.Random(seed)
        docs = [" ".join(rng.sample(d.split(" "), len(d.split(" ")))) for d in docs]
    return "".join(render_document(d) for d in docs)


MAX_TOKEN_BYTES = 24  # the solution's longest merge on the world's text is 12 bytes (" Switzerland"; the longest
                      # chunk, " Antananarivo", is 13: BPE never merges across chunks); a margin of 2x
MAX_TABLE_BYTES = 1 << 24  # bytes of all the tokens' spellings together (the solution's: about 10 kB)


def token_bytes(tok) -> dict[int, bytes]:
    """Each id's bytes, rebuilt by the grader from the tokenizer's plain data, never by its decode:
    id i < 256 is ``bytes([i])``, a special token its string's UTF-8, a merge (a, b) -> new id the
    bytes of a then b. The toolkit's own baseline learns whole words instead of merges."""
    table = {i: bytes([i]) for i in range(256)}
    try:
        table.update({i: s.encode() for s, i in dict(tok.special_tokens).items()})
        if type(tok) is WholeWordTokenizer:  # the baseline's, built by the pipeline (a student's never is)
            table.update({i: w.encode() for w, i in tok.words.items()})
        total = 0
        for (a, b), new in dict(tok.merges).items():
            total += len(table[a]) + len(table[b])
            if total > MAX_TABLE_BYTES:  # merges of merges double a token's length: 40 of them make a terabyte
                raise CheckFailed(f"the tokenizer's merges spell tokens of more than {MAX_TABLE_BYTES:,} bytes in all "
                                  f"(merge ({a}, {b}) -> {new}): a vocabulary of this corpus's words holds far fewer")
            table[new] = table[a] + table[b]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckFailed("the tokenizer's merges and special_tokens do not define every id's bytes (merges: "
                          "{(a, b): new id, ...} in the order learned, each a and b an id defined before; "
                          f"special_tokens: {{string: id}}): {type(e).__name__}: {e}") from None
    return table


def checked_ids(text: str, ids, table: dict[int, bytes], vocab_size: int) -> list[int]:
    """``ids``, if they are exactly ``text``: each an id of the vocabulary spelling at most MAX_TOKEN_BYTES,
    and their bytes, by ``table``, the text's bytes. The model's loss on them is divided by the text's
    bytes, so ids of less text would earn fewer bits per byte than they deserve, and so would ids that
    each spell a long stretch of it (a token per document: 0.15 bits per byte, the solution's 0.34)."""
    ids = list(ids)
    bad = next((i for i in ids if type(i) is not int or i not in table or not 0 <= i < vocab_size), None)
    if bad is not None:
        where = "which no merge and no special token defines" if type(bad) is int and 0 <= bad < vocab_size else \
            f"outside the vocabulary (0 to {vocab_size - 1})"
        raise CheckFailed(f"encode(text) on the validation documents returned id {bad!r}, {where}")
    long = next((i for i in ids if len(table[i]) > MAX_TOKEN_BYTES), None)
    if long is not None:
        raise CheckFailed(f"encode(text) on the validation documents returned id {long}, which spells "
                          f"{len(table[long]):,} bytes ({table[long][:30]!r}...): bits per byte count only tokens of at "
                          f"most {MAX_TOKEN_BYTES} bytes (twice the longest token the solution learns on this world's "
                          "text): a token that spells a whole stretch of text is one cheap prediction for all of it")
    got, want = b"".join(table[i] for i in ids), text.encode()
    if got != want:
        same = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        raise CheckFailed(f"the ids encode(text) returned on the validation documents decode, by your merges, to "
                          f"{len(got):,} bytes where the text has {len(want):,} (the same up to byte {same:,}): "
                          "encode must return the ids of the whole text: bits per byte are measured on them")
    return ids


def measure(pipeline: Pipeline) -> dict:
    """Bits per byte of the pipeline's base model on held-out and on shuffled text, and token statistics.

    The ids are checked against the tokenizer's merges (``token_bytes``, read once), not its decode,
    before the base model is trained: ids that break a rule need no pretraining to fail."""
    tok = pipeline.tokenizer
    table = token_bytes(tok)
    texts = {name: (text, checked_ids(text, tok.encode(text), table, pipeline.model_config.vocab_size))
             for name, text in (("bpb", validation_text()), ("shuffled_bpb", validation_text(shuffle=True)))}
    model = pipeline.base_model
    out = {}
    for name, (text, ids) in texts.items():
        out[name] = round(bits_per_byte(model, torch.tensor(ids, dtype=torch.long), len(text.encode())), 4)
        if name == "bpb":
            lengths = Counter(len(table[i]) for i in ids)
            out["bytes_per_token"] = round(len(text.encode()) / len(ids), 4)
            out["token_lengths"] = {str(k): lengths[k] for k in sorted(lengths)}
    return out


@check("tokenizer", points=4, behavioural=True)
def behaviour(ctx):
    "A small GPT pretrained with the tokenizer reaches the solution's bits per byte (worst seed +15%) on held-out text drawn at grading time, whose ids must spell it by your merges in tokens of at most 24 bytes, and finds shuffled text harder."
    ref = ctx.snapshot()["behaviour"]
    pipeline = ctx.pipeline_for(BEHAVIOUR)
    with ctx.time_limit(10 * TIME_LIMIT, "training the tokenizer on the pipeline's 0.8 MB corpus"):
        pipeline.tokenizer
    got = measure(pipeline)
    ctx.metrics.update({k: v for k, v in got.items() if k != "token_lengths"}, reference_bpb=ref["bpb"],
                       held_out_text=held_out_note())
    path = ctx.plot_path("tokenizer_lengths.png", "Share of tokens by length in bytes on held-out text: "
                                                   "yours and the reference's")
    if path:
        from toolkit.plots import plot_token_lengths
        plot_token_lengths({"yours": got, "reference": ref}, path)
    if not got["bpb"] < got["shuffled_bpb"]:
        return Partial(0, f"the model finds shuffled text as easy as real text ({got['shuffled_bpb']:.3f} vs "
                          f"{got['bpb']:.3f} bits per byte): the token stream loses the text's structure")
    fraction, reason = bpb_score(got["bpb"])
    if fraction == 1:
        return None
    return Partial(fraction, f"{reason}, {got['bytes_per_token']:.2f} bytes per token against the reference's "
                             f"{ref['bytes_per_token']:.2f}: does training learn all the merges it is asked for?")


def bpb_full() -> float:
    """The most bits per byte that earn full credit: the solution's worst seed + BPB_MARGIN (relative)."""
    return calibration.at_most("tok_bpb", 0.0) * (1 + BPB_MARGIN)


def bpb_score(bpb: float) -> tuple[float, str]:
    """The fraction of the points bits per byte earn: full up to the solution's worst seed + BPB_MARGIN
    (relative), none from BPB_ZERO times it, linear between; and what falls short says."""
    full, zero = bpb_full(), calibration.at_most("tok_bpb", 0.0) * BPB_ZERO
    if bpb <= full:
        return 1.0, ""
    return max(0.0, (zero - bpb) / (zero - full)), (f"{bpb:.3f} bits per byte against the solution's "
                                                    f"{calibration.span('tok_bpb')} (full credit up to {full:.3f})")


def record(components) -> dict:
    tok = components.tokenizer()
    tok.train(small_corpus(), 400)
    text = speed_corpus(seed=held_out_seed())
    reference = _best_time(components.tokenizer().train, text, repeats=3)
    return {"vocab_size": 400, "merges": [list(p) for p in tok.merges],
            "encodings": [tok.encode(s) for s in ENCODINGS],
            "speed_ratio": round(reference / yardstick_seconds(text), 3),
            "behaviour": measure(Pipeline(components, BEHAVIOUR))}


# the figures that matter, at the top of a student's report: (check, said from its metrics)
FIGURES = [("tokenizer.behaviour", lambda m: f"{m['bpb']:.3f} bits per byte on held-out text "
                                           f"(reference {m['reference_bpb']:.3f})")]
