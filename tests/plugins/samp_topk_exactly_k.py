"""Wrong: top-k keeps exactly k tokens (torch.topk's indices), dropping some of those tied with the k-th largest."""

import torch

import toolkit


@toolkit.hookimpl
def toolkit_sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        chosen = torch.topk(logits, min(top_k, logits.size(-1))).indices  # exactly k, ties cut arbitrarily
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, chosen, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    if top_p is not None:
        probs = torch.softmax(logits, dim=-1)
        ranked, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        drop = (ranked.cumsum(-1) - ranked) >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)
