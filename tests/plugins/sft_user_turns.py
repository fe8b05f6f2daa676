"""Wrong: the user's turns are supervised instead of the assistant's (written as a loop that follows
who speaks), with the <|user|> tags that open them."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sft_mask(tokens, special_tokens):
    user, others = special_tokens["<|user|>"], {v for k, v in special_tokens.items() if k != "<|user|>"}
    mask = torch.zeros(tokens.shape[0], tokens.shape[1] - 1, dtype=torch.bool)
    for b, row in enumerate(tokens.tolist()):
        speaking = False
        for t, tok in enumerate(row[1:]):  # the target of position t is row[t + 1]
            if tok == user:
                speaking = True
            elif tok in others:
                speaking = False
            mask[b, t] = speaking
    return mask
