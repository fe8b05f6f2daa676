"""Solution: the SFT loss mask. Supervise exactly the assistant's tokens and its <|end|>."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    assistant, end = special_tokens["<|assistant|>"], special_tokens["<|end|>"]
    supervised = torch.zeros_like(tokens, dtype=torch.bool)  # which *tokens* are the assistant's
    for b, row in enumerate(tokens.tolist()):
        in_answer = False
        for t, tok in enumerate(row):
            if tok == assistant:
                in_answer = True  # the tag itself is the prompt, not the answer
            elif in_answer:
                supervised[b, t] = True
                in_answer = tok != end  # <|end|> is supervised, then the turn is over
    # The model at position t predicts token t + 1: shift by one to align with the targets.
    return supervised[:, 1:]
