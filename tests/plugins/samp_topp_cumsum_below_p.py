"""Wrong: the notebook's classic top-p mistake: keep the tokens while the running sum *including
themselves* is <= p. It drops the token that makes the sum reach p, and when the most likely token alone
has more than p it keeps nothing: the row is all zeros, 0 / 0 is NaN, and torch.multinomial refuses it."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None:
        ranked, order = torch.sort(probs, dim=-1, descending=True)
        keep = ranked.cumsum(dim=-1) <= top_p  # should be: the mass ranked *above* the token is < p
        probs = torch.zeros_like(probs).scatter(-1, order, ranked * keep)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
