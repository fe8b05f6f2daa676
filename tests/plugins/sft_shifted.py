"""Wrong: the right tokens, but not shifted to the targets (off by one)."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    opened = (tokens == special_tokens["<|assistant|>"]).long().cumsum(1)
    closed = (tokens == special_tokens["<|end|>"]).long().cumsum(1)
    is_answer = (opened > closed) & (tokens != special_tokens["<|assistant|>"])
    is_answer |= tokens == special_tokens["<|end|>"]
    return is_answer[:, :-1]  # should be [:, 1:]: mask[t] is about target tokens[t + 1]
