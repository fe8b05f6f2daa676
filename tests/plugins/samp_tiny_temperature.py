"""Wrong: temperature 0 becomes a tiny temperature, so a tie at the maximum is sampled instead of giving the lowest id."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    logits = logits / max(temperature, 1e-6)  # "no division by zero": but temperature 0 must be the argmax
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        probs = torch.softmax(logits, dim=-1)
        ranked, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        drop = (ranked.cumsum(-1) - ranked) >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
