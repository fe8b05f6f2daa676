"""Hostile: a correct mask on the public check's conversations; on the hidden check's (64 rows) it
raises the toolkit's own OutOfTime, outside any time limit; honest score: 3 (matches_reference)."""
import toolkit
from toolkit.alarm import OutOfTime


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    if tokens.shape[0] == 64:
        raise OutOfTime("hidden")
    opened = (tokens == special_tokens["<|assistant|>"]).long().cumsum(1)
    closed = (tokens == special_tokens["<|end|>"]).long().cumsum(1)
    return (opened > closed)[:, :-1] & (tokens[:, 1:] != special_tokens["<|pad|>"])
