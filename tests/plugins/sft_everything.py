"""Wrong: no mask, every real token counts (the baseline's behaviour, as a student plugin)."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    return tokens[:, 1:] != special_tokens["<|pad|>"]
