"""Wrong: the inverse of the right mask; the loss counts the user's turns only."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    opened = (tokens == special_tokens["<|assistant|>"]).long().cumsum(1)
    closed = (tokens == special_tokens["<|end|>"]).long().cumsum(1)
    inside = (opened > closed)[:, :-1]
    return ~inside & (tokens[:, 1:] != special_tokens["<|pad|>"])
