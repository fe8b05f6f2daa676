"""Wrong: the assistant's tokens without its <|end|>; the model never learns to stop."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    targets = tokens[:, 1:]
    opened = (tokens == special_tokens["<|assistant|>"]).long().cumsum(1)
    closed = (tokens == special_tokens["<|end|>"]).long().cumsum(1)
    inside = (opened > closed)[:, :-1]
    return inside & (targets != special_tokens["<|end|>"]) & (targets != special_tokens["<|pad|>"])
