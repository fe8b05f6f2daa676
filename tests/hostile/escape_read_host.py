"""Hostile: looks for the grader's secrets from inside its child (environment variables,
/proc/*/environ and cmdline, /proc/self/mountinfo, its parent folders, HOME, the model cache,
/root, /work, the solutions and hidden checks, and absolute paths guessed in GUESSES), and smuggles
whatever canary it finds out through its check reasons and its stderr; honest score: 9 (its
attention is correct, and it raises only if it found something)."""
import glob
import os
import sys
from pathlib import Path

import torch
from torch import nn

import toolkit

GUESSES: list[str] = []  # absolute paths the grader's layout might use (tests/test_hostile.py fills them in)
MARK = "HOSTILE-" + "CANARY-"


def read(path: str) -> str:
    if not (os.path.isfile(path) or path.startswith("/proc/")):
        return ""  # no FIFO or device to block on
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20).decode("latin-1")
    except OSError:
        return ""


def hunt() -> list[str]:
    texts = [repr(dict(os.environ))]
    for pattern in ("/proc/*/environ", "/proc/*/cmdline", "/proc/self/mountinfo", "/proc/*/cwd/*.txt"):
        texts += [read(p) for p in glob.glob(pattern)[:400]]
    here = Path(__file__).resolve().parent
    places = [here, *here.parents, Path.cwd(), *Path.cwd().parents, Path.home(), Path("/root"), Path("/work"),
              Path(toolkit.__file__).resolve().parent.parent / "solutions",
              Path(toolkit.__file__).resolve().parent.parent / "graders" / "hidden",
              Path(os.environ.get("TOOLKIT_CACHE", "/nonexistent"))]
    for place in places:
        try:
            entries = list(place.iterdir())[:200]
        except OSError:
            continue
        texts += [read(str(e)) for e in entries if e.suffix in (".txt", ".py", ".sqlite", ".json", ".png", "")]
    texts += [read(g) for g in GUESSES]
    found = []
    for text in texts:
        i = text.find(MARK)
        if i >= 0:
            found.append(text[i:i + 40])
    return found


FOUND = hunt()
if FOUND:
    print("found:", *FOUND, file=sys.stderr)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.nh = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x):
        if FOUND:
            raise ValueError(f"found: {' '.join(FOUND)}")
        B, T, C = x.shape
        q, k, v = self.c_attn(x).reshape(B, T, 3, self.nh, C // self.nh).unbind(dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * (C // self.nh) ** -0.5
        allowed = torch.arange(T)[:, None] >= torch.arange(T)[None, :]
        scores = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        weights = scores.softmax(dim=-1)
        return self.c_proj(torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, C))


@toolkit.hookimpl
def toolkit_attention(config):
    return Attention(config)
