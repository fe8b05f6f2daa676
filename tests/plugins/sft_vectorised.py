"""A correct SFT mask written differently from the solution: vectorised with cumsum."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    targets = tokens[:, 1:]  # (B, T-1): what each position predicts
    opened = (tokens == special_tokens["<|assistant|>"]).long().cumsum(1)
    closed = (tokens == special_tokens["<|end|>"]).long().cumsum(1)
    # Inside an answer: more <|assistant|> tags than <|end|> tokens up to the input position.
    inside = (opened > closed)[:, :-1]
    return inside & (targets != special_tokens["<|pad|>"])
