"""The chat template, and turning texts into padded batches of token ids.

A conversation is rendered as::

    <|bos|><|user|> What is the capital of France ?<|assistant|> The capital of France is Paris .<|end|>

and a pretraining document as ``<|bos|> The capital of Peru is Lima . ...``. More turns
follow the first with another ``<|user|>``.
"""

from __future__ import annotations

import torch

BOS, USER, ASSISTANT, END, PAD = "<|bos|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"


def render_document(text: str) -> str:
    return f"{BOS} {text}"


def render_chat(conversation: list[tuple[str, str]]) -> str:
    """[(role, text), ...] -> one string in the chat template."""
    out = BOS
    for role, text in conversation:
        out += f"{USER} {text}" if role == "user" else f"{ASSISTANT} {text}{END}"
    return out


def chat_prompt(question: str) -> str:
    """What the chat model is given to answer ``question``: the template up to its turn."""
    return f"{BOS}{USER} {question}{ASSISTANT}"


def base_prompt(question: str) -> str:
    """What the base model is given: the bare question, as the start of a document."""
    return render_document(question)


def encode_batch(tokenizer, texts: list[str], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode, truncate to ``block_size`` and right-pad with ``<|pad|>``.

    Returns ``tokens`` LongTensor (B, T) and ``lengths`` LongTensor (B,).
    """
    pad = tokenizer.special_tokens[PAD]
    rows = [tokenizer.encode(t)[:block_size] for t in texts]
    T = max(len(r) for r in rows)
    tokens = torch.full((len(rows), T), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return tokens, torch.tensor([len(r) for r in rows], dtype=torch.long)
